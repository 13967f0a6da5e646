//! Bad input over real WebSockets: each kind gets the documented error reply or close code
//! (docs/protocol.md sections 2, 4, 19 and 20), and the server goes on serving everyone else:
//! after every case a bystander that connected beforehand still gets its Ping answered.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Bytes, BytesMut};
use chatwire_conformance::client::{Client, ClientError, ClosedBy, TransportError};
use chatwire_protocol::v1;
use chatwire_server::auth::TokenMinter;
use chatwire_server::chat::ids::UserId;
use chatwire_server::clock::{Clock, SystemClock};
use chatwire_server::config::Config;
use prost::Message as _;
use support::server::{RawWs, TestServer, code_of, group, refused, send, within};
use v1::client_frame::Request;
use v1::{CloseCode, ErrorCode};

/// The server and a bystander session that must outlive every bad input.
struct Scene {
    server: TestServer,
    bystander: Client,
}

impl Scene {
    async fn start() -> Self {
        Self::with(TestServer::start().await).await
    }

    async fn with(server: TestServer) -> Self {
        let bystander = server.client("bystander").await;
        Self { server, bystander }
    }

    /// The server still serves the bystander; then stops.
    async fn still_serving(self) {
        let pong = within(self.bystander.ping(v1::PingRequest { client_time_ms: 42 }))
            .await
            .expect("the bystander is still served");
        assert_eq!(pong.client_time_ms, 42);
        self.server.stop().await;
    }
}

fn ping(id: u64) -> v1::ClientFrame {
    v1::ClientFrame {
        id,
        trace_id: String::new(),
        request: Some(Request::Ping(v1::PingRequest::default())),
    }
}

fn framed(frame: &v1::ClientFrame) -> BytesMut {
    let mut buf = BytesMut::new();
    chatwire_protocol::encode_frame(frame, usize::MAX, &mut buf).expect("encode");
    buf
}

/// Asserts the peer closed with `code`, after a `Disconnect` event with the same code when the
/// session got that far (R-4.7.1).
async fn closed_with(client: &Client, code: CloseCode) {
    let info = within(client.wait_closed()).await;
    assert_eq!(
        (info.by, info.close_code()),
        (ClosedBy::Peer, Some(code)),
        "{info}"
    );
}

