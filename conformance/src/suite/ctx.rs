//! [`Ctx`]: what every case gets: a way to open connections to the server under test, tokens
//! for any user id, and user ids unique to this run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chatwire_protocol::v1;

use super::check::{Check, Failure, within};
use super::token::{JwtKey, TokenSource};
use crate::client::{Client, QuicTarget, TransportFactory, WsTarget};

/// The transport a run speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// WebSocket, `chatwire.v1`.
    Ws,
    /// QUIC, ALPN `chatwire/1`.
    Quic,
}

impl TransportKind {
    /// `websocket` or `quic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ws => "websocket",
            Self::Quic => "quic",
        }
    }
}

/// The target of a run: one of the two transports.
#[derive(Debug, Clone)]
pub enum Target {
    /// A WebSocket endpoint.
    Ws(WsTarget),
    /// A QUIC endpoint.
    Quic(QuicTarget),
}

#[derive(Debug)]
struct Inner {
    target: Target,
    tokens: TokenSource,
    run_tag: String,
    next_user: AtomicU64,
}

/// The shared context of the cases of one run. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ctx {
    inner: Arc<Inner>,
}

impl Ctx {
    /// A context for a server reached through `target`, with tokens from `tokens`.
    pub fn new(target: Target, tokens: TokenSource) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        Self {
            inner: Arc::new(Inner {
                target,
                tokens,
                run_tag: format!("{:08x}", seed & 0xffff_ffff),
                next_user: AtomicU64::new(1),
            }),
        }
    }

    /// The transport of the run.
    pub fn kind(&self) -> TransportKind {
        match self.inner.target {
            Target::Ws(_) => TransportKind::Ws,
            Target::Quic(_) => TransportKind::Quic,
        }
    }

    /// The WebSocket target, on a WebSocket run.
    pub fn ws(&self) -> Option<&WsTarget> {
        match &self.inner.target {
            Target::Ws(ws) => Some(ws),
            Target::Quic(_) => None,
        }
    }

    /// The QUIC target, on a QUIC run.
    pub fn quic(&self) -> Option<&QuicTarget> {
        match &self.inner.target {
            Target::Quic(quic) => Some(quic),
            Target::Ws(_) => None,
        }
    }

    fn factory(&self) -> &dyn TransportFactory {
        match &self.inner.target {
            Target::Ws(ws) => ws,
            Target::Quic(quic) => quic,
        }
    }

    /// Whether crafted tokens can be made.
    pub fn has_key(&self) -> bool {
        self.inner.tokens.key().is_some()
    }

    /// The signing key, or a skip.
    pub fn key(&self) -> Check<&JwtKey> {
        self.inner
            .tokens
            .key()
            .ok_or_else(|| Failure::Skip("no key".to_owned()))
    }

    /// A user id nobody used before in this run (nor, with overwhelming odds, in another run).
    pub fn user(&self, name: &str) -> String {
        let n = self.inner.next_user.fetch_add(1, Ordering::Relaxed);
        format!("cf{}-{name}{n}", self.inner.run_tag)
    }

    /// A valid token for `user`.
    pub async fn token(&self, user: &str) -> Check<String> {
        self.inner
            .tokens
            .token(user)
            .await
            .map_err(|err| Failure::new("a token from the token source", err.to_string()))
    }

    /// A new connection, transport handshake done, no `Connect` sent.
    pub async fn open(&self) -> Check<Client> {
        within("the transport handshake", Client::open(self.factory()))
            .await?
            .map_err(|err| Failure::new("the connection opens", err.to_string()))
    }

    /// A new connection with a session for `user`, and its `ConnectResponse`.
    pub async fn session(&self, user: &str) -> Check<(Client, v1::ConnectResponse)> {
        let client = self.open().await?;
        let token = self.token(user).await?;
        let response = within("ConnectResponse", client.connect(&token))
            .await?
            .map_err(|err| Failure::new("Connect succeeds with a valid token", err.to_string()))?;
        Ok((client, response))
    }

    /// A new connection with a session for `user`.
    pub async fn client(&self, user: &str) -> Check<Client> {
        Ok(self.session(user).await?.0)
    }
}
