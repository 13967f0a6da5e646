//! The distributed fan-out ([`RedisFanout`]): sessions attached to different gateway nodes get
//! each other's room events, user events and presence through Redis (docs/architecture.md "Live
//! fan-out"). Keys, channels and failure behaviour are described in `docs/fanout-redis.md`.
//!
//! ```text
//!  publish_room ──▶ local sessions (at once) ──▶ outbound queue ──▶ Lua: XADD <seq>-0 to the
//!                                                 (one task,          tail stream + PUBLISH
//!                                                  never blocks)      on the room channel
//!  PSUBSCRIBE <p>room:* ──▶ room cursor + ring ──▶ local sessions of the batch's audience
//!                             │ gap or stale head
//!                             ▼
//!                   repair: ring ─▶ tail stream (XRANGE) ─▶ RoomLog
//!  SUBSCRIBE <p>cluster ──▶ user / session events, closes, presence changes of other nodes
//!  upkeep task ──▶ heartbeat (sessions hash + expiry), reload of the other nodes' sessions,
//!                  head checks (tail stream head, the store's head when Redis was away)
//! ```
//!
//! Every trait method is sync and never waits for Redis: local sessions are served from memory
//! and everything for other nodes goes through a bounded queue that drops when full or when
//! Redis is down. Lost room events are repaired by the cursor check and the head checks; lost
//! registry writes by the next heartbeat, which rewrites the node's sessions hash.
//!
//! Semantics across the cluster: `sessions_of`, `presence` and `close_sessions(Some(user))`
//! cover every node (from this node's mirror of the registry); `session_count` and
//! `close_sessions(None)` (drain) cover this node only, as the trait documents.
//! Session keys must be unique across the cluster for `publish_session` to another node.

mod cluster;
mod inbound;
mod repair;
mod rooms;
mod state;
mod upkeep;
mod wire;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chatwire_protocol::v1;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use self::state::State;
use self::wire::Keys;
use self::worker::Outbound;
use super::fanout::{Audience, Fanout, SessionKey, SessionLink};
use super::store::RoomLog;
use crate::chat::ids::{RoomId, UserId};
use crate::clock::Clock;

/// How long one Redis command may take before it counts as failed.
const COMMAND_DEADLINE: Duration = Duration::from_secs(2);
/// Warnings about Redis come at most this often (by the injected clock).
const WARN_EVERY_MS: i64 = 10_000;

/// How a [`RedisFanout`] is set up.
#[derive(Debug, Clone)]
pub struct RedisFanoutConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key and channel (nodes of one cluster share it).
    pub key_prefix: String,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// How often the node renews its sessions hash and reloads the other nodes'.
    pub heartbeat_interval: Duration,
    /// How long a node's sessions outlive its last heartbeat.
    pub node_ttl: Duration,
    /// How often room cursors are compared with the room heads (and the store is polled while
    /// Redis is away).
    pub head_check_interval: Duration,
    /// Every this many head checks also reads the store's heads while Redis is up.
    pub store_check_every: u32,
    /// Approximate length of each room's tail stream (`MAXLEN ~`).
    pub tail_len: usize,
    /// How long an idle room's tail stream is kept.
    pub tail_ttl: Duration,
    /// Events kept per room in memory (delivered ones, and as many waiting behind a gap).
    pub ring: usize,
    /// Capacity of the outbound queue (publishes beyond it are dropped and repaired).
    pub queue: usize,
    /// The longest wait between reconnection attempts while Redis is down.
    pub max_backoff: Duration,
    /// Most users whose last-seen time Redis keeps (the most recently seen win; older ones then
    /// read as never seen, as in the node's own bounded mirror).
    pub last_seen_cap: usize,
}

impl RedisFanoutConfig {
    /// The defaults for `url`, `key_prefix` and `node_id`.
    pub fn new(url: &str, key_prefix: &str, node_id: &str) -> Self {
        Self {
            url: url.to_owned(),
            key_prefix: key_prefix.to_owned(),
            node_id: node_id.to_owned(),
            heartbeat_interval: Duration::from_secs(2),
            node_ttl: Duration::from_secs(10),
            head_check_interval: Duration::from_secs(2),
            store_check_every: 15,
            tail_len: 500,
            tail_ttl: Duration::from_secs(24 * 3600),
            ring: 256,
            queue: 16_384,
            max_backoff: Duration::from_secs(5),
            last_seen_cap: crate::backend::fanout::MAX_LAST_SEEN,
        }
    }
}

/// Why a [`RedisFanout`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RedisFanoutError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// The node id is empty or holds characters unsafe in key names.
    #[error("invalid node id {0:?}")]
    InvalidNodeId(String),
    /// Redis did not answer the first connection or subscription.
    #[error("cannot connect to Redis: {0}")]
    Connect(String),
}

