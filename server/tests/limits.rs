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
            room_id: room,
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!(history.messages.len(), 2);
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
