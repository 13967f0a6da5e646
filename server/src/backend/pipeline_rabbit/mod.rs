//! The distributed command pipeline on RabbitMQ (docs/architecture.md "Room writers"): room
//! commands travel to the one node that currently consumes their shard queue, whose room writer
//! (a [`RoomExecutor`]) executes them in group-commit batches and replies to the originating
//! gateway.
//!
//! ```text
//!  gateway (any node)                     RabbitMQ                      writer (one node/shard)
//!  execute ─▶ publish (confirm, mandatory) ─▶ {prefix}shard.{n} ─▶ prefetched batch ─▶ RoomWriter
//!     ▲        reply_to = direct reply-to      quorum, single          by room, in order
//!     └────────────── reply (correlation id) ◀─ active consumer ◀───── reply, then ack
//! ```
//!
//! Each node both sends commands (the gateway half, [`gateway`]) and, when it has writers,
//! consumes the shards that rendezvous hashing over the live nodes ([`assign`]) gives it as
//! owner or standby ([`node`], [`shard`]). Liveness comes from a [`NodeRegistry`]. Safety does
//! not depend on the assignment: the writer's fenced append keeps a stale writer from
//! advancing a room's head.
//!
//! What a redelivery does: a command delivered again after its consumer died before acking
//! runs again on the next consumer. A Send is recognised by its (sender, client_msg_id) and
//! answers its original seq. The other ops have no id: re-running one whose first run was
//! applied mostly changes nothing (adding present members, removing absent ones, deleting a
//! deleted message answer without a new event), but an Edit, a React or an UpdateRoom that
//! changes something logs its change a second time (the final state is the same).

pub mod assign;
pub mod codec;
mod gateway;
mod node;
mod shard;
mod topology;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::nodes::{LiveNode, NodeRegistry};
use super::pipeline::{Pipeline, RoomExecutor};
use crate::chat::command::{Outcome, RoomCommand};
use crate::chat::error::ChatError;

/// Settings of a [`RabbitPipeline`]. [`RabbitConfig::new`] fills in production defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitConfig {
    /// The broker, `amqp://user:pass@host:port/vhost`.
    pub amqp_url: String,
    /// This node's id: unique per process start.
    pub node_id: String,
    /// Where this node's clients connect, for operators (registry rows); may be empty.
    pub node_address: String,
    /// The number of shards; fixed for the cluster.
    pub shards: usize,
    /// Prepended to every queue name (`{prefix}shard.{n}`).
    pub queue_prefix: String,
    /// Most messages a shard queue holds; a publish beyond it is nacked (RATE_LIMITED).
    pub max_queue_length: usize,
    /// Most commands this node has in flight per shard before it answers RATE_LIMITED
    /// without asking the broker.
    pub max_in_flight_per_shard: usize,
    /// How long a command waits for its writer's answer before UNAVAILABLE.
    pub request_timeout: Duration,
    /// The AMQP heartbeat, in seconds (5-10 s: a hung node is replaced quickly).
    pub amqp_heartbeat_s: u16,
    /// Deliveries a shard consumer takes at once (its batch).
    pub prefetch: u16,
    /// Deliveries of one message before the broker dead-letters it.
    pub delivery_limit: u32,
    /// In-process retries of a room batch the store failed, before the shard is given up.
    pub store_retries: u32,
    /// How long a shard given up after store failures is left to other nodes.
    pub failed_shard_rest: Duration,
    /// How often the live nodes are read and the consumers rebalanced.
    pub rebalance_interval: Duration,
    /// How often this node renews its registry row.
    pub node_heartbeat_interval: Duration,
    /// How long a registry row lives without renewal.
    pub node_ttl: Duration,
    /// The retry hint of RATE_LIMITED answers.
    pub rate_limit_retry_ms: u32,
    /// Deletes queues unused (no consumer) this long (`x-expires`); `None` in production,
    /// where a queue must outlive every node. Tests set it so their queues go away.
    pub queue_expires_ms: Option<u64>,
}

impl RabbitConfig {
    /// Production defaults for the given broker, node, shard count and queue prefix.
    pub fn new(amqp_url: &str, node_id: &str, shards: usize, queue_prefix: &str) -> Self {
        Self {
            amqp_url: amqp_url.to_owned(),
            node_id: node_id.to_owned(),
            node_address: String::new(),
            shards: shards.max(1),
            queue_prefix: queue_prefix.to_owned(),
            max_queue_length: 100_000,
            max_in_flight_per_shard: 4096,
            request_timeout: Duration::from_secs(10),
            amqp_heartbeat_s: 5,
            prefetch: 256,
            delivery_limit: 10,
            store_retries: 3,
            failed_shard_rest: Duration::from_secs(30),
            rebalance_interval: Duration::from_secs(5),
            node_heartbeat_interval: Duration::from_secs(3),
            node_ttl: Duration::from_secs(15),
            rate_limit_retry_ms: 200,
            queue_expires_ms: None,
        }
    }
}

/// Why the pipeline could not start or act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RabbitPipelineError {
    /// The configuration cannot work.
    #[error("invalid pipeline configuration: {0}")]
    Config(&'static str),
    /// The broker failed.
    #[error("rabbitmq: {0}")]
    Broker(String),
    /// The node registry failed.
    #[error("node registry: {0}")]
    Registry(String),
    /// The pipeline has stopped.
    #[error("the pipeline has stopped")]
    Stopped,
}

