//! TLS on the HTTP listener (`tls.enabled`): `https://` and `wss://` served by rustls with the
//! ring provider, with the QUIC certificate (docs/operations.md, "TLS").
//!
//! ```text
//!  TCP accept ─▶ TCP_NODELAY ─▶ handshake task (10 s at most) ─▶ channel ─▶ axum (HTTP/1.1)
//! ```
//!
//! Handshakes run in tasks of their own, so a client that stalls its handshake holds no one
//! else's; a failed handshake is logged at DEBUG and dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for axum to take them.
const ACCEPTED_QUEUE: usize = 64;

/// A certificate file's content as DER: the file may hold DER or PEM (the first
/// `CERTIFICATE` block).
pub fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !is_pem(bytes) {
        return Ok(bytes.to_vec());
    }
    CertificateDer::pem_slice_iter(bytes)
        .next()
        .ok_or_else(|| "no CERTIFICATE block".to_owned())?
        .map(|c| c.to_vec())
        .map_err(|e| format!("not a PEM certificate ({e})"))
}

/// A private key file's content as PKCS#8 DER: the file may hold DER or PEM
/// (`PRIVATE KEY`).
pub fn private_key_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !is_pem(bytes) {
        return Ok(bytes.to_vec());
    }
    PrivatePkcs8KeyDer::from_pem_slice(bytes)
        .map(|k| k.secret_pkcs8_der().to_vec())
        .map_err(|e| format!("not a PEM PKCS#8 key, `-----BEGIN PRIVATE KEY-----` ({e})"))
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().starts_with(b"-----BEGIN")
}

/// The rustls configuration of the HTTP listener: ring, TLS 1.2 and 1.3, HTTP/1.1 (WebSocket
/// upgrades are HTTP/1.1).
pub fn server_config(cert_der: &[u8], key_der: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = CertificateDer::from(cert_der.to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener that hands axum connections whose TLS handshake completed.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener` and runs handshakes with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::debug!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local,
            accepted,
            task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (it never does while the listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
