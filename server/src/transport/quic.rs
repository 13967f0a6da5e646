//! QUIC: one client-opened bidirectional control stream carries every frame in both directions
//! as a plain byte stream (docs/protocol.md §2.5), and typing may travel as datagrams when the
//! session negotiated `typing-datagrams` (R-2.5.6). The close code of a session is the QUIC
//! application error code (R-2.5.4).
//!
//! ```text
//!  control stream ──read_chunk──▶ Inbound::Stream ─┐
//!  datagrams ──────read_datagram─▶ Inbound::Datagram ┴─▶ session driver ──send──▶ control stream
//!                                                               └─send_datagram─▶ datagram
//! ```

use async_trait::async_trait;
use bytes::Bytes;
use chatwire_protocol::v1;
use quinn::{Connection, ReadError, RecvStream, SendStream, VarInt};

use crate::session::driver::{Inbound, SessionTransport, TransportError, TransportReader};

/// How long a closing session waits for the peer to read the rest of the control stream.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The most bytes one read takes from the control stream.
const READ_CHUNK: usize = 64 * 1024;

/// The write half of a QUIC session: the control stream's send side and datagrams out.
#[derive(Debug)]
pub struct QuicTransport {
    connection: Connection,
    send: SendStream,
    /// Whether the peer can take and send datagrams (both sides advertised
    /// `max_datagram_frame_size`).
    datagrams: bool,
    /// The session closed the connection with its own code.
    closed: bool,
}

/// The read half of a QUIC session: the control stream's receive side and datagrams in.
#[derive(Debug)]
pub struct QuicReader {
    connection: Connection,
    recv: RecvStream,
    datagrams: bool,
}

/// Splits an established connection and the control stream the client opened into the
/// session's read and write halves.
pub fn split(
    connection: Connection,
    send: SendStream,
    recv: RecvStream,
) -> (QuicReader, QuicTransport) {
    let datagrams = connection.max_datagram_size().is_some();
    let reader = QuicReader {
        connection: connection.clone(),
        recv,
        datagrams,
    };
    let writer = QuicTransport {
        connection,
        send,
        datagrams,
        closed: false,
    };
    (reader, writer)
}

fn on_chunk(
    chunk: Result<Option<quinn::Chunk>, ReadError>,
) -> Option<Result<Inbound, TransportError>> {
    match chunk {
        Ok(Some(chunk)) => Some(Ok(Inbound::Stream(chunk.bytes))),
        // The client finished the control stream or closed the connection: its session ends.
        Ok(None) | Err(ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(_))) => {
            None
        }
        Err(ReadError::Reset(_)) => None,
        Err(err) => Some(Err(TransportError(err.to_string()))),
    }
}

/// The QUIC application error code of a close code (the same number as on WebSocket).
pub fn error_code(code: v1::CloseCode) -> VarInt {
    VarInt::from_u32(u32::try_from(i32::from(code)).unwrap_or(4011))
}

#[async_trait]
impl TransportReader for QuicReader {
    async fn recv(&mut self) -> Option<Result<Inbound, TransportError>> {
        // Both reads are cancel-safe: a read that loses the race consumes nothing.
        loop {
            tokio::select! {
                biased;
                chunk = self.recv.read_chunk(READ_CHUNK, true) => return on_chunk(chunk),
                datagram = self.connection.read_datagram(), if self.datagrams => match datagram {
                    Ok(datagram) => return Some(Ok(Inbound::Datagram(datagram))),
                    // The stream read reports how the connection ended.
                    Err(_) => self.datagrams = false,
                },
            }
        }
    }
}

#[async_trait]
impl SessionTransport for QuicTransport {
    async fn send(&mut self, bytes: Bytes) -> Result<(), TransportError> {
        self.send
            .write_chunk(bytes)
            .await
            .map_err(|err| TransportError(err.to_string()))
    }

    fn typing_datagrams(&self) -> bool {
        self.datagrams
    }

    fn kind(&self) -> &'static str {
        "quic"
    }

    fn send_datagram(&mut self, frame: Bytes) -> bool {
        self.datagrams && self.connection.send_datagram(frame).is_ok()
    }

    async fn close(&mut self, code: v1::CloseCode, reason: &str) {
        self.closed = true;
        // A connection close discards unsent stream data: finish the stream and give the peer
        // a moment to read it (the Disconnect event) first.
        if self.send.finish().is_ok() {
            let _ = tokio::time::timeout(CLOSE_GRACE, self.send.stopped()).await;
        }
        let reason: String = reason.chars().take(100).collect();
        self.connection.close(error_code(code), reason.as_bytes());
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        // The session ended without closing (the client finished or reset the control stream,
        // or the connection broke): R-2.5.4 closes it as CLIENT_CLOSED.
        if !self.closed {
            self.connection
                .close(error_code(v1::CloseCode::ClientClosed), b"session ended");
        }
    }
}
