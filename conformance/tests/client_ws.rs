//! The shared client over WebSocket against a scripted in-test server (tokio-tungstenite on
//! 127.0.0.1:0): request ids and reply correlation, batched frames, typed error replies, close
//! codes, raw sends, the subprotocol check, and helper coverage of `ChatwireService`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chatwire_conformance::client::{
    CALLS, Client, ClientError, ClientOptions, CloseInfo, ClosedBy, TransportError,
    TransportFactory, WsTarget,
};
use chatwire_protocol::v1::{
    self, ClientFrame, CloseCode, ErrorCode, Event, Reply, ServerFrame, client_frame, event, reply,
    server_frame,
};
use chatwire_protocol::{ClientFrameDecoder, FILE_DESCRIPTOR_SET, WS_SUBPROTOCOL, encode_frame};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A hang guard only: nothing here waits on time for correctness.
const HANG: Duration = Duration::from_secs(20);

async fn guard<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, fut).await.expect("test hung")
}

/// What the scripted server saw in the upgrade request.
#[derive(Debug, Default)]
struct Seen {
    path: String,
    protocols: Option<String>,
    origin: Option<String>,
}

/// One accepted connection, driven by a test's script.
struct Peer {
    ws: WebSocketStream<TcpStream>,
}

impl Peer {
    /// The next binary message, as it came.
    async fn recv_raw(&mut self) -> Bytes {
        loop {
            match self.ws.next().await.expect("client left").expect("read") {
                Message::Binary(data) => return data,
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// The frames of the next binary message.
    async fn recv_frames(&mut self) -> Vec<ClientFrame> {
        let data = self.recv_raw().await;
        let mut decoder = ClientFrameDecoder::new(1 << 20);
        decoder.push(&data);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame().expect("decodable client frame") {
            frames.push(frame);
        }
        decoder.finish().expect("whole frames per message");
        frames
    }

    /// The single frame of the next message.
    async fn recv_frame(&mut self) -> ClientFrame {
        let mut frames = self.recv_frames().await;
        assert_eq!(frames.len(), 1, "one frame per message");
        frames.remove(0)
    }

    /// Sends frames as one binary message.
    async fn send(&mut self, frames: &[ServerFrame]) {
        let mut buf = BytesMut::new();
        for frame in frames {
            encode_frame(frame, usize::MAX, &mut buf).expect("encode");
        }
        self.send_raw(buf.freeze()).await;
    }

    async fn send_raw(&mut self, data: Bytes) {
        self.ws.send(Message::Binary(data)).await.expect("send");
    }

    /// Sends a close, then reads until the client's answer ends the connection.
    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: Utf8Bytes::from(reason.to_owned()),
        };
        self.ws.close(Some(frame)).await.expect("close");
        while let Some(Ok(_)) = self.ws.next().await {}
    }

    /// Reads until the client's close arrives; returns its code and reason.
    async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.ws.next().await.expect("client left").expect("read") {
                Message::Close(Some(frame)) => {
                    let info = (frame.code.into(), frame.reason.to_string());
                    while let Some(Ok(_)) = self.ws.next().await {}
                    return info;
                }
                Message::Close(None) => panic!("close without a code"),
                _ => {}
            }
        }
    }
}

/// Starts a one-connection scripted server; `select` is the subprotocol it answers with.
#[allow(
    clippy::result_large_err,
    reason = "tungstenite's accept callback returns its own large ErrorResponse"
)]
async fn serve<F, Fut>(select: Option<&'static str>, script: F) -> (WsTarget, JoinHandle<Seen>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut seen = Seen::default();
        let callback = |request: &Request, mut response: Response| {
            let header = |name: &str| {
                let value = request.headers().get(name)?;
                value.to_str().ok().map(str::to_owned)
            };
            seen.path = request.uri().path().to_owned();
            seen.protocols = header("Sec-WebSocket-Protocol");
            seen.origin = header("Origin");
            if let Some(protocol) = select {
                let value = HeaderValue::from_static(protocol);
                response
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", value);
            }
            Ok::<Response, ErrorResponse>(response)
        };
        let ws = tokio_tungstenite::accept_hdr_async(stream, callback)
            .await
            .expect("handshake");
        script(Peer { ws }).await;
        seen
    });
    (WsTarget::new(addr), task)
}

