//! Server configuration: one plain struct tree with documented defaults.
//!
//! Sources, lowest to highest precedence (see [`load`]):
//! 1. the defaults below (`Config::default()`), which run a development server with no set-up;
//! 2. an optional TOML file (`--config FILE`, or `CHATWIRE_CONFIG`), whose unknown keys are
//!    errors, so a typo fails loudly;
//! 3. environment variables `CHATWIRE_<KEY>`, with `__` between nested keys:
//!    `CHATWIRE_LISTEN=0.0.0.0:8080`, `CHATWIRE_AUTH__ISSUER=https://id.example`,
//!    `CHATWIRE_LIMITS__RATE_SENDS__BURST=50`; lists are comma-separated
//!    (`CHATWIRE_ALLOWED_ORIGINS=https://a.example,https://b.example`);
//! 4. command-line flags ([`CliOverrides`]).
//!
//! Durations are integers in milliseconds (fields end in `_ms`), sizes in bytes.
//!
//! ```toml
//! data_dir = "/var/lib/chatwire"
//! listen = "0.0.0.0:8080"
//! public_origin = "https://chat.example"
//! allowed_origins = ["https://app.example"]
//!
//! [auth]
//! issuer = "https://id.example"
//! audience = "chatwire"
//! algorithms = ["RS256", "EdDSA"]
//!
//! [[auth.keys]]
//! kid = "2026-01"
//! alg = "RS256"
//! pem_file = "/etc/chatwire/id-2026-01.pem"
//!
//! [session]
//! heartbeat_interval_ms = 15000
//!
//! [events]
//! retry_tiers_ms = [1000, 10000, 60000]
//!
//! [events.app]
//! url = "http://hooks.internal:9000/chatwire"
//! keys = [{ id = "2026-01", secret_file = "/etc/chatwire/app-hook-2026-01" }]
//! ```

mod events;
mod load;
mod moderation;
mod ops;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use chatwire_protocol::limits;
use serde::{Deserialize, Serialize};

mod cluster;
pub use cluster::{ClusterConfig, CqlConfig, StoreBackend};
pub use events::{
    DEFAULT_RETRY_TIERS_MS, DEFAULT_WEBHOOK_TIMEOUT_MS, EventsConfig, MAX_RETRY_TIER_MS,
    MAX_RETRY_TIERS, MAX_WEBHOOK_TIMEOUT_MS, MIN_WEBHOOK_SECRET_BYTES, WebhookConfig,
    WebhookKeyConfig,
};
pub use load::{
    CliOverrides, ConfigSources, ENV_CONFIG_FILE, ENV_PREFIX, Setting, explain, load,
    misspelled_env,
};
pub use moderation::{ModerationConfig, ScorerConfig, SpamConfig, WordAction, WordRule};
pub use ops::{LogConfig, LogFormat, TlsConfig, parse_listen};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or holds unknown keys or wrong types.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        message: String,
    },
    /// An environment variable could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// Default data folder: the embedded store and the development secrets live here.
pub const DEFAULT_DATA_DIR: &str = "./chatwire-data";
/// Default listen address (loopback only: a development server is not exposed by accident).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data folder (embedded store, development secrets). Default `./chatwire-data`.
    pub data_dir: PathBuf,
    /// HTTP/WebSocket listen address; port 0 picks a free port. Default `127.0.0.1:8080`. QUIC
    /// listens on the same address over UDP. `localhost:PORT` means `127.0.0.1:PORT`.
    #[serde(deserialize_with = "ops::deserialize_listen")]
    pub listen: SocketAddr,
    /// The origin browsers see this server at (`https://chat.example`). Default: derived from
    /// the bound address, `http://<listen>` (see [`Config::own_origins`]).
    pub public_origin: Option<String>,
    /// Extra origins allowed to open WebSockets, on top of the server's own origin. A request
    /// without an `Origin` header (native and server clients) is always allowed. Default: none.
    pub allowed_origins: Vec<String>,
    /// Token verification.
    pub auth: AuthConfig,
    /// Sizes, in-flight caps, connection caps and rate limits.
    pub limits: LimitsConfig,
    /// Per-connection timing and buffering.
    pub session: SessionConfig,
    /// Room log layout and deduplication.
    pub storage: StorageConfig,
    /// Downstream events: the offline push and app webhooks, and their retry tiers.
    pub events: EventsConfig,
    /// The QUIC endpoint (UDP, same address as `listen`).
    pub quic: QuicConfig,
    /// Redis, for the backends that can use it: rate limits; in a cluster also fan-out and
    /// presence.
    pub redis: RedisConfig,
    /// Distributed mode: many gateway nodes as one server (RabbitMQ pipeline and events).
    pub cluster: ClusterConfig,
    /// Log format.
    pub log: LogConfig,
    /// TLS on the HTTP listener (`https://`, `wss://`).
    pub tls: TlsConfig,
    /// The moderation stage of Send and Edit: word lists, spam rules, scores.
    pub moderation: ModerationConfig,
    /// Message search (the `search` capability).
    pub search: SearchConfig,
    /// Contacts (the `contacts` capability) and who may watch whose presence.
    pub contacts: ContactsConfig,
}

