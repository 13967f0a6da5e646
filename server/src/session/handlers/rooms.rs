//! Rooms and membership requests.

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::{Ctx, after_user, room_id};
use crate::chat::command::{CreateGroup, Outcome, RoomOp, RoomSettings};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};
use crate::chat::validate::{self, MAX_ROOM_NAME_CHARS, MAX_TOPIC_CHARS};

fn users(field: &'static str, raw: &[String]) -> Result<Vec<UserId>, ChatError> {
    raw.iter().map(|id| validate::user_id(field, id)).collect()
}

fn expect_room(outcome: Outcome) -> Result<(v1::Room, Option<v1::Member>, bool), ChatError> {
    match outcome {
        Outcome::Room { room, me, created } => Ok((room, me, created)),
        _ => Err(ChatError::Internal),
    }
}

pub(super) fn expect_seq(outcome: Outcome) -> Result<u64, ChatError> {
    match outcome {
        Outcome::Seq(seq) => Ok(seq),
        _ => Err(ChatError::Internal),
    }
}

pub(super) async fn create_group(
    ctx: Ctx<'_>,
    r: v1::CreateGroupRequest,
) -> Result<Reply, ChatError> {
    if r.name.trim().is_empty() {
        return Err(ChatError::invalid("name", "a group needs a name"));
    }
    validate::text("name", &r.name, MAX_ROOM_NAME_CHARS)?;
    validate::text("topic", &r.topic, MAX_TOPIC_CHARS)?;
    let max_members = ctx.services.limits.max_group_members;
    if r.member_cap > max_members {
        return Err(ChatError::TooLarge {
            field: "member_cap",
            reason: format!("above {max_members}"),
        });
    }
    if r.client_request_id.len() > 64 {
        return Err(ChatError::invalid("client_request_id", "at most 64 bytes"));
    }
    let visibility = match v1::HistoryVisibility::try_from(r.history_visibility) {
        Err(_) => {
            return Err(ChatError::UnknownValue {
                field: "history_visibility",
            });
        }
        Ok(v1::HistoryVisibility::Unspecified) => v1::HistoryVisibility::SinceJoin,
        Ok(other) => other,
    };
    let create = CreateGroup {
        name: r.name,
        topic: r.topic,
        members: users("member_ids", &r.member_ids)?,
        history_visibility: visibility,
        // 0 is the largest cap, Limits.max_group_members.
        member_cap: if r.member_cap == 0 {
            max_members
        } else {
            r.member_cap
        },
        app_data: r.app_data,
    };
    let room = RoomId::group(ctx.user, &r.client_request_id);
    let (room, _, _) = expect_room(ctx.write(room, RoomOp::CreateGroup(create)).await?)?;
    Ok(Reply::CreateGroup(v1::CreateGroupResponse {
        room: Some(room),
    }))
}

pub(super) async fn open_direct(
    ctx: Ctx<'_>,
    r: v1::OpenDirectRequest,
) -> Result<Reply, ChatError> {
    let other = validate::user_id("user_id", &r.user_id)?;
    let room = RoomId::direct(ctx.user, &other)
        .ok_or_else(|| ChatError::invalid("user_id", "a direct room needs another user"))?;
    let (room, _, created) = expect_room(ctx.write(room, RoomOp::OpenDirect { other }).await?)?;
    Ok(Reply::OpenDirect(v1::OpenDirectResponse {
        room: Some(room),
        created,
    }))
}

pub(super) async fn get_room(ctx: Ctx<'_>, r: v1::GetRoomRequest) -> Result<Reply, ChatError> {
    let room_id = room_id(&r.room_id)?;
    let me = ctx.member(&room_id).await?;
    let store = &ctx.services.store;
    let mut room = store.room(&room_id).await?.ok_or(ChatError::NotFound)?;
    room.last_seq = store.head(&room_id).await?.map_or(0, |h| h.seq);
    Ok(Reply::GetRoom(v1::GetRoomResponse {
        room: Some(room),
        me: Some(me),
    }))
}

pub(super) async fn update_room(
    ctx: Ctx<'_>,
    r: v1::UpdateRoomRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    if let Some(name) = &r.name {
        if name.trim().is_empty() {
            return Err(ChatError::invalid("name", "a group needs a name"));
        }
        validate::text("name", name, MAX_ROOM_NAME_CHARS)?;
    }
    if let Some(topic) = &r.topic {
        validate::text("topic", topic, MAX_TOPIC_CHARS)?;
    }
    let visibility = match r.history_visibility.map(v1::HistoryVisibility::try_from) {
        None => None,
        Some(Err(_)) => {
            return Err(ChatError::UnknownValue {
                field: "history_visibility",
            });
        }
        Some(Ok(v1::HistoryVisibility::Unspecified)) => {
            return Err(ChatError::invalid(
                "history_visibility",
                "unspecified is not a setting",
            ));
        }
        Some(Ok(value)) => Some(value),
    };
    let settings = RoomSettings {
        name: r.name,
        topic: r.topic,
        history_visibility: visibility,
        member_cap: r.member_cap,
        app_data: r.app_data,
    };
    match ctx.write(room, RoomOp::UpdateRoom(settings)).await? {
        Outcome::Updated { room, seq } => Ok(Reply::UpdateRoom(v1::UpdateRoomResponse {
            room: Some(room),
            seq,
        })),
        _ => Err(ChatError::Internal),
    }
}

pub(super) async fn list_members(
    ctx: Ctx<'_>,
    r: v1::ListMembersRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    ctx.member(&room).await?;
    let after = after_user(&r.after_user_id)?;
    let limit = ctx.services.page_limit(r.limit, 100);
    let mut members = ctx
        .services
        .store
        .members(&room, after.as_ref(), limit + 1)
        .await?;
    let has_more = members.len() > limit;
    members.truncate(limit);
    Ok(Reply::ListMembers(v1::ListMembersResponse {
        members,
        has_more,
    }))
}

pub(super) async fn add_members(
    ctx: Ctx<'_>,
    r: v1::AddMembersRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let users = users("user_ids", &r.user_ids)?;
    if users.is_empty() {
        return Err(ChatError::invalid("user_ids", "no users given"));
    }
    let role = v1::Role::try_from(r.role).map_err(|_| ChatError::UnknownValue { field: "role" })?;
    match ctx.write(room, RoomOp::AddMembers { users, role }).await? {
        Outcome::Added(added) => Ok(Reply::AddMembers(v1::AddMembersResponse { added })),
        _ => Err(ChatError::Internal),
    }
}

pub(super) async fn remove_member(
    ctx: Ctx<'_>,
    r: v1::RemoveMemberRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let user = validate::user_id("user_id", &r.user_id)?;
    let seq = expect_seq(ctx.write(room, RoomOp::RemoveMember { user }).await?)?;
    Ok(Reply::RemoveMember(v1::RemoveMemberResponse { seq }))
}

pub(super) async fn set_role(ctx: Ctx<'_>, r: v1::SetRoleRequest) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let user = validate::user_id("user_id", &r.user_id)?;
    let role = v1::Role::try_from(r.role).map_err(|_| ChatError::UnknownValue { field: "role" })?;
    let seq = expect_seq(ctx.write(room, RoomOp::SetRole { user, role }).await?)?;
    Ok(Reply::SetRole(v1::SetRoleResponse { seq }))
}

pub(super) async fn leave_room(ctx: Ctx<'_>, r: v1::LeaveRoomRequest) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let seq = expect_seq(ctx.write(room, RoomOp::Leave).await?)?;
    Ok(Reply::LeaveRoom(v1::LeaveRoomResponse { seq }))
}