fn reply(request_id: u64, result: reply::Result) -> ServerFrame {
    ServerFrame {
        frame: Some(server_frame::Frame::Reply(Reply {
            request_id,
            result: Some(result),
        })),
    }
}

fn heartbeat(server_time_ms: i64) -> Event {
    Event {
        kind: Some(event::Kind::Heartbeat(v1::Heartbeat { server_time_ms })),
    }
}

fn event_frame(event: Event) -> ServerFrame {
    ServerFrame {
        frame: Some(server_frame::Frame::Event(event)),
    }
}

fn not_found() -> v1::Error {
    v1::Error {
        code: ErrorCode::NotFound.into(),
        message: "no such room".to_owned(),
        ..Default::default()
    }
}

fn get_room(room_id: &str) -> v1::GetRoomRequest {
    v1::GetRoomRequest {
        room_id: room_id.to_owned(),
    }
}

async fn open(target: &WsTarget) -> Client {
    Client::open(target).await.expect("open")
}

#[tokio::test]
async fn ids_count_from_one_and_replies_are_matched_out_of_order() {
    let (target, server) = serve(Some(WS_SUBPROTOCOL), |mut peer| async move {
        let mut frames = Vec::new();
        for _ in 0..3 {
            frames.push(peer.recv_frame().await);
        }
        let mut ids: Vec<u64> = frames.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3]);
        // Answer in reverse order of arrival, each echoing its own request.
        for frame in frames.iter().rev() {
            let Some(client_frame::Request::Ping(ping)) = &frame.request else {
                panic!("expected ping, got {frame:?}");
            };
            let pong = v1::PingResponse {
                client_time_ms: ping.client_time_ms,
                server_time_ms: 0,
            };
            peer.send(&[reply(frame.id, reply::Result::Ping(pong))])
                .await;
        }
        peer.close(CloseCode::ClientClosed as u16, "done").await;
    })
    .await;
    let client = open(&target).await;
    let ping = |client_time_ms| client.ping(v1::PingRequest { client_time_ms });
    let (a, b, c) = guard(async { tokio::join!(ping(10), ping(20), ping(30)) }).await;
    assert_eq!(a.expect("a").client_time_ms, 10);
    assert_eq!(b.expect("b").client_time_ms, 20);
    assert_eq!(c.expect("c").client_time_ms, 30);
    assert_eq!(client.next_id(), 4, "three ids were used");
    let seen = guard(server).await.expect("server");
    assert_eq!(seen.path, WsTarget::DEFAULT_PATH);
    assert_eq!(seen.protocols.as_deref(), Some(WS_SUBPROTOCOL));
    assert_eq!(seen.origin, None);
}

#[tokio::test]
async fn several_frames_in_one_message_arrive_in_order() {
    let (target, server) = serve(Some(WS_SUBPROTOCOL), |mut peer| async move {
        let frame = peer.recv_frame().await;
        let Some(client_frame::Request::Connect(connect)) = &frame.request else {
            panic!("expected connect first, got {frame:?}");
        };
        assert_eq!(connect.token, "token-a");
        let name = connect.client.as_ref().map(|c| c.name.as_str());
        assert_eq!(name, Some("chatwire-conformance"));
        let connected = v1::ConnectResponse {
            session_id: "s1".to_owned(),
            ..Default::default()
        };
        let batch = [
            event_frame(heartbeat(1)),
            reply(frame.id, reply::Result::Connect(connected)),
            event_frame(heartbeat(2)),
            event_frame(heartbeat(3)),
        ];
        peer.send(&batch).await;
        peer.close(CloseCode::ClientClosed as u16, "done").await;
    })
    .await;
    let client = open(&target).await;
    let connected = guard(client.connect("token-a")).await.expect("connect");
    assert_eq!(connected.session_id, "s1");
    // The event before the reply is queued by the time the call returns.
    assert_eq!(client.try_next_event(), Some(heartbeat(1)));
    let rest = guard(client.events_until(|e| *e == heartbeat(3))).await;
    assert_eq!(rest.expect("events"), [heartbeat(2), heartbeat(3)]);
    guard(server).await.expect("server");
    let end = guard(client.next_event())
        .await
        .expect_err("no more events");
    assert_eq!(end.close_info().map(|i| i.code), Some(4012));
}

