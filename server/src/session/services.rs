//! What a session's request handlers reach: the backends, the clock, token checks and the
//! limits in force. Built once per server and shared by every session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chatwire_protocol::v1;

use super::core::SessionConfig;
use crate::backend::fanout::{Fanout, SessionKey};
use crate::backend::pipeline::Pipeline;
use crate::backend::ratelimit::{LocalRateLimiter, RateLimiter};
use crate::backend::store::Store;
use crate::chat::ids::UserId;
use crate::chat::validate::ContentLimits;
use crate::clock::Clock;
use crate::config::{LimitsConfig, RateLimit};

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (the token's subject).
    pub user: UserId,
    /// When the token expires, Unix milliseconds.
    pub expires_at_ms: i64,
    /// When the token was issued (`iat`), Unix milliseconds, if it says.
    pub issued_at_ms: Option<i64>,
}

/// Why a token was refused, as far as the session needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// The token expired.
    Expired,
    /// The token or its user was revoked.
    Revoked,
    /// Anything else: bad signature, issuer, audience, algorithm, subject.
    Invalid,
}

/// Checks tokens (implemented by the auth module).
pub trait Authenticate: Send + Sync + std::fmt::Debug {
    /// Checks `token` at `now_ms`.
    fn authenticate(&self, token: &str, now_ms: i64) -> Result<Identity, TokenRefusal>;

    /// The leeway `authenticate` allows past `exp`, in ms: a session lives until its token's
    /// `exp` plus this, so a token accepted within the leeway is not closed at once.
    fn leeway_ms(&self) -> i64 {
        0
    }
}

/// Everything the request handlers use.
#[derive(Debug)]
pub struct Services {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// The command pipeline to room writers.
    pub pipeline: Arc<dyn Pipeline>,
    /// Live fan-out on this node.
    pub fanout: Arc<dyn Fanout>,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
    /// Token checks.
    pub auth: Arc<dyn Authenticate>,
    /// Session timing.
    pub session: SessionConfig,
    /// Limits advertised in ConnectResponse.
    pub limits: v1::Limits,
    /// Content limits enforced on messages.
    pub content: ContentLimits,
    /// This node's id.
    pub node_id: String,
    /// Capacity of each session's delivery queue.
    pub delivery_queue: usize,
    /// Rate limit buckets.
    pub limiter: Arc<dyn RateLimiter>,
    /// The rates in force.
    pub rates: Rates,
    /// Set when the server drains: new sessions are refused.
    pub draining: std::sync::atomic::AtomicBool,
    /// Probes of the backends besides the store, for `/readyz` (none on the embedded default).
    pub probes: Vec<Arc<dyn crate::backend::health::Probe>>,
    /// The moderation stage of Send and Edit (default: no word lists, spam rules flag only).
    pub moderation: Arc<crate::moderation::Stage>,
    /// The message search index; `None` when search is off (Search is UNSUPPORTED and the
    /// `search` capability is not listed).
    pub search: Option<Arc<crate::search::SearchIndex>>,
    /// Where events outside the room log go to the webhook consumers (`moderation.flagged`);
    /// `None` when no consumer is configured.
    pub events: Option<Arc<dyn crate::backend::events::EventPublisher>>,
    /// Accepted contact ids (issue 22): the store on one node, cached in Redis in a cluster.
    pub contact_ids: Arc<dyn crate::contacts::ContactIds>,
    /// The contacts settings: auto-watch and presence visibility.
    pub contacts: crate::config::ContactsConfig,
    next_session: AtomicU64,
}

