//! The QUIC transport (quinn, ALPN `chatwire/1`): [`QuicTarget`] says where to connect and which
//! certificate to trust, and opens [`Transport`]s made of a [`QuicTx`] and a [`QuicRx`].
//!
//! Each connection opens the control stream (the first bidirectional stream) and every frame
//! goes on it. The receiving half hands the client whole frames: it splits the control stream
//! at the length prefixes and returns each typing datagram as a unit of its own, so a datagram
//! never lands in the middle of a stream frame. The peer's QUIC application close code is the
//! [`CloseInfo`] code (the same numbers as WebSocket close codes).
//!
//! All connections of one target share one client endpoint (one UDP socket), so
//! [`QuicTarget::rebind`] moves them all to a new socket: QUIC connection migration.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use chatwire_protocol::QUIC_ALPN;
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, ConnectionError, Endpoint, ReadError, RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;

use super::transport::{CloseInfo, Framing, Transport, TransportError, TransportFactory};
use super::transport::{TransportRx, TransportTx};

/// How long the receiving half waits for the connection close after the server finished the
/// control stream.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Frames whose prefix announces more than this are handed to the decoder unsplit (it refuses
/// them against its own, smaller limit).
const MAX_SPLIT_FRAME: u64 = 64 * 1024 * 1024;

/// Where and how to open QUIC connections. Every [`TransportFactory::open`] makes a new
/// connection from the target's endpoint.
#[derive(Debug, Clone)]
pub struct QuicTarget {
    /// The server's UDP address.
    pub addr: SocketAddr,
    /// The TLS server name (`localhost` for the development certificate).
    pub server_name: String,
    /// The only certificate trusted (a pin: the server's DER certificate).
    pub cert_der: Vec<u8>,
    /// Whether to advertise `max_datagram_frame_size` (QUIC datagram support).
    pub datagrams: bool,
    endpoint: Endpoint,
    stats: Arc<QuicStats>,
    last: Arc<Mutex<Option<Connection>>>,
}

/// Counters shared by the connections of one target.
#[derive(Debug, Default)]
struct QuicStats {
    datagrams_received: AtomicUsize,
}

impl QuicTarget {
    /// A target on a new client endpoint bound to an ephemeral port of the matching loopback or
    /// unspecified address. Needs a tokio runtime.
    pub fn new(
        addr: SocketAddr,
        server_name: impl Into<String>,
        cert_der: Vec<u8>,
    ) -> Result<Self, TransportError> {
        let endpoint = Endpoint::client(local_any(addr))
            .map_err(|err| TransportError::Connect(err.to_string()))?;
        Ok(Self {
            addr,
            server_name: server_name.into(),
            cert_der,
            datagrams: true,
            endpoint,
            stats: Arc::default(),
            last: Arc::default(),
        })
    }

    /// The same target without QUIC datagram support.
    pub fn without_datagrams(mut self) -> Self {
        self.datagrams = false;
        self
    }

    /// Moves every connection of this target to a new UDP socket on another port: QUIC
    /// connection migration, as when a phone moves from Wi-Fi to cellular.
    pub fn rebind(&self) -> Result<SocketAddr, TransportError> {
        let io = |err: std::io::Error| TransportError::Io(err.to_string());
        let socket = UdpSocket::bind(local_any(self.addr)).map_err(io)?;
        let local = socket.local_addr().map_err(io)?;
        self.endpoint.rebind(socket).map_err(io)?;
        Ok(local)
    }

