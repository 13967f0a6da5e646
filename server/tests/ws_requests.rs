//! Every request of protocol v1 used as an app would use it, over real WebSockets on the
//! embedded default, with its effect asserted: the reply, the room log, and the events other
//! sessions receive. Requirement tags (R-x.y.z) refer to docs/protocol.md.

mod support;

use chatwire_conformance::client::Client;
use chatwire_protocol::v1;
use support::server::{
    TestServer, code_of, group, head, history, refused, room_kinds, send, seqs, subscribe_from,
    subscribe_live, texts, wait_for, within,
};
use v1::ErrorCode;
use v1::event::Kind as Ev;
use v1::history_request::Position;
use v1::room_event::Kind as Log;

// ---------------------------------------------------------------------------------------------
// Small builders and readers local to these tests.

async fn sent(client: &Client, room: &str, id: &str, body: &str) -> v1::SendResponse {
    within(client.send(send(room, id, body)))
        .await
        .expect("send")
}

fn room_added(kind: &Ev) -> Option<v1::RoomAdded> {
    match kind {
        Ev::RoomAdded(added) => Some(added.clone()),
        _ => None,
    }
}

fn room_removed(kind: &Ev) -> Option<v1::RoomRemoved> {
    match kind {
        Ev::RoomRemoved(removed) => Some(removed.clone()),
        _ => None,
    }
}

/// The next room event of `room` on the client.
async fn next_log(client: &Client, room: &str) -> v1::RoomEvent {
    wait_for(client, |kind| match kind {
        Ev::Room(event) if event.room_id == room => Some(event.clone()),
        _ => None,
    })
    .await
    .1
}

async fn add(
    client: &Client,
    room: &str,
    users: &[&str],
    role: v1::Role,
) -> v1::AddMembersResponse {
    client
        .add_members(v1::AddMembersRequest {
            room_id: room.to_owned(),
            user_ids: users.iter().map(|u| (*u).to_owned()).collect(),
            role: role.into(),
        })
        .await
        .expect("add members")
}

fn set_role(room: &str, user: &str, role: v1::Role) -> v1::SetRoleRequest {
    v1::SetRoleRequest {
        room_id: room.to_owned(),
        user_id: user.to_owned(),
        role: role.into(),
    }
}

fn get(room: &str) -> v1::GetRoomRequest {
    v1::GetRoomRequest {
        room_id: room.to_owned(),
    }
}

async fn messages(client: &Client, room: &str) -> Vec<v1::Message> {
    history(client, room, None, 100).await.messages
}

async fn message_at(client: &Client, room: &str, seq: u64) -> v1::Message {
    messages(client, room)
        .await
        .into_iter()
        .find(|m| m.seq == seq)
        .expect("message in history")
}

fn react(room: &str, seq: u64, emoji: &str, add: bool) -> v1::ReactRequest {
    v1::ReactRequest {
        room_id: room.to_owned(),
        target_seq: seq,
        emoji: emoji.to_owned(),
        add,
    }
}

async fn sync_all(client: &Client, limit: u32) -> Vec<v1::SyncResponse> {
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .sync(v1::SyncRequest {
                cursor: cursor.clone(),
                limit,
            })
            .await
            .expect("sync");
        cursor = page.next_cursor.clone();
        let done = page.caught_up;
        pages.push(page);
        if done {
            return pages;
        }
        assert!(pages.len() < 100, "Sync must reach caught_up");
    }
}

async fn summary(client: &Client, room: &str) -> v1::RoomSummary {
    sync_all(client, 0)
        .await
        .into_iter()
        .flat_map(|page| page.rooms)
        .find(|s| s.room.as_ref().is_some_and(|r| r.id == room))
        .expect("room in Sync")
}

fn invite() -> Option<v1::CallSignal> {
    Some(v1::CallSignal {
        kind: Some(v1::call_signal::Kind::Invite(v1::CallInvite {
            video: true,
        })),
    })
}

fn call(room: &str, target: &str, target_session: &str) -> v1::CallSignalRequest {
    v1::CallSignalRequest {
        call_id: "call-1".into(),
        room_id: room.to_owned(),
        target_user_id: target.to_owned(),
        target_session_id: target_session.to_owned(),
        signal: invite(),
    }
}

fn call_received(kind: &Ev) -> Option<v1::CallSignalReceived> {
    match kind {
        Ev::CallSignalReceived(call) => Some(call.clone()),
        _ => None,
    }
}

async fn presence(watcher: &Client, user: &str) -> v1::Presence {
    let mut reply = watcher
        .watch_presence(v1::WatchPresenceRequest {
            user_ids: vec![user.to_owned()],
            room_id: String::new(),
        })
        .await
        .expect("watch presence");
    assert_eq!(reply.presences.len(), 1);
    reply.presences.remove(0)
}

// ---------------------------------------------------------------------------------------------
// Rooms and membership (section 6).

#[tokio::test]
async fn create_group_logs_creation_and_adds_every_member_on_their_user_stream() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob", "carol", "bob", "alice"]).await;

    let (_, added) = wait_for(&bob, room_added).await;
    let added_room = added.room.expect("room");
    assert_eq!(added_room.id, room);
    assert_eq!(added_room.kind(), v1::RoomKind::Group);
    let me = added.me.expect("member");
    assert_eq!((me.user_id.as_str(), me.role()), ("bob", v1::Role::Member));
    assert_eq!(me.joined_seq, 1, "creation members read the whole log");
    let (_, own) = wait_for(&alice, room_added).await;
    assert_eq!(own.me.expect("member").role(), v1::Role::Owner);

    let log = subscribe_live(&bob, &room).await;
    assert_eq!(seqs_of(&log), vec![1, 2, 3, 4]);
    assert!(matches!(&log[0].kind, Some(Log::RoomCreated(_))));
    let joined: Vec<(String, v1::Role)> = log[1..]
        .iter()
        .map(|e| match &e.kind {
            Some(Log::MemberJoined(j)) => (j.user_id.clone(), j.role()),
            other => panic!("expected MemberJoined, got {other:?}"),
        })
        .collect();
    assert_eq!(
        joined,
        vec![
            ("alice".to_owned(), v1::Role::Owner),
            ("bob".to_owned(), v1::Role::Member),
            ("carol".to_owned(), v1::Role::Member),
        ],
        "owner first, then members in request order, duplicates and the caller skipped"
    );
    server.stop().await;
}

