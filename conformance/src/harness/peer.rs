//! The harness's side of one client connection: a WebSocket accepted on the harness's listener
//! (subprotocol `chatwire.v1` selected when offered), client frames decoded one at a time,
//! server frames written one per binary message.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chatwire_protocol::limits::{DEFAULT_MAX_CLIENT_FRAME_BYTES, DEFAULT_MAX_SERVER_FRAME_BYTES};
use chatwire_protocol::v1::{self, client_frame::Request};
use chatwire_protocol::{ClientFrameDecoder, WS_SUBPROTOCOL, encode_frame};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HttpRequest, Response,
};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::HarnessError;

/// The user id every harness session gets.
pub const HARNESS_USER: &str = "harness-user";

/// One accepted client connection.
#[derive(Debug)]
pub(super) struct Peer {
    ws: WebSocketStream<TcpStream>,
    decoder: ClientFrameDecoder,
    frames: VecDeque<v1::ClientFrame>,
}

impl Peer {
    /// Accepts the next connection, waiting until `deadline`.
    pub(super) async fn accept(
        listener: &TcpListener,
        deadline: Instant,
    ) -> Result<Self, HarnessError> {
        let (stream, _) = until(deadline, "the client to connect", listener.accept())
            .await?
            .map_err(|e| HarnessError::Io(e.to_string()))?;
        let ws = until(
            deadline,
            "the WebSocket handshake",
            tokio_tungstenite::accept_hdr_async(stream, select_subprotocol),
        )
        .await?
        .map_err(|e| HarnessError::Io(e.to_string()))?;
        Ok(Self {
            ws,
            decoder: ClientFrameDecoder::new(DEFAULT_MAX_CLIENT_FRAME_BYTES),
            frames: VecDeque::new(),
        })
    }

