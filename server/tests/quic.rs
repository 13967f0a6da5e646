//! QUIC-only behaviour (docs/protocol.md §2.5): connection migration keeps the session, typing
//! as datagrams when negotiated (and on the stream otherwise), close codes as QUIC application
//! error codes, and the development certificate's fingerprint. The session suites themselves
//! run over QUIC with `CHATWIRE_TEST_TRANSPORT=quic` (scripts/test).

mod support;

use std::time::Duration;

use bytes::BytesMut;
use chatwire_conformance::client::{Client, ClosedBy, QuicTarget, client_info};
use chatwire_protocol::encode_frame;
use chatwire_protocol::v1::{self, CloseCode};
use chatwire_server::transport::quic_endpoint::fingerprint;
use support::server::{TestServer, group, room_events, subscribe_live, within};

/// A client connected as `user` over QUIC on `target`, offering `capabilities`; returns the
/// capabilities the server granted.
async fn connect(
    server: &TestServer,
    target: &QuicTarget,
    user: &str,
    capabilities: &[&str],
) -> (Client, Vec<String>) {
    let client = within(Client::open(target)).await.expect("QUIC opens");
    let connected = within(client.connect_with(v1::ConnectRequest {
        token: server.token(user),
        client: Some(client_info()),
        capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
        ..Default::default()
    }))
    .await
    .expect("connect");
    (client, connected.capabilities)
}

async fn post(client: &Client, room: &str, n: usize) {
    within(client.send_message(room, &format!("m-{n}"), &format!("message {n}")))
        .await
        .expect("send");
}

#[tokio::test]
async fn migration_mid_subscription_loses_and_repeats_nothing() {
    //
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let target = server.quic_target();
    let (bob, _) = connect(&server, &target, "bob", &[]).await;
    let room = group(&alice, &["bob"]).await;
    let replayed = subscribe_live(&bob, &room).await;
    let mut seqs: Vec<u64> = replayed.iter().map(|e| e.seq).collect();
    for n in 0..5 {
        post(&alice, &room, n).await;
    }
    seqs.extend(room_events(&bob, 5).await.iter().map(|e| e.seq));

    let before = target.local_addr().expect("local addr");
    let after = target.rebind().expect("rebind");
    assert_ne!(before, after);
    // Events sent while the path changes, and after.
    for n in 5..15 {
        post(&alice, &room, n).await;
    }
    seqs.extend(room_events(&bob, 10).await.iter().map(|e| e.seq));
    // The session is the same one: it still answers on the new path.
    within(bob.ping(v1::PingRequest::default()))
        .await
        .expect("ping after migration");
    let first = seqs[0];
    let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "contiguous, no loss, no duplicate");
    assert!(
        bob.try_next_event()
            .is_none_or(|e| !matches!(e.kind, Some(v1::event::Kind::Room(_))))
    );
    server.stop().await;
}

/// The next TypingChanged event of `client`.
async fn next_typing(client: &Client) -> v1::TypingChanged {
    loop {
        let event = within(client.next_event()).await.expect("event");
        if let Some(v1::event::Kind::TypingChanged(typing)) = event.kind {
            return typing;
        }
    }
}