impl Services {
    /// Services over the given backends.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        pipeline: Arc<dyn Pipeline>,
        fanout: Arc<dyn Fanout>,
        clock: Arc<dyn Clock>,
        auth: Arc<dyn Authenticate>,
        session: SessionConfig,
        limits: v1::Limits,
        node_id: String,
    ) -> Self {
        let content = ContentLimits {
            max_text_chars: limits.max_text_chars as usize,
            max_app_payload_bytes: limits.max_app_payload_bytes as usize,
            max_attachments: limits.max_attachments as usize,
            max_mentions: limits.max_mentions as usize,
            max_content_bytes: limits.max_content_bytes as usize,
        };
        let contact_ids = Arc::new(crate::contacts::StoreContactIds::new(Arc::clone(&store)));
        Self {
            contact_ids,
            contacts: crate::config::ContactsConfig::default(),
            store,
            pipeline,
            fanout,
            clock,
            auth,
            session,
            limits,
            content,
            node_id,
            delivery_queue: 1024,
            draining: std::sync::atomic::AtomicBool::new(false),
            limiter: Arc::new(LocalRateLimiter::new()),
            rates: Rates::default(),
            probes: Vec::new(),
            moderation: Arc::default(),
            search: None,
            events: None,
            next_session: AtomicU64::new(first_session_key()),
        }
    }

    /// A new session key, unique in this process and, with a random high half per process,
    /// across the nodes of a cluster (the Redis fan-out addresses sessions on other nodes by
    /// key).
    pub fn next_session_key(&self) -> SessionKey {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes a token from `user`'s bucket of `kind` (requests, sends, typing).
    pub async fn rate_limit(
        &self,
        kind: &str,
        user: &UserId,
        rate: RateLimit,
    ) -> Result<(), crate::chat::error::ChatError> {
        self.limiter
            .take(&format!("{kind}:{user}"), rate, self.clock.now_ms())
            .await
            .map_err(|retry_after_ms| {
                crate::telemetry::rate_limited(kind);
                crate::chat::error::ChatError::RateLimited { retry_after_ms }
            })
    }

    /// Takes a token from the bucket of `kind` for `key` (a room id: per-room send limits).
    pub async fn rate_limit_key(
        &self,
        kind: &str,
        key: &str,
        rate: RateLimit,
    ) -> Result<(), crate::chat::error::ChatError> {
        self.limiter
            .take(&format!("{kind}:{key}"), rate, self.clock.now_ms())
            .await
            .map_err(|retry_after_ms| {
                crate::telemetry::rate_limited(kind);
                crate::chat::error::ChatError::RateLimited { retry_after_ms }
            })
    }

    /// The largest page a request may ask for.
    pub fn page_limit(&self, asked: u32, default: usize) -> usize {
        let max = (self.limits.max_page_size as usize).max(1);
        match asked {
            0 => default.min(max),
            asked => (asked as usize).min(max),
        }
    }
}

/// Per-user rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// Every request.
    pub requests: RateLimit,
    /// Sends.
    pub sends: RateLimit,
    /// Typing indicators.
    pub typing: RateLimit,
    /// Sends to one room, from all its members.
    pub room_sends: RateLimit,
    /// New connections per client address.
    pub connects_per_ip: RateLimit,
    /// Searches.
    pub search: RateLimit,
    /// Message reports.
    pub reports: RateLimit,
    /// Contact requests (issue 22).
    pub contact_requests: RateLimit,
}

impl Rates {
    /// The rates of a limits configuration.
    pub fn from_config(limits: &LimitsConfig) -> Self {
        Self {
            requests: limits.rate_requests,
            sends: limits.rate_sends,
            typing: limits.rate_typing,
            room_sends: limits.rate_room_sends,
            connects_per_ip: limits.rate_connects_per_ip,
            search: limits.rate_search,
            reports: limits.rate_reports,
            contact_requests: limits.rate_contact_requests,
        }
    }
}

impl Default for Rates {
    fn default() -> Self {
        Self::from_config(&LimitsConfig::default())
    }
}

/// The default advertised limits.
/// The default advertised limits (`chatwire_protocol::limits`, the one definition of each).
pub fn default_limits() -> v1::Limits {
    chatwire_protocol::limits::default_limits()
}

/// The first session key of this process: a random high half (nodes of a cluster draw
/// different ones, with a 1 in 2^32 chance of a collision per pair), counting from 1 below it.
fn first_session_key() -> u64 {
    let mut high = [0u8; 4];
    // Without randomness every process starts at the same half: still unique within a node.
    let _ = getrandom::fill(&mut high);
    (u64::from(u32::from_be_bytes(high)) << 32) | 1
}