fn seqs_of(events: &[v1::RoomEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn open_direct_names_one_room_from_both_sides_and_creates_it_once() {
    // R-6.1.2 (Appendix A.4), R-6.2.4, R-6.2.5
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let direct = |user: &str| v1::OpenDirectRequest {
        user_id: user.to_owned(),
    };
    let first = alice.open_direct(direct("bob")).await.expect("open");
    let second = bob.open_direct(direct("alice")).await.expect("open");
    let again = alice.open_direct(direct("bob")).await.expect("open");
    let id = first.room.expect("room").id;
    assert_eq!(
        id,
        "d.884a452152d3bf048cc051df8f708aff3f854a3db0876f4e9f429effa3a09a27"
    );
    assert_eq!(second.room.expect("room").id, id);
    assert_eq!(again.room.expect("room").id, id);
    assert_eq!(
        (first.created, second.created, again.created),
        (true, false, false)
    );
    let (_, added) = wait_for(&bob, room_added).await;
    assert_eq!(added.room.expect("room").id, id);
    let log = subscribe_live(&alice, &id).await;
    assert_eq!(seqs_of(&log), vec![1, 2, 3], "created exactly once");

    assert_eq!(
        code_of(alice.open_direct(direct("alice")).await),
        ErrorCode::InvalidArgument
    );
    let carol = server.client("carol").await;
    carol
        .block_user(v1::BlockUserRequest {
            user_id: "dave".into(),
        })
        .await
        .expect("block");
    let dave = server.client("dave").await;
    assert_eq!(
        code_of(dave.open_direct(direct("carol")).await),
        ErrorCode::PermissionDenied,
        "blocked by the other user"
    );
    assert_eq!(
        code_of(carol.open_direct(direct("dave")).await),
        ErrorCode::PermissionDenied,
        "blocking the other user"
    );
    server.stop().await;
}

#[tokio::test]
async fn get_room_returns_the_room_its_head_and_my_membership() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    let last = sent(&alice, &room, "m1", "hi").await.seq;
    let reply = bob.get_room(get(&room)).await.expect("get room");
    let info = reply.room.expect("room");
    assert_eq!(
        (
            info.name.as_str(),
            info.kind(),
            info.member_count,
            info.last_seq
        ),
        ("general", v1::RoomKind::Group, 2, last)
    );
    assert_eq!(info.created_by, "alice");
    let me = reply.me.expect("me");
    assert_eq!((me.user_id.as_str(), me.role()), ("bob", v1::Role::Member));
    let carol = server.client("carol").await;
    assert_eq!(
        code_of(carol.get_room(get(&room)).await),
        ErrorCode::NotFound
    );
    server.stop().await;
}

#[tokio::test]
async fn update_room_tells_every_member_and_logs_room_updated_once() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    let update = |name: &str| v1::UpdateRoomRequest {
        room_id: room.clone(),
        name: Some(name.to_owned()),
        topic: Some("plans".into()),
        ..Default::default()
    };
    let changed = alice.update_room(update("renamed")).await.expect("update");
    assert!(changed.seq > 0);
    assert_eq!(changed.room.expect("room").name, "renamed");

    let (_, room_changed) = wait_for(&bob, |kind| match kind {
        Ev::RoomChanged(c) => Some(c.room.clone().expect("room")),
        _ => None,
    })
    .await;
    assert_eq!(
        (
            room_changed.id.as_str(),
            room_changed.name.as_str(),
            room_changed.topic.as_str()
        ),
        (room.as_str(), "renamed", "plans")
    );
    let log = subscribe_from(&bob, &room, changed.seq - 1).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].seq, changed.seq);
    match &log[0].kind {
        Some(Log::RoomUpdated(u)) => assert_eq!(u.room.as_ref().expect("room").name, "renamed"),
        other => panic!("expected RoomUpdated, got {other:?}"),
    }

    let same = alice.update_room(update("renamed")).await.expect("no-op");
    assert_eq!(same.seq, 0, "nothing changed, nothing logged");
    assert_eq!(head(&alice, &room).await, changed.seq);
    assert_eq!(
        code_of(bob.update_room(update("mine")).await),
        ErrorCode::PermissionDenied,
        "members do not change settings"
    );
    server.stop().await;
}