/// Contacts (docs/operations.md, "Contacts"; docs/protocol.md §25).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContactsConfig {
    /// Watch every session's accepted contacts for presence from Connect, within
    /// `max_presence_watch` (R-25.4.1). Default true.
    pub auto_watch: bool,
    /// Who a session may watch for presence with WatchPresence (R-14.1.6 allows a check):
    /// `anyone` (default) or `contacts` (only accepted contacts; anyone else appears offline
    /// with `last_seen_ms` 0, exactly as a blocked user).
    pub presence_visibility: PresenceVisibility,
    /// How long a user's accepted contact ids stay cached in Redis (distributed mode), in
    /// seconds; every change invalidates the entry at once, the lifetime only bounds a stale
    /// entry left by a rebuild racing a change. Default 3600.
    pub cache_ttl_s: u64,
}

/// Whose presence a session may see (`contacts.presence_visibility`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PresenceVisibility {
    /// Anyone not blocked either way.
    #[default]
    Anyone,
    /// Accepted contacts only (and oneself).
    Contacts,
}

impl Default for ContactsConfig {
    fn default() -> Self {
        Self {
            auto_watch: true,
            presence_visibility: PresenceVisibility::Anyone,
            cache_ttl_s: 3600,
        }
    }
}

/// Message search (docs/operations.md, "Message search").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Keep a full-text index (in `data_dir/search`, fed by the `index` event consumer) and
    /// answer Search requests. Default true.
    pub enabled: bool,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Redis (docs/operations.md, "Configuration"). Unset: every concern stays in process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`. When set, rate limits live in Redis (shared by every node; if
    /// Redis cannot answer, requests are allowed rather than refused). Default unset.
    pub url: Option<String>,
    /// Prefix of every key this server writes. Default `chatwire:`.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "chatwire:".to_owned(),
        }
    }
}

/// The QUIC endpoint (docs/operations.md, "QUIC transport").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// Serve QUIC next to WebSocket. Default true.
    pub enabled: bool,
    /// The certificate (DER X.509). Default: the development certificate in the data folder.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PKCS#8 DER); required with `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Handshakes in progress above which new clients must first prove their address with a
    /// QUIC Retry (0: always). Default 64.
    pub retry_above_handshakes: usize,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cert_file: None,
            key_file: None,
            retry_above_handshakes: 64,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN,
            public_origin: None,
            allowed_origins: Vec::new(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            session: SessionConfig::default(),
            storage: StorageConfig::default(),
            events: EventsConfig::default(),
            quic: QuicConfig::default(),
            redis: RedisConfig::default(),
            cluster: ClusterConfig::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            moderation: ModerationConfig::default(),
            search: SearchConfig::default(),
            contacts: ContactsConfig::default(),
        }
    }
}

/// A JWT signature algorithm the server can be configured to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    #[serde(rename = "HS256")]
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, public key selected by `kid`.
    #[serde(rename = "RS256")]
    Rs256,
    /// Ed25519, public key selected by `kid`.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl JwtAlgorithm {
    /// The name used in JWT headers and in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm named `name` in a JWT header (case-sensitive, as RFC 7515 says).
    pub fn from_header_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Self::Hs256),
            "RS256" => Some(Self::Rs256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }
}