/// What the node's tasks share.
struct Shared {
    node: String,
    keys: Keys,
    config: RedisFanoutConfig,
    clock: Arc<dyn Clock>,
    log: Arc<dyn RoomLog>,
    redis: ConnectionManager,
    state: Mutex<State>,
    out: mpsc::Sender<Outbound>,
    /// Commands worked last time (cleared by a failure, set by a heartbeat that worked).
    redis_up: AtomicBool,
    /// The subscriptions are live (cleared on disconnect, set on (re)subscription).
    subscribed: AtomicBool,
    /// The next head check reads the store's heads too.
    store_check: AtomicBool,
    /// The registry in Redis may miss changes: the next heartbeat rewrites it.
    dirty: AtomicBool,
    /// This node's registry version.
    version: AtomicU64,
    /// Wakes the upkeep task early (after a resubscription).
    wake: Notify,
    last_warn_ms: AtomicI64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.node)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Deliveries lost to a panic elsewhere matter less than stopping every session.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues work for Redis without waiting; a full queue drops it.
    fn send(&self, item: Outbound) {
        if let Err(error) = self.out.try_send(item) {
            if matches!(error.into_inner(), Outbound::Registry { .. }) {
                self.dirty.store(true, Ordering::Release);
            }
            self.warn("outbound queue full: dropping (repaired later)");
        }
    }

    /// Marks Redis as failing and warns (rate-limited).
    fn failed(&self, what: &str, error: &str) {
        self.redis_up.store(false, Ordering::Release);
        self.warn(&format!("{what}: {error}"));
    }

    fn warn(&self, message: &str) {
        let now = self.clock.now_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(node = %self.node, "Redis fan-out: {message}");
        }
    }

    /// Starts a repair of `room` for the gap `(after, until]` (off the caller's path).
    fn spawn_repair(self: &Arc<Self>, room: &RoomId, gap: Option<(u64, u64)>) {
        if let Some(gap) = gap {
            crate::telemetry::gap_repair();
            tokio::spawn(repair::run(Arc::clone(self), room.clone(), gap));
        }
    }
}

/// The Redis fan-out of one gateway node. Dropping it stops its tasks (its sessions then
/// vanish from the cluster when its registry entry expires).
#[derive(Debug)]
pub struct RedisFanout {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RedisFanout {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisFanout {
    /// Connects, subscribes and registers the node. Fails when Redis does not answer now;
    /// later outages are survived (see the module doc). `log` is where gaps are repaired
    /// from when the tail stream lacks them; `clock` stamps presence times.
    pub async fn connect(
        config: RedisFanoutConfig,
        log: Arc<dyn RoomLog>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RedisFanoutError> {
        if config.node_id.is_empty()
            || !config
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(RedisFanoutError::InvalidNodeId(config.node_id));
        }
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let redis = connect_manager(&config.url, push_tx).await?;
        let (out, out_rx) = mpsc::channel(config.queue.max(1));
        let shared = Arc::new(Shared {
            node: config.node_id.clone(),
            keys: Keys::new(&config.key_prefix),
            clock,
            log,
            redis,
            state: Mutex::new(State::new(config.ring)),
            out,
            redis_up: AtomicBool::new(true),
            subscribed: AtomicBool::new(false),
            store_check: AtomicBool::new(false),
            dirty: AtomicBool::new(true),
            version: AtomicU64::new(0),
            wake: Notify::new(),
            last_warn_ms: AtomicI64::new(i64::MIN),
            config,
        });
        inbound::subscribe(&shared).await?;
        upkeep::start(&shared).await;
        let tasks = vec![
            tokio::spawn(inbound::run(Arc::clone(&shared), push_rx)),
            tokio::spawn(worker::run(Arc::clone(&shared), out_rx)),
            tokio::spawn(upkeep::run(Arc::clone(&shared))),
        ];
        Ok(Self { shared, tasks })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.node
    }

    /// How many sessions are live in the whole cluster, as this node last saw it.
    pub fn cluster_session_count(&self) -> usize {
        let state = self.shared.lock();
        state.sessions.len() + state.cluster.session_count()
    }

    /// True while the pub/sub subscriptions are live (false: delivery polls the store).
    pub fn is_subscribed(&self) -> bool {
        self.shared.subscribed.load(Ordering::Acquire)
    }
}

/// A connection manager speaking RESP3, whose pushes (pub/sub messages, disconnections) go to
/// `pushes`, with bounded timeouts and retries.
async fn connect_manager(
    url: &str,
    pushes: mpsc::UnboundedSender<redis::PushInfo>,
) -> Result<ConnectionManager, RedisFanoutError> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()
        .map_err(|e| RedisFanoutError::InvalidUrl(e.to_string()))?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))
        .map_err(|e| RedisFanoutError::InvalidUrl(e.to_string()))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(COMMAND_DEADLINE))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1))
        .set_push_sender(pushes)
        .set_automatic_resubscription();
    tokio::time::timeout(
        COMMAND_DEADLINE * 3,
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| RedisFanoutError::Connect("timed out".to_owned()))?
    .map_err(|e| RedisFanoutError::Connect(e.to_string()))
}