#[tokio::test]
async fn list_members_pages_by_user_id() {
    // section 6 (ListMembers pages by user id, like GetReceipts in)
    let server = TestServer::start().await;
    let owner = server.client("owner").await;
    let room = group(&owner, &["u3", "u1", "u5", "u2", "u4"]).await;
    let mut after = String::new();
    let mut pages = Vec::new();
    loop {
        let page = owner
            .list_members(v1::ListMembersRequest {
                room_id: room.clone(),
                after_user_id: after.clone(),
                limit: 2,
            })
            .await
            .expect("list members");
        assert!(page.members.len() <= 2);
        after = page
            .members
            .last()
            .map(|m| m.user_id.clone())
            .unwrap_or_default();
        let more = page.has_more;
        pages.push(
            page.members
                .iter()
                .map(|m| m.user_id.clone())
                .collect::<Vec<_>>(),
        );
        if !more {
            break;
        }
    }
    assert_eq!(
        pages,
        vec![
            vec!["owner".to_owned(), "u1".to_owned()],
            vec!["u2".to_owned(), "u3".to_owned()],
            vec!["u4".to_owned(), "u5".to_owned()],
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn add_members_is_for_admins_and_only_owners_add_admins() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let room = group(&alice, &["bob"]).await;

    let request = |users: &[&str], role: v1::Role| v1::AddMembersRequest {
        room_id: room.clone(),
        user_ids: users.iter().map(|u| (*u).to_owned()).collect(),
        role: role.into(),
    };
    assert_eq!(
        code_of(bob.add_members(request(&["carol"], v1::Role::Member)).await),
        ErrorCode::PermissionDenied,
        "plain members do not invite without member-invites"
    );
    let added = add(&alice, &room, &["carol", "bob"], v1::Role::Unspecified).await;
    assert_eq!(added.added.len(), 1, "existing members are skipped");
    let carol_member = &added.added[0];
    assert_eq!(
        (carol_member.user_id.as_str(), carol_member.role()),
        ("carol", v1::Role::Member)
    );
    let (_, carol_added) = wait_for(&carol, room_added).await;
    assert_eq!(carol_added.room.expect("room").id, room);
    assert_eq!(
        carol_added.me.expect("me").joined_seq,
        carol_member.joined_seq
    );
    let joined = subscribe_from(&alice, &room, carol_member.joined_seq - 1).await;
    assert!(matches!(&joined[0].kind,
        Some(Log::MemberJoined(j)) if j.user_id == "carol" && joined[0].sender == "alice"));

    alice
        .set_role(set_role(&room, "bob", v1::Role::Admin))
        .await
        .expect("promote");
    add(&bob, &room, &["dave"], v1::Role::Member).await;
    assert_eq!(
        code_of(bob.add_members(request(&["erin"], v1::Role::Admin)).await),
        ErrorCode::PermissionDenied,
        "only owners add admins"
    );
    let erin = add(&alice, &room, &["erin"], v1::Role::Admin).await;
    assert_eq!(erin.added[0].role(), v1::Role::Admin);
    let owner = refused(
        alice
            .add_members(request(&["frank"], v1::Role::Owner))
            .await,
    );
    assert_eq!(
        (owner.code(), owner.field.as_str()),
        (ErrorCode::InvalidArgument, "role")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_removed_member_is_told_last_and_hears_nothing_more_from_the_room() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    subscribe_live(&bob, &room).await;
    let remove = |user: &str| v1::RemoveMemberRequest {
        room_id: room.clone(),
        user_id: user.to_owned(),
    };
    let removed_seq = alice
        .remove_member(remove("bob"))
        .await
        .expect("remove")
        .seq;

    let (before, removed) = wait_for(&bob, room_removed).await;
    assert_eq!(
        (removed.room_id.as_str(), removed.reason(), removed.seq),
        (room.as_str(), v1::LeaveReason::Removed, removed_seq)
    );
    let last = room_kinds(&before, &room)
        .pop()
        .expect("MemberLeft came first");
    assert!(
        matches!(&last, Log::MemberLeft(l) if l.user_id == "bob" && l.reason() == v1::LeaveReason::Removed),
        "MemberLeft about bob is the last room event before RoomRemoved, got {last:?}"
    );
    assert_eq!(
        code_of(
            bob.history(v1::HistoryRequest {
                room_id: room.clone(),
                ..Default::default()
            })
            .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        code_of(alice.remove_member(remove("bob")).await),
        ErrorCode::NotFound,
        "a repeat is NOT_FOUND"
    );
    assert_eq!(
        code_of(alice.remove_member(remove("alice")).await),
        ErrorCode::InvalidArgument
    );

    // The room goes on without bob; adding him back is the marker that everything before it
    // was fanned out, and nothing of the room may reach him in between.
    sent(&alice, &room, "after", "bob is gone").await;
    let rejoined = add(&alice, &room, &["bob"], v1::Role::Member).await;
    let (between, _) = wait_for(&bob, room_added).await;
    assert!(
        between
            .iter()
            .all(|kind| !matches!(kind, Ev::Room(e) if e.room_id == room)
                && !matches!(kind, Ev::RoomActivity(a) if a.room_id == room)),
        "no event of the room after RoomRemoved: {between:?}"
    );
    let page = history(&bob, &room, None, 100).await;
    assert_eq!(page.first_visible_seq, rejoined.added[0].joined_seq);
    assert!(
        page.messages.is_empty(),
        "the message sent while away is before the new join"
    );
    server.stop().await;
}

#[tokio::test]
async fn set_role_is_for_owners_and_never_leaves_a_group_without_one() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob", "carol"]).await;

    let promoted = alice
        .set_role(set_role(&room, "bob", v1::Role::Admin))
        .await
        .expect("set role");
    assert!(promoted.seq > 0);
    let log = subscribe_from(&alice, &room, promoted.seq - 1).await;
    assert!(matches!(&log[0].kind,
        Some(Log::MemberRoleChanged(c)) if c.user_id == "bob" && c.role() == v1::Role::Admin));
    let same = alice
        .set_role(set_role(&room, "bob", v1::Role::Admin))
        .await
        .expect("no-op");
    assert_eq!(same.seq, 0);
    assert_eq!(
        code_of(
            bob.set_role(set_role(&room, "carol", v1::Role::Admin))
                .await
        ),
        ErrorCode::PermissionDenied,
        "admins do not change roles"
    );
    assert_eq!(
        code_of(
            alice
                .set_role(set_role(&room, "alice", v1::Role::Member))
                .await
        ),
        ErrorCode::FailedPrecondition,
        "the last owner cannot step down"
    );
    alice
        .set_role(set_role(&room, "bob", v1::Role::Owner))
        .await
        .expect("second owner");
    alice
        .set_role(set_role(&room, "alice", v1::Role::Member))
        .await
        .expect("now she can");
    let me = alice
        .get_room(get(&room))
        .await
        .expect("get room")
        .me
        .expect("me");
    assert_eq!(me.role(), v1::Role::Member);
    server.stop().await;
}

#[tokio::test]
async fn leave_room_removes_the_caller_and_the_last_owner_must_stay() {
    // section 8.8 (a repeat is NOT_FOUND)
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    let leave = || v1::LeaveRoomRequest {
        room_id: room.clone(),
    };
    assert_eq!(
        code_of(alice.leave_room(leave()).await),
        ErrorCode::FailedPrecondition
    );
    let left = bob.leave_room(leave()).await.expect("leave").seq;
    let (_, removed) = wait_for(&bob, room_removed).await;
    assert_eq!(
        (removed.reason(), removed.seq),
        (v1::LeaveReason::Left, left)
    );
    let log = subscribe_from(&alice, &room, left - 1).await;
    assert!(matches!(&log[0].kind,
        Some(Log::MemberLeft(l)) if l.user_id == "bob" && l.reason() == v1::LeaveReason::Left));
    assert_eq!(code_of(bob.leave_room(leave()).await), ErrorCode::NotFound);
    alice
        .leave_room(leave())
        .await
        .expect("the last member may leave");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Messages (section 8) and History (section 9).

#[tokio::test]
async fn replies_and_threads_are_linked_and_history_lists_a_thread() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    subscribe_live(&bob, &room).await;
    let root = sent(&alice, &room, "root", "lunch?").await.seq;
    let reply = bob
        .send(v1::SendRequest {
            reply_to_seq: root,
            ..send(&room, "re", "yes")
        })
        .await
        .expect("reply");
    let thread = |id: &str, body: &str| v1::SendRequest {
        thread_root_seq: root,
        ..send(&room, id, body)
    };
    let t1 = bob.send(thread("t1", "where?")).await.expect("thread").seq;
    let t2 = alice
        .send(thread("t2", "the usual"))
        .await
        .expect("thread")
        .seq;

    let live: Vec<v1::RoomEvent> = support::server::room_events(&bob, 4).await;
    let created: Vec<(u64, u64, u64)> = live
        .iter()
        .map(|e| match &e.kind {
            Some(Log::MessageCreated(m)) => (e.seq, m.reply_to_seq, m.thread_root_seq),
            other => panic!("expected MessageCreated, got {other:?}"),
        })
        .collect();
    assert_eq!(
        created,
        vec![
            (root, 0, 0),
            (reply.seq, root, 0),
            (t1, 0, root),
            (t2, 0, root)
        ]
    );

    let root_message = message_at(&bob, &room, root).await;
    assert_eq!(root_message.thread_reply_count, 2);
    let in_thread = bob
        .history(v1::HistoryRequest {
            room_id: room.clone(),
            thread_root_seq: root,
            ..Default::default()
        })
        .await
        .expect("thread history");
    assert_eq!(
        seqs(&in_thread.messages),
        vec![t2, t1],
        "only the replies, newest first"
    );

    let missing = bob.send(v1::SendRequest {
        reply_to_seq: 999,
        ..send(&room, "x", "?")
    });
    assert_eq!(code_of(missing.await), ErrorCode::NotFound);
    let nested = refused(
        bob.send(v1::SendRequest {
            thread_root_seq: t1,
            ..send(&room, "y", "?")
        })
        .await,
    );
    assert_eq!(
        (nested.code(), nested.field.as_str()),
        (ErrorCode::InvalidArgument, "thread_root_seq")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_missing_target_message_is_not_found_naming_the_field() {
    // R-8.4.1 (field "reply_to_seq"), R-8.5.1 (field "target_seq"), R-5.6.3
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let room = group(&alice, &[]).await;
    let reply = refused(
        alice
            .send(v1::SendRequest {
                reply_to_seq: 999,
                ..send(&room, "x", "?")
            })
            .await,
    );
    assert_eq!(
        (reply.code(), reply.field.as_str()),
        (ErrorCode::NotFound, "reply_to_seq")
    );
    let edit = refused(
        alice
            .edit(v1::EditRequest {
                room_id: room.clone(),
                target_seq: 999,
                content: support::server::text("?"),
            })
            .await,
    );
    assert_eq!(
        (edit.code(), edit.field.as_str()),
        (ErrorCode::NotFound, "target_seq")
    );
    server.stop().await;
}

#[tokio::test]
async fn edit_is_for_the_author_and_history_shows_the_new_content() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    let target = sent(&alice, &room, "m", "helo").await.seq;
    subscribe_from(&bob, &room, target).await;
    let edit = |body: &str| v1::EditRequest {
        room_id: room.clone(),
        target_seq: target,
        content: support::server::text(body),
    };
    let edited = alice.edit(edit("hello")).await.expect("edit");
    assert!(edited.seq > target);
    let event = next_log(&bob, &room).await;
    assert_eq!((event.seq, event.ts_ms), (edited.seq, edited.edited_at_ms));
    assert!(matches!(&event.kind,
        Some(Log::MessageEdited(e)) if e.target_seq == target
            && e.content.as_ref().is_some_and(|c| c.text == "hello")));

    let message = message_at(&bob, &room, target).await;
    assert_eq!(message.content.expect("content").text, "hello");
    assert_eq!(message.edited_at_ms, edited.edited_at_ms);

    let same = alice.edit(edit("hello")).await.expect("no-op edit");
    assert_eq!((same.seq, same.edited_at_ms), (0, edited.edited_at_ms));
    assert_eq!(
        code_of(bob.edit(edit("mine now")).await),
        ErrorCode::PermissionDenied
    );
    server.stop().await;
}

#[tokio::test]
async fn delete_redacts_the_message_everywhere_and_keeps_a_tombstone() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    let target = sent(&alice, &room, "secret", "my password is hunter2").await;
    alice
        .edit(v1::EditRequest {
            room_id: room.clone(),
            target_seq: target.seq,
            content: support::server::text("oops, hunter3"),
        })
        .await
        .expect("edit");
    alice
        .react(react(&room, target.seq, "👀", true))
        .await
        .expect("react");
    subscribe_live(&bob, &room).await;
    let delete = |seq: u64| v1::DeleteRequest {
        reason: String::new(),
        room_id: room.clone(),
        target_seq: seq,
    };
    assert_eq!(
        code_of(bob.delete(delete(target.seq)).await),
        ErrorCode::PermissionDenied
    );
    let deleted = alice.delete(delete(target.seq)).await.expect("delete").seq;
    let event = next_log(&bob, &room).await;
    assert_eq!(event.seq, deleted);
    assert!(matches!(&event.kind, Some(Log::MessageDeleted(d)) if d.target_seq == target.seq));

    let tombstone = message_at(&bob, &room, target.seq).await;
    assert!(tombstone.deleted);
    assert!(
        tombstone
            .content
            .is_none_or(|c| c == v1::Content::default())
    );
    assert!(tombstone.reactions.is_empty());
    assert_eq!(
        (
            tombstone.ordinal,
            tombstone.sender.as_str(),
            tombstone.client_msg_id.as_str(),
            tombstone.created_at_ms
        ),
        (target.ordinal, "alice", "secret", target.created_at_ms)
    );
    let replay = subscribe_live(&bob, &room).await;
    for event in &replay {
        match &event.kind {
            Some(Log::MessageCreated(m)) if event.seq == target.seq => {
                assert!(
                    m.redacted && m.content.clone().unwrap_or_default() == v1::Content::default()
                );
                assert_eq!(m.client_msg_id, "secret");
            }
            Some(Log::MessageEdited(e)) => {
                assert!(
                    e.redacted && e.content.clone().unwrap_or_default() == v1::Content::default()
                );
            }
            _ => {}
        }
    }
    assert!(
        replay.iter().any(|e| e.seq == target.seq),
        "the seq is kept"
    );
    assert_eq!(
        alice.delete(delete(target.seq)).await.expect("again").seq,
        0
    );

    // Owners delete anyone's message.
    let bobs = sent(&bob, &room, "b1", "hi").await.seq;
    assert!(alice.delete(delete(bobs)).await.expect("owner deletes").seq > 0);
    server.stop().await;
}

/// A reader beyond the stored sample of user ids (10 per emoji, issue 15 M7) still sees `me`:
/// it comes from the reaction rows, not from the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_holds_for_a_reader_beyond_the_sample_of_user_ids() {
    let server = TestServer::start().await;
    let owner = server.client("owner").await;
    let names: Vec<String> = (0..12).map(|i| format!("fan{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let room = group(&owner, &refs).await;
    let target = sent(&owner, &room, "m", "react to this").await.seq;
    let mut last = None;
    for name in &names {
        let fan = server.client(name).await;
        fan.react(react(&room, target, "👍", true))
            .await
            .expect("react");
        last = Some(fan);
    }
    let last = last.expect("a fan");
    let message = message_at(&last, &room, target).await;
    assert_eq!(message.reactions.len(), 1);
    let thumbs = &message.reactions[0];
    assert_eq!(thumbs.count, 12);
    assert!(thumbs.user_ids.len() <= 10, "{:?}", thumbs.user_ids);
    assert!(
        !thumbs.user_ids.iter().any(|u| u == "fan11"),
        "the last fan is beyond the sample"
    );
    assert!(thumbs.me, "fan11 reacted");
    assert!(!message_at(&owner, &room, target).await.reactions[0].me);
}

#[tokio::test]
async fn reactions_are_events_and_history_aggregates_them_for_the_reader() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let room = group(&alice, &["bob", "carol"]).await;
    let target = sent(&alice, &room, "m", "ship it").await.seq;
    subscribe_from(&carol, &room, target).await;

    let added = alice
        .react(react(&room, target, "👍", true))
        .await
        .expect("react")
        .seq;
    bob.react(react(&room, target, "👍", true))
        .await
        .expect("react");
    bob.react(react(&room, target, "🎉", true))
        .await
        .expect("react");
    let event = next_log(&carol, &room).await;
    assert_eq!(event.seq, added);
    assert!(matches!(&event.kind,
        Some(Log::ReactionChanged(r)) if r.target_seq == target && r.emoji == "👍" && r.added));
    assert_eq!(event.sender, "alice");

    let seen_by = |message: v1::Message| -> Vec<(String, u32, bool)> {
        message
            .reactions
            .into_iter()
            .map(|r| (r.emoji, r.count, r.me))
            .collect()
    };
    assert_eq!(
        seen_by(message_at(&alice, &room, target).await),
        vec![("👍".to_owned(), 2, true), ("🎉".to_owned(), 1, false)]
    );
    assert_eq!(
        seen_by(message_at(&carol, &room, target).await),
        vec![("👍".to_owned(), 2, false), ("🎉".to_owned(), 1, false)]
    );
    assert_eq!(
        alice
            .react(react(&room, target, "👍", true))
            .await
            .expect("again")
            .seq,
        0
    );
    let removed = alice
        .react(react(&room, target, "👍", false))
        .await
        .expect("remove")
        .seq;
    assert!(removed > 0);
    let (_, event) = wait_for(&carol, |kind| match kind {
        Ev::Room(e) if e.seq == removed => Some(e.clone()),
        _ => None,
    })
    .await;
    assert!(matches!(&event.kind, Some(Log::ReactionChanged(r)) if r.emoji == "👍" && !r.added));
    assert_eq!(
        alice
            .react(react(&room, target, "👍", false))
            .await
            .expect("again")
            .seq,
        0
    );
    assert_eq!(
        seen_by(message_at(&alice, &room, target).await),
        vec![("👍".to_owned(), 1, false), ("🎉".to_owned(), 1, false)]
    );
    server.stop().await;
}

#[tokio::test]
async fn history_pages_backwards_and_forwards_with_has_more() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let room = group(&alice, &[]).await;
    let mut all = Vec::new();
    for i in 1..=7 {
        all.push(
            sent(&alice, &room, &format!("m{i}"), &format!("message {i}"))
                .await
                .seq,
        );
    }
    let mut pages = Vec::new();
    let mut position = None;
    loop {
        let page = history(&alice, &room, position, 3).await;
        assert_eq!(page.room_id, room);
        let lowest = *seqs(&page.messages).last().expect("page");
        pages.push((seqs(&page.messages), page.has_more));
        if !page.has_more {
            break;
        }
        position = Some(Position::BeforeSeq(lowest));
    }
    let newest_first: Vec<u64> = all.iter().rev().copied().collect();
    assert_eq!(
        pages,
        vec![
            (newest_first[0..3].to_vec(), true),
            (newest_first[3..6].to_vec(), true),
            (newest_first[6..].to_vec(), false),
        ]
    );
    let forward = history(&alice, &room, Some(Position::AfterSeq(all[1])), 3).await;
    assert_eq!(
        (seqs(&forward.messages), forward.has_more),
        (all[2..5].to_vec(), true)
    );
    let tail = history(&alice, &room, Some(Position::AfterSeq(all[4])), 3).await;
    assert_eq!(
        (seqs(&tail.messages), tail.has_more),
        (all[5..].to_vec(), false)
    );
    assert_eq!(texts(&tail.messages), vec!["message 6", "message 7"]);
    // An explicit before_seq 0 is the newest page, like no position; after_seq 0 the oldest.
    let zero = history(&alice, &room, Some(Position::BeforeSeq(0)), 3).await;
    assert_eq!(
        (seqs(&zero.messages), zero.has_more),
        (newest_first[0..3].to_vec(), true)
    );
    let start = history(&alice, &room, Some(Position::AfterSeq(0)), 3).await;
    assert_eq!(seqs(&start.messages), all[0..3].to_vec());
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Subscribe, Sync, receipts (sections 10-12).

#[tokio::test]
async fn after_unsubscribe_the_room_only_shows_up_as_activity() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    subscribe_live(&alice, &room).await;
    let live = sent(&bob, &room, "m1", "one").await.seq;
    assert_eq!(next_log(&alice, &room).await.seq, live);
    let unsubscribe = |room: &str| v1::UnsubscribeRequest {
        room_id: room.to_owned(),
    };
    let stopped = alice
        .unsubscribe(unsubscribe(&room))
        .await
        .expect("unsubscribe");
    assert_eq!(stopped.last_seq, live);

    let quiet = sent(&bob, &room, "m2", "two").await.seq;
    let (before, activity) = wait_for(&alice, |kind| match kind {
        Ev::RoomActivity(a) if a.room_id == room => Some(a.clone()),
        _ => None,
    })
    .await;
    assert!(
        room_kinds(&before, &room).is_empty(),
        "no room event after Unsubscribe"
    );
    assert_eq!(activity.last_seq, quiet);

    assert_eq!(
        alice
            .unsubscribe(unsubscribe(&room))
            .await
            .expect("again")
            .last_seq,
        0
    );
    let carol = server.client("carol").await;
    assert_eq!(
        code_of(carol.unsubscribe(unsubscribe(&room)).await),
        ErrorCode::NotFound
    );
    server.stop().await;
}

#[tokio::test]
async fn sync_pages_every_room_once_with_unread_counts_by_ordinal() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(group(&bob, &["alice"]).await);
    }
    let busy = &rooms[0];
    let first = sent(&bob, busy, "m1", "one").await;
    sent(&bob, busy, "m2", "two").await;
    let third = sent(&bob, busy, "m3", "three").await;

    let pages = sync_all(&alice, 2).await;
    assert_eq!(pages.len(), 2);
    assert!(!pages[0].caught_up && !pages[0].next_cursor.is_empty());
    assert!(pages[1].caught_up && pages[1].next_cursor.is_empty());
    let ids: Vec<String> = pages
        .iter()
        .flat_map(|p| p.rooms.iter().map(|s| s.room.clone().expect("room").id))
        .collect();
    let mut sorted = rooms.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "every room once, by room id");

    let mine = summary(&alice, busy).await;
    assert_eq!(mine.role(), v1::Role::Member);
    assert_eq!(
        (mine.last_seq, mine.last_ordinal, mine.unread_count),
        (third.seq, 3, 3)
    );
    let preview = mine.last_message.expect("preview");
    assert_eq!(
        (preview.seq, preview.sender.as_str(), preview.text.as_str()),
        (third.seq, "bob", "three")
    );
    let senders = summary(&bob, busy).await;
    assert_eq!(
        (senders.read_seq, senders.unread_count),
        (third.seq, 0),
        "sending reads up to it"
    );

    let read = alice
        .mark_read(v1::MarkReadRequest {
            room_id: busy.clone(),
            seq: first.seq,
        })
        .await
        .expect("mark read");
    assert_eq!((read.read_seq, read.unread_count), (first.seq, 2));
    let after = summary(&alice, busy).await;
    assert_eq!((after.read_seq, after.unread_count), (first.seq, 2));
    let quiet = summary(&alice, &rooms[1]).await;
    assert_eq!((quiet.unread_count, quiet.last_message), (0, None));
    server.stop().await;
}