impl std::fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Token verification settings (docs/protocol.md §4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The required `iss`. Default `chatwire-dev`.
    pub issuer: String,
    /// The audience this server answers to: `aud` must be it or an array holding it. Default
    /// `chatwire`.
    pub audience: String,
    /// The accepted algorithms; a token with any other `alg` (`none` included) is refused.
    /// Default `["HS256"]`.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Clock skew allowed on `exp` and `nbf`, in ms. Default 30 000.
    pub leeway_ms: u64,
    /// File holding the HS256 secret, raw bytes used as they are (no trimming), 32 bytes or
    /// more. Default: none, the data folder's generated `jwt-secret`.
    pub hs256_secret_file: Option<PathBuf>,
    /// `kid` put in minted HS256 tokens. When set, an HS256 token's `kid` must be absent or
    /// equal to it. Default: none.
    pub hs256_kid: Option<String>,
    /// Public keys for RS256 and EdDSA, selected by the token's `kid`.
    pub keys: Vec<PublicKeyConfig>,
}

/// Default `iss` of development tokens.
pub const DEFAULT_ISSUER: &str = "chatwire-dev";
/// Default audience.
pub const DEFAULT_AUDIENCE: &str = "chatwire";
/// Default clock leeway for `exp` / `nbf`.
pub const DEFAULT_LEEWAY_MS: u64 = 30_000;
/// Largest accepted clock leeway (one hour).
pub const MAX_LEEWAY_MS: u64 = 3_600_000;

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            algorithms: vec![JwtAlgorithm::Hs256],
            leeway_ms: DEFAULT_LEEWAY_MS,
            hs256_secret_file: None,
            hs256_kid: None,
            keys: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Checks the settings that need no file: names, algorithm list, key list consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.is_empty() {
            return Err(invalid("auth.issuer is empty"));
        }
        if self.audience.is_empty() {
            return Err(invalid("auth.audience is empty"));
        }
        if self.leeway_ms > MAX_LEEWAY_MS {
            return Err(invalid(format!(
                "auth.leeway_ms is {}, at most {MAX_LEEWAY_MS} (one hour)",
                self.leeway_ms
            )));
        }
        if self.algorithms.is_empty() {
            return Err(invalid(
                "auth.algorithms is empty: no token could be accepted",
            ));
        }
        for (i, alg) in self.algorithms.iter().enumerate() {
            if self.algorithms[..i].contains(alg) {
                return Err(invalid(format!("auth.algorithms lists {alg} twice")));
            }
        }
        if let Some(kid) = &self.hs256_kid {
            if kid.is_empty() {
                return Err(invalid("auth.hs256_kid is empty"));
            }
            if !self.algorithms.contains(&JwtAlgorithm::Hs256) {
                return Err(invalid(
                    "auth.hs256_kid is set but HS256 is not in auth.algorithms",
                ));
            }
        }
        if self.hs256_secret_file.is_some() && !self.algorithms.contains(&JwtAlgorithm::Hs256) {
            return Err(invalid(
                "auth.hs256_secret_file is set but HS256 is not in auth.algorithms",
            ));
        }
        for (i, key) in self.keys.iter().enumerate() {
            if key.kid.is_empty() {
                return Err(invalid(format!("auth.keys[{i}].kid is empty")));
            }
            if self.keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(invalid(format!(
                    "auth.keys: kid {:?} appears twice",
                    key.kid
                )));
            }
            if self.hs256_kid.as_deref() == Some(key.kid.as_str()) {
                return Err(invalid(format!(
                    "auth.keys: kid {:?} is also auth.hs256_kid",
                    key.kid
                )));
            }
            if key.alg == JwtAlgorithm::Hs256 {
                return Err(invalid(format!(
                    "auth.keys[{i}] (kid {:?}): HS256 takes a secret (auth.hs256_secret_file), \
                     not a public key",
                    key.kid
                )));
            }
            if !self.algorithms.contains(&key.alg) {
                return Err(invalid(format!(
                    "auth.keys[{i}] (kid {:?}) is an {} key but {} is not in auth.algorithms",
                    key.kid, key.alg, key.alg
                )));
            }
            match (&key.pem, &key.pem_file) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return Err(invalid(format!(
                        "auth.keys[{i}] (kid {:?}): set exactly one of pem and pem_file",
                        key.kid
                    )));
                }
            }
        }
        for alg in [JwtAlgorithm::Rs256, JwtAlgorithm::EdDsa] {
            if self.algorithms.contains(&alg) && !self.keys.iter().any(|k| k.alg == alg) {
                return Err(invalid(format!(
                    "auth.algorithms lists {alg} but auth.keys holds no {alg} key"
                )));
            }
        }
        Ok(())
    }
}

