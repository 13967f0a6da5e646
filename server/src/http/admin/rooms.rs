//! `/admin/rooms`: create a group, read and change its settings, list and change members.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use chatwire_protocol::v1;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{self, Body, Query};
use super::views::{MemberView, RoleName, RoomView, Visibility};
use super::{page_limit, system_user, write};
use crate::chat::command::{CreateGroup, Outcome, RoomOp, RoomSettings};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};
use crate::chat::validate::{self, MAX_ROOM_NAME_CHARS, MAX_TOPIC_CHARS};
use crate::http::AppState;

/// A new group.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct CreateRoom {
    /// The creator, who becomes the group's owner.
    pub(super) owner: String,
    /// The name.
    pub(super) name: String,
    /// The topic.
    #[serde(default)]
    pub(super) topic: String,
    /// Members besides the owner.
    #[serde(default)]
    pub(super) member_ids: Vec<String>,
    /// Who reads which part of the log; `since_join` by default.
    pub(super) history_visibility: Option<Visibility>,
    /// Most members; the server's default when absent.
    pub(super) member_cap: Option<u32>,
    /// Makes creation idempotent: the same owner and request id name the same room.
    #[serde(default)]
    pub(super) client_request_id: String,
}

/// A created (or, for a retried creation, existing) group.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RoomCreated {
    /// The room.
    pub(super) room: RoomView,
    /// False when a retry found the room the same request created before.
    pub(super) created: bool,
}

fn users(field: &'static str, raw: &[String]) -> ApiResult<Vec<UserId>> {
    raw.iter().map(|id| extract::user(field, id)).collect()
}

fn create_op(r: CreateRoom, max_members: u32) -> ApiResult<CreateGroup> {
    if r.name.trim().is_empty() {
        return Err(ApiError::invalid("name", "a group needs a name"));
    }
    validate::text("name", &r.name, MAX_ROOM_NAME_CHARS)?;
    validate::text("topic", &r.topic, MAX_TOPIC_CHARS)?;
    // no cap given is the largest, Limits.max_group_members.
    let member_cap = r.member_cap.unwrap_or(max_members);
    if member_cap == 0 || member_cap > max_members {
        return Err(ApiError::invalid(
            "member_cap",
            format!("1 to {max_members}"),
        ));
    }
    Ok(CreateGroup {
        name: r.name,
        topic: r.topic,
        members: users("member_ids", &r.member_ids)?,
        history_visibility: r.history_visibility.unwrap_or(Visibility::SinceJoin).into(),
        member_cap,
        app_data: bytes::Bytes::new(),
    })
}

/// Creates a group as `owner` (through the room's writer, unprivileged, like the owner's own
/// CreateGroup).
#[utoipa::path(post, path = "/rooms", tag = "rooms", request_body = CreateRoom,
    responses(
        (status = 201, description = "Created", body = RoomCreated),
        (status = 200, description = "A retry: the room this request created before", body = RoomCreated),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "The id is taken by another creation", body = ErrorBody),
    ))]
pub(super) async fn create_room(
    State(state): State<AppState>,
    Body(r): Body<CreateRoom>,
) -> ApiResult<(StatusCode, Json<RoomCreated>)> {
    let owner = extract::user("owner", &r.owner)?;
    if r.client_request_id.len() > 64 {
        return Err(ApiError::invalid("client_request_id", "at most 64 bytes"));
    }
    let room = RoomId::group(&owner, &r.client_request_id);
    let create = create_op(r, state.services.limits.max_group_members)?;
    let outcome = write(
        &state.services,
        room,
        owner,
        RoomOp::CreateGroup(create),
        false,
    )
    .await?;
    let Outcome::Room { room, created, .. } = outcome else {
        return Err(ChatError::Internal.into());
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(RoomCreated {
            room: room.into(),
            created,
        }),
    ))
}

