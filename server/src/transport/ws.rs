//! WebSocket: binary messages hold whole frames (docs/protocol.md §2.3); text messages are not
//! part of the binary subprotocol and end the session as a protocol violation.

use async_trait::async_trait;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use chatwire_protocol::v1;

use crate::session::driver::{Inbound, SessionTransport, TransportError};

/// A WebSocket as a session transport.
#[derive(Debug)]
pub struct WsTransport {
    socket: WebSocket,
}

impl WsTransport {
    /// Wraps an upgraded socket.
    pub fn new(socket: WebSocket) -> Self {
        Self { socket }
    }
}

#[async_trait]
impl SessionTransport for WsTransport {
    async fn recv(&mut self) -> Option<Result<Inbound, TransportError>> {
        loop {
            let message = match self.socket.recv().await? {
                Ok(message) => message,
                Err(err) => return Some(Err(TransportError(err.to_string()))),
            };
            return Some(Ok(match message {
                Message::Binary(bytes) => Inbound::Frames(bytes),
                Message::Text(_) => {
                    Inbound::Invalid("text messages need the chatwire.v1.json subprotocol")
                }
                // Pings are answered by the WebSocket layer; they count as nothing here.
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => return None,
            }));
        }
    }

    async fn send(&mut self, bytes: Bytes) -> Result<(), TransportError> {
        self.socket
            .send(Message::Binary(bytes))
            .await
            .map_err(|err| TransportError(err.to_string()))
    }

    async fn close(&mut self, code: v1::CloseCode, reason: &str) {
        let code = u16::try_from(i32::from(code)).unwrap_or(4011);
        let frame = CloseFrame {
            code,
            reason: reason.chars().take(100).collect::<String>().into(),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
        // Wait for the peer's close (bounded by the peer closing the TCP connection).
        while let Some(Ok(message)) = self.socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    }
}