    /// The local UDP address of the target's endpoint.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.endpoint
            .local_addr()
            .map_err(|err| TransportError::Io(err.to_string()))
    }

    /// Sends raw bytes as one datagram on the most recently opened connection.
    pub fn send_datagram(&self, data: Bytes) -> Result<(), TransportError> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let connection = last
            .as_ref()
            .ok_or_else(|| TransportError::Io("no connection".into()))?;
        connection
            .send_datagram(data)
            .map_err(|err| TransportError::Io(err.to_string()))
    }

    /// Datagrams received so far by this target's connections.
    pub fn datagrams_received(&self) -> usize {
        self.stats.datagrams_received.load(Ordering::SeqCst)
    }

    fn client_config(&self) -> Result<quinn::ClientConfig, TransportError> {
        let handshake = |err: &dyn std::fmt::Display| TransportError::Handshake(err.to_string());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert_der.clone()))
            .map_err(|e| handshake(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| handshake(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![QUIC_ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| handshake(&e))?;
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(5)));
        if !self.datagrams {
            transport.datagram_receive_buffer_size(None);
        }
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(transport));
        Ok(config)
    }

    /// Opens a connection and its control stream.
    /// A new QUIC connection, handshake done and ALPN checked, with no stream opened: for the
    /// cases that drive streams by hand (a finished control stream, a second stream).
    pub async fn connect_raw(&self) -> Result<Connection, TransportError> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config()?, self.addr, &self.server_name)
            .map_err(|err| TransportError::Connect(err.to_string()))?;
        let connection = connecting.await.map_err(handshake_error)?;
        let alpn = connection
            .handshake_data()
            .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol);
        if alpn.as_deref() != Some(QUIC_ALPN) {
            return Err(TransportError::Subprotocol(format!(
                "server selected ALPN {alpn:?}"
            )));
        }
        Ok(connection)
    }

    pub async fn connect(&self) -> Result<Transport, TransportError> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config()?, self.addr, &self.server_name)
            .map_err(|err| TransportError::Connect(err.to_string()))?;
        let connection = connecting.await.map_err(handshake_error)?;
        let alpn = connection
            .handshake_data()
            .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol);
        if alpn.as_deref() != Some(QUIC_ALPN) {
            return Err(TransportError::Subprotocol(format!(
                "server selected ALPN {alpn:?}"
            )));
        }
        let (send, recv) = connection
            .open_bi()
            .await
            .map_err(|err| TransportError::Io(err.to_string()))?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok(Transport {
            tx: Box::new(QuicTx {
                connection: connection.clone(),
                send,
            }),
            rx: Box::new(QuicRx {
                datagrams: connection.max_datagram_size().is_some(),
                connection,
                recv,
                buffer: BytesMut::new(),
                units: VecDeque::new(),
                stats: Arc::clone(&self.stats),
                peer_close: None,
                done: false,
            }),
            framing: Framing::Stream,
        })
    }
}

#[async_trait]
impl TransportFactory for QuicTarget {
    async fn open(&self) -> Result<Transport, TransportError> {
        self.connect().await
    }
}

fn local_any(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => "127.0.0.1:0",
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(v6) if v6.ip().is_loopback() => "[::1]:0",
        SocketAddr::V6(_) => "[::]:0",
    }
    .parse()
    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

fn handshake_error(err: ConnectionError) -> TransportError {
    match err {
        ConnectionError::ConnectionClosed(close) => TransportError::Handshake(close.to_string()),
        ConnectionError::ApplicationClosed(close) => TransportError::Handshake(close.to_string()),
        ConnectionError::TimedOut => TransportError::Connect("handshake timed out".into()),
        other => TransportError::Handshake(other.to_string()),
    }
}

/// A peer's application close as close info.
fn peer_close(close: &quinn::ApplicationClose) -> CloseInfo {
    let code = u16::try_from(close.error_code.into_inner()).unwrap_or(u16::MAX);
    CloseInfo::peer(code, String::from_utf8_lossy(&close.reason))
}

/// The sending half: bytes on the control stream.
#[derive(Debug)]
pub struct QuicTx {
    connection: Connection,
    send: SendStream,
}

#[async_trait]
impl TransportTx for QuicTx {
    async fn send(&mut self, data: Bytes) -> Result<(), TransportError> {
        self.send
            .write_chunk(data)
            .await
            .map_err(|err| TransportError::Io(err.to_string()))
    }

    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError> {
        self.connection
            .close(VarInt::from_u32(u32::from(code)), reason.as_bytes());
        Ok(())
    }
}

