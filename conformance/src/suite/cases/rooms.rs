//! Rooms and membership: groups, directs, member changes, membership checks, Sync.

use chatwire_protocol::v1::{self, ErrorCode, Role, event};

use super::case;
use crate::suite::check::{Check, Failure, ensure, ensure_eq, ensure_error, within};
use crate::suite::{Case, Ctx};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "RM-01",
            "rooms",
            Must,
            ["R-6.1.1", "R-6.2.1", "R-16.2.1"],
            ["CreateGroup", "GetRoom", "ListMembers"],
            None,
            false,
            "CreateGroup: g. id, RoomCreated at seq 1, members listed, RoomAdded to members",
            create_group
        ),
        case!(
            "RM-02",
            "rooms",
            Must,
            ["R-6.1.2", "R-6.2.4", "R-6.2.5"],
            ["OpenDirect"],
            None,
            false,
            "OpenDirect returns the same room to both users; with oneself it is INVALID_ARGUMENT",
            open_direct
        ),
        case!(
            "RM-03",
            "rooms",
            Must,
            ["R-6.4.1", "R-6.4.2"],
            ["GetRoom", "Send"],
            None,
            false,
            "a non-member and a missing room get the same NOT_FOUND",
            membership
        ),
        case!(
            "RM-04",
            "rooms",
            Must,
            ["R-6.3.5", "R-6.3.6", "R-6.3.7", "R-6.3.4", "R-7.1.4"],
            [
                "AddMembers",
                "UpdateRoom",
                "SetRole",
                "RemoveMember",
                "LeaveRoom"
            ],
            None,
            false,
            "member changes: add skips members, update and same-role return seq 0 when unchanged",
            member_changes
        ),
        case!(
            "RM-05",
            "rooms",
            Must,
            ["R-11.1.1", "R-11.1.4"],
            ["Sync"],
            None,
            false,
            "Sync returns the caller's rooms with role and head",
            sync
        ),
    ]
}