/// A public key for RS256 or EdDSA tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// The `kid` tokens signed with this key carry.
    pub kid: String,
    /// `RS256` or `EdDSA`: a token naming this kid with another algorithm is refused.
    pub alg: JwtAlgorithm,
    /// The public key, PEM (`-----BEGIN PUBLIC KEY-----`, or `RSA PUBLIC KEY` for RS256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// A file holding the PEM, instead of `pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem_file: Option<PathBuf>,
}

/// A token bucket: `rate_per_minute` tokens refill each minute, at most `burst` held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate, per minute.
    pub rate_per_minute: u32,
    /// Largest burst.
    pub burst: u32,
}

impl RateLimit {
    const fn new(rate_per_minute: u32, burst: u32) -> Self {
        Self {
            rate_per_minute,
            burst,
        }
    }
}

/// Sizes, caps and rate limits. Defaults come from `chatwire_protocol::limits` where the
/// protocol defines them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest client frame accepted, checked before decoding. Default 64 KiB.
    pub max_client_frame_bytes: usize,
    /// Largest server frame sent (advertised in `Connected`). Default 1 MiB.
    pub max_server_frame_bytes: usize,
    /// Longest message text, in Unicode scalar values. Default 4000.
    pub max_text_chars: usize,
    /// Largest app payload on a message. Default 4 KiB.
    pub max_app_payload_bytes: usize,
    /// Most requests in flight on one connection. Default 64.
    pub max_in_flight_requests: usize,
    /// Most open connections from one IP address. Default 64.
    pub max_connections_per_ip: usize,
    /// New connections per IP address. Default 600/min, burst 60.
    pub rate_connects_per_ip: RateLimit,
    /// Requests of any kind per connection. Default 3000/min, burst 100.
    pub rate_requests: RateLimit,
    /// Message sends per user (all devices together). Default 600/min, burst 30.
    pub rate_sends: RateLimit,
    /// Typing indicators per connection; excess ones are dropped silently. Default 120/min,
    /// burst 5.
    pub rate_typing: RateLimit,
    /// Message sends per room (all members together). Default 3000/min, burst 100.
    pub rate_room_sends: RateLimit,
    /// Searches per user (RATE_LIMITED beyond). Default 60/min, burst 10.
    pub rate_search: RateLimit,
    /// Message reports per user (RATE_LIMITED beyond). Default 10/min, burst 5.
    pub rate_reports: RateLimit,
    /// Contact requests per user (RATE_LIMITED beyond; advertised in `Limits`). Default 20/min,
    /// burst 10.
    pub rate_contact_requests: RateLimit,
}

