//! The QUIC endpoint: TLS 1.3 with ALPN `chatwire/1` on the server's certificate, transport
//! tuning for phones, address validation (Retry) under a handshake flood, per-address caps,
//! and one session task per connection on the first bidirectional stream the client opens.
//!
//! ```text
//!  UDP ─▶ Endpoint::accept ─▶ Retry? refuse? ─▶ handshake ─▶ accept_bi ─▶ driver::run
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chatwire_protocol::{QUIC_ALPN, v1};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, IdleTimeout, Incoming, TransportConfig, VarInt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::quic::{self, error_code};
use crate::http::conns::ConnectionCounter;
use crate::session::driver;
use crate::session::services::Services;

/// Receive window of the control stream (R-2.5.5).
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// Receive window of the whole connection (R-2.5.5).
pub const CONNECTION_WINDOW: u32 = 512 * 1024;
/// Bytes buffered per connection towards the peer before writes wait.
pub const SEND_WINDOW: u64 = 1024 * 1024;
/// Datagram receive buffer; it is also the advertised `max_datagram_frame_size`, the cap on
/// one datagram (a typing frame is well under 200 bytes).
pub const DATAGRAM_RECEIVE_BUFFER: usize = 4 * 1024;
/// Datagrams queued for sending before the oldest are dropped.
pub const DATAGRAM_SEND_BUFFER: usize = 16 * 1024;
/// A connection with no traffic for this long is gone; at least three heartbeat intervals, so
/// the session's own heartbeat check (two intervals) decides first.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// QUIC PINGs keep NAT bindings of mobile networks open (many expire UDP after 30 s).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// TLS handshakes must finish within this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the QUIC endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuicSetupError {
    /// The certificate or key was refused by TLS.
    #[error("QUIC TLS configuration: {0}")]
    Tls(String),
    /// The UDP socket could not be bound.
    #[error("QUIC UDP bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The SHA-256 fingerprint of a DER certificate, as colon-separated upper-case hex pairs.
pub fn fingerprint(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der)
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The transport parameters and limits of a Chatwire connection.
pub fn transport_config(heartbeat: Duration) -> TransportConfig {
    let idle = IDLE_TIMEOUT.max(heartbeat * 3);
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(SEND_WINDOW)
        .datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_SEND_BUFFER)
        .max_idle_timeout(IdleTimeout::try_from(idle).ok())
        .keep_alive_interval(Some(KEEP_ALIVE));
    transport
}

/// The server configuration: TLS 1.3 only, ALPN `chatwire/1`, no 0-RTT (R-2.5.10), migration
/// allowed (R-2.5.9). `key_der` is PKCS#8.
pub fn server_config(
    cert_der: &[u8],
    key_der: &[u8],
    heartbeat: Duration,
) -> Result<quinn::ServerConfig, QuicSetupError> {
    server_config_chain(&[cert_der.to_vec()], key_der, heartbeat)
}

/// [`server_config`] with a certificate chain: the leaf first, then its intermediates.
pub fn server_config_chain(
    chain_der: &[Vec<u8>],
    key_der: &[u8],
    heartbeat: Duration,
) -> Result<quinn::ServerConfig, QuicSetupError> {
    let tls_error = |e: &dyn std::fmt::Display| QuicSetupError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = chain_der
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_error(&e))?;
    tls.alpn_protocols = vec![QUIC_ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| tls_error(&e))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config
        .transport_config(Arc::new(transport_config(heartbeat)))
        .migration(true);
    Ok(config)
}

/// Binds the endpoint on `addr`'s IP and port; when that UDP port is taken, on a free port of
/// the same IP.
pub fn bind(config: quinn::ServerConfig, addr: SocketAddr) -> Result<Endpoint, QuicSetupError> {
    Endpoint::server(config.clone(), addr).or_else(|first| {
        tracing::warn!(%addr, error = %first, "UDP port taken; QUIC listens on a free port");
        let any = SocketAddr::new(addr.ip(), 0);
        Endpoint::server(config, any).map_err(|source| QuicSetupError::Bind { addr, source })
    })
}

