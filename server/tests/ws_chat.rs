//! End-to-end chat over real WebSockets on the embedded default: rooms, messages, history,
//! idempotent sends, subscribe with replay then live delivery.

mod support;

use chatwire_protocol::v1;
use support::server::{TestServer, group, room_events, send, within};

#[tokio::test]
async fn alice_and_bob_chat_in_a_group_with_history_and_live_delivery() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;

    let sent = alice
        .send(send(&room, "m1", "hello bob"))
        .await
        .expect("send");
    assert!(!sent.duplicate);
    assert_eq!(sent.ordinal, 1);

    // Bob opens the room: replay from the start, then live.
    let page = bob
        .subscribe(v1::SubscribeRequest {
            room_id: room.clone(),
            after_seq: 0,
            limit: 0,
        })
        .await
        .expect("subscribe");
    assert!(page.complete);
    let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=sent.seq).collect::<Vec<_>>(),
        "replay is the whole log, contiguous"
    );
    let last = page.events.last().expect("events");
    assert!(
        matches!(&last.kind, Some(v1::room_event::Kind::MessageCreated(m)) if m.client_msg_id == "m1")
    );

    let reply = alice
        .send(send(&room, "m2", "are you there?"))
        .await
        .expect("send");
    let live = room_events(&bob, 1).await;
    assert_eq!(live[0].seq, reply.seq);
    assert_eq!(reply.seq, sent.seq + 1);

    let history = bob
        .history(v1::HistoryRequest {
            room_id: room.clone(),
            ..Default::default()
        })
        .await
        .expect("history");
    let texts: Vec<String> = history
        .messages
        .iter()
        .map(|m| m.content.clone().unwrap_or_default().text)
        .collect();
    assert_eq!(
        texts,
        vec!["are you there?".to_owned(), "hello bob".to_owned()],
        "newest first"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_retried_send_returns_the_original_and_a_changed_one_conflicts() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let room = group(&alice, &[]).await;
    let first = alice
        .send(send(&room, "same-id", "once"))
        .await
        .expect("send");
    let retry = alice
        .send(send(&room, "same-id", "once"))
        .await
        .expect("retry");
    assert!(retry.duplicate);
    assert_eq!(
        (retry.seq, retry.ordinal, retry.created_at_ms),
        (first.seq, first.ordinal, first.created_at_ms)
    );
    let conflict = alice
        .send(send(&room, "same-id", "twice"))
        .await
        .expect_err("different content");
    assert_eq!(conflict.server_code(), Some(v1::ErrorCode::Conflict));
    let history = alice
        .history(v1::HistoryRequest {
            room_id: room,
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!(history.messages.len(), 1, "exactly one message was created");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_senders_get_distinct_contiguous_seqs() {
    let server = TestServer::start().await;
    let users = ["u1", "u2", "u3", "u4"];
    let owner = server.client("owner").await;
    let room = group(&owner, &users).await;
    let head = owner
        .get_room(v1::GetRoomRequest {
            room_id: room.clone(),
        })
        .await
        .expect("room")
        .room
        .expect("room")
        .last_seq;
    let mut tasks = Vec::new();
    for user in users {
        let client = server.client(user).await;
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                let sent = client
                    .send(send(&room, &format!("{user}-{i}"), "hi"))
                    .await
                    .expect("send");
                seqs.push((sent.seq, sent.ordinal));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(within(task).await.expect("sender"));
    }
    all.sort_unstable();
    let seqs: Vec<u64> = all.iter().map(|(seq, _)| *seq).collect();
    let ordinals: Vec<u64> = all.iter().map(|(_, ordinal)| *ordinal).collect();
    assert_eq!(seqs, (head + 1..=head + 100).collect::<Vec<_>>());
    assert_eq!(ordinals, (1..=100).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn subscribing_after_a_gap_replays_exactly_the_missing_events_in_pages() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    let mut last = 0;
    for i in 0..30 {
        last = alice
            .send(send(&room, &format!("m{i}"), &format!("message {i}")))
            .await
            .expect("send")
            .seq;
    }
    let bob = server.client("bob").await;
    let from = last - 12;
    let mut after = from;
    let mut got = Vec::new();
    loop {
        let page = bob
            .subscribe(v1::SubscribeRequest {
                room_id: room.clone(),
                after_seq: after,
                limit: 5,
            })
            .await
            .expect("page");
        assert!(page.events.len() <= 5);
        got.extend(page.events.iter().map(|e| e.seq));
        after = page.events.last().map_or(after, |e| e.seq);
        if page.complete {
            break;
        }
    }
    assert_eq!(got, (from + 1..=last).collect::<Vec<_>>());
    let next = alice
        .send(send(&room, "after", "live now"))
        .await
        .expect("send")
        .seq;
    assert_eq!(room_events(&bob, 1).await[0].seq, next);
    server.stop().await;
}
