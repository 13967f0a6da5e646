//! Moderation (capabilities `moderation`, `edit-history`, `message-reports`): the moderator
//! role, RestrictMember, Delete reasons, edit history, and UNSUPPORTED without a capability.

use chatwire_protocol::v1::{self, ErrorCode, Role, room_event::Kind};

use super::case;
use crate::client::{Client, ClientError};
use crate::suite::check::{Check, Failure, ensure, ensure_eq, ensure_error, within};
use crate::suite::{Case, Ctx};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "MD-01",
            "moderation",
            Must,
            ["R-6.6.1", "R-6.3.1", "R-8.6.1", "R-6.6.4"],
            ["SetRole", "Delete", "UpdateRoom", "RemoveMember"],
            None,
            false,
            "only owners make moderators; a moderator deletes others' messages with a reason, \
             changes no settings or roles",
            moderator_role
        ),
        case!(
            "MD-02",
            "moderation",
            Must,
            ["R-6.6.2", "R-6.6.3", "R-7.1.4"],
            ["RestrictMember", "Send", "React", "ListMembers"],
            None,
            false,
            "RestrictMember stops Send and React with RESTRICTED until lifted; checks and seq 0",
            restrict
        ),
        case!(
            "MD-03",
            "moderation",
            Must,
            ["R-8.9.1", "R-8.9.2"],
            ["GetEditHistory", "Edit", "Delete"],
            None,
            false,
            "GetEditHistory returns every version oldest first; a deleted message only tombstones",
            edit_history
        ),
        case!(
            "MD-04",
            "moderation",
            Must,
            ["R-5.7.2"],
            [
                "RestrictMember",
                "GetEditHistory",
                "ReportMessage",
                "ListReviews"
            ],
            None,
            false,
            "a request whose capability is not listed is UNSUPPORTED",
            unsupported_without_capability
        ),
        case!(
            "MD-05",
            "moderation",
            Must,
            ["R-8.11.1", "R-8.11.2", "R-8.11.4"],
            ["ReportMessage", "Send", "Delete"],
            None,
            false,
            "ReportMessage: one review id per message, repeats idempotent, typed errors, \
             nothing in the room log",
            report_message
        ),
        case!(
            "MD-06",
            "moderation",
            Must,
            ["R-8.11.5", "R-8.11.6"],
            [
                "ListReviews",
                "ResolveReview",
                "ReportMessage",
                "SetRole",
                "History"
            ],
            None,
            false,
            "a group's moderators list its reported messages, remove one with a reason and \
             approve another; the first review stands; plain members may not",
            review_reports
        ),
    ]
}

/// The session's capabilities, and whether `name` is among them.
async fn session_with(ctx: &Ctx, user: &str, name: &str) -> Check<(Client, bool)> {
    let (client, connected) = ctx.session(user).await?;
    let has = connected.capabilities.iter().any(|c| c == name);
    Ok((client, has))
}

fn skip_without(name: &str) -> Failure {
    Failure::Skip(format!(
        "the server does not offer `{name}` (MD-04 checks UNSUPPORTED)"
    ))
}

fn set_role(room: &str, user: &str, role: Role) -> v1::SetRoleRequest {
    v1::SetRoleRequest {
        room_id: room.to_owned(),
        user_id: user.to_owned(),
        role: role as i32,
    }
}