/// Smallest `max_server_frame_bytes`: a largest event must fit in one frame.
pub const MIN_SERVER_FRAME_BYTES: usize = 4 * limits::MAX_EVENT_PAYLOAD_BYTES;
/// Largest `max_client_frame_bytes` (16 MiB): beyond it one connection could hold too much.
pub const MAX_CLIENT_FRAME_BYTES: usize = 16 * 1024 * 1024;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_client_frame_bytes: limits::DEFAULT_MAX_CLIENT_FRAME_BYTES,
            max_server_frame_bytes: limits::DEFAULT_MAX_SERVER_FRAME_BYTES,
            max_text_chars: limits::DEFAULT_MAX_TEXT_CHARS,
            max_app_payload_bytes: limits::DEFAULT_MAX_APP_PAYLOAD_BYTES,
            max_in_flight_requests: limits::DEFAULT_MAX_IN_FLIGHT_REQUESTS,
            max_connections_per_ip: 64,
            rate_connects_per_ip: RateLimit::new(600, 60),
            rate_requests: RateLimit::new(3000, 100),
            rate_sends: RateLimit::new(
                limits::DEFAULT_SEND_RATE_PER_MINUTE,
                limits::DEFAULT_SEND_BURST,
            ),
            rate_typing: RateLimit::new(120, 5),
            rate_room_sends: RateLimit::new(
                limits::DEFAULT_ROOM_SEND_RATE_PER_MINUTE,
                limits::DEFAULT_ROOM_SEND_BURST,
            ),
            rate_search: RateLimit::new(60, 10),
            rate_reports: RateLimit::new(10, 5),
            rate_contact_requests: RateLimit::new(
                limits::DEFAULT_CONTACT_REQUESTS_PER_MINUTE,
                limits::DEFAULT_CONTACT_REQUESTS_BURST,
            ),
        }
    }
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_client_frame_bytes", self.max_client_frame_bytes),
            ("max_server_frame_bytes", self.max_server_frame_bytes),
            ("max_text_chars", self.max_text_chars),
            ("max_app_payload_bytes", self.max_app_payload_bytes),
            ("max_in_flight_requests", self.max_in_flight_requests),
            ("max_connections_per_ip", self.max_connections_per_ip),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(invalid(format!("limits.{name} is 0")));
            }
        }
        if self.max_client_frame_bytes > MAX_CLIENT_FRAME_BYTES {
            return Err(invalid(format!(
                "limits.max_client_frame_bytes is {}, at most {MAX_CLIENT_FRAME_BYTES}",
                self.max_client_frame_bytes
            )));
        }
        if self.max_server_frame_bytes < MIN_SERVER_FRAME_BYTES {
            return Err(invalid(format!(
                "limits.max_server_frame_bytes is {}, at least {MIN_SERVER_FRAME_BYTES} so \
                 that a largest event fits",
                self.max_server_frame_bytes
            )));
        }
        if self.max_app_payload_bytes > limits::MAX_EVENT_PAYLOAD_BYTES {
            return Err(invalid(format!(
                "limits.max_app_payload_bytes is {}, at most the event payload cap {}",
                self.max_app_payload_bytes,
                limits::MAX_EVENT_PAYLOAD_BYTES
            )));
        }
        // A scalar value takes up to 4 bytes in UTF-8.
        if self.max_text_chars.saturating_mul(4) > limits::MAX_EVENT_PAYLOAD_BYTES {
            return Err(invalid(format!(
                "limits.max_text_chars is {}: up to 4 bytes each, it would pass the event \
                 payload cap {}",
                self.max_text_chars,
                limits::MAX_EVENT_PAYLOAD_BYTES
            )));
        }
        let rates = [
            ("rate_connects_per_ip", self.rate_connects_per_ip),
            ("rate_requests", self.rate_requests),
            ("rate_sends", self.rate_sends),
            ("rate_typing", self.rate_typing),
            ("rate_room_sends", self.rate_room_sends),
            ("rate_search", self.rate_search),
            ("rate_reports", self.rate_reports),
            ("rate_contact_requests", self.rate_contact_requests),
        ];
        for (name, rate) in rates {
            if rate.rate_per_minute == 0 || rate.burst == 0 {
                return Err(invalid(format!(
                    "limits.{name}: rate_per_minute and burst must be above 0"
                )));
            }
        }
        Ok(())
    }
}

/// Per-connection timing and buffering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Heartbeat interval (advertised in `Connected`); a silent peer is dropped after two.
    /// Default 15 000 ms.
    pub heartbeat_interval_ms: u64,
    /// Time allowed between the connection opening and `Connect`. Default 10 000 ms.
    pub handshake_timeout_ms: u64,
    /// Frames queued towards one connection before it counts as a slow consumer. Default 1024.
    pub outbound_queue_frames: usize,
}

/// Smallest heartbeat interval.
pub const MIN_HEARTBEAT_INTERVAL_MS: u64 = 1_000;

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: limits::DEFAULT_HEARTBEAT_INTERVAL_MS,
            handshake_timeout_ms: limits::DEFAULT_HANDSHAKE_TIMEOUT_MS,
            outbound_queue_frames: 1024,
        }
    }
}

impl SessionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval_ms < MIN_HEARTBEAT_INTERVAL_MS {
            return Err(invalid(format!(
                "session.heartbeat_interval_ms is {}, at least {MIN_HEARTBEAT_INTERVAL_MS}",
                self.heartbeat_interval_ms
            )));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(invalid("session.handshake_timeout_ms is 0"));
        }
        if self.outbound_queue_frames == 0 {
            return Err(invalid("session.outbound_queue_frames is 0"));
        }
        Ok(())
    }
}

/// Room log layout and deduplication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// How long a `client_msg_id` is remembered for deduplication. Default 24 h.
    pub idempotency_window_ms: u64,
    /// Width of a room log time bucket. Used when a store is created; an existing store keeps
    /// the width it recorded. Default 1 h.
    pub bucket_width_ms: u64,
    /// Which store: `embedded` (default) or `scylla`.
    pub backend: StoreBackend,
    /// The CQL store, when `backend = "scylla"`.
    pub cql: CqlConfig,
    /// How many shards (writer queues) rooms are spread over. A distributed store records the
    /// count at migrate time and the recorded count wins; changing it means draining first.
    /// Default 8.
    pub shards: usize,
}