async fn create_group(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    let hex = room.strip_prefix("g.").unwrap_or_default();
    ensure(
        hex.len() == 32
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
        "a group id g. + 32 lowercase hex digits",
        &room,
    )?;
    loop {
        let event = within("RoomAdded for the added member", b.next_event()).await??;
        if let Some(event::Kind::RoomAdded(added)) = event.kind {
            let id = added.room.map(|r| r.id).unwrap_or_default();
            if id == room {
                break;
            }
        }
    }
    let (events, _) = super::subscribe_all(&a, &room, 0).await?;
    let first = events
        .first()
        .ok_or_else(|| Failure::new("a RoomCreated at seq 1", "empty log"))?;
    ensure(
        first.seq == 1 && matches!(first.kind, Some(v1::room_event::Kind::RoomCreated(_))),
        "RoomCreated at seq 1",
        first,
    )?;
    let members = within(
        "ListMembersResponse",
        a.list_members(v1::ListMembersRequest {
            room_id: room.clone(),
            ..Default::default()
        }),
    )
    .await??;
    let mut ids: Vec<&str> = members.members.iter().map(|m| m.user_id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![alice.as_str(), bob.as_str()];
    want.sort_unstable();
    ensure_eq("members", want, ids)?;
    let got = within(
        "GetRoomResponse",
        b.get_room(v1::GetRoomRequest { room_id: room }),
    )
    .await??;
    ensure_eq("me.role", Role::Member, got.me.unwrap_or_default().role())
}

async fn open_direct(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let ra = within(
        "OpenDirectResponse",
        a.open_direct(v1::OpenDirectRequest {
            user_id: bob.clone(),
        }),
    )
    .await??;
    let rb = within(
        "OpenDirectResponse",
        b.open_direct(v1::OpenDirectRequest {
            user_id: alice.clone(),
        }),
    )
    .await??;
    let (ia, ib) = (
        ra.room.unwrap_or_default().id,
        rb.room.unwrap_or_default().id,
    );
    ensure(
        ia.starts_with("d.") && ia == ib,
        "one direct room id d.… for both users",
        (&ia, &ib),
    )?;
    let own = within(
        "the reply",
        a.open_direct(v1::OpenDirectRequest { user_id: alice }),
    )
    .await?;
    ensure_error(own, ErrorCode::InvalidArgument, None)
}

async fn membership(ctx: Ctx) -> Check {
    let (alice, eve) = (ctx.user("alice"), ctx.user("eve"));
    let a = ctx.client(&alice).await?;
    let e = ctx.client(&eve).await?;
    let room = super::group(&a, &[]).await?;
    let foreign = within(
        "the reply",
        e.get_room(v1::GetRoomRequest {
            room_id: room.clone(),
        }),
    )
    .await?;
    ensure_error(foreign, ErrorCode::NotFound, None)?;
    let missing = within(
        "the reply",
        e.get_room(v1::GetRoomRequest {
            room_id: "g.0123456789abcdef0123456789abcdef".into(),
        }),
    )
    .await?;
    ensure_error(missing, ErrorCode::NotFound, None)?;
    let send = within("the reply", e.send(super::send_req(&room, "m-1", "hi"))).await?;
    ensure_error(send, ErrorCode::NotFound, None)
}

async fn member_changes(ctx: Ctx) -> Check {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let a = ctx.client(&alice).await?;
    let c = ctx.client(&carol).await?;
    let room = super::group(&a, &[&bob]).await?;
    let added = within(
        "AddMembersResponse",
        a.add_members(v1::AddMembersRequest {
            room_id: room.clone(),
            user_ids: vec![bob.clone(), carol.clone()],
            role: Role::Member as i32,
        }),
    )
    .await??;
    let ids: Vec<&str> = added.added.iter().map(|m| m.user_id.as_str()).collect();
    ensure_eq("added", vec![carol.as_str()], ids)?;
    let update = v1::UpdateRoomRequest {
        room_id: room.clone(),
        name: Some("renamed".into()),
        ..Default::default()
    };
    let first = within("UpdateRoomResponse", a.update_room(update.clone())).await??;
    ensure(
        first.seq > 0,
        "a changing update returns its seq",
        first.seq,
    )?;
    let again = within("UpdateRoomResponse", a.update_room(update)).await??;
    ensure_eq("seq of an update that changes nothing", 0, again.seq)?;
    let role = v1::SetRoleRequest {
        room_id: room.clone(),
        user_id: bob.clone(),
        role: Role::Member as i32,
    };
    let same = within("SetRoleResponse", a.set_role(role)).await??;
    ensure_eq("seq of SetRole to the current role", 0, same.seq)?;
    let own = within(
        "the reply",
        a.remove_member(v1::RemoveMemberRequest {
            room_id: room.clone(),
            user_id: alice,
        }),
    )
    .await?;
    ensure_error(own, ErrorCode::InvalidArgument, None)?;
    let removed = within(
        "RemoveMemberResponse",
        a.remove_member(v1::RemoveMemberRequest {
            room_id: room.clone(),
            user_id: bob,
        }),
    )
    .await??;
    ensure(removed.seq > 0, "RemoveMember returns its seq", removed.seq)?;
    let left = within(
        "LeaveRoomResponse",
        c.leave_room(v1::LeaveRoomRequest {
            room_id: room.clone(),
        }),
    )
    .await??;
    ensure(
        left.seq > removed.seq,
        "LeaveRoom returns a later seq",
        left.seq,
    )?;
    let after = within(
        "the reply",
        c.get_room(v1::GetRoomRequest { room_id: room }),
    )
    .await?;
    ensure_error(after, ErrorCode::NotFound, None)
}

async fn sync(ctx: Ctx) -> Check {
    let alice = ctx.user("alice");
    let a = ctx.client(&alice).await?;
    let room = super::group(&a, &[]).await?;
    let sent = super::send(&a, &room, "m-1", "hello").await?;
    let mut cursor = String::new();
    let mut found = None;
    for _ in 0..100 {
        let page = within(
            "SyncResponse",
            a.sync(v1::SyncRequest {
                cursor: cursor.clone(),
                limit: 0,
            }),
        )
        .await??;
        found = found.or_else(|| {
            page.rooms
                .iter()
                .find(|s| s.room.as_ref().is_some_and(|r| r.id == room))
                .cloned()
        });
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let summary = found.ok_or_else(|| Failure::new("the new group in Sync", "not listed"))?;
    ensure_eq("role", Role::Owner, summary.role())?;
    ensure_eq("last_seq", sent.seq, summary.last_seq)
}