async fn moderator_role(ctx: Ctx) -> Check {
    let (alice, bob, carol, dave) = (
        ctx.user("alice"),
        ctx.user("bob"),
        ctx.user("carol"),
        ctx.user("dave"),
    );
    let (a, offered) = session_with(&ctx, &alice, "moderation").await?;
    if !offered {
        return Err(skip_without("moderation"));
    }
    let b = ctx.client(&bob).await?;
    let c = ctx.client(&carol).await?;
    let room = super::group(&a, &[&bob, &carol, &dave]).await?;
    // An admin may not make a moderator; the owner may.
    within(
        "SetRoleResponse",
        a.set_role(set_role(&room, &carol, Role::Admin)),
    )
    .await??;
    ensure_error(
        within(
            "the reply",
            c.set_role(set_role(&room, &bob, Role::Moderator)),
        )
        .await?,
        ErrorCode::PermissionDenied,
        None,
    )?;
    let made = within(
        "SetRoleResponse",
        a.set_role(set_role(&room, &bob, Role::Moderator)),
    )
    .await??;
    ensure(made.seq > 0, "a MemberRoleChanged seq", made.seq)?;
    let members = within(
        "ListMembersResponse",
        a.list_members(v1::ListMembersRequest {
            room_id: room.clone(),
            ..Default::default()
        }),
    )
    .await??;
    let role = members
        .members
        .iter()
        .find(|m| m.user_id == bob)
        .map(|m| m.role());
    ensure_eq("bob's role", Some(Role::Moderator), role)?;
    // The moderator deletes the owner's message, with a reason that the event keeps.
    let sent = super::send(&a, &room, "m-1", "hello").await?;
    let deleted = within(
        "DeleteResponse",
        b.delete(v1::DeleteRequest {
            room_id: room.clone(),
            target_seq: sent.seq,
            reason: "off topic".into(),
        }),
    )
    .await??;
    ensure(deleted.seq > 0, "a MessageDeleted seq", deleted.seq)?;
    let (events, _) = super::subscribe_all(&b, &room, deleted.seq - 1).await?;
    let reason = events.iter().find_map(|e| match &e.kind {
        Some(Kind::MessageDeleted(d)) if e.seq == deleted.seq => Some(d.reason.clone()),
        _ => None,
    });
    ensure_eq(
        "MessageDeleted.reason (R-6.6.4)",
        Some("off topic".to_owned()),
        reason,
    )?;
    // A reason over 500 characters is TOO_LARGE.
    let other = super::send(&a, &room, "m-2", "again").await?;
    ensure_error(
        within(
            "the reply",
            b.delete(v1::DeleteRequest {
                room_id: room.clone(),
                target_seq: other.seq,
                reason: "x".repeat(501),
            }),
        )
        .await?,
        ErrorCode::TooLarge,
        Some("reason"),
    )?;
    // No settings, roles or removals for a moderator.
    let denied = ErrorCode::PermissionDenied;
    ensure_error(
        within(
            "the reply",
            b.update_room(v1::UpdateRoomRequest {
                room_id: room.clone(),
                topic: Some("by the moderator".into()),
                ..Default::default()
            }),
        )
        .await?,
        denied,
        None,
    )?;
    ensure_error(
        within(
            "the reply",
            b.set_role(set_role(&room, &dave, Role::Moderator)),
        )
        .await?,
        denied,
        None,
    )?;
    ensure_error(
        within(
            "the reply",
            b.remove_member(v1::RemoveMemberRequest {
                room_id: room.clone(),
                user_id: dave.clone(),
            }),
        )
        .await?,
        denied,
        None,
    )
}

fn restrict_req(room: &str, user: &str, until_ms: i64) -> v1::RestrictMemberRequest {
    v1::RestrictMemberRequest {
        room_id: room.to_owned(),
        user_id: user.to_owned(),
        until_ms,
        reason: "flooding".into(),
    }
}

