//! The moderation review queue in the admin API (docs/operations.md "Review queue"): list the
//! open items (or one room's), read one, approve it (the message stays) or remove the message
//! with a reason (a privileged Delete by `system`, so the room's audit records the removal).

use axum::Json;
use axum::extract::{Path, State};
use chatwire_protocol::v1;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiResult, ErrorBody};
use super::extract::{self, Body, Query};
use super::{page_limit, system_user};
use crate::backend::reviews::{ReviewItem, ReviewKey, ReviewScope};
use crate::chat::error::ChatError;
use crate::chat::ids::RoomId;
use crate::chat::validate;
use crate::http::AppState;
use crate::moderation::review;

/// A member's report.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReportView {
    /// Who reported the message.
    pub(super) reporter: String,
    /// Why.
    pub(super) reason: String,
    /// When, Unix ms.
    pub(super) at_ms: i64,
}

/// Where a review item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum ReviewStatus {
    /// Waiting for a moderator.
    Open,
    /// Reviewed: the message stays.
    Approved,
    /// Reviewed: the message was deleted.
    Removed,
}

/// One review item: a flagged or reported message.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReviewView {
    /// The item's id, `<room id>:<seq>` (what ReportMessage answers as `report_id`).
    pub(super) id: String,
    /// The room.
    pub(super) room_id: String,
    /// The message's seq.
    pub(super) seq: u64,
    /// The message's author.
    pub(super) sender: String,
    /// The message's current text; `None` once it is deleted (or no longer retained).
    pub(super) text: Option<String>,
    /// When the first flag or report came, Unix ms.
    pub(super) opened_ms: i64,
    /// The moderation stage flagged it.
    pub(super) flagged: bool,
    /// The stage's score.
    pub(super) score: u32,
    /// The stage's rules that flagged or scored it.
    pub(super) reasons: Vec<String>,
    /// Members' reports, one per reporter, oldest first.
    pub(super) reports: Vec<ReportView>,
    /// Open, approved or removed.
    pub(super) status: ReviewStatus,
    /// Who reviewed it; empty while open.
    pub(super) reviewed_by: String,
    /// When, Unix ms; 0 while open.
    pub(super) reviewed_at_ms: i64,
    /// The reviewer's reason.
    pub(super) review_reason: String,
    /// The MessageDeleted seq of a removal; 0 otherwise.
    pub(super) deleted_seq: u64,
}

async fn view(state: &AppState, item: ReviewItem) -> ApiResult<ReviewView> {
    let key = ReviewKey {
        room: extract::room(&item.room_id)?,
        seq: item.seq,
    };
    let text = state
        .services
        .store
        .message(&key.room, key.seq)
        .await?
        .filter(|message| !message.deleted)
        .map(|message| message.content.map(|c| c.text).unwrap_or_default());
    let resolution = item.resolution.clone().unwrap_or_default();
    let status = match item.status() {
        v1::ReviewStatus::Removed => ReviewStatus::Removed,
        v1::ReviewStatus::Approved => ReviewStatus::Approved,
        _ => ReviewStatus::Open,
    };
    Ok(ReviewView {
        id: item.id(),
        room_id: item.room_id,
        seq: item.seq,
        sender: item.sender,
        text,
        opened_ms: item.opened_ms,
        flagged: item.flagged,
        score: item.score,
        reasons: item.reasons,
        reports: item
            .reports
            .into_iter()
            .map(|r| ReportView {
                reporter: r.reporter,
                reason: r.reason,
                at_ms: r.at_ms,
            })
            .collect(),
        status,
        reviewed_by: resolution.by,
        reviewed_at_ms: resolution.at_ms,
        review_reason: resolution.reason,
        deleted_seq: resolution.deleted_seq,
    })
}

/// Which items to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReviewParams {
    /// One room's items, open and reviewed, by seq; without it, the open items of every room,
    /// by room and seq.
    pub(super) room_id: Option<String>,
    /// Items after this id (the previous page's `next_after`).
    pub(super) after: Option<String>,
    /// Most items to return (at most 100, 100 by default).
    pub(super) limit: Option<u32>,
}