#[tokio::test]
async fn receipts_are_monotonic_and_fanned_out_to_members_and_other_devices() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let bob_phone = server.client("bob").await;
    let room = group(&alice, &["bob", "carol"]).await;
    for client in [&alice, &bob, &bob_phone] {
        subscribe_live(client, &room).await;
    }
    let m1 = sent(&alice, &room, "m1", "one").await.seq;
    let m2 = sent(&alice, &room, "m2", "two").await.seq;

    let delivered = bob
        .mark_delivered(v1::MarkDeliveredRequest {
            room_id: room.clone(),
            seq: m1,
        })
        .await
        .expect("delivered");
    assert_eq!(delivered.delivered_seq, m1);
    let (_, receipt) = wait_for(&alice, |kind| match kind {
        Ev::ReceiptsChanged(r) if r.room_id == room => Some(r.receipts.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        receipt,
        vec![v1::Receipt {
            user_id: "bob".into(),
            delivered_seq: m1,
            read_seq: 0
        }]
    );

    let mark_read = |seq: u64| v1::MarkReadRequest {
        room_id: room.clone(),
        seq,
    };
    let read = bob.mark_read(mark_read(m2)).await.expect("read");
    assert_eq!((read.read_seq, read.unread_count), (m2, 0));
    let (_, moved) = wait_for(&bob_phone, |kind| match kind {
        Ev::ReadPositionMoved(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (moved.room_id.as_str(), moved.read_seq, moved.unread_count),
        (room.as_str(), m2, 0)
    );

    let back = bob.mark_read(mark_read(m1)).await.expect("lower");
    assert_eq!(back.read_seq, m2, "watermarks never move back");
    let capped = bob
        .mark_read(mark_read(m2 + 1000))
        .await
        .expect("beyond head");
    assert_eq!(
        capped.read_seq,
        head(&bob, &room).await,
        "capped at the head"
    );

    // The phone moves it next; the first ReadPositionMoved the laptop sees is the phone's,
    // so it never got one for its own MarkRead.
    let m3 = sent(&alice, &room, "m3", "three").await.seq;
    bob_phone
        .mark_read(mark_read(m3))
        .await
        .expect("phone reads");
    let (_, own) = wait_for(&bob, |kind| match kind {
        Ev::ReadPositionMoved(m) => Some(m.read_seq),
        _ => None,
    })
    .await;
    assert_eq!(own, m3);

    let receipts = carol_view(&server, &room).await;
    assert_eq!(
        receipts,
        vec![
            v1::Receipt {
                user_id: "alice".into(),
                delivered_seq: m3,
                read_seq: m3
            },
            v1::Receipt {
                user_id: "bob".into(),
                delivered_seq: m3,
                read_seq: m3
            },
        ],
        "by user id; carol, at 0 and 0, is left out; MarkRead moved delivered too"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_reply_moves_the_senders_receipt_for_the_other_members() {
    // a Send moves the sender's own watermarks, so the other members get
    // a ReceiptsChanged for it; the reader who replies and then marks read is seen reading
    // (the MarkRead after the reply moves nothing and publishes nothing).
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    for client in [&alice, &bob] {
        subscribe_live(client, &room).await;
    }
    let question = sent(&alice, &room, "q", "coffee?").await.seq;
    let answer = sent(&bob, &room, "a", "yes").await.seq;
    let read = bob
        .mark_read(v1::MarkReadRequest {
            room_id: room.clone(),
            seq: answer,
        })
        .await
        .expect("mark read");
    assert_eq!(read.read_seq, answer);
    let (_, receipt) = wait_for(&alice, |kind| match kind {
        Ev::ReceiptsChanged(r) if r.room_id == room => Some(r.receipts.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        receipt,
        vec![v1::Receipt {
            user_id: "bob".into(),
            delivered_seq: answer,
            read_seq: answer
        }],
        "bob's reply read everything up to it, alice's question ({question}) included"
    );
    // A resend of the same message is recognised and moves nothing: the next receipt alice
    // sees is the one of bob's next message.
    let again = sent(&bob, &room, "a", "yes").await;
    assert!(again.duplicate);
    let next = sent(&bob, &room, "b", "when?").await.seq;
    let (_, following) = wait_for(&alice, |kind| match kind {
        Ev::ReceiptsChanged(r) if r.room_id == room => Some(r.receipts.clone()),
        _ => None,
    })
    .await;
    assert_eq!(following[0].read_seq, next, "no receipt for the duplicate");
    server.stop().await;
}

async fn carol_view(server: &TestServer, room: &str) -> Vec<v1::Receipt> {
    let carol = server.client("carol").await;
    carol
        .get_receipts(v1::GetReceiptsRequest {
            room_id: room.to_owned(),
            after_user_id: String::new(),
            limit: 0,
        })
        .await
        .expect("receipts")
        .receipts
}

// ---------------------------------------------------------------------------------------------
// Typing, presence, calls (sections 13-15).

#[tokio::test]
async fn typing_reaches_the_other_members_but_not_the_typist() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    subscribe_live(&alice, &room).await;
    subscribe_live(&bob, &room).await;
    let typing = |active: bool| v1::TypingRequest {
        room_id: room.clone(),
        active,
    };
    let typing_of = |kind: &Ev| match kind {
        Ev::TypingChanged(t) => Some(t.clone()),
        _ => None,
    };
    alice.typing(typing(true)).await.expect("typing");
    let (_, seen) = wait_for(&bob, typing_of).await;
    assert_eq!(
        (seen.room_id.as_str(), seen.user_id.as_str(), seen.active),
        (room.as_str(), "alice", true)
    );
    assert!(seen.expires_in_ms > 0);

    bob.typing(typing(true)).await.expect("typing");
    let (_, first) = wait_for(&alice, typing_of).await;
    assert_eq!(first.user_id, "bob", "alice never sees her own indicator");
    let carol = server.client("carol").await;
    assert_eq!(
        code_of(
            carol
                .typing(v1::TypingRequest {
                    room_id: room.clone(),
                    active: true
                })
                .await
        ),
        ErrorCode::NotFound
    );
    server.stop().await;
}

#[tokio::test]
async fn typing_reaches_members_past_the_first_thousand() {
    // issue 15: typing went to the first 1000 members only.
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let many: Vec<String> = (0..1000).map(|n| format!("m{n:04}")).collect();
    let mut members: Vec<&str> = many.iter().map(String::as_str).collect();
    members.push("zed");
    let room = group(&alice, &members).await;
    let zed = server.client("zed").await;
    alice
        .typing(v1::TypingRequest {
            room_id: room.clone(),
            active: true,
        })
        .await
        .expect("typing");
    let (_, seen) = wait_for(&zed, |kind: &Ev| match kind {
        Ev::TypingChanged(t) => Some(t.clone()),
        _ => None,
    })
    .await;
    assert_eq!((seen.user_id.as_str(), seen.active), ("alice", true));
    server.stop().await;
}

#[tokio::test]
async fn presence_is_online_while_a_session_is_connected() {
    //
    let server = TestServer::start().await;
    let carol = server.client("carol").await;
    let offline = presence(&carol, "bob").await;
    assert_eq!((offline.user_id.as_str(), offline.online), ("bob", false));
    let bob = server.client("bob").await;
    assert!(presence(&carol, "bob").await.online);

    // The watch set up by the snapshot above reports the last session's end; after
    // it, a new snapshot says offline with the time bob was last seen.
    bob.close(4012, "bye").await;
    let (_, went) = wait_for(&carol, |kind| match kind {
        Ev::Presence(p) if p.user_id == "bob" && !p.online => Some(p.clone()),
        _ => None,
    })
    .await;
    assert!(went.last_seen_ms > 0);
    let snapshot = presence(&carol, "bob").await;
    assert_eq!(
        (snapshot.online, snapshot.last_seen_ms),
        (false, went.last_seen_ms)
    );

    let bob = server.client("bob").await;
    bob.block_user(v1::BlockUserRequest {
        user_id: "carol".into(),
    })
    .await
    .expect("block");
    let hidden = presence(&carol, "bob").await;
    assert_eq!(
        (hidden.online, hidden.last_seen_ms),
        (false, 0),
        "blocks hide presence"
    );
    drop(bob);
    server.stop().await;
}

#[tokio::test]
async fn call_signals_reach_every_session_of_the_target_and_only_members() {
    // R-15.1.1 (members, blocks), R-15.1.2, R-15.1.3
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let bob_phone = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;

    let reply = alice
        .call_signal(call(&room, "bob", ""))
        .await
        .expect("signal");
    assert_eq!(reply.delivered_sessions, 2);
    for session in [&bob, &bob_phone] {
        let (_, got) = wait_for(session, call_received).await;
        assert_eq!(
            (
                got.call_id.as_str(),
                got.room_id.as_str(),
                got.from_user_id.as_str()
            ),
            ("call-1", room.as_str(), "alice")
        );
        assert_eq!(got.signal, invite());
    }

    let carol = server.client("carol").await;
    assert_eq!(
        code_of(alice.call_signal(call(&room, "carol", "")).await),
        ErrorCode::NotFound,
        "target not a member"
    );
    assert_eq!(
        code_of(carol.call_signal(call(&room, "bob", "")).await),
        ErrorCode::NotFound,
        "caller not a member"
    );
    let gone = alice
        .call_signal(call(&room, "bob", "no-such-session"))
        .await
        .expect("signal");
    assert_eq!(gone.delivered_sessions, 0);

    // A block either way stops calls both ways (issue 15: call signals ignored blocks).
    bob.block_user(v1::BlockUserRequest {
        user_id: "alice".into(),
    })
    .await
    .expect("block");
    assert_eq!(
        code_of(alice.call_signal(call(&room, "bob", "")).await),
        ErrorCode::PermissionDenied,
        "the blocked caller"
    );
    assert_eq!(
        code_of(bob.call_signal(call(&room, "alice", "")).await),
        ErrorCode::PermissionDenied,
        "the blocker"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_call_signal_to_a_session_id_reaches_only_that_session() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob_laptop = server.client("bob").await;
    let bob_phone = server.open().await;
    let phone = bob_phone
        .connect(&server.token("bob"))
        .await
        .expect("connect")
        .session_id;
    let room = group(&alice, &["bob"]).await;

    let reply = alice
        .call_signal(call(&room, "bob", &phone))
        .await
        .expect("signal");
    assert_eq!(reply.delivered_sessions, 1);
    let (_, got) = wait_for(&bob_phone, call_received).await;
    assert_eq!(got.call_id, "call-1");
    // The laptop's first call signal is the next one, sent to everyone.
    let hangup = v1::CallSignalRequest {
        call_id: "call-2".into(),
        signal: Some(v1::CallSignal {
            kind: Some(v1::call_signal::Kind::Hangup(v1::CallHangup::default())),
        }),
        ..call(&room, "bob", "")
    };
    alice.call_signal(hangup).await.expect("signal");
    let (_, first) = wait_for(&bob_laptop, call_received).await;
    assert_eq!(first.call_id, "call-2");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Blocks, push tokens, mute, ping, room activity, visibility.

#[tokio::test]
async fn blocks_are_listed_to_the_blocker_only_and_stop_direct_messages() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let direct = alice
        .open_direct(v1::OpenDirectRequest {
            user_id: "bob".into(),
        })
        .await
        .expect("open")
        .room
        .expect("room")
        .id;
    let block = |user: &str| v1::BlockUserRequest {
        user_id: user.to_owned(),
    };
    alice.block_user(block("bob")).await.expect("block");
    alice.block_user(block("bob")).await.expect("idempotent");
    alice.block_user(block("carol")).await.expect("block");
    let mut listed = alice
        .list_blocked(v1::ListBlockedRequest {})
        .await
        .expect("list")
        .user_ids;
    listed.sort();
    assert_eq!(listed, vec!["bob", "carol"]);
    assert!(
        bob.list_blocked(v1::ListBlockedRequest {})
            .await
            .expect("list")
            .user_ids
            .is_empty()
    );
    assert_eq!(
        code_of(bob.send(send(&direct, "d1", "hi?")).await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code_of(alice.block_user(block("alice")).await),
        ErrorCode::InvalidArgument
    );

    let unblock = |user: &str| v1::UnblockUserRequest {
        user_id: user.to_owned(),
    };
    alice.unblock_user(unblock("bob")).await.expect("unblock");
    alice
        .unblock_user(unblock("bob"))
        .await
        .expect("idempotent");
    assert_eq!(
        alice
            .list_blocked(v1::ListBlockedRequest {})
            .await
            .expect("list")
            .user_ids,
        vec!["carol"]
    );
    sent(&bob, &direct, "d2", "hi again").await;
    server.stop().await;
}

#[tokio::test]
async fn push_tokens_register_and_unregister() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let register = |platform: v1::PushPlatform, token: &str| v1::RegisterPushTokenRequest {
        platform: platform.into(),
        token: token.to_owned(),
        device_id: "phone-1".into(),
    };
    alice
        .register_push_token(register(v1::PushPlatform::Apns, "tok-1"))
        .await
        .expect("register");
    alice
        .register_push_token(register(v1::PushPlatform::Apns, "tok-1"))
        .await
        .expect("again");
    let bob = server.client("bob").await;
    bob.register_push_token(register(v1::PushPlatform::Apns, "tok-1"))
        .await
        .expect("moves to bob");
    let platform = refused(
        alice
            .register_push_token(register(v1::PushPlatform::Unspecified, "tok-2"))
            .await,
    );
    assert_eq!(
        (platform.code(), platform.field.as_str()),
        (ErrorCode::InvalidArgument, "platform")
    );
    // A platform this server does not know (a newer client's enum value).
    let mut newer = register(v1::PushPlatform::Apns, "tok-3");
    newer.platform = 99;
    let unknown = refused(alice.register_push_token(newer).await);
    assert_eq!(
        (unknown.code(), unknown.field.as_str()),
        (ErrorCode::Unsupported, "platform")
    );
    assert_eq!(
        code_of(
            alice
                .register_push_token(register(v1::PushPlatform::Fcm, ""))
                .await
        ),
        ErrorCode::InvalidArgument
    );
    let unregister = |token: &str| v1::UnregisterPushTokenRequest {
        token: token.to_owned(),
    };
    bob.unregister_push_token(unregister("tok-1"))
        .await
        .expect("unregister");
    bob.unregister_push_token(unregister("never-registered"))
        .await
        .expect("also fine");
    server.stop().await;
}

#[tokio::test]
async fn mute_room_shows_in_sync_and_still_delivers_events() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    let mute = |until_ms: i64| v1::MuteRoomRequest {
        room_id: room.clone(),
        until_ms,
    };
    let until = 4_102_444_800_000; // 2100-01-01
    assert_eq!(
        bob.mute_room(mute(until))
            .await
            .expect("mute")
            .muted_until_ms,
        until
    );
    assert_eq!(summary(&bob, &room).await.muted_until_ms, until);
    assert_eq!(
        alice
            .mute_room(mute(i64::MAX))
            .await
            .expect("forever")
            .muted_until_ms,
        i64::MAX
    );

    subscribe_live(&bob, &room).await;
    let seq = sent(&alice, &room, "m", "still here").await.seq;
    assert_eq!(
        next_log(&bob, &room).await.seq,
        seq,
        "muting affects push only"
    );

    assert_eq!(
        bob.mute_room(mute(0)).await.expect("unmute").muted_until_ms,
        0
    );
    assert_eq!(summary(&bob, &room).await.muted_until_ms, 0);
    assert_eq!(
        bob.mute_room(mute(1)).await.expect("past").muted_until_ms,
        0,
        "a past time unmutes"
    );
    let carol = server.client("carol").await;
    assert_eq!(
        code_of(
            carol
                .mute_room(v1::MuteRoomRequest {
                    room_id: room.clone(),
                    until_ms: until
                })
                .await
        ),
        ErrorCode::NotFound
    );
    server.stop().await;
}

#[tokio::test]
async fn ping_echoes_the_client_time() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let pong = alice
        .ping(v1::PingRequest {
            client_time_ms: 1_700_000_000_000,
        })
        .await
        .expect("ping");
    assert_eq!(pong.client_time_ms, 1_700_000_000_000);
    assert!(pong.server_time_ms > 1_700_000_000_000);
    server.stop().await;
}

#[tokio::test]
async fn rooms_not_opened_report_activity_with_preview_and_unread_count() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    let activity = |kind: &Ev| match kind {
        Ev::RoomActivity(a) => Some(a.clone()),
        _ => None,
    };
    let first = sent(&bob, &room, "m1", "are you coming?").await;
    let (before, seen) = wait_for(&alice, activity).await;
    assert!(
        room_kinds(&before, &room).is_empty(),
        "not subscribed: no room events"
    );
    assert_eq!(
        (seen.room_id.as_str(), seen.last_seq, seen.unread_count),
        (room.as_str(), first.seq, 1)
    );
    let preview = seen.last_message.expect("preview");
    assert_eq!(
        (
            preview.seq,
            preview.ordinal,
            preview.sender.as_str(),
            preview.text.as_str()
        ),
        (first.seq, 1, "bob", "are you coming?")
    );
    let second = sent(&bob, &room, "m2", "hello?").await.seq;
    let (_, seen) = wait_for(&alice, activity).await;
    assert_eq!((seen.last_seq, seen.unread_count), (second, 2));
    server.stop().await;
}

#[tokio::test]
async fn since_join_members_read_from_their_join_and_full_shows_everything() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let carol = server.client("carol").await;
    let since_join = group(&alice, &[]).await;
    let full = alice
        .create_group(v1::CreateGroupRequest {
            name: "open".into(),
            history_visibility: v1::HistoryVisibility::Full.into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .room
        .expect("room")
        .id;
    for room in [&since_join, &full] {
        sent(&alice, room, "early", "before carol").await;
    }

    let joined = add(&alice, &since_join, &["carol"], v1::Role::Member)
        .await
        .added[0]
        .joined_seq;
    // Issue 15 M1: Sync's preview is a read too; it never shows what came before the join.
    assert_eq!(summary(&carol, &since_join).await.last_message, None);
    let later = sent(&alice, &since_join, "late", "after carol").await.seq;
    let preview = summary(&carol, &since_join).await.last_message;
    assert_eq!(preview.map(|p| p.text), Some("after carol".to_owned()));
    let page = history(&carol, &since_join, None, 100).await;
    assert_eq!(page.first_visible_seq, joined);
    assert_eq!(texts(&page.messages), vec!["after carol"]);
    assert!(!page.has_more);
    let before = history(&carol, &since_join, Some(Position::BeforeSeq(later)), 100).await;
    assert!(before.messages.is_empty() && !before.has_more);
    let replay = carol
        .subscribe(v1::SubscribeRequest {
            room_id: since_join.clone(),
            after_seq: 0,
            limit: 0,
        })
        .await
        .expect("subscribe");
    assert_eq!(replay.first_visible_seq, joined);
    assert_eq!(
        seqs_of(&replay.events),
        (joined..=later).collect::<Vec<_>>()
    );

    add(&alice, &full, &["carol"], v1::Role::Member).await;
    let page = history(&carol, &full, None, 100).await;
    assert_eq!(page.first_visible_seq, 1);
    assert_eq!(texts(&page.messages), vec!["before carol"]);
    let preview = summary(&carol, &full).await.last_message;
    assert_eq!(preview.map(|p| p.text), Some("before carol".to_owned()));
    let replay = subscribe_live(&carol, &full).await;
    assert_eq!(replay.first().map(|e| e.seq), Some(1));
    server.stop().await;
}

#[tokio::test]
async fn a_call_signal_to_oneself_reaches_only_the_other_sessions() {
    // R-15.1.2 (never to the sending session), R-15.1.4
    let server = TestServer::start().await;
    let laptop = server.client("alice").await;
    let phone = server.client("alice").await;
    let room = group(&laptop, &["bob"]).await;
    let reply = laptop
        .call_signal(call(&room, "alice", ""))
        .await
        .expect("signal");
    assert_eq!(reply.delivered_sessions, 1);
    let (_, got) = wait_for(&phone, call_received).await;
    assert_eq!(got.from_user_id, "alice");
    // The laptop's first call signal must be the phone's answer, not its own.
    let answer = v1::CallSignalRequest {
        call_id: "call-2".into(),
        ..call(&room, "alice", "")
    };
    phone.call_signal(answer).await.expect("signal");
    let (_, first) = wait_for(&laptop, call_received).await;
    assert_eq!(first.call_id, "call-2");
    server.stop().await;
}