impl Fanout for RedisFanout {
    fn attach(&self, session: SessionKey, user: &UserId, link: SessionLink) {
        let now = self.shared.clock.now_ms();
        {
            let mut state = self.shared.lock();
            let was_online = state.online(user);
            state.sessions.insert(session, (user.clone(), link));
            state.by_user.entry(user.clone()).or_default().push(session);
            state.presence_moved(user, was_online, now);
        }
        self.shared.send(Outbound::Registry {
            online: true,
            session,
            user: user.clone(),
            ts_ms: now,
        });
    }

    fn detach(&self, session: SessionKey) {
        let now = self.shared.clock.now_ms();
        let user = {
            let mut state = self.shared.lock();
            state.unwatch_all(session);
            let Some((user, _)) = state.sessions.remove(&session) else {
                return;
            };
            if let Some(keys) = state.by_user.get_mut(&user) {
                keys.retain(|key| *key != session);
                if keys.is_empty() {
                    state.by_user.remove(&user);
                }
            }
            state.presence_moved(&user, true, now);
            user
        };
        self.shared.send(Outbound::Registry {
            online: false,
            session,
            user,
            ts_ms: now,
        });
    }

    fn publish_room(&self, room: &RoomId, events: Arc<[v1::RoomEvent]>, audience: &Audience) {
        // The other nodes learn the audience with the batch (they hold no membership).
        let audience: Arc<[UserId]> = audience.iter().cloned().collect();
        let gap = {
            let mut state = self.shared.lock();
            let track = state.rooms.cursor(room).is_some() || state.any_local(&audience);
            let ready = state.rooms.offer(room, &events, &audience, track);
            state.deliver_rooms(ready);
            state.rooms.begin_repair(room, 0)
        };
        self.shared.spawn_repair(room, gap);
        self.shared.send(Outbound::Room {
            room: room.clone(),
            events,
            audience,
        });
    }

    fn publish_user(&self, user: &UserId, event: v1::Event, except: Option<SessionKey>) {
        let event = Arc::new(event);
        self.shared.lock().deliver_user(user, &event, except);
        self.shared
            .send(Outbound::cluster(wire::Kind::User(wire::UserEvent {
                user: user.to_string(),
                except,
                event: Some((*event).clone()),
            })));
    }

    fn publish_session(&self, session: SessionKey, event: v1::Event) -> bool {
        let target = {
            let state = self.shared.lock();
            if let Some((_, link)) = state.sessions.get(&session) {
                return link.deliver(state::user_delivery(event));
            }
            state.cluster.node_of(session).map(str::to_owned)
        };
        let Some(target_node) = target else {
            return false;
        };
        self.shared
            .send(Outbound::cluster(wire::Kind::Session(wire::SessionEvent {
                target_node,
                session,
                event: Some(event),
            })));
        true
    }

    fn sessions_of(&self, user: &UserId) -> Vec<SessionKey> {
        let state = self.shared.lock();
        let mut keys = state.by_user.get(user).cloned().unwrap_or_default();
        keys.extend(state.cluster.sessions_of(user));
        keys
    }

    fn close_sessions(&self, user: Option<&UserId>, code: v1::CloseCode) -> usize {
        let Some(user) = user else {
            // Everyone's sessions means this node's (a drain), never the whole cluster.
            let state = self.shared.lock();
            for (_, link) in state.sessions.values() {
                link.deliver(super::fanout::Delivery::Close(code));
            }
            return state.sessions.len();
        };
        let closed = {
            let state = self.shared.lock();
            state.close_user(user, code) + state.cluster.sessions_of(user).len()
        };
        self.shared
            .send(Outbound::cluster(wire::Kind::Close(wire::CloseUser {
                user: user.to_string(),
                code: code as i32,
            })));
        closed
    }

    fn session_count(&self) -> usize {
        self.shared.lock().sessions.len()
    }

    fn watch_presence(
        &self,
        session: SessionKey,
        visible: &[UserId],
        hidden: &[UserId],
        cap: usize,
    ) -> Result<(), usize> {
        self.shared
            .lock()
            .watches
            .watch(session, visible, hidden, cap)
    }

    fn unwatch_presence(&self, session: SessionKey, users: &[UserId]) {
        self.shared.lock().watches.unwatch(session, users);
    }

    fn presence(&self, user: &UserId) -> v1::Presence {
        let state = self.shared.lock();
        let online = state.online(user);
        v1::Presence {
            user_id: user.to_string(),
            online,
            // Online users are seen now (docs/protocol.md §14).
            last_seen_ms: if online {
                self.shared.clock.now_ms()
            } else {
                state.cluster.last_seen(user)
            },
        }
    }
}
