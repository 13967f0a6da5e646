//! Live gateway nodes (docs/architecture.md "Room writers"): each node renews a row with a time to
//! live; the set of live nodes decides, by rendezvous hashing, which node consumes which shard
//! queue. Liveness lives in the store (ScyllaDB rows with a TTL), never only in Redis. Assignment
//! is for balance only: safety comes from the fenced append on the room head.

use async_trait::async_trait;

use super::store::StoreError;

/// One live node as the registry last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    /// The node's id (unique per process start).
    pub node_id: String,
    /// Where its clients connect (`host:port`), for operators; may be empty.
    pub address: String,
}

/// The registry of live nodes.
#[async_trait]
pub trait NodeRegistry: Send + Sync + std::fmt::Debug {
    /// Records `node` as live for `ttl_ms` from now (a heartbeat; call well within the TTL).
    async fn heartbeat(&self, node: &LiveNode, ttl_ms: u64) -> Result<(), StoreError>;

    /// Every node whose last heartbeat has not expired, sorted by id.
    async fn live_nodes(&self) -> Result<Vec<LiveNode>, StoreError>;

    /// Removes `node_id` at once (a clean shutdown), so its shards move without waiting for
    /// the TTL.
    async fn leave(&self, node_id: &str) -> Result<(), StoreError>;
}

/// Registry rows by node id: the node and when its row expires (ms).
type Rows = std::collections::BTreeMap<String, (LiveNode, i64)>;

/// The in-process registry: rows in memory with a time to live on an injected clock. Serves
/// the embedded default (one node) and tests, where several pipelines in one process share
/// it.
#[derive(Debug)]
pub struct MemoryRegistry {
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    rows: std::sync::Mutex<Rows>,
}

impl MemoryRegistry {
    /// An empty registry whose rows expire by `clock`.
    pub fn new(clock: std::sync::Arc<dyn crate::clock::Clock>) -> Self {
        Self {
            clock,
            rows: std::sync::Mutex::default(),
        }
    }

    fn rows(&self) -> Result<std::sync::MutexGuard<'_, Rows>, StoreError> {
        self.rows
            .lock()
            .map_err(|_| StoreError::Corrupt("node registry lock poisoned".into()))
    }
}

#[async_trait]
impl NodeRegistry for MemoryRegistry {
    async fn heartbeat(&self, node: &LiveNode, ttl_ms: u64) -> Result<(), StoreError> {
        let ttl = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
        let until = self.clock.now_ms().saturating_add(ttl);
        self.rows()?
            .insert(node.node_id.clone(), (node.clone(), until));
        Ok(())
    }

    async fn live_nodes(&self) -> Result<Vec<LiveNode>, StoreError> {
        let now = self.clock.now_ms();
        let mut rows = self.rows()?;
        rows.retain(|_, (_, until)| *until > now);
        // A BTreeMap keeps them sorted by id.
        Ok(rows.values().map(|(node, _)| node.clone()).collect())
    }

    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        self.rows()?.remove(node_id);
        Ok(())
    }
}