/// Smallest bucket width (one minute).
pub const MIN_BUCKET_WIDTH_MS: u64 = 60_000;
/// Most shards.
pub const MAX_SHARDS: usize = 1024;
/// Largest bucket width (seven days).
pub const MAX_BUCKET_WIDTH_MS: u64 = 7 * 24 * 3_600_000;

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            idempotency_window_ms: limits::DEFAULT_IDEMPOTENCY_WINDOW_MS,
            bucket_width_ms: 3_600_000,
            backend: StoreBackend::Embedded,
            cql: CqlConfig::default(),
            shards: 8,
        }
    }
}

impl StorageConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.idempotency_window_ms == 0 {
            return Err(invalid("storage.idempotency_window_ms is 0"));
        }
        if !(MIN_BUCKET_WIDTH_MS..=MAX_BUCKET_WIDTH_MS).contains(&self.bucket_width_ms) {
            return Err(invalid(format!(
                "storage.bucket_width_ms is {}, between {MIN_BUCKET_WIDTH_MS} and \
                 {MAX_BUCKET_WIDTH_MS}",
                self.bucket_width_ms
            )));
        }
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return Err(invalid(format!(
                "storage.shards is {}, between 1 and {MAX_SHARDS}",
                self.shards
            )));
        }
        if self.backend == StoreBackend::Scylla {
            self.cql.validate()?;
        }
        Ok(())
    }
}

impl Config {
    /// Checks ranges and cross-field consistency (no file is read).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir is empty"));
        }
        if let Some(origin) = &self.public_origin
            && normalize_origin(origin).is_none()
        {
            return Err(invalid(format!(
                "public_origin {origin:?} is not an origin (scheme://host[:port], no path)"
            )));
        }
        for origin in &self.allowed_origins {
            if normalize_origin(origin).is_none() {
                return Err(invalid(format!(
                    "allowed_origins: {origin:?} is not an origin (scheme://host[:port], no path)"
                )));
            }
        }
        self.auth.validate()?;
        self.limits.validate()?;
        self.session.validate()?;
        self.storage.validate()?;
        self.cluster
            .validate(self.storage.backend, self.redis.url.as_deref())?;
        self.events.validate()
    }

    /// `https` when the HTTP listener serves TLS (`tls.enabled`), else `http`.
    pub fn http_scheme(&self) -> &'static str {
        if self.tls.enabled { "https" } else { "http" }
    }

    /// The server's own origins once bound to `bound`: `public_origin` when set, otherwise
    /// `http://<bound>` (`https` with TLS), plus `http://localhost:<port>` when bound to a loopback address (a
    /// browser on `localhost` sends that origin).
    pub fn own_origins(&self, bound: SocketAddr) -> Vec<String> {
        if let Some(origin) = self.public_origin.as_deref().and_then(normalize_origin) {
            return vec![origin];
        }
        let scheme = self.http_scheme();
        let mut origins = vec![format!("{scheme}://{bound}")];
        if bound.ip().is_loopback() {
            origins.push(format!("{scheme}://localhost:{}", bound.port()));
        }
        origins
    }

    /// Every origin allowed to open a WebSocket: [`Config::own_origins`] and `allowed_origins`,
    /// normalized (lower-case, no trailing `/`). Compare a request's `Origin` with
    /// [`normalize_origin`] applied.
    pub fn allowed_origins(&self, bound: SocketAddr) -> Vec<String> {
        let mut all = self.own_origins(bound);
        for origin in self
            .allowed_origins
            .iter()
            .filter_map(|o| normalize_origin(o))
        {
            if !all.contains(&origin) {
                all.push(origin);
            }
        }
        all
    }
}