async fn restrict(ctx: Ctx) -> Check {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let (a, connected) = ctx.session(&alice).await?;
    if !connected.capabilities.iter().any(|c| c == "moderation") {
        return Err(skip_without("moderation"));
    }
    let b = ctx.client(&bob).await?;
    let c = ctx.client(&carol).await?;
    let room = super::group(&a, &[&bob, &carol]).await?;
    within(
        "SetRoleResponse",
        a.set_role(set_role(&room, &bob, Role::Moderator)),
    )
    .await??;
    let first = super::send(&c, &room, "c-1", "before").await?;
    // An hour past the server's time at connect: in force for the whole case.
    let until = connected.server_time_ms + 3_600_000;
    // A plain member may not restrict; a moderator may not be restricted; oneself neither.
    ensure_error(
        within(
            "the reply",
            c.restrict_member(restrict_req(&room, &bob, until)),
        )
        .await?,
        ErrorCode::PermissionDenied,
        None,
    )?;
    ensure_error(
        within(
            "the reply",
            b.restrict_member(restrict_req(&room, &alice, until)),
        )
        .await?,
        ErrorCode::PermissionDenied,
        None,
    )?;
    ensure_error(
        within(
            "the reply",
            b.restrict_member(restrict_req(&room, &bob, until)),
        )
        .await?,
        ErrorCode::InvalidArgument,
        Some("user_id"),
    )?;
    ensure_error(
        within(
            "the reply",
            b.restrict_member(restrict_req(&room, &carol, connected.server_time_ms - 1)),
        )
        .await?,
        ErrorCode::InvalidArgument,
        Some("until_ms"),
    )?;
    let set = within(
        "RestrictMemberResponse",
        b.restrict_member(restrict_req(&room, &carol, until)),
    )
    .await??;
    ensure(set.seq > 0, "a MemberRestricted seq", set.seq)?;
    let again = within(
        "RestrictMemberResponse",
        b.restrict_member(restrict_req(&room, &carol, until)),
    )
    .await??;
    ensure_eq("seq of the same restriction again (R-7.1.4)", 0, again.seq)?;
    let (events, _) = super::subscribe_all(&a, &room, set.seq - 1).await?;
    let event = events.iter().find(|e| e.seq == set.seq);
    match event.and_then(|e| e.kind.clone()) {
        Some(Kind::MemberRestricted(r)) => {
            ensure_eq("MemberRestricted.user_id", carol.clone(), r.user_id)?;
            ensure_eq("MemberRestricted.until_ms", until, r.until_ms)?;
            ensure_eq("MemberRestricted.reason", "flooding".to_owned(), r.reason)?;
            ensure_eq(
                "MemberRestricted sender",
                Some(bob.as_str()),
                event.map(|e| e.sender.as_str()),
            )?;
        }
        other => {
            return Err(Failure::new(
                "a MemberRestricted event",
                format!("{other:?}"),
            ));
        }
    }
    // Send and React are refused with the time left; a deduplicated retry still answers.
    match within("the reply", c.send(super::send_req(&room, "c-2", "muted"))).await? {
        Err(ClientError::Server(err)) => {
            ensure_eq("error code", ErrorCode::Restricted, err.code())?;
            ensure(!err.retryable, "retryable false", err.retryable)?;
            ensure(
                err.retry_after_ms > 0,
                "retry_after_ms: the time left",
                err.retry_after_ms,
            )?;
        }
        other => return Err(Failure::new("ERROR_CODE_RESTRICTED", format!("{other:?}"))),
    }
    ensure_error(
        within(
            "the reply",
            c.react(v1::ReactRequest {
                room_id: room.clone(),
                target_seq: first.seq,
                emoji: "👍".into(),
                add: true,
            }),
        )
        .await?,
        ErrorCode::Restricted,
        None,
    )?;
    let retry = super::send(&c, &room, "c-1", "before").await?;
    ensure_eq("deduplicated retry's seq (R-8.2.3)", first.seq, retry.seq)?;
    let members = within(
        "ListMembersResponse",
        a.list_members(v1::ListMembersRequest {
            room_id: room.clone(),
            ..Default::default()
        }),
    )
    .await??;
    let shown = members
        .members
        .iter()
        .find(|m| m.user_id == carol)
        .map(|m| m.restricted_until_ms);
    ensure_eq("Member.restricted_until_ms", Some(until), shown)?;
    // Lifting it lets the member send again.
    let lifted = within(
        "RestrictMemberResponse",
        b.restrict_member(restrict_req(&room, &carol, 0)),
    )
    .await??;
    ensure(
        lifted.seq > 0,
        "a MemberRestricted seq for the lift",
        lifted.seq,
    )?;
    super::send(&c, &room, "c-3", "after").await?;
    // Direct rooms have no moderators.
    let direct = within(
        "OpenDirectResponse",
        a.open_direct(v1::OpenDirectRequest {
            user_id: bob.clone(),
        }),
    )
    .await??
    .room
    .map(|r| r.id)
    .unwrap_or_default();
    ensure_error(
        within(
            "the reply",
            a.restrict_member(restrict_req(&direct, &bob, until)),
        )
        .await?,
        ErrorCode::FailedPrecondition,
        None,
    )
}

