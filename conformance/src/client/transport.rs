//! The transport abstraction under [`Client`](super::Client): an open connection that moves raw
//! bytes, split into a sending and a receiving half, plus the factory that opens connections.
//!
//! A transport knows nothing of frames: WebSocket moves one binary message per `send`, QUIC (later)
//! moves bytes on the control stream. [`Framing`] tells the client which of the two it is, so it
//! can check that each WebSocket message holds whole frames.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use chatwire_protocol::v1::CloseCode;

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// The peer sent a close (WebSocket close frame, QUIC application close) first.
    Peer,
    /// This side closed first: [`Client::close`](super::Client::close), or the client gave up on
    /// undecodable input.
    Local,
    /// The connection broke without a close (reset, EOF, I/O error).
    Abnormal,
}

/// How a connection ended: the close code and reason, as carried by the close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code: a Chatwire code (4000-4999), a WebSocket code, or [`CloseInfo::NO_STATUS`]
    /// / [`CloseInfo::ABNORMAL`].
    pub code: u16,
    /// The close reason text.
    pub reason: String,
    /// Who closed.
    pub by: ClosedBy,
}

impl CloseInfo {
    /// WebSocket 1005: a close frame without a code.
    pub const NO_STATUS: u16 = 1005;
    /// WebSocket 1006: the connection ended without a close frame.
    pub const ABNORMAL: u16 = 1006;

    /// A close the peer sent.
    pub fn peer(code: u16, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            code,
            reason,
            by: ClosedBy::Peer,
        }
    }

    /// A connection that broke without a close frame.
    pub fn abnormal(reason: impl Into<String>) -> Self {
        Self {
            code: Self::ABNORMAL,
            reason: reason.into(),
            by: ClosedBy::Abnormal,
        }
    }

    /// The Chatwire close code, when the code is one.
    pub fn close_code(&self) -> Option<CloseCode> {
        CloseCode::try_from(i32::from(self.code))
            .ok()
            .filter(|code| *code != CloseCode::Unspecified)
    }

    /// True when the peer closed with this Chatwire code.
    pub fn is_peer_close(&self, code: CloseCode) -> bool {
        self.by == ClosedBy::Peer && i32::from(self.code) == code as i32
    }
}

impl fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} close {} ({:?})", self.by, self.code, self.reason)
    }
}

/// A transport failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The server could not be reached (DNS, TCP, bad address).
    #[error("connect failed: {0}")]
    Connect(String),
    /// The server refused the handshake (WebSocket upgrade answered with an HTTP status).
    #[error("handshake refused with HTTP {status}")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// The server did not select an offered subprotocol (or ALPN), or selected another.
    #[error("subprotocol not agreed: {0}")]
    Subprotocol(String),
    /// The handshake failed otherwise.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer broke the transport's own rules (a WebSocket text message on a binary protocol).
    #[error("transport protocol error: {0}")]
    Protocol(String),
    /// Reading or writing failed, or the transport is already closed.
    #[error("transport I/O: {0}")]
    Io(String),
}

/// Whether a transport's units are whole frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Each received unit holds one or more whole frames (WebSocket binary messages).
    Messages,
    /// Units are arbitrary chunks of one byte stream (a QUIC stream).
    Stream,
}

/// The sending half of a connection.
#[async_trait]
pub trait TransportTx: Send + fmt::Debug {
    /// Sends one unit: one WebSocket binary message, or bytes on the QUIC stream.
    async fn send(&mut self, data: Bytes) -> Result<(), TransportError>;
    /// Closes the connection with a code and reason (WebSocket close frame, QUIC application
    /// close). The receiving half ends once the peer answers or the connection drops.
    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError>;
}

/// The receiving half of a connection.
#[async_trait]
pub trait TransportRx: Send + fmt::Debug {
    /// The next unit, `None` once the connection has ended (after a close, or after an error
    /// was returned).
    async fn recv(&mut self) -> Option<Result<Bytes, TransportError>>;
    /// The close the peer sent, once one was received.
    fn peer_close(&self) -> Option<CloseInfo>;
}

/// An open connection: both halves and how its units are framed.
#[derive(Debug)]
pub struct Transport {
    /// The sending half.
    pub tx: Box<dyn TransportTx>,
    /// The receiving half.
    pub rx: Box<dyn TransportRx>,
    /// Whether units hold whole frames.
    pub framing: Framing,
}

impl Transport {
    /// Sends one unit.
    pub async fn send(&mut self, data: Bytes) -> Result<(), TransportError> {
        self.tx.send(data).await
    }

    /// The next unit received.
    pub async fn recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        self.rx.recv().await
    }

    /// Closes with a code and reason.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError> {
        self.tx.close(code, reason).await
    }

    /// The close the peer sent, once received.
    pub fn peer_close(&self) -> Option<CloseInfo> {
        self.rx.peer_close()
    }
}

/// Opens new connections to one server, so tests can open as many as they need and the client
/// does not care which transport it runs on.
#[async_trait]
pub trait TransportFactory: Send + Sync + fmt::Debug {
    /// Opens a new connection (transport handshake only; no Chatwire frame is sent).
    async fn open(&self) -> Result<Transport, TransportError>;
}