fn typing_datagram(room: &str) -> bytes::Bytes {
    let frame = v1::ClientFrame {
        id: 0,
        request: Some(v1::client_frame::Request::Typing(v1::TypingRequest {
            room_id: room.to_owned(),
            active: true,
        })),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    encode_frame(&frame, 1024, &mut out).expect("encodes");
    out.freeze()
}

#[tokio::test]
async fn typing_travels_as_datagrams_when_negotiated_and_on_the_stream_otherwise() {
    //
    let server = TestServer::start().await;
    let alice_target = server.quic_target();
    let (alice, granted) = connect(&server, &alice_target, "alice", &["typing-datagrams"]).await;
    // Server-only capabilities (moderation, search, ...) are listed too.
    assert!(
        granted.iter().any(|c| c == "typing-datagrams"),
        "{granted:?}"
    );
    let bob_target = server.quic_target();
    let (bob, granted) = connect(&server, &bob_target, "bob", &["typing-datagrams"]).await;
    assert!(
        granted.iter().any(|c| c == "typing-datagrams"),
        "{granted:?}"
    );
    // Carol offers nothing; her endpoint does not even support datagrams.
    let carol_target = server.quic_target().without_datagrams();
    let (carol, granted) = connect(&server, &carol_target, "carol", &["typing-datagrams"]).await;
    assert!(
        !granted.iter().any(|c| c == "typing-datagrams"),
        "no datagrams, no capability: {granted:?}"
    );
    let room = group(&alice, &["bob", "carol"]).await;
    subscribe_live(&bob, &room).await;
    subscribe_live(&carol, &room).await;
    subscribe_live(&alice, &room).await;

    // A typing datagram gets no reply and reaches both: bob by datagram, carol on the stream.
    alice_target
        .send_datagram(typing_datagram(&room))
        .expect("datagram");
    let seen_by_bob = next_typing(&bob).await;
    assert_eq!(
        (seen_by_bob.user_id.as_str(), seen_by_bob.active),
        ("alice", true)
    );
    let seen_by_carol = next_typing(&carol).await;
    assert_eq!(seen_by_carol.user_id.as_str(), "alice");
    assert!(bob_target.datagrams_received() >= 1);
    assert_eq!(carol_target.datagrams_received(), 0);
    // The datagram got no reply (id 0): alice.s next call is answered as usual.
    within(alice.ping(v1::PingRequest::default()))
        .await
        .expect("ping");
    // Replies are ordered on the stream: a reply to the datagram would be queued by now.
    let unclaimed = tokio::time::timeout(Duration::from_millis(50), alice.next_reply()).await;
    assert!(
        unclaimed.is_err(),
        "a typing datagram got a reply: {unclaimed:?}"
    );

    // A bad datagram is discarded silently; the session goes on.
    alice_target
        .send_datagram(bytes::Bytes::from_static(&[0x04, 0x08, 0x01]))
        .expect("datagram");
    within(alice.ping(v1::PingRequest::default()))
        .await
        .expect("still open");
    server.stop().await;
}

#[tokio::test]
async fn close_codes_are_quic_application_error_codes() {
    // section 20: the same numbers as the WebSocket close codes.
    let server = TestServer::start().await;
    let target = server.quic_target();
    let client = within(Client::open(&target)).await.expect("QUIC opens");
    let refused = client.connect(&server.token_for("alice", -60_000)).await;
    assert!(refused.is_err());
    let info = within(client.wait_closed()).await;
    assert_eq!(
        (info.by, info.close_code()),
        (ClosedBy::Peer, Some(CloseCode::AuthExpired))
    );
    assert_eq!(info.code, 4002);

    let (bob, _) = connect(&server, &target, "bob", &[]).await;
    let drained = async {
        let info = bob.wait_closed().await;
        (info.by, info.code)
    };
    let stop = server.stop();
    let (closed, ()) = within(async { tokio::join!(drained, stop) }).await;
    assert_eq!(closed, (ClosedBy::Peer, CloseCode::ServerDraining as u16));
}

#[tokio::test]
async fn clients_answering_a_retry_get_their_session() {
    // Address validation forced for every handshake: the client's second Initial carries the
    // Retry token and the connection proceeds as usual.
    let server = TestServer::start_with(|config| config.quic.retry_above_handshakes = 0).await;
    let (client, _) = connect(&server, &server.quic_target(), "alice", &[]).await;
    within(client.ping(v1::PingRequest::default()))
        .await
        .expect("ping");
    server.stop().await;
}

#[tokio::test]
async fn no_connect_in_time_closes_with_4006() {
    // over QUIC: no stream exists yet, so only the close code tells.
    let server = TestServer::start_with(|config| config.session.handshake_timeout_ms = 200).await;
    let client = within(Client::open(&server.quic_target()))
        .await
        .expect("QUIC opens");
    let info = within(client.wait_closed()).await;
    assert_eq!(info.close_code(), Some(CloseCode::ConnectTimeout), "{info}");
    server.stop().await;
}

#[tokio::test]
async fn the_development_certificate_fingerprint_is_stable_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    let print = fingerprint(&first.cert_der);
    assert_eq!(print.len(), 32 * 3 - 1, "{print}");
    let _ = first.client("alice").await;
    first.stop().await;
    let second = TestServer::start_in(dir.path().to_path_buf(), |_| {}).await;
    assert_eq!(fingerprint(&second.cert_der), print);
    // The restarted server serves QUIC with that same certificate (the client pins it).
    let (client, _) = connect(&second, &second.quic_target(), "alice", &[]).await;
    within(client.ping(v1::PingRequest::default()))
        .await
        .expect("ping");
    second.stop().await;
}

#[tokio::test]
async fn an_aioquic_client_connects_and_sends() {
    // Interop with an independent QUIC stack (aioquic from PyPI; scripts/test installs it).
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    subscribe_live(&alice, &room).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("cert.der");
    std::fs::write(&cert, &server.cert_der).expect("write cert");
    let addr = server.quic_addr.expect("QUIC");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conformance/interop/aioquic_client.py"
    );
    let output = within(
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(&cert)
            .arg(server.token("bob"))
            .arg(&room)
            .output(),
    )
    .await
    .expect("python3 runs (pip install aioquic)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "aioquic client failed: {stderr}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(result["alpn"], "chatwire/1");
    assert_eq!(result["user_id"], "bob");
    let seq = result["seq"].as_u64().expect("seq");
    // The message sent over aioquic reaches a WebSocket/quinn subscriber like any other.
    let events = room_events(&alice, 1).await;
    let v1::RoomEvent {
        seq: got, sender, ..
    } = &events[0];
    assert_eq!((*got, sender.as_str()), (seq, "bob"));
    server.stop().await;
}

#[tokio::test]
async fn connection_attempts_over_the_address_rate_are_closed_after_the_handshake() {
    // over QUIC; issue 15 M5: the attempt is charged once its handshake proved the
    // address, and refused with 4010.
    let server = TestServer::start_with(|config| {
        config.limits.rate_connects_per_ip = chatwire_server::config::RateLimit {
            rate_per_minute: 1,
            burst: 1,
        };
    })
    .await;
    let target = server.quic_target();
    let (first, _) = connect(&server, &target, "alice", &[]).await;
    let second = within(Client::open(&target)).await.expect("QUIC opens");
    let refused = second.connect(&server.token("alice")).await;
    assert!(refused.is_err(), "the second attempt within the minute");
    let info = within(second.wait_closed()).await;
    assert_eq!(
        (info.by, info.close_code()),
        (ClosedBy::Peer, Some(CloseCode::TooManyConnections))
    );
    within(first.ping(v1::PingRequest::default()))
        .await
        .expect("the first connection is unaffected");
    server.stop().await;
}