    /// The next client frame; `None` when the client closed the connection.
    pub(super) async fn next(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<v1::ClientFrame>, HarnessError> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Ok(Some(frame));
            }
            let message = until(deadline, "a frame from the client", self.ws.next()).await?;
            match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Binary(bytes))) => self.push(&bytes)?,
                Some(Ok(Message::Text(_))) => {
                    return Err(HarnessError::Client(
                        "a text message (R-2.3.5: frames travel in binary messages)".into(),
                    ));
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next frame within `window`, or `None` when none came (or the client closed).
    pub(super) async fn next_within(
        &mut self,
        window: Duration,
    ) -> Result<Option<v1::ClientFrame>, HarnessError> {
        match self.next(Instant::now() + window).await {
            Err(HarnessError::Timeout(_)) => Ok(None),
            other => other,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), HarnessError> {
        self.decoder.push(bytes);
        while let Some(frame) = self
            .decoder
            .next_frame()
            .map_err(|e| HarnessError::Client(format!("an undecodable frame: {e}")))?
        {
            self.frames.push_back(frame);
        }
        self.decoder
            .finish()
            .map_err(|e| HarnessError::Client(format!("a message ending inside a frame: {e}")))
    }

    /// Sends one server frame.
    pub(super) async fn send(&mut self, frame: v1::ServerFrame) -> Result<(), HarnessError> {
        let mut buf = BytesMut::new();
        encode_frame(&frame, DEFAULT_MAX_SERVER_FRAME_BYTES, &mut buf)
            .map_err(|e| HarnessError::Io(e.to_string()))?;
        self.ws
            .send(Message::Binary(buf.freeze()))
            .await
            .map_err(|e| HarnessError::Io(e.to_string()))
    }

    /// Sends a reply.
    pub(super) async fn reply(
        &mut self,
        request_id: u64,
        result: v1::reply::Result,
    ) -> Result<(), HarnessError> {
        self.send(v1::ServerFrame {
            frame: Some(v1::server_frame::Frame::Reply(v1::Reply {
                request_id,
                result: Some(result),
            })),
        })
        .await
    }

    /// Sends an event.
    pub(super) async fn event(&mut self, kind: v1::event::Kind) -> Result<(), HarnessError> {
        self.send(v1::ServerFrame {
            frame: Some(v1::server_frame::Frame::Event(v1::Event {
                kind: Some(kind),
            })),
        })
        .await
    }

    /// Sends live room events.
    pub(super) async fn room_events(
        &mut self,
        room: &str,
        seqs: &[u64],
    ) -> Result<(), HarnessError> {
        for &seq in seqs {
            self.event(v1::event::Kind::Room(room_event(room, seq)))
                .await?;
        }
        Ok(())
    }

    /// `Disconnect`, then a close frame with the same code.
    pub(super) async fn disconnect(
        &mut self,
        disconnect: v1::Disconnect,
    ) -> Result<(), HarnessError> {
        let code = u16::try_from(disconnect.code).unwrap_or(4008);
        let reason = disconnect.reason.clone();
        self.event(v1::event::Kind::Disconnect(disconnect)).await?;
        let frame = CloseFrame {
            code: WsCloseCode::from(code),
            reason: tungstenite::Utf8Bytes::from(reason),
        };
        // The client may already be gone; the close is best effort.
        let _ = self.ws.close(Some(frame)).await;
        Ok(())
    }

    /// Reads the handshake: the first frame must be Connect, answered with a session.
    pub(super) async fn handshake(
        &mut self,
        limits: v1::Limits,
        token_ttl_ms: i64,
        deadline: Instant,
    ) -> Result<v1::ConnectRequest, HarnessError> {
        let frame = self
            .next(deadline)
            .await?
            .ok_or_else(|| HarnessError::Client("closed before Connect".into()))?;
        let Some(Request::Connect(connect)) = frame.request else {
            return Err(HarnessError::Client(format!(
                "the first frame was not Connect (R-4.1.1): {:?}",
                frame.request
            )));
        };
        let now = now_ms();
        let response = v1::ConnectResponse {
            session_id: format!("harness-{}", frame.id),
            user_id: HARNESS_USER.into(),
            server: Some(v1::ServerInfo {
                name: "chatwire-conformance client-harness".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                node_id: "harness".into(),
            }),
            capabilities: Vec::new(),
            limits: Some(limits),
            heartbeat_interval_ms: 15_000,
            server_time_ms: now,
            token_expires_at_ms: now + token_ttl_ms,
        };
        self.reply(frame.id, v1::reply::Result::Connect(response))
            .await?;
        Ok(connect)
    }

    /// Answers a request the scenario does not script: an empty success for the session's
    /// housekeeping (Ping, Sync, receipts, typing, Unsubscribe, Subscribe of other rooms),
    /// UNSUPPORTED for the rest.
    pub(super) async fn answer_plainly(
        &mut self,
        frame: &v1::ClientFrame,
    ) -> Result<(), HarnessError> {
        use v1::reply::Result as R;
        let result = match &frame.request {
            Some(Request::Ping(ping)) => R::Ping(v1::PingResponse {
                client_time_ms: ping.client_time_ms,
                server_time_ms: now_ms(),
            }),
            Some(Request::Sync(_)) => R::Sync(v1::SyncResponse {
                caught_up: true,
                ..Default::default()
            }),
            Some(Request::MarkDelivered(_)) => R::MarkDelivered(Default::default()),
            Some(Request::MarkRead(_)) => R::MarkRead(Default::default()),
            Some(Request::Typing(_)) => R::Typing(Default::default()),
            Some(Request::Unsubscribe(_)) => R::Unsubscribe(Default::default()),
            Some(Request::Subscribe(s)) => R::Subscribe(v1::SubscribeResponse {
                room_id: s.room_id.clone(),
                head_seq: s.after_seq,
                complete: true,
                ..Default::default()
            }),
            _ => R::Error(v1::Error {
                code: v1::ErrorCode::Unsupported.into(),
                message: "the client harness does not script this request".into(),
                ..Default::default()
            }),
        };
        if frame.id == 0 {
            return Ok(());
        }
        self.reply(frame.id, result).await
    }
}

/// Selects `chatwire.v1` when the client offers it; a client that does not offer
/// it still gets a connection, so the scenario can judge it.
// The error type is tungstenite's callback signature, not ours.
#[allow(clippy::result_large_err)]
fn select_subprotocol(
    request: &HttpRequest,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == WS_SUBPROTOCOL);
    if offered {
        response.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(WS_SUBPROTOCOL),
        );
    }
    Ok(response)
}

/// A `MessageCreated` room event at `seq`.
pub(super) fn room_event(room: &str, seq: u64) -> v1::RoomEvent {
    v1::RoomEvent {
        room_id: room.into(),
        seq,
        ts_ms: now_ms(),
        sender: "harness-peer".into(),
        kind: Some(v1::room_event::Kind::MessageCreated(v1::MessageCreated {
            ordinal: seq,
            client_msg_id: format!("harness-{seq}"),
            content: Some(v1::Content {
                text: format!("event {seq}"),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Awaits `future` until `deadline`.
pub(super) async fn until<T>(
    deadline: Instant,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> Result<T, HarnessError> {
    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), future)
        .await
        .map_err(|_| HarnessError::Timeout(what.to_owned()))
}
