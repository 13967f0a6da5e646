//! The embedded event queue: the default [`EventQueue`], one redb database file per consumer
//! (apart from the store's, so a busy consumer never holds the store's writer). Durable: every
//! commit is synced unless [`EventQueueOptions::sync`] is off, and a restart loses nothing
//! (leased events are due again at once on reopen).
//!
//! ```text
//!  async trait call ──spawn_blocking──▶ one redb transaction ──▶ events-<consumer>.redb
//! ```
//!
//! Lanes, retry tiers and the dead-letter queue are indexes in the same file (see `tables.rs`):
//! a retry is the same entry with a later due time, so nothing is copied between queues.
//! What it does not do: share the file between processes (redb locks it).

mod backup;
mod ops;
mod tables;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, WriteTransaction};

pub use self::backup::backup_file;
use self::tables::Fail;
use super::events::{
    DeadLetter, Delivery, DeliveryTag, DownstreamEvent, EventPublisher, EventQueue, Lane,
    QueueError, RetryPolicy,
};

/// Settings of [`EmbeddedEventQueue::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQueueOptions {
    /// Retry tiers and lease time.
    pub retry: RetryPolicy,
    /// Make every commit durable before it returns (the default). Off (tests), commits are
    /// written out on a clean shutdown only.
    pub sync: bool,
}

impl Default for EventQueueOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            sync: true,
        }
    }
}

/// The embedded event queue. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct EmbeddedEventQueue {
    inner: Arc<Inner>,
}

/// What each blocking operation needs.
struct Inner {
    db: Database,
    path: PathBuf,
    policy: RetryPolicy,
    sync: bool,
}

impl Inner {
    /// A write transaction with the configured durability.
    fn write(&self) -> Result<WriteTransaction, Fail> {
        crate::backend::redb_fail::begin_write(&self.db, self.sync)
    }
}

impl fmt::Debug for EmbeddedEventQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedEventQueue")
            .field("path", &self.inner.path)
            .field("policy", &self.inner.policy)
            .field("sync", &self.inner.sync)
            .finish()
    }
}

impl EmbeddedEventQueue {
    /// Opens the queue in the database file `path` with the default options, creating the
    /// file and its folder when missing. Blocks on file I/O: call it at start-up.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        Self::open_with(path, EventQueueOptions::default())
    }

    /// Opens the queue in the database file `path`.
    pub fn open_with(path: &Path, options: EventQueueOptions) -> Result<Self, QueueError> {
        check_policy(&options.retry)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                QueueError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let db = Database::create(path).map_err(Fail::from)?;
        let inner = Inner {
            db,
            path: path.to_owned(),
            policy: options.retry,
            sync: options.sync,
        };
        ops::init(&inner)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The retry policy in use.
    pub fn policy(&self) -> &RetryPolicy {
        &self.inner.policy
    }

    /// Runs a blocking redb operation on the blocking pool.
    async fn run<T, F>(&self, op: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, Fail> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || op(&inner).map_err(QueueError::from))
            .await
            .map_err(|e| QueueError::Unavailable(format!("event queue task failed: {e}")))?
    }
}

fn check_policy(policy: &RetryPolicy) -> Result<(), QueueError> {
    if policy.lease_timeout_ms <= 0 || policy.tiers_ms.iter().any(|&delay| delay < 0) {
        return Err(QueueError::Unavailable(format!(
            "invalid retry policy {policy:?}: the lease must be positive, delays not negative"
        )));
    }
    Ok(())
}

#[async_trait]
impl EventPublisher for EmbeddedEventQueue {
    async fn publish(&self, events: Vec<DownstreamEvent>) -> Result<(), QueueError> {
        if events.is_empty() {
            return Ok(());
        }
        self.run(move |inner| ops::publish(inner, events)).await
    }
}

#[async_trait]
impl EventQueue for EmbeddedEventQueue {
    async fn lease(
        &self,
        lane: Lane,
        max: usize,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.run(move |inner| ops::lease(inner, lane, max, now_ms))
            .await
    }

    async fn ack(&self, tag: DeliveryTag) -> Result<(), QueueError> {
        self.run(move |inner| ops::ack(inner, tag)).await
    }

    async fn nack(&self, tag: DeliveryTag, now_ms: i64, reason: &str) -> Result<(), QueueError> {
        let reason = reason.to_owned();
        self.run(move |inner| ops::nack(inner, tag, now_ms, &reason))
            .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.run(move |inner| ops::dead_letters(inner, limit)).await
    }

    async fn replay_dead_letter(&self, id: &str, now_ms: i64) -> Result<bool, QueueError> {
        let id = id.to_owned();
        self.run(move |inner| ops::replay(inner, &id, now_ms)).await
    }

    async fn depth(&self, lane: Lane) -> Result<u64, QueueError> {
        self.run(move |inner| ops::depth(inner, lane)).await
    }

    async fn dlq_len(&self) -> Result<u64, QueueError> {
        self.run(ops::dlq_len).await
    }
}