/// Reads a room's settings, size and head.
#[utoipa::path(get, path = "/rooms/{room_id}", tag = "rooms",
    params(("room_id" = String, Path, description = "The room")),
    responses((status = 200, body = RoomView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_room(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
) -> ApiResult<Json<RoomView>> {
    let room_id = extract::room(&room_id)?;
    let store = &state.services.store;
    let mut room = store.room(&room_id).await?.ok_or(ChatError::NotFound)?;
    room.last_seq = store.head(&room_id).await?.map_or(0, |h| h.seq);
    Ok(Json(room.into()))
}

/// Settings to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct UpdateRoom {
    /// A new name.
    pub(super) name: Option<String>,
    /// A new topic.
    pub(super) topic: Option<String>,
    /// New history visibility.
    pub(super) history_visibility: Option<Visibility>,
    /// A new member cap (at least the member count).
    pub(super) member_cap: Option<u32>,
    /// New application data, base64.
    pub(super) app_data: Option<String>,
}

/// A room after a change, with the seq of the change's event.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RoomUpdated {
    /// The room after the change.
    pub(super) room: RoomView,
    /// The seq of the RoomUpdated event; 0 when nothing changed.
    pub(super) seq: u64,
}

fn settings(r: UpdateRoom) -> ApiResult<RoomSettings> {
    if let Some(name) = &r.name {
        if name.trim().is_empty() {
            return Err(ApiError::invalid("name", "a group needs a name"));
        }
        validate::text("name", name, MAX_ROOM_NAME_CHARS)?;
    }
    if let Some(topic) = &r.topic {
        validate::text("topic", topic, MAX_TOPIC_CHARS)?;
    }
    let app_data = match r.app_data {
        None => None,
        Some(raw) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(raw.as_bytes())
                .map_err(|_| ApiError::invalid("app_data", "not base64"))?
                .into(),
        ),
    };
    Ok(RoomSettings {
        name: r.name,
        topic: r.topic,
        history_visibility: r.history_visibility.map(Into::into),
        member_cap: r.member_cap,
        app_data,
    })
}

/// Changes a group's settings (privileged, as `system`).
#[utoipa::path(patch, path = "/rooms/{room_id}", tag = "rooms", request_body = UpdateRoom,
    params(("room_id" = String, Path, description = "The room")),
    responses((status = 200, body = RoomUpdated), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn update_room(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Body(r): Body<UpdateRoom>,
) -> ApiResult<Json<RoomUpdated>> {
    let room = extract::room(&room_id)?;
    let op = RoomOp::UpdateRoom(settings(r)?);
    match write(&state.services, room, system_user(), op, true).await? {
        Outcome::Updated { room, seq } => Ok(Json(RoomUpdated {
            room: room.into(),
            seq,
        })),
        _ => Err(ChatError::Internal.into()),
    }
}

/// A page position.
#[derive(Debug, Deserialize, IntoParams)]
pub(super) struct MembersPage {
    /// Members after this user id (exclusive), from the previous page's `next_after`.
    pub(super) after_user_id: Option<String>,
    /// Most members to return.
    pub(super) limit: Option<u32>,
}

/// One page of members, ordered by user id.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MemberPage {
    /// The members.
    pub(super) members: Vec<MemberView>,
    /// Pass as `after_user_id` for the next page; absent on the last page.
    pub(super) next_after: Option<String>,
}

/// Lists a room's members, ordered by user id.
#[utoipa::path(get, path = "/rooms/{room_id}/members", tag = "rooms",
    params(("room_id" = String, Path, description = "The room"), MembersPage),
    responses((status = 200, body = MemberPage), (status = 404, body = ErrorBody)))]
