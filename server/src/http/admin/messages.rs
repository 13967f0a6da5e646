//! `/admin/rooms/{room_id}/messages`, `/history`, `/retention`: server-side sends (bots and
//! system messages), history as JSON, moderation deletes, retention cuts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{self, Body, Query};
use super::rooms::{Changed, expect_seq};
use super::views::{ContentView, MessageView};
use super::{SYSTEM_USER, page_limit, system_user, write};
use crate::backend::store::{HistoryAnchor, HistoryQuery};
use crate::chat::command::{Outcome, RoomOp, SendOp};
use crate::chat::error::ChatError;
use crate::chat::validate;
use crate::http::AppState;

/// A server-side message.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct SendMessage {
    /// Who the message is from (a bot's user id); `system` by default. Need not be a member.
    pub(super) sender: Option<String>,
    /// The idempotency key: a retry with the same sender, key and content returns the original.
    pub(super) client_msg_id: String,
    /// The content.
    pub(super) content: ContentView,
    /// The message replied to; 0 for none.
    #[serde(default)]
    pub(super) reply_to_seq: u64,
    /// The thread root; 0 for none.
    #[serde(default)]
    pub(super) thread_root_seq: u64,
}

/// Where a sent message landed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Sent {
    /// Its seq.
    pub(super) seq: u64,
    /// Its ordinal.
    pub(super) ordinal: u64,
    /// Its server timestamp, Unix ms.
    pub(super) created_at_ms: i64,
    /// True when this was a retry of an earlier send.
    pub(super) duplicate: bool,
}

/// Sends a message through the room's writer (privileged, as `sender`), delivered live to
/// subscribed members like any message.
#[utoipa::path(post, path = "/rooms/{room_id}/messages", tag = "messages",
    request_body = SendMessage,
    params(("room_id" = String, Path, description = "The room")),
    responses((status = 201, description = "Sent", body = Sent),
        (status = 200, description = "A retry of an earlier send", body = Sent),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The client_msg_id was used for other content", body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub(super) async fn send(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Body(r): Body<SendMessage>,
) -> ApiResult<(StatusCode, Json<Sent>)> {
    let room = extract::room(&room_id)?;
    let sender = extract::user("sender", r.sender.as_deref().unwrap_or(SYSTEM_USER))?;
    validate::client_msg_id(&r.client_msg_id)?;
    let content = validate::content(Some(r.content.try_into()?), &state.services.content)?;
    let op = RoomOp::Send(SendOp {
        client_msg_id: r.client_msg_id,
        content,
        reply_to_seq: r.reply_to_seq,
        thread_root_seq: r.thread_root_seq,
    });
    let Outcome::Sent(sent) = write(&state.services, room, sender, op, true).await? else {
        return Err(ChatError::Internal.into());
    };
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(Sent {
            seq: sent.seq,
            ordinal: sent.ordinal,
            created_at_ms: sent.created_at_ms,
            duplicate: sent.duplicate,
        }),
    ))
}

/// Which messages a history page holds.
#[derive(Debug, Deserialize, IntoParams)]
pub(super) struct HistoryParams {
    /// Messages below this seq, newest first.
    pub(super) before_seq: Option<u64>,
    /// Messages above this seq, oldest first.
    pub(super) after_seq: Option<u64>,
    /// Only this thread's messages.
    pub(super) thread_root_seq: Option<u64>,
    /// Most messages to return.
    pub(super) limit: Option<u32>,
}

/// One page of messages. Without a position: the newest, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HistoryPage {
    /// The messages, deleted ones as tombstones.
    pub(super) messages: Vec<MessageView>,
    /// True when more lie beyond the page in the same direction.
    pub(super) has_more: bool,
}