async fn disconnect_event(client: &Client) -> CloseCode {
    loop {
        let event = within(client.next_event()).await.expect("Disconnect event");
        if let Some(v1::event::Kind::Disconnect(d)) = event.kind {
            return d.code();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Framing (section 2).

#[tokio::test]
async fn an_undecodable_frame_gets_a_request_id_0_error_and_the_session_goes_on() {
    // R-2.2.4, Appendix A.3 (`03 ff ff ff`)
    let scene = Scene::start().await;
    let client = scene.server.client("alice").await;
    client
        .send_raw(Bytes::from_static(&[0x03, 0xff, 0xff, 0xff]))
        .await
        .expect("send");
    let reply = within(client.next_reply()).await.expect("reply");
    assert_eq!(reply.request_id, 0);
    match reply.result {
        Some(v1::reply::Result::Error(err)) => {
            assert_eq!(err.code(), ErrorCode::InvalidArgument);
            assert!(!err.retryable);
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    client
        .ping(v1::PingRequest::default())
        .await
        .expect("connection kept");
    scene.still_serving().await;
}

#[tokio::test]
async fn a_frame_with_id_0_is_refused_without_being_processed() {
    // R-5.1.3
    let scene = Scene::start().await;
    let client = scene.server.client("alice").await;
    client.send_frame(&ping(0)).await.expect("send");
    let reply = within(client.next_reply()).await.expect("reply");
    assert_eq!(reply.request_id, 0);
    assert!(matches!(reply.result,
        Some(v1::reply::Result::Error(err)) if err.code() == ErrorCode::InvalidArgument && err.field == "id"));
    client
        .ping(v1::PingRequest::default())
        .await
        .expect("connection kept");
    scene.still_serving().await;
}

#[tokio::test]
async fn a_message_ending_inside_a_frame_closes_4000() {
    // R-2.3.4, Appendix A.3 (`04 08 01 62`)
    let scene = Scene::start().await;
    let client = scene.server.ws_client("alice").await;
    client
        .send_raw(Bytes::from_static(&[0x04, 0x08, 0x01, 0x62]))
        .await
        .expect("send");
    assert_eq!(
        disconnect_event(&client).await,
        CloseCode::ProtocolViolation
    );
    closed_with(&client, CloseCode::ProtocolViolation).await;
    scene.still_serving().await;
}

#[tokio::test]
async fn the_whole_frames_before_a_partial_one_are_answered_before_the_close() {
    // R-2.3.4 ("after processing the whole frames before it"), R-5.2.1
    let scene = Scene::start().await;
    let client = scene.server.ws_client("alice").await;
    let id = client.next_id();
    let mut message = framed(&ping(id));
    message.extend_from_slice(&[0x04, 0x08, 0x01, 0x62]);
    client.send_raw(message.freeze()).await.expect("send");
    let reply = within(client.next_reply())
        .await
        .expect("the whole frame is answered");
    assert_eq!(reply.request_id, id);
    assert!(matches!(reply.result, Some(v1::reply::Result::Ping(_))));
    closed_with(&client, CloseCode::ProtocolViolation).await;
    scene.still_serving().await;
}

/// A Ping frame padded with a trace id to exactly `size` message bytes.
fn frame_of_size(id: u64, size: usize) -> v1::ClientFrame {
    let mut frame = ping(id);
    frame.trace_id = "x".repeat(size);
    while frame.encoded_len() > size {
        frame.trace_id.pop();
    }
    assert_eq!(frame.encoded_len(), size);
    frame
}

async fn small_frames_server() -> Scene {
    Scene::with(TestServer::start_with(|config| config.limits.max_client_frame_bytes = 1024).await)
        .await
}

#[tokio::test]
async fn a_frame_one_byte_over_the_limit_closes_4007() {
    // R-2.2.1, R-2.2.2
    let scene = small_frames_server().await;
    let client = scene.server.client("alice").await;
    let fits = frame_of_size(client.next_id(), 1024);
    let reply = within(client.call_frame(&fits))
        .await
        .expect("at the limit");
    assert!(matches!(reply, v1::reply::Result::Ping(_)));
    client
        .send_frame(&frame_of_size(client.next_id(), 1025))
        .await
        .expect("send");
    assert_eq!(disconnect_event(&client).await, CloseCode::FrameTooLarge);
    closed_with(&client, CloseCode::FrameTooLarge).await;
    scene.still_serving().await;
}

#[tokio::test]
async fn a_frame_far_over_the_limit_closes_4007() {
    // R-2.2.2 (the prefix alone decides), R-2.3.6
    let scene = small_frames_server().await;
    let client = scene.server.client("alice").await;
    let _ = client
        .send_frame(&frame_of_size(client.next_id(), 8 * 1024))
        .await;
    closed_with(&client, CloseCode::FrameTooLarge).await;
    scene.still_serving().await;
}

#[tokio::test]
async fn a_text_message_closes_4000() {
    // R-2.3.5
    let scene = Scene::start().await;
    let mut raw = RawWs::open(scene.server.addr).await;
    let connect = v1::ClientFrame {
        id: 1,
        trace_id: String::new(),
        request: Some(Request::Connect(v1::ConnectRequest {
            token: scene.server.token("alice"),
            ..Default::default()
        })),
    };
    raw.send(2, &framed(&connect)).await;
    raw.send(1, br#"{"id":"2","ping":{}}"#).await;
    assert_eq!(
        within(raw.close_code()).await,
        Some(CloseCode::ProtocolViolation as u16)
    );
    scene.still_serving().await;
}

#[tokio::test]
async fn a_frame_without_a_request_is_unsupported() {
    // R-3.3.2, R-5.7.1
    let scene = Scene::start().await;
    let client = scene.server.client("alice").await;
    let empty = v1::ClientFrame {
        id: client.next_id(),
        ..Default::default()
    };
    match within(client.call_frame(&empty)).await.expect("reply") {
        v1::reply::Result::Error(err) => assert_eq!(err.code(), ErrorCode::Unsupported),
        other => panic!("expected UNSUPPORTED, got {other:?}"),
    }
    client
        .ping(v1::PingRequest::default())
        .await
        .expect("connection kept");
    scene.still_serving().await;
}

// ---------------------------------------------------------------------------------------------
// The session's first frame and authentication (section 4).

#[tokio::test]
async fn a_request_before_connect_is_refused_then_closed_4000() {
    // R-4.1.1, R-4.1.5
    let scene = Scene::start().await;
    let client = scene.server.open().await;
    let early = within(client.ping(v1::PingRequest::default())).await;
    assert_eq!(code_of(early), ErrorCode::FailedPrecondition);
    assert_eq!(
        disconnect_event(&client).await,
        CloseCode::ProtocolViolation
    );
    closed_with(&client, CloseCode::ProtocolViolation).await;
    scene.still_serving().await;
}

#[tokio::test]
async fn an_undecodable_first_frame_is_refused_then_closed_4000() {
    // R-4.1.5
    let scene = Scene::start().await;
    let client = scene.server.open().await;
    client
        .send_raw(Bytes::from_static(&[0x03, 0xff, 0xff, 0xff]))
        .await
        .expect("send");
    let reply = within(client.next_reply()).await.expect("reply");
    assert!(matches!(reply.result,
        Some(v1::reply::Result::Error(err)) if err.code() == ErrorCode::InvalidArgument));
    closed_with(&client, CloseCode::ProtocolViolation).await;
    scene.still_serving().await;
}

#[tokio::test]
async fn a_second_connect_is_refused_and_the_session_kept() {
    // R-4.1.6
    let scene = Scene::start().await;
    let client = scene.server.open().await;
    let first = client
        .connect(&scene.server.token("alice"))
        .await
        .expect("connect");
    let again = client.connect(&scene.server.token("mallory")).await;
    assert_eq!(code_of(again), ErrorCode::FailedPrecondition);
    let room = group(&client, &[]).await;
    let me = client
        .get_room(v1::GetRoomRequest { room_id: room })
        .await
        .expect("session kept")
        .me
        .expect("me");
    assert_eq!(me.user_id, first.user_id, "still alice");
    scene.still_serving().await;
}

/// Connects with `token`, which must fail: UNAUTHENTICATED, a Disconnect and a close with
/// `code` (R-4.2.6).
async fn refused_token(server: &TestServer, token: &str, code: CloseCode) {
    let client = server.open().await;
    let error = refused(within(client.connect(token)).await);
    assert_eq!(error.code(), ErrorCode::Unauthenticated);
    assert!(!error.retryable);
    assert!(
        !error.message.contains(token),
        "tokens never appear in errors (R-23.1.2)"
    );
    assert_eq!(disconnect_event(&client).await, code);
    closed_with(&client, code).await;
}

fn unsigned_token(user: &str) -> String {
    let now_s = SystemClock.now_ms() / 1000;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": user, "iss": "chatwire-dev", "aud": "chatwire",
        "iat": now_s, "exp": now_s + 3600,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{claims}.")
}

fn token_from_another_secret(user: &str) -> String {
    let minter =
        TokenMinter::from_config(&Config::default().auth, Some(&[7u8; 32])).expect("minter");
    let user = UserId::parse(user).expect("user");
    minter
        .mint(&user, 3_600_000, SystemClock.now_ms())
        .expect("mint")
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_and_closed_with_their_code() {
    // R-4.2.1, R-4.2.3, R-4.2.6
    let scene = Scene::start().await;
    let server = &scene.server;
    refused_token(server, "not-a-jwt", CloseCode::AuthFailed).await;
    refused_token(
        server,
        &server.token_for("alice", -1),
        CloseCode::AuthExpired,
    )
    .await;
    refused_token(server, &unsigned_token("alice"), CloseCode::AuthFailed).await;
    refused_token(
        server,
        &token_from_another_secret("alice"),
        CloseCode::AuthFailed,
    )
    .await;
    scene.still_serving().await;
}

// ---------------------------------------------------------------------------------------------
// Requests (sections 6 and 8).

#[tokio::test]
async fn a_room_one_is_not_in_and_a_missing_room_get_the_same_error() {
    // R-6.4.1, R-6.4.2
    let scene = Scene::start().await;
    let alice = scene.server.client("alice").await;
    let mallory = scene.server.client("mallory").await;
    let real = group(&alice, &[]).await;
    let missing = "g.00000000000000000000000000000000";
    let reference = refused(
        mallory
            .get_room(v1::GetRoomRequest {
                room_id: missing.to_owned(),
            })
            .await,
    );
    for room in [real.as_str(), missing] {
        let errors = [
            refused(mallory.send(send(room, "m1", "hi")).await),
            refused(
                mallory
                    .history(v1::HistoryRequest {
                        room_id: room.to_owned(),
                        ..Default::default()
                    })
                    .await,
            ),
            refused(
                mallory
                    .subscribe(v1::SubscribeRequest {
                        room_id: room.to_owned(),
                        after_seq: 0,
                        limit: 0,
                    })
                    .await,
            ),
            refused(
                mallory
                    .get_room(v1::GetRoomRequest {
                        room_id: room.to_owned(),
                    })
                    .await,
            ),
        ];
        for error in errors {
            assert_eq!(error.code(), ErrorCode::NotFound, "{room}: {error:?}");
            assert_eq!(
                (error.message.as_str(), error.field.as_str()),
                (reference.message.as_str(), reference.field.as_str()),
                "the same message and field whether the room exists or not"
            );
        }
    }
    scene.still_serving().await;
}

#[tokio::test]
async fn oversized_text_is_too_large_naming_content_text() {
    // R-8.3.2, R-5.6.3
    let scene = Scene::start().await;
    let alice = scene.server.client("alice").await;
    let room = group(&alice, &[]).await;
    let limits = scene.server.config.limits.max_text_chars;
    let long = "é".repeat(limits + 1);
    let error = refused(alice.send(send(&room, "big", &long)).await);
    assert_eq!(
        (error.code(), error.field.as_str()),
        (ErrorCode::TooLarge, "content.text")
    );
    let at_limit = "é".repeat(limits);
    alice
        .send(send(&room, "ok", &at_limit))
        .await
        .expect("the limit counts characters, not bytes");
    scene.still_serving().await;
}

#[tokio::test]
async fn an_empty_client_msg_id_is_invalid() {
    // R-8.2.1
    let scene = Scene::start().await;
    let alice = scene.server.client("alice").await;
    let room = group(&alice, &[]).await;
    let error = refused(alice.send(send(&room, "", "hi")).await);
    assert_eq!(
        (error.code(), error.field.as_str()),
        (ErrorCode::InvalidArgument, "client_msg_id")
    );
    scene.still_serving().await;
}

#[tokio::test]
async fn a_call_signal_without_a_kind_is_unsupported() {
    // R-3.3.2, R-15.1.1
    let scene = Scene::start().await;
    let alice = scene.server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    let request = v1::CallSignalRequest {
        call_id: "c1".into(),
        room_id: room,
        target_user_id: "bob".into(),
        target_session_id: String::new(),
        signal: Some(v1::CallSignal { kind: None }),
    };
    assert_eq!(
        code_of(alice.call_signal(request).await),
        ErrorCode::Unsupported
    );
    scene.still_serving().await;
}

// ---------------------------------------------------------------------------------------------
// The WebSocket upgrade and the handshake timer (sections 2.3 and 4.1).

#[tokio::test]
async fn no_subprotocol_offered_closes_4009() {
    // R-2.3.2
    let scene = Scene::start().await;
    let target = scene
        .server
        .target()
        .with_subprotocols(Vec::<String>::new());
    let client = Client::open(&target).await.expect("upgrade completes");
    closed_with(&client, CloseCode::UnsupportedVersion).await;
    scene.still_serving().await;
}

#[tokio::test]
async fn a_foreign_origin_is_refused_at_the_upgrade() {
    // R-2.3.8
    let scene = Scene::start().await;
    let foreign = scene.server.target().with_origin("https://evil.example");
    match Client::open(&foreign).await {
        Err(ClientError::Transport(TransportError::Refused { status })) => {
            assert_eq!(status, 403);
        }
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    let own = format!("http://{}", scene.server.addr);
    let client = Client::open(&scene.server.target().with_origin(own))
        .await
        .expect("the server's own origin is allowed");
    client
        .connect(&scene.server.token("alice"))
        .await
        .expect("connect");
    scene.still_serving().await;
}

#[tokio::test]
async fn no_connect_in_time_closes_4006() {
    // R-4.1.2 (a real timer: only the close code is asserted, never the time taken). On
    // WebSocket: over QUIC the control stream does not exist before the client's first bytes,
    // so there is no stream for the Disconnect event (tests/quic.rs checks the close code).
    let scene = Scene::with(
        TestServer::start_with(|config| config.session.handshake_timeout_ms = 200).await,
    )
    .await;
    let client = scene.server.ws_open().await;
    assert_eq!(disconnect_event(&client).await, CloseCode::ConnectTimeout);
    closed_with(&client, CloseCode::ConnectTimeout).await;
    scene.still_serving().await;
}

#[tokio::test]
async fn a_request_pipelined_behind_connect_runs_in_the_new_session() {
    // R-4.1.3, R-4.1.4: Connect and a Ping in one WebSocket message; the Ping belongs to the
    // session Connect opens, and its reply follows the ConnectResponse.
    let scene = Scene::start().await;
    let client = scene.server.open().await;
    let connect = v1::ClientFrame {
        id: 1,
        trace_id: String::new(),
        request: Some(Request::Connect(v1::ConnectRequest {
            token: scene.server.token("alice"),
            ..Default::default()
        })),
    };
    let mut message = framed(&connect);
    message.extend_from_slice(&framed(&ping(2)));
    message.extend_from_slice(&framed(&ping(3)));
    client.send_raw(message.freeze()).await.expect("send");
    let mut results = Vec::new();
    for _ in 0..3 {
        let reply = within(client.next_reply()).await.expect("reply");
        results.push((reply.request_id, reply.result));
    }
    assert!(
        matches!(results[0], (1, Some(v1::reply::Result::Connect(_)))),
        "Connect's reply first: {results:?}"
    );
    assert!(matches!(results[1], (2, Some(v1::reply::Result::Ping(_)))));
    assert!(matches!(results[2], (3, Some(v1::reply::Result::Ping(_)))));
    scene.still_serving().await;
}

#[tokio::test]
async fn a_refresh_with_another_users_token_is_unauthenticated_on_field_token() {
    // R-4.4.3
    let scene = Scene::start().await;
    let client = scene.server.client("alice").await;
    for token in [
        scene.server.token("mallory"),
        token_from_another_secret("alice"),
    ] {
        let error = refused(
            within(client.refresh(v1::RefreshRequest {
                token: token.clone(),
            }))
            .await,
        );
        assert_eq!(error.code(), ErrorCode::Unauthenticated);
        assert_eq!(error.field, "token");
        assert!(!error.message.contains(&token), "R-23.1.2");
    }
    // The session keeps its token and user.
    let room = group(&client, &[]).await;
    let me = within(client.get_room(v1::GetRoomRequest { room_id: room }))
        .await
        .expect("session kept")
        .me
        .expect("me");
    assert_eq!(me.user_id, "alice");
    scene.still_serving().await;
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    // R-2.3.10, R-4.7.4 (RFC 6455 §5.5.1): a client closing with 4012 gets the close echoed,
    // not a reset connection.
    let scene = Scene::start().await;
    let client = scene.server.ws_client("alice").await;
    let info = within(client.close(4012, "signing out")).await;
    // Local: the handshake this client started completed (a reset reads as Abnormal, 1006).
    assert_eq!(info.by, ClosedBy::Local, "{info:?}");
    assert_eq!(info.code, 4012);
    scene.still_serving().await;
}
