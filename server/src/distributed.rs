//! Distributed mode (docs/operations.md, "Running a cluster"): builds the backends that let
//! many gateway nodes act as one server from the configuration — the ScyllaDB store, the Redis
//! fan-out, the RabbitMQ command pipeline behind a circuit breaker, and the RabbitMQ event
//! lanes — plus their readiness probes. [`crate::server`] picks these or the embedded ones.
//!
//! ```text
//!  storage.backend = "scylla"  ─▶ ScyllaStore (room logs, heads, node registry)
//!  cluster.amqp_url            ─▶ RabbitPipeline (shard queues) + RabbitEvent{Publisher,Queue}
//!  redis.url (with a cluster)  ─▶ RedisFanout (tail streams, pub/sub, presence)
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::breaker::{Breaker, BreakerState};
use crate::backend::events::{EventPublisher, EventQueue, RetryPolicy};
use crate::backend::events_rabbit::{RabbitEventPublisher, RabbitEventQueue, RabbitEventsConfig};
use crate::backend::fanout_redis::{RedisFanout, RedisFanoutConfig};
use crate::backend::health::Probe;
use crate::backend::nodes::NodeRegistry;
use crate::backend::pipeline::RoomExecutor;
use crate::backend::pipeline_rabbit::{RabbitConfig, RabbitPipeline};
use crate::backend::scylla::{ScyllaOptions, ScyllaStore, migrate as migrate_schema};
use crate::backend::store::RoomLog;
use crate::clock::Clock;
use crate::config::Config;

/// The CQL store's options from `[storage]`.
pub fn scylla_options(config: &Config) -> ScyllaOptions {
    ScyllaOptions {
        nodes: config.storage.cql.nodes.clone(),
        keyspace: config.storage.cql.keyspace.clone(),
        bucket_width_ms: i64::try_from(config.storage.bucket_width_ms).unwrap_or(3_600_000),
        shards: u32::try_from(config.storage.shards).unwrap_or(u32::MAX),
        ..ScyllaOptions::default()
    }
}

/// `chatwire migrate` on the CQL store: creates or checks the keyspace and tables; returns
/// what it did in words.
pub async fn migrate(config: &Config) -> Result<String, String> {
    let options = scylla_options(config);
    let meta = migrate_schema(&options, config.storage.cql.replication_factor)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "keyspace {} migrated: {} shards, {} ms buckets (recorded values win over the \
         configuration)",
        options.keyspace, meta.shards, meta.bucket_width_ms
    ))
}

/// Connects to the migrated CQL store.
pub async fn open_store(config: &Config) -> Result<ScyllaStore, String> {
    ScyllaStore::connect(&scylla_options(config))
        .await
        .map_err(|e| e.to_string())
}

/// The Redis fan-out of this node.
pub async fn open_fanout(
    config: &Config,
    node_id: &str,
    log: Arc<dyn RoomLog>,
    clock: Arc<dyn Clock>,
) -> Result<Arc<RedisFanout>, String> {
    let url = config
        .redis
        .url
        .as_deref()
        .ok_or("a cluster needs redis.url")?;
    let mut fanout = RedisFanoutConfig::new(url, &config.redis.key_prefix, node_id);
    let heartbeat = Duration::from_millis(config.cluster.heartbeat_interval_ms);
    fanout.heartbeat_interval = heartbeat;
    fanout.node_ttl = Duration::from_millis(config.cluster.node_ttl_ms);
    fanout.head_check_interval = heartbeat;
    RedisFanout::connect(fanout, log, clock)
        .await
        .map(Arc::new)
        .map_err(|e| format!("redis fan-out: {e}"))
}

/// The RabbitMQ command pipeline of this node, consuming the shards it is assigned.
pub async fn start_pipeline(
    config: &Config,
    node_id: &str,
    address: String,
    writers: Vec<Box<dyn RoomExecutor>>,
    registry: Arc<dyn NodeRegistry>,
) -> Result<Arc<RabbitPipeline>, String> {
    let cluster = &config.cluster;
    let url = cluster
        .amqp_url
        .as_deref()
        .ok_or("cluster.amqp_url unset")?;
    let mut rabbit = RabbitConfig::new(url, node_id, writers.len(), &cluster.queue_prefix);
    rabbit.node_address = address;
    rabbit.request_timeout = Duration::from_millis(cluster.request_timeout_ms);
    rabbit.node_heartbeat_interval = Duration::from_millis(cluster.heartbeat_interval_ms);
    rabbit.rebalance_interval = Duration::from_millis(cluster.heartbeat_interval_ms);
    rabbit.node_ttl = Duration::from_millis(cluster.node_ttl_ms);
    RabbitPipeline::start(rabbit, writers, registry)
        .await
        .map(Arc::new)
        .map_err(|e| format!("rabbitmq pipeline: {e}"))
}

/// The event lanes: one publisher for the writers (the topic exchange copies each event into
/// every consumer's lanes) and the queue of each named consumer.
pub async fn open_events(
    config: &Config,
    retry: &RetryPolicy,
    consumers: &[&str],
) -> Result<(Arc<dyn EventPublisher>, Vec<Arc<dyn EventQueue>>), String> {
    let cluster = &config.cluster;
    let url = cluster
        .amqp_url
        .as_deref()
        .ok_or("cluster.amqp_url unset")?;
    let mut queues: Vec<Arc<dyn EventQueue>> = Vec::new();
    let mut last = None;
    for name in consumers {
        let events = RabbitEventsConfig::new(url, &cluster.queue_prefix, *name, retry.clone());
        let queue = RabbitEventQueue::connect(events.clone())
            .await
            .map_err(|e| format!("rabbitmq events ({name}): {e}"))?;
        queues.push(Arc::new(queue));
        last = Some(events);
    }
    let publisher_config = last.unwrap_or_else(|| {
        RabbitEventsConfig::new(url, &cluster.queue_prefix, "none", retry.clone())
    });
    let publisher = RabbitEventPublisher::connect(&publisher_config)
        .await
        .map_err(|e| format!("rabbitmq events publisher: {e}"))?;
    Ok((Arc::new(publisher), queues))
}

/// Readiness of the command pipeline: down while its circuit breaker is open.
#[derive(Debug)]
pub struct PipelineProbe(pub Arc<Breaker>);

#[async_trait]
impl Probe for PipelineProbe {
    fn name(&self) -> &'static str {
        "pipeline"
    }

    fn critical(&self) -> bool {
        true
    }

    async fn check(&self) -> Result<(), String> {
        match self.0.state() {
            BreakerState::Open { .. } => Err("circuit open: commands are failing".into()),
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => Ok(()),
        }
    }
}

/// Readiness of the Redis fan-out: degraded (never critical: sends do not depend on it, and
/// delivery falls back to polling the store) while its subscription is down.
#[derive(Debug)]
pub struct FanoutProbe(pub Arc<RedisFanout>);

#[async_trait]
impl Probe for FanoutProbe {
    fn name(&self) -> &'static str {
        "fanout"
    }

    fn critical(&self) -> bool {
        false
    }

    async fn check(&self) -> Result<(), String> {
        if self.0.is_subscribed() {
            Ok(())
        } else {
            Err("redis subscription down; delivering from the store".into())
        }
    }
}