/// Reads a room's messages in their current state; the admin API sees the whole log.
#[utoipa::path(get, path = "/rooms/{room_id}/history", tag = "messages",
    params(("room_id" = String, Path, description = "The room"), HistoryParams),
    responses((status = 200, body = HistoryPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn history(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Query(p): Query<HistoryParams>,
) -> ApiResult<Json<HistoryPage>> {
    let room = extract::room(&room_id)?;
    let anchor = match (p.before_seq, p.after_seq) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "before_seq",
                "give before_seq or after_seq, not both",
            ));
        }
        // before_seq 0 is no position (no message has seq 0): the newest page.
        (Some(0), None) | (None, None) => HistoryAnchor::Latest,
        (Some(before), None) => HistoryAnchor::Before(before),
        (None, Some(after)) => HistoryAnchor::After(after),
    };
    let store = &state.services.store;
    if store.head(&room).await?.is_none() {
        return Err(ChatError::NotFound.into());
    }
    let query = HistoryQuery {
        anchor,
        min_seq: 1,
        limit: page_limit(&state.services, p.limit),
        max_bytes: usize::MAX,
        thread_root_seq: p.thread_root_seq.unwrap_or(0),
    };
    let page = store.read_messages(&room, query).await?;
    Ok(Json(HistoryPage {
        messages: page.messages.into_iter().map(Into::into).collect(),
        has_more: page.has_more,
    }))
}

/// The optional reason of a moderator's deletion.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteParams {
    /// Why (at most 500 characters); kept in the MessageDeleted event and the room's audit.
    pub(super) reason: Option<String>,
}

/// Deletes (redacts) a message as a moderator: privileged, as `system`. The message stays as
/// a tombstone; its content and edits are cleared. In direct rooms only the author deletes,
/// so there this answers 403.
#[utoipa::path(delete, path = "/rooms/{room_id}/messages/{seq}", tag = "messages",
    params(("room_id" = String, Path, description = "The room"),
        ("seq" = u64, Path, description = "The message's seq"), DeleteParams),
    responses((status = 200, description = "The MessageDeleted seq; 0 when already deleted", body = Changed),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path((room_id, seq)): Path<(String, String)>,
    Query(p): Query<DeleteParams>,
) -> ApiResult<Json<Changed>> {
    let room = extract::room(&room_id)?;
    let target_seq = extract::seq(&seq)?;
    let reason = p.reason.unwrap_or_default();
    validate::text("reason", &reason, validate::MAX_REASON_CHARS)?;
    let op = RoomOp::Delete { target_seq, reason };
    expect_seq(write(&state.services, room, system_user(), op, true).await?)
}

/// A retention cut.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct Retention {
    /// Drop the whole time buckets that end at or before this time, Unix ms: events at or
    /// after it are always kept, and so is every event of a bucket that reaches it.
    pub(super) keep_after_ms: i64,
}

/// What a retention cut did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RetentionApplied {
    /// Whole time buckets dropped by this call; 0 when none was old enough (a repeat, or a
    /// time before an earlier cut).
    pub(super) dropped_buckets: u64,
    /// The room's lowest retained seq after the call (1 when nothing was ever dropped):
    /// clients' History and Subscribe report it as `first_visible_seq`.
    pub(super) first_retained_seq: u64,
}

/// Retention (docs/architecture.md "Storage"): drops the room's whole time buckets that end at or
/// before `keep_after_ms` (never the bucket holding the head): their log events, message states and
/// index rows. The lowest retained seq only moves forward; running the same cut again changes
/// nothing. Client reads then start at it (docs/protocol.md ).
///
/// It goes to the store directly, not through the room's writer: the cut moves no head and
/// writes no event, and changes nothing a writer keeps (head, settings, members). The store
/// runs it atomically between two appends, reading the head they left, and an append whose
/// writes target a message the cut just dropped skips them.
#[utoipa::path(post, path = "/rooms/{room_id}/retention", tag = "messages",
    request_body = Retention,
    params(("room_id" = String, Path, description = "The room")),
    responses((status = 200, description = "Applied", body = RetentionApplied),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn retention(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Body(r): Body<Retention>,
) -> ApiResult<Json<RetentionApplied>> {
    let room = extract::room(&room_id)?;
    let store = &state.services.store;
    if store.head(&room).await?.is_none() {
        return Err(ChatError::NotFound.into());
    }
    let outcome = store.apply_retention(&room, r.keep_after_ms).await?;
    tracing::info!(
        room = %room,
        keep_after_ms = r.keep_after_ms,
        dropped_buckets = outcome.dropped_buckets,
        first_retained_seq = outcome.first_retained_seq,
        "retention applied"
    );
    Ok(Json(RetentionApplied {
        dropped_buckets: outcome.dropped_buckets,
        first_retained_seq: outcome.first_retained_seq,
    }))
}
