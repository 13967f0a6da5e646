//! `/admin/users/{user_id}/erase`: user-data erasure. What it erases and what it keeps is
//! listed on [`erase`] and in `docs/operations.md`.

use axum::Json;
use axum::extract::{Path, State};
use chatwire_protocol::v1;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiResult, ErrorBody};
use super::extract;
use super::{system_user, write};
use crate::backend::store::{HistoryAnchor, HistoryQuery, UserRoom};
use crate::chat::command::RoomOp;
use crate::chat::ids::{RoomId, UserId};
use crate::http::AppState;
use crate::session::services::Services;

/// Rooms and messages read per store call.
const PAGE: usize = 200;

/// What an erasure did.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(super) struct Erased {
    /// Rooms the user was a member of.
    pub(super) rooms: usize,
    /// The user's messages redacted (tombstones stay).
    pub(super) messages_redacted: usize,
    /// Groups the user was removed from.
    pub(super) groups_left: usize,
    /// Direct rooms kept (their members are fixed); the user's messages there are redacted.
    pub(super) direct_rooms_kept: usize,
    /// Push tokens removed.
    pub(super) push_tokens_removed: usize,
    /// Blocks made by the user removed.
    pub(super) blocks_removed: usize,
    /// Contact relationships and requests of the user ended (the other users are told).
    pub(super) contacts_removed: usize,
    /// Live sessions closed (close code 4003); the user's tokens issued so far are revoked.
    pub(super) sessions_closed: usize,
}

/// Erases a user's data: revokes the user's tokens and closes their sessions, removes their
/// push tokens, the blocks they made and their contacts and contact requests, redacts every message they sent in the rooms they
/// are in (through each room's writer, privileged, as the user: a `MessageDeleted` event per
/// message), then removes them from each group (as `system`). Kept: messages in rooms the user
/// had already left, membership and reaction events naming the user, other users' blocks of
/// the user, the direct rooms' memberships and watermarks, and the revocation record.
#[utoipa::path(post, path = "/users/{user_id}/erase", tag = "users",
    params(("user_id" = String, Path, description = "The user")),
    responses((status = 200, body = Erased), (status = 400, body = ErrorBody),
        (status = 503, description = "A backend failed part-way; run it again", body = ErrorBody)))]
pub(super) async fn erase(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Erased>> {
    let user = extract::user("user_id", &user_id)?;
    let services = &state.services;
    let mut erased = Erased::default();
    let now = services.clock.now_ms();
    services.store.revoke_tokens_before(&user, now + 1).await?;
    erased.sessions_closed = services
        .fanout
        .close_sessions(Some(&user), v1::CloseCode::Revoked);
    account(services, &user, &mut erased).await?;
    for state in all_rooms(services, &user).await? {
        erased.rooms += 1;
        erased.messages_redacted += redact_messages(services, &user, &state.room_id).await?;
        let room = services.store.room(&state.room_id).await?;
        if room.is_some_and(|r| r.kind() == v1::RoomKind::Group) {
            let op = RoomOp::RemoveMember { user: user.clone() };
            write(services, state.room_id, system_user(), op, true).await?;
            erased.groups_left += 1;
        } else {
            erased.direct_rooms_kept += 1;
        }
    }
    tracing::info!(user = %user, ?erased, "user data erased");
    Ok(Json(erased))
}

/// Push tokens and the user's own blocks.
async fn account(services: &Services, user: &UserId, erased: &mut Erased) -> ApiResult<()> {
    let store = &services.store;
    for token in store.push_tokens(user).await? {
        store.unregister_push_token(user, &token.token).await?;
        erased.push_tokens_removed += 1;
    }
    for other in store.blocked(user).await? {
        store.unblock(user, &other).await?;
        erased.blocks_removed += 1;
    }
    erased.contacts_removed = crate::contacts::end_all(services, user).await?;
    Ok(())
}

/// Every room the user is in (read before any is left, so paging is not disturbed).
async fn all_rooms(services: &Services, user: &UserId) -> ApiResult<Vec<UserRoom>> {
    let mut rooms: Vec<UserRoom> = Vec::new();
    loop {
        let after = rooms.last().map(|r| r.room_id.clone());
        let page = services
            .store
            .user_rooms(user, after.as_ref(), PAGE)
            .await?;
        let done = page.len() < PAGE;
        rooms.extend(page);
        if done {
            return Ok(rooms);
        }
    }
}

/// Redacts the user's live messages in one room, newest first; returns how many.
async fn redact_messages(services: &Services, user: &UserId, room: &RoomId) -> ApiResult<usize> {
    let mut anchor = HistoryAnchor::Latest;
    let mut redacted = 0;
    loop {
        let query = HistoryQuery {
            anchor,
            min_seq: 1,
            limit: PAGE,
            max_bytes: usize::MAX,
            thread_root_seq: 0,
        };
        let page = services.store.read_messages(room, query).await?;
        for message in &page.messages {
            if message.sender == user.as_str() && !message.deleted {
                let op = RoomOp::Delete {
                    target_seq: message.seq,
                    reason: "erasure".to_owned(),
                };
                match write(services, room.clone(), user.clone(), op, true).await {
                    Ok(_) => redacted += 1,
                    // Deleted meanwhile by someone else.
                    Err(e) if e.status() == axum::http::StatusCode::NOT_FOUND => {}
                    Err(e) => return Err(e),
                }
            }
        }
        match page.messages.last() {
            Some(oldest) if page.has_more => anchor = HistoryAnchor::Before(oldest.seq),
            _ => return Ok(redacted),
        }
    }
}
