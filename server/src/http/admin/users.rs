//! `/admin/users/{user_id}`: the user's rooms, presence, and revocation of sessions and tokens.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use chatwire_protocol::v1;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{self, Query};
use super::page_limit;
use super::views::RoleName;
use crate::backend::store::UserRoom;
use crate::http::AppState;

/// A position in the user's rooms.
#[derive(Debug, Deserialize, IntoParams)]
pub(super) struct RoomsPage {
    /// Rooms after this room id (exclusive), from the previous page's `next_after`.
    pub(super) after_room_id: Option<String>,
    /// Most rooms to return.
    pub(super) limit: Option<u32>,
}

/// The user's state in one room.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserRoomView {
    /// The room.
    pub(super) room_id: String,
    /// The user's role.
    pub(super) role: RoleName,
    /// The seq of the user's join.
    pub(super) joined_seq: u64,
    /// The read watermark.
    pub(super) read_seq: u64,
    /// The delivered watermark.
    pub(super) delivered_seq: u64,
    /// Push muted until, Unix ms; 0 when not muted.
    pub(super) muted_until_ms: i64,
}

impl From<UserRoom> for UserRoomView {
    fn from(r: UserRoom) -> Self {
        Self {
            room_id: r.room_id.to_string(),
            role: r.role.into(),
            joined_seq: r.joined_seq,
            read_seq: r.read_seq,
            delivered_seq: r.delivered_seq,
            muted_until_ms: r.muted_until_ms,
        }
    }
}

/// One page of the user's rooms, ordered by room id.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserRoomPage {
    /// The rooms.
    pub(super) rooms: Vec<UserRoomView>,
    /// Pass as `after_room_id` for the next page; absent on the last page.
    pub(super) next_after: Option<String>,
}

/// Lists the rooms a user is a member of.
#[utoipa::path(get, path = "/users/{user_id}/rooms", tag = "users",
    params(("user_id" = String, Path, description = "The user"), RoomsPage),
    responses((status = 200, body = UserRoomPage), (status = 400, body = ErrorBody)))]
pub(super) async fn rooms(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Query(page): Query<RoomsPage>,
) -> ApiResult<Json<UserRoomPage>> {
    let user = extract::user("user_id", &user_id)?;
    let after = match page.after_room_id.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(extract::room(raw)?),
    };
    let limit = page_limit(&state.services, page.limit);
    let store = &state.services.store;
    let mut rooms = store.user_rooms(&user, after.as_ref(), limit + 1).await?;
    let more = rooms.len() > limit;
    rooms.truncate(limit);
    let next_after = more
        .then(|| rooms.last().map(|r| r.room_id.to_string()))
        .flatten();
    Ok(Json(UserRoomPage {
        rooms: rooms.into_iter().map(Into::into).collect(),
        next_after,
    }))
}

/// Whether a user is online on this node.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PresenceView {
    /// The user.
    pub(super) user_id: String,
    /// True while the user has a live session on this node.
    pub(super) online: bool,
    /// How many live sessions the user has on this node.
    pub(super) sessions: usize,
}

/// A user's presence: online while a session is live on this node.
#[utoipa::path(get, path = "/users/{user_id}/presence", tag = "users",
    params(("user_id" = String, Path, description = "The user")),
    responses((status = 200, body = PresenceView), (status = 400, body = ErrorBody)))]
pub(super) async fn presence(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> ApiResult<Json<PresenceView>> {
    let user = extract::user("user_id", &user_id)?;
    let sessions = state.services.fanout.sessions_of(&user).len();
    Ok(Json(PresenceView {
        user_id: user.to_string(),
        online: sessions > 0,
        sessions,
    }))
}

/// What to revoke.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(super) struct Revoke {
    /// Tokens issued before this time (Unix ms) are refused from now on; now by default.
    pub(super) issued_before_ms: Option<i64>,
}

/// What a revocation did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Revoked {
    /// Live sessions closed on this node (close code 4003).
    pub(super) closed_sessions: usize,
    /// Tokens issued before this time are refused (the latest cut recorded for the user).
    pub(super) issued_before_ms: i64,
}

/// Revokes a user's sessions: records that tokens issued before `issued_before_ms` are
/// refused at Connect (durably), then closes every live session of the user on this node
/// with close code 4003 (REVOKED). JWT `iat` has whole seconds, so a token issued in the
/// same second as the cut but after it is refused too.
#[utoipa::path(post, path = "/users/{user_id}/revoke", tag = "users",
    request_body(content = Revoke, description = "Optional; an empty body revokes up to now"),
    params(("user_id" = String, Path, description = "The user")),
    responses((status = 200, body = Revoked), (status = 400, body = ErrorBody)))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Revoked>> {
    let user = extract::user("user_id", &user_id)?;
    let r: Revoke = if body.iter().all(u8::is_ascii_whitespace) {
        Revoke::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?
    };
    let services = &state.services;
    let before = r
        .issued_before_ms
        .unwrap_or_else(|| services.clock.now_ms());
    // Record first, so that a reconnect racing the close is refused.
    services.store.revoke_tokens_before(&user, before).await?;
    let before = services
        .store
        .tokens_revoked_before(&user)
        .await?
        .unwrap_or(before);
    let closed = services
        .fanout
        .close_sessions(Some(&user), v1::CloseCode::Revoked);
    tracing::info!(user = %user, before, closed, "sessions revoked");
    Ok(Json(Revoked {
        closed_sessions: closed,
        issued_before_ms: before,
    }))
}
