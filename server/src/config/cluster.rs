//! Distributed-mode settings (docs/operations.md, "Running a cluster"): where the shared store
//! lives, and the `[cluster]` section that turns on the RabbitMQ command pipeline and event
//! lanes. Unset, everything stays in one process on the embedded default.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// Which store holds room logs, rooms, members, receipts and accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// redb in `data_dir/store` (one process).
    #[default]
    Embedded,
    /// ScyllaDB (or Apache Cassandra 5) over CQL, shared by every node.
    Scylla,
}

/// The CQL store (`[storage]` keys used when `backend = "scylla"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CqlConfig {
    /// Contact points, `host:port`. Default `127.0.0.1:9042`.
    pub nodes: Vec<String>,
    /// The keyspace `chatwire migrate` creates and the server uses. Default `chatwire`.
    pub keyspace: String,
    /// Replication factor `chatwire migrate` gives a new keyspace. Default 1 (development);
    /// use 3 in production.
    pub replication_factor: u32,
}

impl Default for CqlConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "chatwire".to_owned(),
            replication_factor: 1,
        }
    }
}

impl CqlConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes.is_empty() {
            return Err(invalid("storage.cql.nodes is empty"));
        }
        let keyspace_ok = !self.keyspace.is_empty()
            && self.keyspace.len() <= 48
            && self.keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            && self
                .keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !keyspace_ok {
            return Err(invalid(format!(
                "storage.cql.keyspace {:?}: a letter, then letters, digits or _ (at most 48)",
                self.keyspace
            )));
        }
        if self.replication_factor == 0 {
            return Err(invalid("storage.cql.replication_factor is 0"));
        }
        Ok(())
    }
}

/// Many gateway nodes as one server: commands through RabbitMQ shard queues, downstream events
/// through RabbitMQ lanes. Needs `storage.backend = "scylla"` and `redis.url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `amqp://user:pass@host:port/vhost`. Unset (default): one node, in-process pipeline.
    pub amqp_url: Option<String>,
    /// Prefix of every exchange and queue name. Default `chatwire.`.
    pub queue_prefix: String,
    /// How often a node renews its liveness row and re-reads the live set. Default 2 s.
    pub heartbeat_interval_ms: u64,
    /// How long a node counts as live after its last heartbeat. Default 10 s.
    pub node_ttl_ms: u64,
    /// How long a gateway waits for a room writer's answer before it answers a retryable
    /// UNAVAILABLE (the client retries with the same `client_msg_id`). Default 10 s.
    pub request_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            amqp_url: None,
            queue_prefix: "chatwire.".to_owned(),
            heartbeat_interval_ms: 2_000,
            node_ttl_ms: 10_000,
            request_timeout_ms: 10_000,
        }
    }
}

impl ClusterConfig {
    /// True when the cluster section turns distributed mode on.
    pub fn enabled(&self) -> bool {
        self.amqp_url.is_some()
    }

    pub(super) fn validate(
        &self,
        backend: StoreBackend,
        redis_url: Option<&str>,
    ) -> Result<(), ConfigError> {
        if self.heartbeat_interval_ms == 0 {
            return Err(invalid("cluster.heartbeat_interval_ms is 0"));
        }
        if self.node_ttl_ms < self.heartbeat_interval_ms.saturating_mul(2) {
            return Err(invalid(format!(
                "cluster.node_ttl_ms is {}, at least twice cluster.heartbeat_interval_ms ({})",
                self.node_ttl_ms, self.heartbeat_interval_ms
            )));
        }
        if self.request_timeout_ms == 0 {
            return Err(invalid("cluster.request_timeout_ms is 0"));
        }
        if !self.enabled() {
            return Ok(());
        }
        if backend != StoreBackend::Scylla {
            return Err(invalid(
                "cluster.amqp_url is set but storage.backend is not \"scylla\": the room \
                 writers of every node must share one store",
            ));
        }
        if redis_url.is_none() {
            return Err(invalid(
                "cluster.amqp_url is set but redis.url is not: live delivery between nodes \
                 goes through Redis",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_needs_a_shared_store_and_redis() {
        let cluster = ClusterConfig {
            amqp_url: Some("amqp://127.0.0.1:5672/%2f".into()),
            ..ClusterConfig::default()
        };
        assert!(
            cluster
                .validate(StoreBackend::Embedded, Some("redis://x"))
                .is_err()
        );
        assert!(cluster.validate(StoreBackend::Scylla, None).is_err());
        assert!(
            cluster
                .validate(StoreBackend::Scylla, Some("redis://x"))
                .is_ok()
        );
        assert!(
            ClusterConfig::default()
                .validate(StoreBackend::Embedded, None)
                .is_ok()
        );
    }

    #[test]
    fn node_ttl_covers_two_heartbeats() {
        let cluster = ClusterConfig {
            heartbeat_interval_ms: 5_000,
            node_ttl_ms: 9_000,
            ..ClusterConfig::default()
        };
        assert!(cluster.validate(StoreBackend::Embedded, None).is_err());
    }

    #[test]
    fn keyspace_names_are_checked() {
        for bad in ["", "1abc", "a-b", "a b"] {
            let cql = CqlConfig {
                keyspace: bad.into(),
                ..CqlConfig::default()
            };
            assert!(cql.validate().is_err(), "{bad:?}");
        }
        assert!(CqlConfig::default().validate().is_ok());
    }
}