/// The receiving half: whole frames of the control stream and typing datagrams.
#[derive(Debug)]
pub struct QuicRx {
    connection: Connection,
    recv: RecvStream,
    datagrams: bool,
    buffer: BytesMut,
    units: VecDeque<Bytes>,
    stats: Arc<QuicStats>,
    peer_close: Option<CloseInfo>,
    done: bool,
}

impl QuicRx {
    /// Moves every whole frame buffered from the stream to `units`.
    fn split(&mut self) {
        loop {
            match prefix(&self.buffer) {
                Prefix::Incomplete => return,
                Prefix::Length { header, len } if len <= MAX_SPLIT_FRAME => {
                    let total = header + usize::try_from(len).unwrap_or(usize::MAX);
                    if self.buffer.len() < total {
                        return;
                    }
                    self.units.push_back(self.buffer.split_to(total).freeze());
                }
                // The decoder reports a malformed or oversized prefix.
                Prefix::Length { .. } | Prefix::Malformed => {
                    self.units.push_back(self.buffer.split().freeze());
                    return;
                }
            }
        }
    }

    /// The stream ended (or broke): record the peer's close, if any.
    async fn ended(&mut self, err: Option<ReadError>) -> Option<Result<Bytes, TransportError>> {
        self.done = true;
        let reason = match err {
            None | Some(ReadError::Reset(_)) => {
                // The server finished the control stream; its close follows.
                tokio::time::timeout(CLOSE_WAIT, self.connection.closed())
                    .await
                    .ok()
            }
            Some(ReadError::ConnectionLost(reason)) => Some(reason),
            Some(other) => return Some(Err(TransportError::Io(other.to_string()))),
        };
        match reason {
            Some(ConnectionError::ApplicationClosed(close)) => {
                self.peer_close = Some(peer_close(&close));
                None
            }
            Some(ConnectionError::LocallyClosed) => None,
            Some(other) => Some(Err(TransportError::Io(other.to_string()))),
            None => Some(Err(TransportError::Io(
                "control stream ended without a close".into(),
            ))),
        }
    }
}

#[async_trait]
impl TransportRx for QuicRx {
    async fn recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        loop {
            if let Some(unit) = self.units.pop_front() {
                return Some(Ok(unit));
            }
            if self.done {
                return None;
            }
            tokio::select! {
                biased;
                chunk = self.recv.read_chunk(64 * 1024, true) => match chunk {
                    Ok(Some(chunk)) => {
                        self.buffer.extend_from_slice(&chunk.bytes);
                        self.split();
                    }
                    Ok(None) => return self.ended(None).await,
                    Err(err) => return self.ended(Some(err)).await,
                },
                datagram = self.connection.read_datagram(), if self.datagrams => match datagram {
                    Ok(datagram) => {
                        self.stats.datagrams_received.fetch_add(1, Ordering::SeqCst);
                        return Some(Ok(datagram));
                    }
                    Err(_) => self.datagrams = false,
                },
            }
        }
    }

    fn peer_close(&self) -> Option<CloseInfo> {
        self.peer_close.clone()
    }
}

/// A frame's length prefix at the start of a buffer.
enum Prefix {
    Incomplete,
    Malformed,
    Length { header: usize, len: u64 },
}

fn prefix(buffer: &[u8]) -> Prefix {
    let mut cursor = buffer;
    let mut len = 0u64;
    for index in 0..10 {
        if !cursor.has_remaining() {
            return Prefix::Incomplete;
        }
        let byte = cursor.get_u8();
        len |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Prefix::Length {
                header: index + 1,
                len,
            };
        }
    }
    Prefix::Malformed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_read_like_the_frame_decoder_reads_them() {
        assert!(matches!(prefix(&[]), Prefix::Incomplete));
        assert!(matches!(prefix(&[0x80]), Prefix::Incomplete));
        assert!(matches!(
            prefix(&[0x04, 0x08]),
            Prefix::Length { header: 1, len: 4 }
        ));
        assert!(matches!(
            prefix(&[0xac, 0x02]),
            Prefix::Length {
                header: 2,
                len: 300
            }
        ));
        assert!(matches!(prefix(&[0xff; 11]), Prefix::Malformed));
    }
}
