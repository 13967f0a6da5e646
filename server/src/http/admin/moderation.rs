//! Moderation in the admin API: restricting a member, and a room's moderation audit (deletions,
//! restrictions and removals: who, when, why, which seq; never content). docs/operations.md
//! "Moderation" and docs/protocol.md section 6.6.

use axum::Json;
use axum::extract::{Path, State};
use chatwire_protocol::v1::{self, room_event::Kind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiResult, ErrorBody};
use super::extract::{self, Body, Query};
use super::rooms::{Changed, expect_seq};
use super::{system_user, write};
use crate::chat::command::RoomOp;
use crate::chat::error::ChatError;
use crate::chat::validate;
use crate::http::AppState;

/// Log events read per page while building an audit page.
const SCAN_PAGE: usize = 1000;

/// A restriction to set (or lift).
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct Restriction {
    /// Until when the member may not send or react, Unix ms; 0 lifts the restriction.
    pub(super) until_ms: i64,
    /// Why (at most 500 characters).
    #[serde(default)]
    pub(super) reason: String,
}

/// Restricts a plain member of a group from sending and reacting until a time, or lifts it
/// with `until_ms` 0 (privileged, as `system`): the room's log gets a MemberRestricted event.
#[utoipa::path(put, path = "/rooms/{room_id}/members/{user_id}/restriction", tag = "rooms",
    request_body = Restriction,
    params(("room_id" = String, Path, description = "The room"),
        ("user_id" = String, Path, description = "The member")),
    responses((status = 200, description = "The MemberRestricted seq; 0 when nothing changed", body = Changed),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn restrict(
    State(state): State<AppState>,
    Path((room_id, user_id)): Path<(String, String)>,
    Body(r): Body<Restriction>,
) -> ApiResult<Json<Changed>> {
    let room = extract::room(&room_id)?;
    let user = extract::user("user_id", &user_id)?;
    validate::text("reason", &r.reason, validate::MAX_REASON_CHARS)?;
    if r.until_ms < 0 {
        return Err(ChatError::invalid("until_ms", "negative time").into());
    }
    let op = RoomOp::Restrict {
        user,
        until_ms: r.until_ms,
        reason: r.reason,
    };
    expect_seq(write(&state.services, room, system_user(), op, true).await?)
}

/// Where an audit page starts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditParams {
    /// Entries above this seq (0 or none: from the start of the retained log).
    pub(super) after_seq: Option<u64>,
    /// Most entries to return (at most 100, 100 by default).
    pub(super) limit: Option<u32>,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum AuditAction {
    /// A message was deleted by its author.
    MessageDeleted,
    /// A message was deleted by someone else: a moderator, admin, owner or the admin API.
    MessageRemoved,
    /// A member was restricted, or a restriction lifted (`until_ms` 0).
    MemberRestricted,
    /// A member was removed from the room by someone else.
    MemberRemoved,
}

/// One audited action: who, when, why, which seq; never content.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditEntry {
    /// The seq of the log event that recorded it.
    pub(super) seq: u64,
    /// When, Unix ms.
    pub(super) ts_ms: i64,
    /// What.
    pub(super) action: AuditAction,
    /// Who did it (`system` for the admin API).
    pub(super) actor: String,
    /// The message concerned (deletions); 0 otherwise.
    pub(super) target_seq: u64,
    /// The message's author (deletions) or the member concerned (restrictions, removals).
    pub(super) user_id: String,
    /// The restriction's end, Unix ms (restrictions; 0 lifts); 0 otherwise.
    pub(super) until_ms: i64,
    /// The reason given; empty when none.
    pub(super) reason: String,
}

/// A page of a room's audit, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditPage {
    /// The entries.
    pub(super) entries: Vec<AuditEntry>,
    /// The last seq examined: pass it as `after_seq` for the next page.
    pub(super) next_after_seq: u64,
    /// True when the log goes on past `next_after_seq`.
    pub(super) has_more: bool,
}

/// A room's moderation audit, read from its log: message deletions (by the author or by
/// someone else), restrictions and removals, with who, when, the reason and the seq. It never
/// holds content (deleted content is gone, R-8.6.2).
#[utoipa::path(get, path = "/rooms/{room_id}/audit", tag = "messages",
    params(("room_id" = String, Path, description = "The room"), AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn audit(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Query(p): Query<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let room = extract::room(&room_id)?;
    let store = &state.services.store;
    let head = store.head(&room).await?.ok_or(ChatError::NotFound)?.seq;
    let limit = super::page_limit(&state.services, p.limit);
    let mut after = p.after_seq.unwrap_or(0);
    let mut entries = Vec::new();
    'scan: while after < head {
        let events = store
            .read_events(&room, after, SCAN_PAGE, usize::MAX)
            .await?;
        if events.is_empty() {
            break;
        }
        for event in events {
            if let Some(entry) = entry_of(store.as_ref(), &room, &event).await? {
                entries.push(entry);
            }
            after = event.seq;
            if entries.len() >= limit {
                break 'scan;
            }
        }
    }
    Ok(Json(AuditPage {
        entries,
        next_after_seq: after,
        has_more: after < head,
    }))
}

/// The audit entry of one log event, if it is an audited action.
async fn entry_of(
    store: &dyn crate::backend::store::Store,
    room: &crate::chat::ids::RoomId,
    event: &v1::RoomEvent,
) -> ApiResult<Option<AuditEntry>> {
    let entry = |action, target_seq, user_id: String, until_ms, reason: String| AuditEntry {
        seq: event.seq,
        ts_ms: event.ts_ms,
        action,
        actor: event.sender.clone(),
        target_seq,
        user_id,
        until_ms,
        reason,
    };
    Ok(match &event.kind {
        Some(Kind::MessageDeleted(deleted)) => {
            let author = store
                .message(room, deleted.target_seq)
                .await?
                .map(|m| m.sender)
                .unwrap_or_default();
            let action = if author == event.sender {
                AuditAction::MessageDeleted
            } else {
                AuditAction::MessageRemoved
            };
            Some(entry(
                action,
                deleted.target_seq,
                author,
                0,
                deleted.reason.clone(),
            ))
        }
        Some(Kind::MemberRestricted(r)) => Some(entry(
            AuditAction::MemberRestricted,
            0,
            r.user_id.clone(),
            r.until_ms,
            r.reason.clone(),
        )),
        Some(Kind::MemberLeft(left)) if left.reason() == v1::LeaveReason::Removed => Some(entry(
            AuditAction::MemberRemoved,
            0,
            left.user_id.clone(),
            0,
            String::new(),
        )),
        _ => None,
    })
}
