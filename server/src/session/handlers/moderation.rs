//! RestrictMember, GetEditHistory, ReportMessage, ListReviews and ResolveReview
//! (docs/protocol.md sections 6.6, 8.9 and 8.11), and the reason field of Delete.

use chatwire_protocol::v1::{self, room_event::Kind};
use v1::reply::Result as Reply;

use super::rooms::expect_seq;
use super::{Ctx, reads, room_id};
use crate::backend::reviews::{ReviewItem, ReviewKey, ReviewScope};
use crate::chat::command::RoomOp;
use crate::chat::error::ChatError;
use crate::chat::validate;

/// Log events read per page while collecting a message's versions.
const HISTORY_SCAN_PAGE: usize = 1000;

/// A reason field: at most [`validate::MAX_REASON_CHARS`] characters.
pub(super) fn reason(raw: &str) -> Result<String, ChatError> {
    validate::text("reason", raw, validate::MAX_REASON_CHARS)?;
    Ok(raw.to_owned())
}

pub(super) async fn restrict_member(
    ctx: Ctx<'_>,
    r: v1::RestrictMemberRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let user = validate::user_id("user_id", &r.user_id)?;
    if r.until_ms < 0 {
        return Err(ChatError::invalid("until_ms", "negative time"));
    }
    let op = RoomOp::Restrict {
        user,
        until_ms: r.until_ms,
        reason: reason(&r.reason)?,
    };
    let seq = expect_seq(ctx.write(room, op).await?)?;
    Ok(Reply::RestrictMember(v1::RestrictMemberResponse { seq }))
}

/// Every version of a message from the log: its MessageCreated, then each
/// MessageEdited of it, up to its MessageDeleted. Redaction already emptied the
/// content of every one of them once the message is deleted, so a deleted message's history is
/// tombstones only. The scan reads the log from the message to the head.
pub(super) async fn get_edit_history(
    ctx: Ctx<'_>,
    r: v1::GetEditHistoryRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let min_seq = reads::readable(&ctx, &room).await?;
    let not_found = ChatError::MessageNotFound {
        field: "target_seq",
    };
    if r.target_seq < min_seq {
        return Err(not_found);
    }
    let store = &ctx.services.store;
    let Some(message) = store.message(&room, r.target_seq).await? else {
        return Err(not_found);
    };
    let head = store.head(&room).await?.map_or(0, |h| h.seq);
    let mut response = v1::GetEditHistoryResponse::default();
    let mut after = r.target_seq - 1;
    'scan: while after < head {
        let events = store
            .read_events(&room, after, HISTORY_SCAN_PAGE, usize::MAX)
            .await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        for event in events {
            let version = |content: Option<v1::Content>, redacted: bool| v1::MessageVersion {
                seq: event.seq,
                ts_ms: event.ts_ms,
                content,
                redacted,
            };
            match event.kind {
                Some(Kind::MessageCreated(created)) if event.seq == r.target_seq => {
                    response
                        .versions
                        .push(version(created.content, created.redacted));
                }
                Some(Kind::MessageEdited(edited)) if edited.target_seq == r.target_seq => {
                    response
                        .versions
                        .push(version(edited.content, edited.redacted));
                }
                Some(Kind::MessageDeleted(deleted)) if deleted.target_seq == r.target_seq => {
                    response.deleted = true;
                    response.deleted_seq = event.seq;
                    break 'scan;
                }
                _ => {}
            }
        }
    }
    if message.deleted || response.deleted {
        // Tombstones only, whatever a racing redaction left behind in this read.
        response.deleted = true;
        for version in &mut response.versions {
            version.content = None;
            version.redacted = true;
        }
    }
    Ok(Reply::GetEditHistory(response))
}

