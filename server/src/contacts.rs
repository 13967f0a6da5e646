//! Contacts (issue 22, docs/protocol.md §25): who a user's accepted contacts are, as the
//! session path asks it (presence auto-watch at Connect, the `contacts` presence visibility).
//!
//! ```text
//!  accepted(user) ─▶ StoreContactIds  ─▶ Store::accepted_contacts        (one node)
//!                 └▶ RedisContactIds  ─▶ SMEMBERS <prefix>contacts:<user> (distributed mode)
//!                                          │ miss: Store::accepted_contacts, then
//!                                          ▼ DEL + SADD (ids and the "" marker) + EXPIRE
//!  invalidate(users) ─▶ DEL <prefix>contacts:<user> for each (every accepted change, both sides)
//! ```
//!
//! The Redis set holds the ids plus the empty string, which is no user id: a set with only the
//! marker is a cached "no contacts", and a missing key is a miss. Redis failures fall back to
//! the store (slower, never wrong), logged at most once a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use chatwire_protocol::v1;

use crate::backend::store::Store;
use crate::chat::contacts::{ContactOp, ContactRow, ContactUpdate, to_contact};
use crate::chat::error::ChatError;
use crate::chat::ids::UserId;
use crate::session::services::Services;

/// Applies `op` of `actor` about `other` (docs/protocol.md §25): the store change, then the
/// invalidation of both users' cached accepted ids when an accepted relationship began or
/// ended, then `ContactChanged` to every session of each side whose row changed (R-25.3.1).
pub async fn change(
    services: &Services,
    actor: &UserId,
    other: &UserId,
    op: ContactOp,
) -> Result<ContactUpdate, ChatError> {
    let now_ms = services.clock.now_ms();
    let update = services
        .store
        .update_contact(actor, other, op, now_ms)
        .await?;
    let accepted =
        |row: Option<ContactRow>| row.is_some_and(|r| r.state == v1::ContactState::Accepted);
    if accepted(update.actor_before) != accepted(update.actor_after)
        || accepted(update.other_before) != accepted(update.other_after)
    {
        services.contact_ids.invalidate(&[actor, other]).await;
    }
    let event = |about: &UserId, row| v1::Event {
        kind: Some(v1::event::Kind::ContactChanged(v1::ContactChanged {
            contact: Some(to_contact(about.as_str(), row)),
            actor: actor.to_string(),
        })),
    };
    if update.actor_changed() {
        services
            .fanout
            .publish_user(actor, event(other, update.actor_after), None);
    }
    if update.other_changed() {
        services
            .fanout
            .publish_user(other, event(actor, update.other_after), None);
    }
    Ok(update)
}

/// Ends every relationship of `user` (admin erasure): declines what was asked of them, cancels
/// what they asked, removes their contacts; the other users are told as for any change.
/// Returns how many relationships ended.
pub async fn end_all(services: &Services, user: &UserId) -> Result<usize, ChatError> {
    let rows = services
        .store
        .list_contacts(user, None, None, usize::MAX)
        .await?;
    for (other, row) in &rows {
        let op = match row.state {
            v1::ContactState::Incoming => ContactOp::Decline,
            v1::ContactState::Outgoing => ContactOp::Cancel,
            _ => ContactOp::Remove,
        };
        change(services, user, other, op).await?;
    }
    Ok(rows.len())
}

/// Who a user's accepted contacts are.
#[async_trait]
pub trait ContactIds: Send + Sync + std::fmt::Debug {
    /// The users `user` has accepted as contacts, ordered by id.
    async fn accepted(&self, user: &UserId) -> Result<Vec<UserId>, ChatError>;
    /// Forgets what is cached about `users` (their accepted contacts changed).
    async fn invalidate(&self, users: &[&UserId]);
}

/// Reads the store every time (one node: the store is local and fast).
#[derive(Debug)]
pub struct StoreContactIds {
    store: Arc<dyn Store>,
}

impl StoreContactIds {
    /// Over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl ContactIds for StoreContactIds {
    async fn accepted(&self, user: &UserId) -> Result<Vec<UserId>, ChatError> {
        Ok(self.store.accepted_contacts(user).await?)
    }

    async fn invalidate(&self, _users: &[&UserId]) {}
}

/// The longest a Redis call of the cache waits before the store answers instead.
const REDIS_DEADLINE: Duration = Duration::from_secs(1);
/// Warnings about Redis come at most this often.
const WARN_EVERY_MS: i64 = 60_000;
/// The member that marks a set as cached (never a user id: ids are 1 to 128 bytes).
const MARKER: &str = "";

/// Caches each user's accepted contact ids as a Redis set (distributed mode).
pub struct RedisContactIds {
    store: Arc<dyn Store>,
    redis: ConnectionManager,
    prefix: String,
    ttl_s: u64,
    last_warn_ms: AtomicI64,
    fill_script: redis::Script,
}

