//! WebSocket: binary messages hold whole frames (docs/protocol.md §2.3); text messages are not
//! part of the binary subprotocol and end the session as a protocol violation. With the
//! `chatwire.v1.json` subprotocol it is the other way round: one proto3 JSON frame per text
//! message (§2.4).

use async_trait::async_trait;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use chatwire_protocol::v1;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

use super::json;
use crate::session::driver::{Inbound, SessionTransport, TransportError, TransportReader};

/// How long a closing session waits for the peer's close frame.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the connection stays open, unread, after the WebSocket layer refused an oversized
/// message. The peer may still be sending it; closing the socket with unread input resets the
/// connection, and the reset can discard our close frame (4007) before the peer reads it
/// the client would see 1006). Shorter than the driver's wait for its read half.
const REFUSED_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// The write half of a WebSocket session.
#[derive(Debug)]
pub struct WsTransport {
    sink: SplitSink<WebSocket, Message>,
    /// Frames travel as proto3 JSON text, not binary.
    json: bool,
}

/// The read half of a WebSocket session.
#[derive(Debug)]
pub struct WsReader {
    stream: SplitStream<WebSocket>,
    /// Frames travel as proto3 JSON text, not binary.
    json: bool,
    /// The longest client text message on the JSON mapping.
    max_text: usize,
    /// The WebSocket layer refused an oversized message: nothing more can be read.
    refused: bool,
}

/// Splits an upgraded socket into the session's read and write halves; `json` selects the
/// proto3 JSON mapping, whose text messages may hold at most `max_text` bytes.
pub fn split(socket: WebSocket, json: bool, max_text: usize) -> (WsReader, WsTransport) {
    let (sink, stream) = socket.split();
    let reader = WsReader {
        stream,
        json,
        max_text,
        refused: false,
    };
    (reader, WsTransport { sink, json })
}

impl WsReader {
    fn inbound(&self, message: Message) -> Option<Inbound> {
        Some(match (message, self.json) {
            (Message::Binary(bytes), false) => Inbound::Frames(bytes),
            (Message::Text(_), false) => {
                Inbound::Invalid("text messages need the chatwire.v1.json subprotocol")
            }
            (Message::Binary(_), true) => {
                Inbound::Invalid("binary messages are not part of chatwire.v1.json")
            }
            (Message::Text(text), true) if text.len() > self.max_text => Inbound::TooLarge,
            (Message::Text(text), true) => match json::client_frame_from_json(&text) {
                Some(frame) => Inbound::Frames(frame),
                None => Inbound::Undecodable,
            },
            // Pings are answered by the WebSocket layer; they count as nothing here.
            (Message::Ping(_) | Message::Pong(_), _) => return None,
            (Message::Close(_), _) => Inbound::Closed,
        })
    }
}

#[async_trait]
impl TransportReader for WsReader {
    async fn recv(&mut self) -> Option<Result<Inbound, TransportError>> {
        if self.refused {
            // The session is closing with 4007; keep the socket open a moment so the close
            // frame reaches the peer (see REFUSED_LINGER), then end.
            tokio::time::sleep(REFUSED_LINGER).await;
            return None;
        }
        loop {
            let message = match self.stream.next().await? {
                Ok(message) => message,
                // The WebSocket layer refuses a message over its size limit (from its header
                // on, before buffering it) and stops reading the connection.
                Err(err) if err.to_string().contains("Space limit exceeded") => {
                    self.refused = true;
                    return Some(Ok(Inbound::TooLarge));
                }
                Err(err) => return Some(Err(TransportError(err.to_string()))),
            };
            match self.inbound(message) {
                Some(Inbound::Closed) => {
                    // The WebSocket layer queued its close reply (RFC 6455 §5.5.1); it goes
                    // out on the next read, which then ends. Without it the peer sees a reset.
                    let drained = async { while let Some(Ok(_)) = self.stream.next().await {} };
                    let _ = tokio::time::timeout(CLOSE_GRACE, drained).await;
                    return None;
                }
                Some(inbound) => return Some(Ok(inbound)),
                None => continue,
            }
        }
    }
}

#[async_trait]
impl SessionTransport for WsTransport {
    async fn send(&mut self, bytes: Bytes) -> Result<(), TransportError> {
        if self.json {
            for text in json::server_frames_to_json(&bytes) {
                self.sink
                    .send(Message::Text(text.into()))
                    .await
                    .map_err(|err| TransportError(err.to_string()))?;
            }
            return Ok(());
        }
        self.sink
            .send(Message::Binary(bytes))
            .await
            .map_err(|err| TransportError(err.to_string()))
    }

    fn json_frames(&self) -> bool {
        self.json
    }

    /// Sends the close frame; the read half then sees the peer's answer (or gives up after a
    /// grace period) and the connection ends.
    async fn close(&mut self, code: v1::CloseCode, reason: &str) {
        let code = u16::try_from(i32::from(code)).unwrap_or(4011);
        let frame = CloseFrame {
            code,
            reason: reason.chars().take(100).collect::<String>().into(),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
    }
}