async fn edit_history(ctx: Ctx) -> Check {
    let (alice, bob, eve) = (ctx.user("alice"), ctx.user("bob"), ctx.user("eve"));
    let (a, offered) = session_with(&ctx, &alice, "edit-history").await?;
    if !offered {
        return Err(skip_without("edit-history"));
    }
    let b = ctx.client(&bob).await?;
    let e = ctx.client(&eve).await?;
    let room = super::group(&a, &[&bob]).await?;
    let sent = super::send(&a, &room, "h-1", "one").await?;
    let mut edits = Vec::new();
    for body in ["two", "three"] {
        let edited = within(
            "EditResponse",
            a.edit(v1::EditRequest {
                room_id: room.clone(),
                target_seq: sent.seq,
                content: super::text(body),
            }),
        )
        .await??;
        edits.push(edited.seq);
    }
    let ask = |seq: u64| v1::GetEditHistoryRequest {
        room_id: room.clone(),
        target_seq: seq,
    };
    // Another member reads it: every version, oldest first, with its event's seq.
    let history = within("GetEditHistoryResponse", b.get_edit_history(ask(sent.seq))).await??;
    let seen: Vec<(u64, String)> = history
        .versions
        .iter()
        .map(|v| {
            (
                v.seq,
                v.content
                    .as_ref()
                    .map(|c| c.text.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let want = vec![
        (sent.seq, "one".to_owned()),
        (edits[0], "two".to_owned()),
        (edits[1], "three".to_owned()),
    ];
    ensure_eq("versions (seq, text)", want, seen)?;
    ensure(!history.deleted, "deleted false", history.deleted)?;
    ensure_eq(
        "first version's ts_ms",
        sent.created_at_ms,
        history.versions.first().map_or(0, |v| v.ts_ms),
    )?;
    // Not a message, and not a member: NOT_FOUND.
    ensure_error(
        within("the reply", b.get_edit_history(ask(1))).await?,
        ErrorCode::NotFound,
        Some("target_seq"),
    )?;
    ensure_error(
        within("the reply", e.get_edit_history(ask(sent.seq))).await?,
        ErrorCode::NotFound,
        None,
    )?;
    // Deleted: tombstones only.
    let deleted = within(
        "DeleteResponse",
        a.delete(v1::DeleteRequest {
            room_id: room.clone(),
            target_seq: sent.seq,
            reason: String::new(),
        }),
    )
    .await??;
    let history = within("GetEditHistoryResponse", b.get_edit_history(ask(sent.seq))).await??;
    ensure(history.deleted, "deleted true (R-8.9.2)", history.deleted)?;
    ensure_eq("deleted_seq", deleted.seq, history.deleted_seq)?;
    ensure_eq("versions kept as tombstones", 3, history.versions.len())?;
    ensure(
        history
            .versions
            .iter()
            .all(|v| v.redacted && v.content.is_none()),
        "every version redacted, without content",
        &history.versions,
    )
}

async fn report_message(ctx: Ctx) -> Check {
    let (alice, bob, carol, eve) = (
        ctx.user("alice"),
        ctx.user("bob"),
        ctx.user("carol"),
        ctx.user("eve"),
    );
    let (b, offered) = session_with(&ctx, &bob, "message-reports").await?;
    if !offered {
        return Err(skip_without("message-reports"));
    }
    let a = ctx.client(&alice).await?;
    let c = ctx.client(&carol).await?;
    let e = ctx.client(&eve).await?;
    let room = super::group(&a, &[&bob, &carol]).await?;
    let sent = super::send(&a, &room, "r-1", "buy cheap followers").await?;
    let report = |seq: u64, reason: &str| v1::ReportMessageRequest {
        room_id: room.clone(),
        target_seq: seq,
        reason: reason.to_owned(),
    };
    let first = within(
        "ReportMessageResponse",
        b.report_message(report(sent.seq, "spam")),
    )
    .await??;
    ensure(!first.report_id.is_empty(), "a report_id", &first.report_id)?;
    let again = within(
        "ReportMessageResponse",
        b.report_message(report(sent.seq, "still spam")),
    )
    .await??;
    ensure_eq(
        "a repeat's report_id (R-8.11.1)",
        &first.report_id,
        &again.report_id,
    )?;
    let other = within(
        "ReportMessageResponse",
        c.report_message(report(sent.seq, "scam")),
    )
    .await??;
    ensure_eq(
        "another member's report_id",
        &first.report_id,
        &other.report_id,
    )?;
    // typed errors.
    ensure_error(
        within("the reply", b.report_message(report(sent.seq, " "))).await?,
        ErrorCode::InvalidArgument,
        Some("reason"),
    )?;
    ensure_error(
        within("the reply", a.report_message(report(sent.seq, "mine"))).await?,
        ErrorCode::InvalidArgument,
        Some("target_seq"),
    )?;
    ensure_error(
        within("the reply", b.report_message(report(1, "not a message"))).await?,
        ErrorCode::NotFound,
        Some("target_seq"),
    )?;
    ensure_error(
        within("the reply", e.report_message(report(sent.seq, "spam"))).await?,
        ErrorCode::NotFound,
        None,
    )?;
    // reports add nothing to the room's log.
    let next = super::send(&a, &room, "r-2", "next").await?;
    ensure_eq("the next message's seq", sent.seq + 1, next.seq)?;
    within(
        "DeleteResponse",
        a.delete(v1::DeleteRequest {
            room_id: room.clone(),
            target_seq: next.seq,
            reason: String::new(),
        }),
    )
    .await??;
    ensure_error(
        within("the reply", b.report_message(report(next.seq, "gone"))).await?,
        ErrorCode::NotFound,
        Some("target_seq"),
    )
}

async fn review_reports(ctx: Ctx) -> Check {
    let (alice, bob, carol, dave) = (
        ctx.user("alice"),
        ctx.user("bob"),
        ctx.user("carol"),
        ctx.user("dave"),
    );
    let (a, offered) = session_with(&ctx, &alice, "message-reports").await?;
    if !offered {
        return Err(skip_without("message-reports"));
    }
    let b = ctx.client(&bob).await?;
    let c = ctx.client(&carol).await?;
    let d = ctx.client(&dave).await?;
    let room = super::group(&a, &[&bob, &carol, &dave]).await?;
    within(
        "SetRoleResponse",
        a.set_role(set_role(&room, &carol, Role::Moderator)),
    )
    .await??;
    let spam = super::send(&a, &room, "v-1", "buy followers here").await?;
    let fine = super::send(&a, &room, "v-2", "lunch at noon").await?;
    let rude = super::send(&a, &room, "v-3", "you are all slow").await?;
    let report = |seq: u64, reason: &str| v1::ReportMessageRequest {
        room_id: room.clone(),
        target_seq: seq,
        reason: reason.to_owned(),
    };
    let reported = within(
        "ReportMessageResponse",
        b.report_message(report(spam.seq, "spam")),
    )
    .await??;
    within(
        "ReportMessageResponse",
        d.report_message(report(spam.seq, "scam")),
    )
    .await??;
    within(
        "ReportMessageResponse",
        b.report_message(report(rude.seq, "rude")),
    )
    .await??;
    let list = |after_seq: u64, limit: u32, include_reviewed: bool| v1::ListReviewsRequest {
        room_id: room.clone(),
        after_seq,
        limit,
        include_reviewed,
    };
    // plain members may not list.
    ensure_error(
        within("the reply", b.list_reviews(list(0, 0, false))).await?,
        ErrorCode::PermissionDenied,
        None,
    )?;
    let page = within("ListReviewsResponse", c.list_reviews(list(0, 0, false))).await??;
    let reported_entries: Vec<(u64, Vec<(String, String)>)> = page
        .entries
        .iter()
        .filter(|e| !e.reports.is_empty())
        .map(|e| {
            let reports = e
                .reports
                .iter()
                .map(|r| (r.reporter.clone(), r.reason.clone()));
            (e.target_seq, reports.collect())
        })
        .collect();
    let pair = |user: &str, reason: &str| (user.to_owned(), reason.to_owned());
    ensure_eq(
        "reported entries (seq, reports)",
        vec![
            (spam.seq, vec![pair(&bob, "spam"), pair(&dave, "scam")]),
            (rude.seq, vec![pair(&bob, "rude")]),
        ],
        reported_entries,
    )?;
    let first = page.entries.iter().find(|e| e.target_seq == spam.seq);
    ensure_eq(
        "review_id is the report_id",
        Some(reported.report_id.as_str()),
        first.map(|e| e.review_id.as_str()),
    )?;
    ensure(
        page.entries
            .iter()
            .all(|e| e.status() == v1::ReviewStatus::Open && e.target_seq != fine.seq),
        "open entries only, none for the unreported message",
        &page.entries,
    )?;
    let one = within("ListReviewsResponse", c.list_reviews(list(0, 1, false))).await??;
    ensure_eq("a page of one", 1, one.entries.len())?;
    ensure(one.has_more, "has_more on a full page", one.has_more)?;
    // a removal needs a reason, deletes the message as the reviewer.
    let resolve = |seq: u64, remove: bool, reason: &str| v1::ResolveReviewRequest {
        room_id: room.clone(),
        target_seq: seq,
        remove,
        reason: reason.to_owned(),
    };
    ensure_error(
        within("the reply", c.resolve_review(resolve(spam.seq, true, " "))).await?,
        ErrorCode::InvalidArgument,
        Some("reason"),
    )?;
    ensure_error(
        within("the reply", b.resolve_review(resolve(spam.seq, true, "no"))).await?,
        ErrorCode::PermissionDenied,
        None,
    )?;
    let removed = within(
        "ResolveReviewResponse",
        c.resolve_review(resolve(spam.seq, true, "spam ring")),
    )
    .await??
    .entry
    .unwrap_or_default();
    ensure_eq(
        "removed entry (status, reviewed_by, reason)",
        (
            v1::ReviewStatus::Removed,
            carol.clone(),
            "spam ring".to_owned(),
        ),
        (
            removed.status(),
            removed.reviewed_by.clone(),
            removed.review_reason.clone(),
        ),
    )?;
    let history = within(
        "HistoryResponse",
        b.history(v1::HistoryRequest {
            room_id: room.clone(),
            ..Default::default()
        }),
    )
    .await??;
    let gone = history.messages.iter().find(|m| m.seq == spam.seq);
    ensure(
        gone.is_some_and(|m| m.deleted && m.content.is_none()),
        "the removed message is a tombstone",
        gone,
    )?;
    let approved = within(
        "ResolveReviewResponse",
        c.resolve_review(resolve(rude.seq, false, "")),
    )
    .await??
    .entry
    .unwrap_or_default();
    ensure_eq("approved", v1::ReviewStatus::Approved, approved.status())?;
    // The first review stands.
    let again = within(
        "ResolveReviewResponse",
        a.resolve_review(resolve(spam.seq, false, "")),
    )
    .await??
    .entry
    .unwrap_or_default();
    ensure_eq("a second review", v1::ReviewStatus::Removed, again.status())?;
    ensure_error(
        within("the reply", c.resolve_review(resolve(fine.seq, false, ""))).await?,
        ErrorCode::NotFound,
        Some("target_seq"),
    )?;
    let open = within("ListReviewsResponse", c.list_reviews(list(0, 0, false))).await??;
    ensure(
        open.entries.iter().all(|e| e.reports.is_empty()),
        "no reported entry left open",
        &open.entries,
    )?;
    let all = within("ListReviewsResponse", c.list_reviews(list(0, 0, true))).await??;
    let statuses: Vec<(u64, v1::ReviewStatus)> = all
        .entries
        .iter()
        .filter(|e| !e.reports.is_empty())
        .map(|e| (e.target_seq, e.status()))
        .collect();
    ensure_eq(
        "with include_reviewed",
        vec![
            (spam.seq, v1::ReviewStatus::Removed),
            (rude.seq, v1::ReviewStatus::Approved),
        ],
        statuses,
    )
}

async fn unsupported_without_capability(ctx: Ctx) -> Check {
    let alice = ctx.user("alice");
    let (a, connected) = ctx.session(&alice).await?;
    let caps = &connected.capabilities;
    let has = |name: &str| caps.iter().any(|c| c == name);
    let room = super::group(&a, &[]).await?;
    let mut checked = 0;
    if !has("moderation") {
        checked += 1;
        ensure_error(
            within(
                "the reply",
                a.restrict_member(restrict_req(&room, &alice, 0)),
            )
            .await?,
            ErrorCode::Unsupported,
            None,
        )?;
    }
    if !has("edit-history") {
        checked += 1;
        ensure_error(
            within(
                "the reply",
                a.get_edit_history(v1::GetEditHistoryRequest {
                    room_id: room.clone(),
                    target_seq: 1,
                }),
            )
            .await?,
            ErrorCode::Unsupported,
            None,
        )?;
    }
    if !has("message-reports") {
        checked += 1;
        ensure_error(
            within(
                "the reply",
                a.report_message(v1::ReportMessageRequest {
                    room_id: room.clone(),
                    target_seq: 1,
                    reason: "spam".into(),
                }),
            )
            .await?,
            ErrorCode::Unsupported,
            None,
        )?;
        ensure_error(
            within(
                "the reply",
                a.list_reviews(v1::ListReviewsRequest {
                    room_id: room,
                    ..Default::default()
                }),
            )
            .await?,
            ErrorCode::Unsupported,
            None,
        )?;
    }
    if checked == 0 {
        return Err(Failure::Skip(
            "the server offers every capability this case checks".into(),
        ));
    }
    Ok(())
}