#[tokio::test]
async fn error_replies_are_typed_errors_in_helpers_and_results_in_call() {
    let (target, server) = serve(Some(WS_SUBPROTOCOL), |mut peer| async move {
        for _ in 0..2 {
            let frame = peer.recv_frame().await;
            let error = reply(frame.id, reply::Result::Error(not_found()));
            peer.send(&[error]).await;
        }
        // A result of the wrong type for a GetRoom.
        let frame = peer.recv_frame().await;
        let pong = reply::Result::Ping(v1::PingResponse::default());
        peer.send(&[reply(frame.id, pong)]).await;
        peer.close(CloseCode::ClientClosed as u16, "done").await;
    })
    .await;
    let client = open(&target).await;
    let err = guard(client.get_room(get_room("r1")))
        .await
        .expect_err("typed");
    assert_eq!(err, ClientError::Server(not_found()));
    assert_eq!(err.server_code(), Some(ErrorCode::NotFound));
    let raw = guard(client.call(client_frame::Request::GetRoom(get_room("r1")))).await;
    assert_eq!(raw, Ok(reply::Result::Error(not_found())));
    let wrong = guard(client.get_room(get_room("r1")))
        .await
        .expect_err("wrong type");
    assert!(
        matches!(wrong, ClientError::UnexpectedReply(_)),
        "{wrong:?}"
    );
    guard(server).await.expect("server");
}

#[tokio::test]
async fn a_peer_close_fails_pending_calls_and_is_reported() {
    let (target, server) = serve(Some(WS_SUBPROTOCOL), |mut peer| async move {
        // Two requests in flight; neither gets a reply.
        peer.recv_frame().await;
        peer.recv_frame().await;
        let disconnect = v1::Disconnect {
            code: CloseCode::SlowConsumer.into(),
            reason: "slow consumer".to_owned(),
            reconnect: true,
            reconnect_delay_ms: 0,
        };
        let event = Event {
            kind: Some(event::Kind::Disconnect(disconnect)),
        };
        peer.send(&[event_frame(event)]).await;
        peer.close(CloseCode::SlowConsumer as u16, "slow consumer")
            .await;
    })
    .await;
    let client = open(&target).await;
    let (a, b) = guard(async {
        tokio::join!(
            client.get_room(get_room("a")),
            client.get_room(get_room("b"))
        )
    })
    .await;
    let expected = CloseInfo::peer(4004, "slow consumer");
    assert_eq!(a, Err(ClientError::Closed(expected.clone())));
    assert_eq!(b, Err(ClientError::Closed(expected.clone())));
    assert_eq!(client.closed(), Some(expected.clone()));
    assert!(expected.is_peer_close(CloseCode::SlowConsumer));
    assert_eq!(expected.close_code(), Some(CloseCode::SlowConsumer));
    // The Disconnect event sent before the close is still readable, then the close.
    let event = guard(client.next_event()).await.expect("disconnect event");
    assert!(
        matches!(event.kind, Some(event::Kind::Disconnect(_))),
        "{event:?}"
    );
    let end = guard(client.next_event()).await;
    assert_eq!(end, Err(ClientError::Closed(expected.clone())));
    // Calls after the end fail at once with the same close.
    let late = guard(client.ping(v1::PingRequest::default())).await;
    assert_eq!(late, Err(ClientError::Closed(expected)));
    guard(server).await.expect("server");
}

#[tokio::test]
async fn raw_bytes_batches_chosen_ids_and_trace_ids_reach_the_server() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let garbage = Bytes::from_static(b"\xff\xff\xff not a frame");
    let expected_garbage = garbage.clone();
    let (target, server) = serve(Some(WS_SUBPROTOCOL), |mut peer| async move {
        assert_eq!(peer.recv_raw().await, expected_garbage);
        let frames = peer.recv_frames().await;
        let ids: Vec<u64> = frames.iter().map(|f| f.id).collect();
        assert_eq!(ids, [7, 7], "both frames in one message");
        let pong = || reply::Result::Ping(v1::PingResponse::default());
        peer.send(&[
            reply(7, reply::Result::Error(not_found())),
            reply(7, pong()),
        ])
        .await;
        let traced = peer.recv_frame().await;
        assert_eq!(traced.trace_id, TRACE);
        assert_eq!(traced.id, 1, "hand-built frames do not take ids");
        peer.send(&[reply(traced.id, pong())]).await;
        peer.close(CloseCode::ClientClosed as u16, "done").await;
    })
    .await;
    let client = open(&target).await;
    guard(client.send_raw(garbage)).await.expect("raw");
    let frame = ClientFrame {
        id: 7,
        trace_id: String::new(),
        request: Some(client_frame::Request::Ping(v1::PingRequest::default())),
    };
    guard(client.send_batch(&[frame.clone(), frame]))
        .await
        .expect("batch");
    let first = guard(client.next_reply()).await.expect("first reply");
    let second = guard(client.next_reply()).await.expect("second reply");
    assert_eq!((first.request_id, second.request_id), (7, 7));
    assert!(matches!(first.result, Some(reply::Result::Error(_))));
    assert!(matches!(second.result, Some(reply::Result::Ping(_))));
    let ping = client_frame::Request::Ping(v1::PingRequest::default());
    let traced = guard(client.call_traced(ping, TRACE))
        .await
        .expect("traced");
    assert!(matches!(traced, reply::Result::Ping(_)));
    guard(server).await.expect("server");
}