/// A member's report of a message to the review queue: any member who may read the
/// message, not its author, with a reason; rate-limited per user. Repeats by one member are
/// idempotent and answer the same id.
pub(super) async fn report_message(
    ctx: Ctx<'_>,
    r: v1::ReportMessageRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    if r.reason.trim().is_empty() {
        return Err(ChatError::invalid("reason", "a report needs a reason"));
    }
    let reason = reason(&r.reason)?;
    let min_seq = reads::readable(&ctx, &room).await?;
    let not_found = ChatError::MessageNotFound {
        field: "target_seq",
    };
    if r.target_seq == 0 || r.target_seq < min_seq {
        return Err(not_found);
    }
    let message = ctx
        .services
        .store
        .message(&room, r.target_seq)
        .await?
        .filter(|message| !message.deleted)
        .ok_or(not_found)?;
    if message.sender == ctx.user.as_str() {
        return Err(ChatError::invalid(
            "target_seq",
            "you cannot report your own message",
        ));
    }
    ctx.services
        .rate_limit("report", ctx.user, ctx.services.rates.reports)
        .await?;
    let key = ReviewKey {
        room,
        seq: r.target_seq,
    };
    crate::moderation::review::report(ctx.services, &key, &message.sender, ctx.user, reason)
        .await?;
    Ok(Reply::ReportMessage(v1::ReportMessageResponse {
        report_id: key.id(),
    }))
}

/// The caller reviews `room`'s entries: an owner, admin or moderator of a group.
async fn reviewer(ctx: &Ctx<'_>, room: &crate::chat::ids::RoomId) -> Result<(), ChatError> {
    let member = ctx.member(room).await?;
    let moderates = matches!(
        member.role(),
        v1::Role::Owner | v1::Role::Admin | v1::Role::Moderator
    );
    if !room.is_direct() && moderates {
        Ok(())
    } else {
        Err(ChatError::PermissionDenied(
            "only owners, admins and moderators of a group review its reports",
        ))
    }
}

/// A stored review item as the protocol's entry.
fn entry(item: ReviewItem) -> v1::ReviewEntry {
    let resolution = item.resolution.clone().unwrap_or_default();
    let status = item.status();
    v1::ReviewEntry {
        review_id: item.id(),
        target_seq: item.seq,
        sender: item.sender,
        opened_ms: item.opened_ms,
        flagged: item.flagged,
        score: item.score,
        reasons: item.reasons,
        reports: item
            .reports
            .into_iter()
            .map(|r| v1::MessageReport {
                reporter: r.reporter,
                reason: r.reason,
                at_ms: r.at_ms,
            })
            .collect(),
        status: status.into(),
        reviewed_by: resolution.by,
        reviewed_at_ms: resolution.at_ms,
        review_reason: resolution.reason,
    }
}

/// A group's review entries by seq, open ones only unless `include_reviewed`.
pub(super) async fn list_reviews(
    ctx: Ctx<'_>,
    r: v1::ListReviewsRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    reviewer(&ctx, &room).await?;
    let limit = ctx.services.page_limit(r.limit, 100);
    let scope = ReviewScope::Room(room.clone());
    let mut after = ReviewKey {
        room,
        seq: r.after_seq,
    };
    let mut entries = Vec::new();
    // Reviewed entries are skipped unless asked for, so read on until the page is full.
    let has_more = loop {
        let items = ctx
            .services
            .store
            .reviews(&scope, Some(&after), limit)
            .await?;
        let exhausted = items.len() < limit;
        for item in items {
            after.seq = item.seq;
            if r.include_reviewed || item.is_open() {
                entries.push(entry(item));
                if entries.len() == limit {
                    break;
                }
            }
        }
        if entries.len() == limit {
            break true;
        }
        if exhausted {
            break false;
        }
    };
    Ok(Reply::ListReviews(v1::ListReviewsResponse {
        entries,
        has_more,
    }))
}

/// Approves or removes a reported or flagged message: a removal is a Delete by the
/// caller with the reason; the first review stands.
pub(super) async fn resolve_review(
    ctx: Ctx<'_>,
    r: v1::ResolveReviewRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let reason = reason(&r.reason)?;
    if r.remove && reason.trim().is_empty() {
        return Err(ChatError::invalid("reason", "a removal needs a reason"));
    }
    reviewer(&ctx, &room).await?;
    let key = ReviewKey {
        room,
        seq: r.target_seq,
    };
    let item =
        crate::moderation::review::resolve(ctx.services, &key, r.remove, ctx.user, reason, false)
            .await
            .map_err(|error| match error {
                ChatError::NotFound => ChatError::MessageNotFound {
                    field: "target_seq",
                },
                other => other,
            })?;
    Ok(Reply::ResolveReview(v1::ResolveReviewResponse {
        entry: Some(entry(item)),
    }))
}
