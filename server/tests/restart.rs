//! Crash safety of the real binary: a `chatwire serve` killed with SIGKILL and started again on
//! the same data folder has kept every acknowledged message (docs/protocol.md,
//! ) and its development secret (docs/architecture.md "Development defaults").

mod support;

use std::collections::HashMap;

use chatwire_conformance::client::Client;
use chatwire_protocol::v1;
use support::server::{ServerProcess, dev_token, send, subscribe_live, within};

async fn connect(server: &ServerProcess, token: &str) -> Client {
    let client = Client::open(&server.target())
        .await
        .expect("websocket opens");
    within(client.connect(token)).await.expect("connect");
    client
}

/// Sends `count` messages with ids `{prefix}-{i}`, one after another; returns (id, seq).
async fn send_many(
    client: Client,
    room: String,
    prefix: &'static str,
    count: usize,
) -> Vec<(String, u64)> {
    let mut acked = Vec::new();
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        let reply = within(client.send(send(&room, &id, "payload")))
            .await
            .expect("send");
        acked.push((id, reply.seq));
    }
    acked
}

/// The messages of the whole log by client_msg_id, checking the seqs are 1, 2, ... head.
fn messages_by_id(log: &[v1::RoomEvent]) -> HashMap<String, Vec<u64>> {
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "contiguous from 1"
    );
    let mut by_id: HashMap<String, Vec<u64>> = HashMap::new();
    for event in log {
        if let Some(v1::room_event::Kind::MessageCreated(m)) = &event.kind {
            by_id
                .entry(m.client_msg_id.clone())
                .or_default()
                .push(event.seq);
        }
    }
    by_id
}

#[tokio::test]
async fn a_sigkilled_server_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::spawn(dir.path()).await;
    let (alice_token, bob_token) = (dev_token(dir.path(), "alice"), dev_token(dir.path(), "bob"));
    let alice = connect(&server, &alice_token).await;
    let bob = connect(&server, &bob_token).await;
    let room = support::server::group(&alice, &["bob"]).await;

    let senders = [
        tokio::spawn(send_many(alice, room.clone(), "alice", 40)),
        tokio::spawn(send_many(bob, room.clone(), "bob", 40)),
    ];
    let mut acked = Vec::new();
    for sender in senders {
        acked.extend(within(sender).await.expect("sender"));
    }

    // One more send races the kill: its reply may or may not come.
    let last = connect(&server, &alice_token).await;
    let in_flight = {
        let room = room.clone();
        tokio::spawn(async move { last.send(send(&room, "in-flight", "maybe")).await })
    };
    tokio::task::yield_now().await;
    server.kill();
    let raced = within(in_flight).await.expect("task");

    let server = ServerProcess::spawn(dir.path()).await;
    let alice = connect(&server, &alice_token).await;
    let retry = within(alice.send(send(&room, "in-flight", "maybe")))
        .await
        .expect("retry");
    if let Ok(first) = &raced {
        assert!(
            retry.duplicate,
            "an acknowledged send is remembered across the crash"
        );
        assert_eq!(retry.seq, first.seq);
    }

    let by_id = messages_by_id(&subscribe_live(&alice, &room).await);
    for (id, seq) in &acked {
        assert_eq!(
            by_id.get(id),
            Some(&vec![*seq]),
            "{id} kept exactly once at its seq"
        );
    }
    assert_eq!(
        by_id.get("in-flight"),
        Some(&vec![retry.seq]),
        "created exactly once"
    );
    assert_eq!(by_id.len(), acked.len() + 1, "nothing else was created");
    server.kill();
}

#[tokio::test]
async fn a_restart_keeps_the_development_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::spawn(dir.path()).await;
    let token = dev_token(dir.path(), "alice");
    let before = connect(&server, &token).await;
    drop(before);
    server.kill();

    let server = ServerProcess::spawn(dir.path()).await;
    let client = Client::open(&server.target())
        .await
        .expect("websocket opens");
    let connected = within(client.connect(&token))
        .await
        .expect("the old token still connects");
    assert_eq!(connected.user_id, "alice");
    server.kill();
}
