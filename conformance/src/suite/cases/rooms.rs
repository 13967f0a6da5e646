//! Rooms and membership: groups, directs, member changes, membership checks, Sync.

use chatwire_protocol::v1::{self, ErrorCode, Role, event};

use super::case;
use crate::client::Client;
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
        case!(
            "RM-06",
            "rooms",
            Must,
            ["R-6.2.2", "R-6.3.8"],
            ["CreateGroup", "UpdateRoom", "AddMembers"],
            None,
            false,
            "name, topic and member_cap limits; a group never exceeds its cap",
            room_limits
        ),
        case!(
            "RM-07",
            "rooms",
            Must,
            ["R-6.2.3"],
            ["CreateGroup"],
            None,
            false,
            "a repeated client_request_id returns the first room and creates nothing",
            create_idempotent
        ),
        case!(
            "RM-08",
            "rooms",
            Must,
            ["R-6.3.1", "R-6.3.2", "R-6.3.3"],
            [
                "UpdateRoom",
                "AddMembers",
                "RemoveMember",
                "SetRole",
                "LeaveRoom"
            ],
            None,
            false,
            "members are denied owner actions; direct rooms and the last owner get FAILED_PRECONDITION",
            permissions
        ),
        case!(
            "RM-09",
            "rooms",
            Must,
            [
                "R-6.5.1", "R-6.5.2", "R-6.5.3", "R-6.5.4", "R-9.1.4", "R-12.1.3", "R-11.1.5"
            ],
            ["AddMembers", "History", "Subscribe", "UpdateRoom", "Sync"],
            None,
            false,
            "a later member reads from its joined_seq, with watermarks at joined_seq - 1, until visibility is FULL",
            visibility
        ),
        case!(
            "RM-10",
            "rooms",
            Must,
            ["R-16.3.1", "R-16.3.2", "R-16.3.3", "R-6.4.3", "R-23.1.3"],
            ["RemoveMember", "Subscribe", "Send"],
            None,
            false,
            "a removed member: MemberLeft last, then RoomRemoved on every session, then nothing and NOT_FOUND",
            removal
        ),
        case!(
            "RM-11",
            "rooms",
            Must,
            ["R-16.2.2", "R-16.2.3"],
            ["UpdateRoom", "Send"],
            None,
            false,
            "RoomChanged reaches every member session; RoomActivity reaches sessions where the room is not live",
            room_list_events
        ),
        case!(
            "RM-12",
            "rooms",
            Must,
            ["R-11.1.2", "R-11.1.3"],
            ["Sync"],
            None,
            false,
            "Sync pages of one room: cursor and caught_up, each room once despite activity",
            sync_paging
        ),
        case!(
            "RM-13",
            "rooms",
            Must,
            ["R-6.2.4"],
            ["OpenDirect", "Subscribe"],
            None,
            false,
            "a new direct room's RoomCreated and both MemberJoined have the caller as sender",
            direct_senders
        ),
        case!(
            "RM-14",
            "rooms",
            Must,
            ["R-6.3.8"],
            ["CreateGroup"],
            None,
            false,
            "a group created with member_cap 0 has member_cap Limits.max_group_members",
            default_member_cap
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

fn create_req(name: &str) -> v1::CreateGroupRequest {
    v1::CreateGroupRequest {
        name: name.to_owned(),
        ..Default::default()
    }
}

async fn room_limits(ctx: Ctx) -> Check {
    let (bob, carol) = (ctx.user("bob"), ctx.user("carol"));
    let (a, session) = ctx.session(&ctx.user("alice")).await?;
    let max = session.limits.unwrap_or_default().max_group_members;
    let create = |req: v1::CreateGroupRequest| a.create_group(req);
    ensure_error(
        within("the reply", create(create_req(""))).await?,
        ErrorCode::InvalidArgument,
        Some("name"),
    )?;
    ensure_error(
        within("the reply", create(create_req(&"x".repeat(201)))).await?,
        ErrorCode::TooLarge,
        Some("name"),
    )?;
    // 200 characters of two bytes each: the limit counts characters, not bytes.
    within("CreateGroupResponse", create(create_req(&"é".repeat(200)))).await??;
    let topic = v1::CreateGroupRequest {
        topic: "t".repeat(1001),
        ..create_req("topic")
    };
    ensure_error(
        within("the reply", create(topic)).await?,
        ErrorCode::TooLarge,
        Some("topic"),
    )?;
    if max < u32::MAX {
        let cap = v1::CreateGroupRequest {
            member_cap: max + 1,
            ..create_req("cap")
        };
        ensure_error(
            within("the reply", create(cap)).await?,
            ErrorCode::TooLarge,
            Some("member_cap"),
        )?;
    }
    let crowded = v1::CreateGroupRequest {
        member_cap: 2,
        member_ids: vec![bob.clone(), carol.clone()],
        ..create_req("crowded")
    };
    ensure_error(
        within("the reply", create(crowded)).await?,
        ErrorCode::TooLarge,
        Some("member_ids"),
    )?;
    let capped = v1::CreateGroupRequest {
        member_cap: 2,
        member_ids: vec![bob],
        ..create_req("capped")
    };
    let room = within("CreateGroupResponse", create(capped))
        .await??
        .room
        .map(|r| r.id)
        .unwrap_or_default();
    let over = within(
        "the reply",
        a.add_members(v1::AddMembersRequest {
            room_id: room.clone(),
            user_ids: vec![carol],
            role: 0,
        }),
    )
    .await?;
    ensure_error(over, ErrorCode::TooLarge, Some("user_ids"))?;
    let members = within(
        "ListMembersResponse",
        a.list_members(v1::ListMembersRequest {
            room_id: room.clone(),
            ..Default::default()
        }),
    )
    .await??;
    ensure_eq("members of a group at its cap", 2, members.members.len())?;
    let rename = |name: &str| v1::UpdateRoomRequest {
        room_id: room.clone(),
        name: Some(name.to_owned()),
        ..Default::default()
    };
    ensure_error(
        within("the reply", a.update_room(rename(""))).await?,
        ErrorCode::InvalidArgument,
        Some("name"),
    )?;
    ensure_error(
        within("the reply", a.update_room(rename(&"y".repeat(201)))).await?,
        ErrorCode::TooLarge,
        Some("name"),
    )
}

async fn create_idempotent(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let req = v1::CreateGroupRequest {
        client_request_id: "cr-1".into(),
        ..create_req("once")
    };
    let first = within("CreateGroupResponse", a.create_group(req.clone()))
        .await??
        .room
        .unwrap_or_default();
    let again = within("CreateGroupResponse", a.create_group(req))
        .await??
        .room
        .unwrap_or_default();
    ensure_eq(
        "room id of the repeat",
        first.id.as_str(),
        again.id.as_str(),
    )?;
    let (events, page) = super::subscribe_all(&a, &first.id, 0).await?;
    ensure_eq("head after the repeat", first.last_seq, page.head_seq)?;
    let created = events
        .iter()
        .filter(|e| matches!(e.kind, Some(v1::room_event::Kind::RoomCreated(_))))
        .count();
    ensure_eq("RoomCreated events", 1, created)?;
    let mut rooms = 0;
    let mut cursor = String::new();
    loop {
        let page = within(
            "SyncResponse",
            a.sync(v1::SyncRequest {
                cursor: cursor.clone(),
                limit: 0,
            }),
        )
        .await??;
        rooms += page.rooms.len();
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    ensure_eq("rooms of the caller", 1, rooms)
}

async fn permissions(ctx: Ctx) -> Check {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    let denied = ErrorCode::PermissionDenied;
    let update = |room: &str| v1::UpdateRoomRequest {
        room_id: room.to_owned(),
        topic: Some("by bob".into()),
        ..Default::default()
    };
    ensure_error(
        within("the reply", b.update_room(update(&room))).await?,
        denied,
        None,
    )?;
    let remove = |room: &str, user: &str| v1::RemoveMemberRequest {
        room_id: room.to_owned(),
        user_id: user.to_owned(),
    };
    ensure_error(
        within("the reply", b.remove_member(remove(&room, &alice))).await?,
        denied,
        None,
    )?;
    let set_role = |room: &str, user: &str, role: Role| v1::SetRoleRequest {
        room_id: room.to_owned(),
        user_id: user.to_owned(),
        role: role as i32,
    };
    ensure_error(
        within("the reply", b.set_role(set_role(&room, &bob, Role::Admin))).await?,
        denied,
        None,
    )?;
    let add = |room: &str, role: Role| v1::AddMembersRequest {
        room_id: room.to_owned(),
        user_ids: vec![carol.clone()],
        role: role as i32,
    };
    ensure_error(
        within("the reply", b.add_members(add(&room, Role::Admin))).await?,
        denied,
        None,
    )?;
    let pre = ErrorCode::FailedPrecondition;
    ensure_error(
        within(
            "the reply",
            a.set_role(set_role(&room, &alice, Role::Member)),
        )
        .await?,
        pre,
        None,
    )?;
    let leave = |room: &str| v1::LeaveRoomRequest {
        room_id: room.to_owned(),
    };
    ensure_error(
        within("the reply", a.leave_room(leave(&room))).await?,
        pre,
        None,
    )?;
    // ROLE_UNSPECIFIED in a request means ROLE_MEMBER.
    let added = within(
        "AddMembersResponse",
        a.add_members(add(&room, Role::Unspecified)),
    )
    .await??;
    let roles: Vec<Role> = added.added.iter().map(|m| m.role()).collect();
    ensure_eq(
        "role of a member added with ROLE_UNSPECIFIED",
        vec![Role::Member],
        roles,
    )?;
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
        within("the reply", a.update_room(update(&direct))).await?,
        pre,
        None,
    )?;
    ensure_error(
        within("the reply", a.add_members(add(&direct, Role::Member))).await?,
        pre,
        None,
    )?;
    ensure_error(
        within("the reply", a.remove_member(remove(&direct, &bob))).await?,
        pre,
        None,
    )?;
    ensure_error(
        within(
            "the reply",
            a.set_role(set_role(&direct, &bob, Role::Admin)),
        )
        .await?,
        pre,
        None,
    )?;
    ensure_error(
        within("the reply", a.leave_room(leave(&direct))).await?,
        pre,
        None,
    )
}

async fn visibility(ctx: Ctx) -> Check {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let a = ctx.client(&alice).await?;
    let c = ctx.client(&carol).await?;
    let room = super::group(&a, &[&bob]).await?;
    let before = super::send(&a, &room, "v-1", "before carol").await?;
    let added = within(
        "AddMembersResponse",
        a.add_members(v1::AddMembersRequest {
            room_id: room.clone(),
            user_ids: vec![carol.clone()],
            role: 0,
        }),
    )
    .await??;
    let joined = added.added.first().map_or(0, |m| m.joined_seq);
    let preview = sync_summary(&c, &room).await?.last_message;
    ensure(
        preview.is_none(),
        "no Sync preview of a message sent before carol joined (R-11.1.5)",
        &preview,
    )?;
    let (events, _) = super::subscribe_all(&a, &room, 0).await?;
    let joined_event = events
        .iter()
        .rev()
        .find(|e| matches!(&e.kind, Some(v1::room_event::Kind::MemberJoined(j)) if j.user_id == carol))
        .map(|e| e.seq);
    ensure_eq(
        "carol's joined_seq (her MemberJoined seq)",
        joined_event,
        Some(joined),
    )?;
    let members = within(
        "ListMembersResponse",
        a.list_members(v1::ListMembersRequest {
            room_id: room.clone(),
            ..Default::default()
        }),
    )
    .await??;
    for member in &members.members {
        let want = if member.user_id == carol { joined } else { 1 };
        ensure_eq(
            &format!("joined_seq of {}", member.user_id),
            want,
            member.joined_seq,
        )?;
    }
    super::send(&a, &room, "v-2", "after carol").await?;
    let history = |position| v1::HistoryRequest {
        room_id: room.clone(),
        position,
        limit: 0,
        thread_root_seq: 0,
    };
    use v1::history_request::Position;
    let page = within(
        "HistoryResponse",
        c.history(history(Some(Position::BeforeSeq(joined + 10)))),
    )
    .await??;
    ensure_eq(
        "first_visible_seq in History",
        joined,
        page.first_visible_seq,
    )?;
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    ensure(
        seqs.iter().all(|s| *s >= joined) && !page.has_more,
        format!("only messages at or after seq {joined}, has_more false"),
        (&seqs, page.has_more),
    )?;
    let sub = within(
        "SubscribeResponse",
        c.subscribe(v1::SubscribeRequest {
            room_id: room.clone(),
            after_seq: 0,
            limit: 0,
        }),
    )
    .await??;
    ensure_eq(
        "first_visible_seq in Subscribe",
        joined,
        sub.first_visible_seq,
    )?;
    let seqs: Vec<u64> = sub.events.iter().map(|e| e.seq).collect();
    ensure(
        seqs.first() == Some(&joined),
        format!("replay starting at seq {joined}"),
        &seqs,
    )?;
    let summary = sync_summary(&c, &room).await?;
    ensure_eq(
        "carol's Sync preview: the message after her join",
        Some("after carol"),
        summary.last_message.as_ref().map(|m| m.text.as_str()),
    )?;
    ensure_eq(
        "carol's (read_seq, delivered_seq, unread_count) before she reads",
        (joined - 1, joined - 1, 1),
        (
            summary.read_seq,
            summary.delivered_seq,
            summary.unread_count,
        ),
    )?;
    within(
        "UpdateRoomResponse",
        a.update_room(v1::UpdateRoomRequest {
            room_id: room.clone(),
            history_visibility: Some(v1::HistoryVisibility::Full as i32),
            ..Default::default()
        }),
    )
    .await??;
    let full = within("HistoryResponse", c.history(history(None))).await??;
    ensure_eq("first_visible_seq after FULL", 1, full.first_visible_seq)?;
    ensure(
        full.messages.iter().any(|m| m.seq == before.seq),
        "the message from before carol joined",
        &full.messages,
    )
}

async fn sync_summary(client: &Client, room: &str) -> Check<v1::RoomSummary> {
    let mut cursor = String::new();
    loop {
        let page = within(
            "SyncResponse",
            client.sync(v1::SyncRequest {
                cursor: cursor.clone(),
                limit: 0,
            }),
        )
        .await??;
        if let Some(found) = page
            .rooms
            .into_iter()
            .find(|s| s.room.as_ref().is_some_and(|r| r.id == room))
        {
            return Ok(found);
        }
        if page.next_cursor.is_empty() {
            return Err(Failure::new("the room in Sync", "not listed"));
        }
        cursor = page.next_cursor;
    }
}

async fn removal(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let live = ctx.client(&bob).await?;
    let other = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    super::subscribe_all(&live, &room, 0).await?;
    let removed = within(
        "RemoveMemberResponse",
        a.remove_member(v1::RemoveMemberRequest {
            room_id: room.clone(),
            user_id: bob.clone(),
        }),
    )
    .await??;
    let mut last_room_event = None;
    let gone = loop {
        let event = within("RoomRemoved", live.next_event()).await??;
        match event.kind {
            Some(event::Kind::Room(e)) if e.room_id == room => last_room_event = Some(e),
            Some(event::Kind::RoomRemoved(r)) if r.room_id == room => break r,
            _ => {}
        }
    };
    let last =
        last_room_event.ok_or_else(|| Failure::new("MemberLeft before RoomRemoved", "none"))?;
    ensure(
        last.seq == removed.seq
            && matches!(&last.kind, Some(v1::room_event::Kind::MemberLeft(l)) if l.user_id == bob),
        format!(
            "the last room event is MemberLeft for bob at seq {}",
            removed.seq
        ),
        &last,
    )?;
    ensure(
        gone.seq == removed.seq && gone.reason() == v1::LeaveReason::Removed,
        format!("RoomRemoved with reason REMOVED and seq {}", removed.seq),
        &gone,
    )?;
    loop {
        let event = within("RoomRemoved on bob's other session", other.next_event()).await??;
        if let Some(event::Kind::RoomRemoved(r)) = event.kind
            && r.room_id == room
        {
            ensure_eq("seq in RoomRemoved", removed.seq, r.seq)?;
            break;
        }
    }
    super::send(&a, &room, "rm-1", "after bob").await?;
    super::barrier(&a).await?;
    super::barrier(&live).await?;
    let leaked = std::iter::from_fn(|| live.try_next_event())
        .find(|e| matches!(&e.kind, Some(event::Kind::Room(r)) if r.room_id == room));
    ensure(leaked.is_none(), "no room event after RoomRemoved", leaked)?;
    ensure_error(
        within("the reply", live.send(super::send_req(&room, "rm-2", "hi"))).await?,
        ErrorCode::NotFound,
        None,
    )?;
    let sub = within(
        "the reply",
        live.subscribe(v1::SubscribeRequest {
            room_id: room,
            after_seq: 0,
            limit: 0,
        }),
    )
    .await?;
    ensure_error(sub, ErrorCode::NotFound, None)
}

async fn room_list_events(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b1 = ctx.client(&bob).await?;
    let b2 = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    within(
        "UpdateRoomResponse",
        a.update_room(v1::UpdateRoomRequest {
            room_id: room.clone(),
            name: Some("changed".into()),
            ..Default::default()
        }),
    )
    .await??;
    for (who, client) in [("alice", &a), ("bob 1", &b1), ("bob 2", &b2)] {
        loop {
            let event = within(
                &format!("RoomChanged on {who}'s session"),
                client.next_event(),
            )
            .await??;
            if let Some(event::Kind::RoomChanged(changed)) = event.kind
                && let Some(r) = changed.room
                && r.id == room
            {
                ensure_eq("name in RoomChanged", "changed", r.name.as_str())?;
                break;
            }
        }
    }
    let sent = super::send(&a, &room, "ra-1", "activity").await?;
    loop {
        let event = within("RoomActivity on bob's session", b1.next_event()).await??;
        if let Some(event::Kind::RoomActivity(activity)) = event.kind
            && activity.room_id == room
            && activity.last_seq == sent.seq
        {
            let preview = activity.last_message.unwrap_or_default();
            return ensure(
                preview.seq == sent.seq && preview.text == "activity" && activity.unread_count == 1,
                "RoomActivity with the head, the message preview and unread_count 1",
                (preview, activity.unread_count),
            );
        }
    }
}

async fn sync_paging(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(super::group(&a, &[]).await?);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for page_no in 0..10 {
        let page = within(
            "SyncResponse",
            a.sync(v1::SyncRequest {
                cursor: cursor.clone(),
                limit: 1,
            }),
        )
        .await??;
        seen.extend(
            page.rooms
                .iter()
                .filter_map(|s| s.room.as_ref().map(|r| r.id.clone())),
        );
        ensure_eq(
            "caught_up == (next_cursor is empty)",
            page.caught_up,
            page.next_cursor.is_empty(),
        )?;
        if page.caught_up {
            break;
        }
        if page_no == 0 {
            // Activity in every room during the walk must not move any of them.
            for (n, room) in rooms.iter().enumerate() {
                super::send(&a, room, &format!("sp-{n}"), "activity").await?;
            }
        }
        cursor = page.next_cursor;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    let mut want = rooms;
    want.sort();
    ensure_eq("rooms over the walk, each once", want, sorted)
}

async fn direct_senders(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let opened = within(
        "OpenDirectResponse",
        a.open_direct(v1::OpenDirectRequest {
            user_id: bob.clone(),
        }),
    )
    .await??;
    let room = opened.room.unwrap_or_default().id;
    let (events, _) = super::subscribe_all(&a, &room, 0).await?;
    let got: Vec<(u64, &str, Option<String>)> = events
        .iter()
        .take(3)
        .map(|e| {
            let joined = match &e.kind {
                Some(v1::room_event::Kind::MemberJoined(j)) => Some(j.user_id.clone()),
                _ => None,
            };
            (e.seq, e.sender.as_str(), joined)
        })
        .collect();
    let want = vec![
        (1, alice.as_str(), None),
        (2, alice.as_str(), Some(alice.clone())),
        (3, alice.as_str(), Some(bob)),
    ];
    ensure_eq("(seq, sender, member joined) of seqs 1-3", want, got)
}

async fn default_member_cap(ctx: Ctx) -> Check {
    let (a, connected) = ctx.session(&ctx.user("alice")).await?;
    let max = connected.limits.unwrap_or_default().max_group_members;
    let created = within(
        "CreateGroupResponse",
        a.create_group(v1::CreateGroupRequest {
            name: "cap".into(),
            member_cap: 0,
            ..Default::default()
        }),
    )
    .await??;
    let cap = created.room.map(|r| r.member_cap);
    ensure_eq("Room.member_cap", Some(max), cap)
}
