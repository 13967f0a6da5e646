//! Live gateway nodes (DESIGN §4.2): each node renews a row with a time to live; the set of live
//! nodes decides, by rendezvous hashing, which node consumes which shard queue. Liveness lives
//! in the store (ScyllaDB rows with a TTL), never only in Redis. Assignment is for balance only:
//! safety comes from the fenced append on the room head.

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
