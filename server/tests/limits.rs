//! Limits a user meets: per-user send rate limits, per-address connection caps, and the
//! graceful drain that tells sessions to reconnect elsewhere.

mod support;

use chatwire_protocol::v1;
use chatwire_server::config::RateLimit;
use support::server::{TestServer, group, send, within};

#[tokio::test]
async fn sends_beyond_the_rate_are_refused_with_retry_after_and_not_stored() {
    let server = TestServer::start_with(|config| {
        config.limits.rate_sends = RateLimit {
            rate_per_minute: 1,
            burst: 2,
        };
    })
    .await;
    let alice = server.client("alice").await;
    let room = group(&alice, &[]).await;
    alice.send(send(&room, "a", "one")).await.expect("first");
    alice.send(send(&room, "b", "two")).await.expect("second");
    let err = alice
        .send(send(&room, "c", "three"))
        .await
        .expect_err("third is over the burst");
    let chatwire_conformance::client::ClientError::Server(error) = err else {
        panic!("expected an error reply, got {err:?}");
    };
    assert_eq!(error.code(), v1::ErrorCode::RateLimited);
    assert!(error.retryable);
    assert!(error.retry_after_ms > 0);
    let history = alice
        .history(v1::HistoryRequest {
            room_id: room.clone(),
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!(history.messages.len(), 2);
    // Edit and React draw on the same bucket (issue 15 M9); Delete does not.
    let edit = alice
        .edit(v1::EditRequest {
            room_id: room.clone(),
            target_seq: history.messages[0].seq,
            content: Some(v1::Content {
                text: "edited".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("an edit is over the burst too");
    assert_eq!(edit.server_code(), Some(v1::ErrorCode::RateLimited));
    let react = alice
        .react(v1::ReactRequest {
            room_id: room.clone(),
            target_seq: history.messages[0].seq,
            emoji: "👍".into(),
            add: true,
        })
        .await
        .expect_err("a reaction is over the burst too");
    assert_eq!(react.server_code(), Some(v1::ErrorCode::RateLimited));
    alice
        .delete(v1::DeleteRequest {
            reason: String::new(),
            room_id: room.clone(),
            target_seq: history.messages[0].seq,
        })
        .await
        .expect("delete is not limited by the send bucket");
    // Other users have their own bucket.
    let bob = server.client("bob").await;
    let bobs = group(&bob, &[]).await;
    bob.send(send(&bobs, "a", "hi"))
        .await
        .expect("bob is not limited by alice");
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_closed_with_4010() {
    let server = TestServer::start_with(|config| config.limits.max_connections_per_ip = 2).await;
    let first = server.client("alice").await;
    let _second = server.client("alice").await;
    let third = server.open().await;
    let closed = within(third.wait_closed()).await;
    assert_eq!(closed.code, 4010);
    // Closing one makes room for another.
    first.close(4012, "bye").await;
    let again = server.client("alice").await;
    again
        .ping(v1::PingRequest { client_time_ms: 1 })
        .await
        .expect("served");
    server.stop().await;
}

#[tokio::test]
async fn a_drain_tells_connected_sessions_to_reconnect_elsewhere() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let stopping = tokio::spawn(server.stop());
    let event = within(alice.next_event()).await.expect("disconnect event");
    let Some(v1::event::Kind::Disconnect(disconnect)) = event.kind else {
        panic!("expected Disconnect, got {event:?}");
    };
    assert_eq!(disconnect.code(), v1::CloseCode::ServerDraining);
    assert!(disconnect.reconnect);
    assert_eq!(within(alice.wait_closed()).await.code, 4005);
    within(stopping).await.expect("server stopped");
}

/// A member that stops reading is closed as a slow consumer, with memory bounded by its queue,
/// and loses nothing: it reconnects and resumes from the last seq it got.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_resumes_without_loss() {
    use chatwire_conformance::client::{Client, ClientOptions};
    let server = TestServer::start_with(|config| config.session.outbound_queue_frames = 64).await;
    let senders = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"];
    let owner = server.client("owner").await;
    let mut members = senders.to_vec();
    members.push("bob");
    let room = group(&owner, &members).await;
    let options = ClientOptions {
        event_buffer: 1,
        ..ClientOptions::default()
    };
    let bob = Client::open_with(&server.target(), options)
        .await
        .expect("open");
    bob.connect(&server.token("bob")).await.expect("connect");
    bob.subscribe(v1::SubscribeRequest {
        room_id: room.clone(),
        after_seq: 0,
        limit: 0,
    })
    .await
    .expect("subscribe");

    // About 24 MB of messages, more than the socket buffers between server and bob hold, from
    // eight senders at once (their sends share writer batches).
    let mut tasks = Vec::new();
    for sender in senders {
        let client = server.client(sender).await;
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            let body = "€".repeat(4000);
            let mut last = 0;
            for i in 0..250 {
                last = client
                    .send(send(&room, &format!("{sender}-{i}"), &body))
                    .await
                    .expect("send")
                    .seq;
            }
            (last, client)
        }));
    }
    let mut last_sent = 0;
    let mut keep = Vec::new();
    for task in tasks {
        let (last, client) = within(task).await.expect("sender");
        last_sent = last_sent.max(last);
        keep.push(client);
    }

    // Bob reads what reached him; the connection ends before the flood does.
    let mut seen = Vec::new();
    while let Ok(event) = within(bob.next_event()).await {
        if let Some(v1::event::Kind::Room(e)) = event.kind {
            seen.push(e.seq);
        }
    }
    let closed = bob.closed().expect("bob's session ended");
    assert!(
        closed.code == 4004 || closed.code == 1006,
        "slow consumer or dropped, got {closed:?}"
    );
    let last_seen = *seen.last().expect("bob got some events");
    assert!(
        last_seen < last_sent,
        "bob was cut off before the end of the flood"
    );
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "what bob got was contiguous"
    );

    // Resume: exactly the rest, in order.
    let bob = server.client("bob").await;
    let mut after = last_seen;
    let mut rest = Vec::new();
    loop {
        let page = bob
            .subscribe(v1::SubscribeRequest {
                room_id: room.clone(),
                after_seq: after,
                limit: 0,
            })
            .await
            .expect("page");
        rest.extend(page.events.iter().map(|e| e.seq));
        after = page.events.last().map_or(after, |e| e.seq);
        if page.complete {
            break;
        }
    }
    assert_eq!(rest, (last_seen + 1..=last_sent).collect::<Vec<_>>());
    server.stop().await;
}

/// With `redis.url` set, rate limits live in Redis (shared by every node) and still refuse.
#[tokio::test]
async fn rate_limits_can_live_in_redis() {
    let url = std::env::var("CHATWIRE_TEST_REDIS_URL")
        .expect("CHATWIRE_TEST_REDIS_URL is not set: start the services (scripts/services start)");
    let prefix = format!(
        "limits-test-{}-{:?}:",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let (redis_url, key_prefix) = (url.clone(), prefix.clone());
    let server = TestServer::start_with(|config| {
        config.redis.url = Some(url);
        config.redis.key_prefix = prefix;
        config.limits.rate_sends = RateLimit {
            rate_per_minute: 1,
            burst: 2,
        };
    })
    .await;
    let alice = server.client("alice").await;
    let room = group(&alice, &[]).await;
    alice.send(send(&room, "a", "one")).await.expect("first");
    alice.send(send(&room, "b", "two")).await.expect("second");
    let err = alice
        .send(send(&room, "c", "three"))
        .await
        .expect_err("over the burst");
    assert_eq!(err.server_code(), Some(v1::ErrorCode::RateLimited));
    // The buckets are in Redis, under the configured prefix.
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{key_prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(
        keys.iter().any(|k| k.contains("send:alice")),
        "no send bucket in {keys:?}"
    );
    server.stop().await;
}