#[tokio::test]
async fn a_local_close_sends_the_code_and_is_reported_as_local() {
    let (target, server) = serve(Some(WS_SUBPROTOCOL), |mut peer| async move {
        let (code, reason) = peer.expect_close().await;
        assert_eq!((code, reason.as_str()), (4012, "bye"));
    })
    .await;
    let client = open(&target).await;
    let info = guard(client.close(4012, "bye")).await;
    assert_eq!((info.code, info.by), (4012, ClosedBy::Local));
    guard(server).await.expect("server");
}

#[tokio::test]
async fn undecodable_server_input_closes_as_a_protocol_violation() {
    let (target, server) = serve(Some(WS_SUBPROTOCOL), |mut peer| async move {
        peer.recv_frame().await;
        // A length prefix announcing more than the client accepts.
        peer.send_raw(Bytes::from_static(b"\xff\xff\xff\x7f")).await;
        let (code, _) = peer.expect_close().await;
        assert_eq!(code, CloseCode::ProtocolViolation as u16);
    })
    .await;
    let options = ClientOptions {
        max_server_frame_bytes: 1024,
        ..ClientOptions::default()
    };
    let client = Client::open_with(&target, options).await.expect("open");
    let err = guard(client.ping(v1::PingRequest::default()))
        .await
        .expect_err("closed");
    let info = err.close_info().expect("closed error");
    assert_eq!((info.code, info.by), (4000, ClosedBy::Local));
    guard(server).await.expect("server");
}

#[tokio::test]
async fn subprotocol_and_origin_are_offered_and_the_selection_is_checked() {
    // Selected: opens, and the server saw the offer and the Origin.
    let (target, server) = serve(Some(WS_SUBPROTOCOL), |mut peer| async move {
        peer.close(CloseCode::ClientClosed as u16, "done").await;
    })
    .await;
    let target = target.with_origin("https://app.example");
    let client = open(&target).await;
    guard(client.wait_closed()).await;
    let seen = guard(server).await.expect("server");
    assert_eq!(seen.protocols.as_deref(), Some(WS_SUBPROTOCOL));
    assert_eq!(seen.origin.as_deref(), Some("https://app.example"));

    // Not selected: the handshake fails on the client.
    let (target, server) = serve(None, |_peer| async {}).await;
    let err = guard(target.open())
        .await
        .expect_err("no subprotocol selected");
    assert!(matches!(err, TransportError::Subprotocol(_)), "{err:?}");
    drop(server);

    // Nothing offered: opens, and the server may then close with UNSUPPORTED_VERSION.
    let (target, server) = serve(None, |mut peer| async move {
        let code = CloseCode::UnsupportedVersion as u16;
        peer.close(code, "offer chatwire.v1").await;
    })
    .await;
    let target = target.with_subprotocols(Vec::<String>::new());
    let client = open(&target).await;
    let info = guard(client.wait_closed()).await;
    assert!(info.is_peer_close(CloseCode::UnsupportedVersion), "{info}");
    let seen = guard(server).await.expect("server");
    assert_eq!(seen.protocols, None);
}

#[test]
fn every_rpc_of_the_service_has_a_typed_helper() {
    let pool = prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("descriptors");
    let service = pool
        .get_service_by_name("chatwire.v1.ChatwireService")
        .expect("service");
    let rpcs: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
    assert_eq!(rpcs, CALLS);
}