/// `scheme://host[:port]` lower-cased with no trailing `/`, or `None` when `raw` is not an
/// origin (no scheme, a path, a query, user info, or `null`).
pub fn normalize_origin(raw: &str) -> Option<String> {
    let raw = raw.trim().strip_suffix('/').unwrap_or(raw.trim());
    let (scheme, rest) = raw.split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host_ok = !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@'])
        && rest.chars().all(|c| c.is_ascii_graphic());
    (scheme_ok && host_ok).then(|| raw.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values_and_valid() {
        let c = Config::default();
        assert_eq!(c.data_dir, PathBuf::from("./chatwire-data"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.auth.issuer, "chatwire-dev");
        assert_eq!(c.auth.audience, "chatwire");
        assert_eq!(c.auth.algorithms, vec![JwtAlgorithm::Hs256]);
        assert_eq!(c.auth.leeway_ms, 30_000);
        assert_eq!(c.limits.max_client_frame_bytes, 64 * 1024);
        assert_eq!(c.limits.max_server_frame_bytes, 1024 * 1024);
        assert_eq!(c.limits.max_in_flight_requests, 64);
        assert_eq!(c.limits.max_connections_per_ip, 64);
        assert_eq!(c.session.heartbeat_interval_ms, 15_000);
        assert_eq!(c.session.handshake_timeout_ms, 10_000);
        assert_eq!(c.session.outbound_queue_frames, 1024);
        assert_eq!(c.storage.idempotency_window_ms, 86_400_000);
        assert_eq!(c.storage.bucket_width_ms, 3_600_000);
        c.validate().unwrap();
    }

    #[test]
    fn own_origin_follows_the_bound_address() {
        let c = Config::default();
        let bound: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        assert_eq!(
            c.allowed_origins(bound),
            vec![
                "http://127.0.0.1:41234".to_owned(),
                "http://localhost:41234".to_owned()
            ]
        );
        let c = Config {
            public_origin: Some("https://Chat.Example/".into()),
            allowed_origins: vec!["https://app.example".into(), "https://chat.example".into()],
            ..Config::default()
        };
        assert_eq!(
            c.allowed_origins(bound),
            vec![
                "https://chat.example".to_owned(),
                "https://app.example".to_owned()
            ]
        );
    }

    #[test]
    fn origins_are_checked() {
        assert_eq!(
            normalize_origin("HTTP://A.example:80"),
            Some("http://a.example:80".into())
        );
        for bad in [
            "null",
            "a.example",
            "https://a.example/path",
            "https://u@a.example",
            "",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
        let c = Config {
            allowed_origins: vec!["example.com".into()],
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn auth_consistency_is_checked() {
        let key = |kid: &str, alg| PublicKeyConfig {
            kid: kid.into(),
            alg,
            pem: Some("x".into()),
            pem_file: None,
        };
        let with = |f: &dyn Fn(&mut AuthConfig)| {
            let mut a = AuthConfig::default();
            f(&mut a);
            a.validate()
        };
        assert!(with(&|a| a.algorithms.clear()).is_err());
        assert!(with(&|a| a.algorithms.push(JwtAlgorithm::Hs256)).is_err());
        // RS256 listed with no key.
        assert!(with(&|a| a.algorithms.push(JwtAlgorithm::Rs256)).is_err());
        // A key for an algorithm not listed.
        assert!(with(&|a| a.keys.push(key("k1", JwtAlgorithm::EdDsa))).is_err());
        // HS256 is not a public key.
        assert!(with(&|a| a.keys.push(key("k1", JwtAlgorithm::Hs256))).is_err());
        // Duplicate kid.
        assert!(
            with(&|a| {
                a.algorithms.push(JwtAlgorithm::EdDsa);
                a.keys.push(key("k1", JwtAlgorithm::EdDsa));
                a.keys.push(key("k1", JwtAlgorithm::EdDsa));
            })
            .is_err()
        );
        // pem and pem_file both set.
        assert!(
            with(&|a| {
                a.algorithms.push(JwtAlgorithm::EdDsa);
                let mut k = key("k1", JwtAlgorithm::EdDsa);
                k.pem_file = Some("f".into());
                a.keys.push(k);
            })
            .is_err()
        );
        assert!(
            with(&|a| {
                a.algorithms.push(JwtAlgorithm::EdDsa);
                a.keys.push(key("k1", JwtAlgorithm::EdDsa));
                a.hs256_kid = Some("hs".into());
            })
            .is_ok()
        );
        assert!(with(&|a| a.leeway_ms = MAX_LEEWAY_MS + 1).is_err());
        assert!(with(&|a| a.issuer.clear()).is_err());
    }

    #[test]
    fn limits_are_checked() {
        let mut c = Config::default();
        c.limits.max_in_flight_requests = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.limits.max_server_frame_bytes = 1024;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.limits.rate_sends.burst = 0;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.session.heartbeat_interval_ms = 10;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.storage.bucket_width_ms = 1;
        assert!(c.validate().is_err());
    }
}