impl From<super::amqp::AmqpError> for RabbitPipelineError {
    fn from(err: super::amqp::AmqpError) -> Self {
        RabbitPipelineError::Broker(err.to_string())
    }
}

/// The RabbitMQ pipeline of one node.
#[derive(Debug)]
pub struct RabbitPipeline {
    config: Arc<RabbitConfig>,
    gateway: gateway::Gateway,
    registry: Arc<dyn NodeRegistry>,
    stop: watch::Sender<bool>,
    triggers: Option<mpsc::Sender<node::Trigger>>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    shard_tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl RabbitPipeline {
    /// Connects, declares the shard queues, and starts this node's gateway; with `writers`
    /// (one per shard, shard `i` on `writers[i]`) it also joins `registry` and consumes its
    /// shards, which are in place when this returns. With no writers the node only sends.
    pub async fn start(
        config: RabbitConfig,
        writers: Vec<Box<dyn RoomExecutor>>,
        registry: Arc<dyn NodeRegistry>,
    ) -> Result<Self, RabbitPipelineError> {
        if config.shards == 0 {
            return Err(RabbitPipelineError::Config("shards must be at least 1"));
        }
        if !writers.is_empty() && writers.len() != config.shards {
            return Err(RabbitPipelineError::Config(
                "one writer per shard, or none for a node that only sends",
            ));
        }
        let config = Arc::new(config);
        let (stop, stopped) = watch::channel(false);
        let (gateway, gateway_task) =
            gateway::Gateway::start(Arc::clone(&config), stopped.clone()).await?;
        let mut pipeline = Self {
            config: Arc::clone(&config),
            gateway,
            registry: Arc::clone(&registry),
            stop,
            triggers: None,
            tasks: std::sync::Mutex::new(vec![gateway_task]),
            shard_tasks: Arc::default(),
        };
        if writers.is_empty() {
            return Ok(pipeline);
        }
        let me = LiveNode {
            node_id: config.node_id.clone(),
            address: config.node_address.clone(),
        };
        let ttl_ms = u64::try_from(config.node_ttl.as_millis()).unwrap_or(u64::MAX);
        registry
            .heartbeat(&me, ttl_ms)
            .await
            .map_err(|e| RabbitPipelineError::Registry(e.to_string()))?;
        let beat = tokio::spawn(node::heartbeat(
            Arc::clone(&registry),
            me,
            config.node_heartbeat_interval,
            config.node_ttl,
            stopped.clone(),
        ));
        let supervisor = node::Supervisor::new(Arc::clone(&config), registry, writers);
        pipeline.shard_tasks = Arc::clone(&supervisor.aborts);
        let (triggers, trigger_rx) = mpsc::channel(16);
        let supervise = tokio::spawn(supervisor.run(trigger_rx, stopped));
        pipeline.triggers = Some(triggers);
        if let Ok(mut tasks) = pipeline.tasks.lock() {
            tasks.extend([beat, supervise]);
        }
        pipeline.rebalance().await?;
        Ok(pipeline)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Reads the live nodes and rebalances the consumers now; returns the shards this node
    /// consumes afterwards (empty for a node without writers).
    pub async fn rebalance(&self) -> Result<Vec<usize>, RabbitPipelineError> {
        let Some(triggers) = &self.triggers else {
            return Ok(Vec::new());
        };
        let (done, answer) = oneshot::channel();
        triggers
            .send(done)
            .await
            .map_err(|_| RabbitPipelineError::Stopped)?;
        Ok(answer.await.map_err(|_| RabbitPipelineError::Stopped)??)
    }

    /// A clean stop: leaves the registry (so the shards move at once), stops the consumers
    /// after they answered and acked what they took, and closes the connections.
    pub async fn shutdown(&self) {
        if self.triggers.is_some()
            && let Err(err) = self.registry.leave(&self.config.node_id).await
        {
            tracing::warn!(error = %err, "leaving the node registry failed");
        }
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = match self.tasks.lock() {
            Ok(mut tasks) => tasks.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Simulates a crash of this node: every task stops where it is, without answering,
    /// acking or leaving the registry, and the connections drop, so the broker returns the
    /// unacked deliveries to their queues. For failover tests.
    pub fn kill(&self) {
        if let Ok(mut shard_tasks) = self.shard_tasks.lock() {
            for task in shard_tasks.drain(..) {
                task.abort();
            }
        }
        if let Ok(mut tasks) = self.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }

    /// Deletes this pipeline's queues (tests, decommissioning); returns how many messages
    /// they held.
    pub async fn delete_queues(&self) -> Result<u64, RabbitPipelineError> {
        let name = format!("chatwire admin {}", self.config.node_id);
        let conn = super::amqp::connect(&self.config.amqp_url, &name, self.config.amqp_heartbeat_s)
            .await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| RabbitPipelineError::Broker(e.to_string()))?;
        let dropped = topology::delete(&channel, &self.config).await;
        let _ = conn.close(200, "done".into()).await;
        Ok(dropped?)
    }
}

impl Drop for RabbitPipeline {
    fn drop(&mut self) {
        // Tasks end on their own (cleanly) once told to stop.
        let _ = self.stop.send(true);
    }
}

#[async_trait]
impl Pipeline for RabbitPipeline {
    async fn execute(&self, command: RoomCommand) -> Result<Outcome, ChatError> {
        self.gateway.execute(command).await
    }
}
