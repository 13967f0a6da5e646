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

/// A certificate file's content as a DER chain, the leaf first: the file may hold one DER
/// certificate, or PEM `CERTIFICATE` blocks (a full chain: the leaf, then its intermediates).
pub fn certificate_chain_der(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if !is_pem(bytes) {
        return Ok(vec![bytes.to_vec()]);
    }
    let chain = CertificateDer::pem_slice_iter(bytes)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block".to_owned());
    }
    Ok(chain)
}

/// The leaf of [`certificate_chain_der`].
pub fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    certificate_chain_der(bytes)?
        .into_iter()
        .next()
        .ok_or_else(|| "no certificate".to_owned())
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

/// The rustls configuration of the HTTP listener (the chain: leaf first): ring, TLS 1.2 and 1.3, HTTP/1.1 (WebSocket
/// upgrades are HTTP/1.1).
pub fn server_config(
    chain_der: &[Vec<u8>],
    key_der: &[u8],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = chain_der
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
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