pub(super) async fn list_members(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Query(page): Query<MembersPage>,
) -> ApiResult<Json<MemberPage>> {
    let room = extract::room(&room_id)?;
    let store = &state.services.store;
    if store.head(&room).await?.is_none() {
        return Err(ChatError::NotFound.into());
    }
    let after = match page.after_user_id.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(extract::user("after_user_id", raw)?),
    };
    let limit = page_limit(&state.services, page.limit);
    let mut members = store.members(&room, after.as_ref(), limit + 1).await?;
    let more = members.len() > limit;
    members.truncate(limit);
    let next_after = more
        .then(|| members.last().map(|m| m.user_id.clone()))
        .flatten();
    Ok(Json(MemberPage {
        members: members.into_iter().map(Into::into).collect(),
        next_after,
    }))
}

/// Users to add.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct AddMembers {
    /// The users.
    pub(super) user_ids: Vec<String>,
    /// Their role (`member` by default; owners are made with the role endpoint).
    pub(super) role: Option<RoleName>,
}

/// The memberships created (users already in the room are left out).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MembersAdded {
    /// The new members.
    pub(super) added: Vec<MemberView>,
}

/// Adds users to a group (privileged, as `system`).
#[utoipa::path(post, path = "/rooms/{room_id}/members", tag = "rooms", request_body = AddMembers,
    params(("room_id" = String, Path, description = "The room")),
    responses((status = 200, body = MembersAdded), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(super) async fn add_members(
    State(state): State<AppState>,
    Path(room_id): Path<String>,
    Body(r): Body<AddMembers>,
) -> ApiResult<Json<MembersAdded>> {
    let room = extract::room(&room_id)?;
    let users = users("user_ids", &r.user_ids)?;
    if users.is_empty() {
        return Err(ApiError::invalid("user_ids", "no users given"));
    }
    let role = r.role.map_or(v1::Role::Member, Into::into);
    let op = RoomOp::AddMembers { users, role };
    match write(&state.services, room, system_user(), op, true).await? {
        Outcome::Added(added) => Ok(Json(MembersAdded {
            added: added.into_iter().map(Into::into).collect(),
        })),
        _ => Err(ChatError::Internal.into()),
    }
}

/// The seq of the event a change produced.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Changed {
    /// The event's seq; 0 when nothing changed.
    pub(super) seq: u64,
}

pub(super) fn expect_seq(outcome: Outcome) -> ApiResult<Json<Changed>> {
    match outcome {
        Outcome::Seq(seq) => Ok(Json(Changed { seq })),
        _ => Err(ChatError::Internal.into()),
    }
}

/// Removes a member from a group (privileged, as `system`).
#[utoipa::path(delete, path = "/rooms/{room_id}/members/{user_id}", tag = "rooms",
    params(("room_id" = String, Path, description = "The room"),
        ("user_id" = String, Path, description = "The member")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody),
        (status = 409, description = "Direct rooms have fixed members", body = ErrorBody)))]
pub(super) async fn remove_member(
    State(state): State<AppState>,
    Path((room_id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<Changed>> {
    let room = extract::room(&room_id)?;
    let user = extract::user("user_id", &user_id)?;
    let op = RoomOp::RemoveMember { user };
    expect_seq(write(&state.services, room, system_user(), op, true).await?)
}

/// A new role.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct SetRole {
    /// The role.
    pub(super) role: RoleName,
}

/// Changes a member's role (privileged, as `system`). A group keeps at least one owner.
#[utoipa::path(put, path = "/rooms/{room_id}/members/{user_id}/role", tag = "rooms",
    request_body = SetRole,
    params(("room_id" = String, Path, description = "The room"),
        ("user_id" = String, Path, description = "The member")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn set_role(
    State(state): State<AppState>,
    Path((room_id, user_id)): Path<(String, String)>,
    Body(r): Body<SetRole>,
) -> ApiResult<Json<Changed>> {
    let room = extract::room(&room_id)?;
    let user = extract::user("user_id", &user_id)?;
    let op = RoomOp::SetRole {
        user,
        role: r.role.into(),
    };
    expect_seq(write(&state.services, room, system_user(), op, true).await?)
}