/// A page of review items.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ReviewPage {
    /// The items.
    pub(super) items: Vec<ReviewView>,
    /// Pass as `after` for the next page; `None` when this page is the last.
    pub(super) next_after: Option<String>,
}

/// The review queue: the open items of every room (oldest room id first, then by seq), or
/// every item of one room with `room_id`.
#[utoipa::path(get, path = "/reviews", tag = "moderation",
    params(ReviewParams),
    responses((status = 200, body = ReviewPage), (status = 400, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Query(p): Query<ReviewParams>,
) -> ApiResult<Json<ReviewPage>> {
    // An empty `room_id` is no filter; a malformed one is a bad request (not an unknown room).
    let scope = match p.room_id.as_deref() {
        None | Some("") => ReviewScope::Open,
        Some(raw) => ReviewScope::Room(
            RoomId::parse(raw).map_err(|_| ChatError::invalid("room_id", "not a room id"))?,
        ),
    };
    let after = p.after.as_deref().map(ReviewKey::parse_id).transpose()?;
    let limit = page_limit(&state.services, p.limit);
    let items = state
        .services
        .store
        .reviews(&scope, after.as_ref(), limit)
        .await?;
    let full = items.len() >= limit;
    let mut views = Vec::with_capacity(items.len());
    for item in items {
        views.push(view(&state, item).await?);
    }
    let next_after = full.then(|| views.last().map(|v| v.id.clone())).flatten();
    Ok(Json(ReviewPage {
        items: views,
        next_after,
    }))
}

/// The item id of a path.
fn key_of(id: &str) -> Result<ReviewKey, ChatError> {
    ReviewKey::parse_id(id)
}

/// One review item.
#[utoipa::path(get, path = "/reviews/{review_id}", tag = "moderation",
    params(("review_id" = String, Path, description = "The item's id, `<room id>:<seq>`")),
    responses((status = 200, body = ReviewView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ReviewView>> {
    let key = key_of(&id)?;
    let item = state
        .services
        .store
        .review(&key)
        .await?
        .ok_or(ChatError::NotFound)?;
    Ok(Json(view(&state, item).await?))
}

/// A review decision's reason.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(super) struct Decision {
    /// Why (at most 500 characters; required to remove).
    #[serde(default)]
    pub(super) reason: String,
}

async fn decide(
    state: &AppState,
    id: &str,
    removed: bool,
    reason: String,
) -> ApiResult<Json<ReviewView>> {
    let key = key_of(id)?;
    validate::text("reason", &reason, validate::MAX_REASON_CHARS)?;
    if removed && reason.trim().is_empty() {
        return Err(ChatError::invalid("reason", "a removal needs a reason").into());
    }
    let item =
        review::resolve(&state.services, &key, removed, &system_user(), reason, true).await?;
    Ok(Json(view(state, item).await?))
}

/// Approves the message of an open item: it stays, and the item leaves the open queue. An
/// item reviewed already is answered as it stands (the first review stands).
#[utoipa::path(post, path = "/reviews/{review_id}/approve", tag = "moderation",
    request_body = Decision,
    params(("review_id" = String, Path, description = "The item's id, `<room id>:<seq>`")),
    responses((status = 200, body = ReviewView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(d): Body<Decision>,
) -> ApiResult<Json<ReviewView>> {
    decide(&state, &id, false, d.reason).await
}

/// Removes the message of an open item: a privileged Delete by `system` with the reason
/// (members see a MessageDeleted; the room's audit lists a `message_removed`), and the item
/// leaves the open queue. An item reviewed already is answered as it stands.
#[utoipa::path(post, path = "/reviews/{review_id}/remove", tag = "moderation",
    request_body = Decision,
    params(("review_id" = String, Path, description = "The item's id, `<room id>:<seq>`")),
    responses((status = 200, body = ReviewView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(d): Body<Decision>,
) -> ApiResult<Json<ReviewView>> {
    decide(&state, &id, true, d.reason).await
}