/// What the accept loop shares with every connection task.
#[derive(Debug, Clone)]
pub struct QuicState {
    /// The node's services.
    pub services: Arc<Services>,
    /// Live sessions per client address (shared with WebSocket).
    pub connections: Arc<ConnectionCounter>,
    /// The cap per client address.
    pub max_connections_per_ip: usize,
    /// Handshakes in progress.
    pub handshaking: Arc<AtomicUsize>,
    /// Handshakes in progress above which unvalidated clients get a Retry (`quic.retry_above_handshakes`).
    pub retry_above: usize,
}

/// Accepts connections until the endpoint is closed. Nothing here waits: the per-address rate
/// is charged in each connection's own task, once its handshake proved the address (issue 15
/// M5), so neither a slow limiter nor spoofed source addresses hold up the loop or use up
/// another client's budget.
pub async fn accept_loop(endpoint: Endpoint, state: QuicState) {
    while let Some(incoming) = endpoint.accept().await {
        if let Some(incoming) = admit(&state, incoming) {
            tokio::spawn(connection(state.clone(), incoming));
        }
    }
}

/// Decides on a new connection attempt before any handshake work: refuse while draining,
/// Retry under load.
fn admit(state: &QuicState, incoming: Incoming) -> Option<Incoming> {
    let services = &state.services;
    if services.draining.load(Ordering::SeqCst) {
        incoming.refuse();
        return None;
    }
    if state.handshaking.load(Ordering::SeqCst) >= state.retry_above
        && !incoming.remote_address_validated()
        && incoming.may_retry()
    {
        let _ = incoming.retry();
        return None;
    }
    Some(incoming)
}

/// Counts a handshake in progress for as long as it lives.
struct Handshaking(Arc<AtomicUsize>);

impl Handshaking {
    fn start(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(counter))
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One connection: handshake, the per-address cap, the control stream, then the session.
async fn connection(state: QuicState, incoming: Incoming) {
    let handshaking = Handshaking::start(&state.handshaking);
    let ip: IpAddr = incoming.remote_address().ip();
    let Ok(Ok(connection)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await else {
        return;
    };
    drop(handshaking);
    // The handshake completed, so the client owns its address: only now is it charged.
    let services = &state.services;
    let key = format!("connect:{}", crate::http::conns::client_prefix(ip));
    let now_ms = services.clock.now_ms();
    if services
        .limiter
        .take(&key, services.rates.connects_per_ip, now_ms)
        .await
        .is_err()
    {
        crate::telemetry::rate_limited("connect");
        let code = error_code(v1::CloseCode::TooManyConnections);
        connection.close(code, b"too many connection attempts from this address");
        return;
    }
    let Some(_guard) = state.connections.acquire(ip, state.max_connections_per_ip) else {
        let code = error_code(v1::CloseCode::TooManyConnections);
        connection.close(code, b"too many connections from this address");
        return;
    };
    // The control stream becomes visible with the client's first bytes (its Connect).
    let wait = state.services.session.handshake_timeout;
    let (send, recv) = match tokio::time::timeout(wait, connection.accept_bi()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(_)) => return,
        Err(_) => {
            let code = error_code(v1::CloseCode::ConnectTimeout);
            connection.close(code, b"no Connect in time");
            return;
        }
    };
    let (reader, writer) = quic::split(connection, send, recv);
    driver::run(state.services, Box::new(reader), Box::new(writer)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_sha256_in_colon_separated_hex() {
        // SHA-256 of the empty input.
        let print = fingerprint(b"");
        assert!(print.starts_with("E3:B0:C4:42:98:FC:1C:14"), "{print}");
        assert_eq!(print.len(), 32 * 3 - 1);
    }

    #[test]
    fn the_development_certificate_makes_a_server_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dev = crate::devdefaults::load_or_create(dir.path()).expect("dev secrets");
        let heartbeat = Duration::from_secs(15);
        assert!(server_config(&dev.tls_cert_der, &dev.tls_key_der, heartbeat).is_ok());
        assert!(server_config(&dev.tls_cert_der, b"not a key", heartbeat).is_err());
    }
}