impl std::fmt::Debug for RedisContactIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisContactIds")
            .field("prefix", &self.prefix)
            .field("ttl_s", &self.ttl_s)
            .finish_non_exhaustive()
    }
}

impl RedisContactIds {
    /// Connects to `url`; keys are `<prefix>contacts:<user>`, living `ttl_s` seconds.
    pub async fn connect(
        url: &str,
        prefix: &str,
        ttl_s: u64,
        store: Arc<dyn Store>,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_DEADLINE))
            .set_response_timeout(Some(REDIS_DEADLINE))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let redis = tokio::time::timeout(
            REDIS_DEADLINE * 5,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        Ok(Self {
            store,
            redis,
            prefix: prefix.to_owned(),
            ttl_s: ttl_s.max(1),
            last_warn_ms: AtomicI64::new(i64::MIN),
            fill_script: redis::Script::new(FILL_SCRIPT),
        })
    }

    /// The key of `user`'s set.
    pub fn key(&self, user: &UserId) -> String {
        format!("{}contacts:{user}", self.prefix)
    }

    fn warn(&self, what: &str, error: &dyn std::fmt::Display) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, "contact cache: {what} failed; reading the store");
        }
    }

    /// The key of `user`'s invalidation counter.
    fn generation_key(&self, user: &UserId) -> String {
        format!("{}contacts-gen:{user}", self.prefix)
    }

    /// The cached ids (`None` on a miss) and the invalidation counter they were read at.
    async fn cached(&self, user: &UserId) -> Result<(Option<Vec<UserId>>, String), String> {
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.generation_key(user));
        pipe.cmd("SMEMBERS").arg(self.key(user));
        let (generation, members): (Option<String>, Vec<String>) =
            tokio::time::timeout(REDIS_DEADLINE, pipe.query_async(&mut redis))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
        let generation = generation.unwrap_or_else(|| "0".to_owned());
        if members.is_empty() {
            return Ok((None, generation));
        }
        let mut ids: Vec<UserId> = members
            .iter()
            .filter(|m| m.as_str() != MARKER)
            .filter_map(|m| UserId::parse(m).ok())
            .collect();
        ids.sort();
        Ok((Some(ids), generation))
    }

    /// Stores `ids` unless an invalidation happened since `generation` was read (then the store
    /// read may predate the change, and the next reader rebuilds).
    async fn fill(&self, user: &UserId, ids: &[UserId], generation: &str) -> Result<(), String> {
        let mut invocation = self.fill_script.key(self.key(user));
        invocation
            .key(self.generation_key(user))
            .arg(generation)
            .arg(self.ttl_s)
            .arg(MARKER);
        for id in ids {
            invocation.arg(id.as_str());
        }
        let mut redis = self.redis.clone();
        tokio::time::timeout(REDIS_DEADLINE, invocation.invoke_async::<i64>(&mut redis))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// KEYS[1] the set, KEYS[2] the invalidation counter; ARGV[1] the counter as read before the
/// store, ARGV[2] the lifetime in seconds, ARGV[3..] the members (the marker first).
const FILL_SCRIPT: &str = r"
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
";

/// How long an invalidation counter outlives its last change (far longer than any rebuild).
const GENERATION_TTL_S: i64 = 86_400;

#[async_trait]
impl ContactIds for RedisContactIds {
    async fn accepted(&self, user: &UserId) -> Result<Vec<UserId>, ChatError> {
        let generation = match self.cached(user).await {
            Ok((Some(ids), _)) => {
                crate::telemetry::contact_cache("hit");
                return Ok(ids);
            }
            Ok((None, generation)) => {
                crate::telemetry::contact_cache("miss");
                generation
            }
            Err(error) => {
                crate::telemetry::contact_cache("error");
                self.warn("a read", &error);
                return Ok(self.store.accepted_contacts(user).await?);
            }
        };
        let ids = self.store.accepted_contacts(user).await?;
        if let Err(error) = self.fill(user, &ids, &generation).await {
            self.warn("a rebuild", &error);
        }
        Ok(ids)
    }

    async fn invalidate(&self, users: &[&UserId]) {
        if users.is_empty() {
            return;
        }
        // The counter first: a rebuild that read the store before the change then cannot
        // store what it read (FILL_SCRIPT).
        let mut pipe = redis::pipe();
        pipe.atomic();
        for user in users {
            let generation = self.generation_key(user);
            pipe.cmd("INCR").arg(&generation).ignore();
            pipe.cmd("EXPIRE")
                .arg(&generation)
                .arg(GENERATION_TTL_S)
                .ignore();
            pipe.cmd("DEL").arg(self.key(user)).ignore();
        }
        let mut redis = self.redis.clone();
        match tokio::time::timeout(REDIS_DEADLINE, pipe.query_async::<()>(&mut redis)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => self.warn("an invalidation", &error),
            Err(_) => self.warn("an invalidation", &"timed out"),
        }
    }
}
