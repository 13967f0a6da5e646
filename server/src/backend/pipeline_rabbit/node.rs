//! The writer side of a node: a supervisor that holds a consuming connection and a publishing
//! one (for replies), and on every rebalance (periodic, or asked for) reads the live nodes,
//! starts a consumer on each shard that rendezvous hashing gives this node, and stops the
//! ones it no longer should hold (their single active consumer slot passes to the next
//! node). A heartbeat task keeps the node's registry row alive.
//!
//! ```text
//!  supervisor ── rebalance ──▶ live_nodes ──▶ shards_of(me) ──▶ start / stop ShardConsumer
//!      └── connection lost: every consumer ends, reconnect, rebalance
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::shard::{ShardConsumer, ShardExit};
use super::{RabbitConfig, assign, topology};
use crate::backend::amqp::{self, AmqpError};
use crate::backend::nodes::{LiveNode, NodeRegistry};
use crate::backend::pipeline::RoomExecutor;

/// A rebalance request; answered once the consumers are in place.
pub(crate) type Trigger = oneshot::Sender<Result<Vec<usize>, AmqpError>>;

/// The node's two connections.
struct Link {
    consume: Connection,
    publish: Connection,
    replies: Channel,
}

impl Link {
    async fn open(config: &RabbitConfig) -> Result<Self, AmqpError> {
        let hb = config.amqp_heartbeat_s;
        let name = format!("chatwire writer {}", config.node_id);
        let consume = amqp::connect(&config.amqp_url, &name, hb).await?;
        let publish = amqp::connect(&config.amqp_url, &format!("{name} replies"), hb).await?;
        let declarer = consume.create_channel().await?;
        topology::declare(&declarer, config).await?;
        let _ = declarer.close(200, "declared".into()).await;
        let replies = publish.create_channel().await?;
        Ok(Self {
            consume,
            publish,
            replies,
        })
    }

    fn alive(&self) -> bool {
        self.consume.status().connected()
            && self.publish.status().connected()
            && self.replies.status().connected()
    }

    async fn close(self) {
        let _ = self.consume.close(200, "shutting down".into()).await;
        let _ = self.publish.close(200, "shutting down".into()).await;
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<ShardExit>,
}

/// The supervisor's state.
pub(crate) struct Supervisor {
    pub(crate) config: Arc<RabbitConfig>,
    pub(crate) registry: Arc<dyn NodeRegistry>,
    pub(crate) writers: Vec<Arc<Mutex<Box<dyn RoomExecutor>>>>,
    running: HashMap<usize, Running>,
    /// Shards given up after store failures, left alone until then.
    resting: HashMap<usize, Instant>,
    /// Every shard task started, so a crash can be simulated by aborting them.
    pub(crate) aborts: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Supervisor {
    /// A supervisor over one writer per shard.
    pub(crate) fn new(
        config: Arc<RabbitConfig>,
        registry: Arc<dyn NodeRegistry>,
        writers: Vec<Box<dyn RoomExecutor>>,
    ) -> Self {
        Self {
            config,
            registry,
            writers: writers
                .into_iter()
                .map(|w| Arc::new(Mutex::new(w)))
                .collect(),
            running: HashMap::new(),
            resting: HashMap::new(),
            aborts: Arc::default(),
        }
    }

    /// Runs until `stop`, then releases every shard cleanly.
    pub(crate) async fn run(
        mut self,
        mut triggers: mpsc::Receiver<Trigger>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.config.rebalance_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut link: Option<Link> = None;
        loop {
            let trigger = tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => None,
                trigger = triggers.recv() => trigger,
            };
            let result = self.rebalance(&mut link).await;
            if let Err(err) = &result {
                tracing::warn!(node = %self.config.node_id, error = %err, "rebalance failed");
            }
            if let Some(trigger) = trigger {
                let _ = trigger.send(result);
            }
        }
        self.release_all().await;
        if let Some(link) = link {
            link.close().await;
        }
    }

    /// Brings the consumers in line with the live nodes; returns the shards held.
    async fn rebalance(&mut self, link: &mut Option<Link>) -> Result<Vec<usize>, AmqpError> {
        if link.as_ref().is_some_and(|l| !l.alive()) {
            tracing::warn!(node = %self.config.node_id, "writer lost its broker connection");
            self.release_all().await;
            if let Some(old) = link.take() {
                old.close().await;
            }
        }
        if link.is_none() {
            *link = Some(Link::open(&self.config).await?);
        }
        let Some(current) = link.as_ref() else {
            return Err(AmqpError::Broker("no connection".into()));
        };
        self.reap().await;
        let want = self.wanted().await;
        let unwanted: Vec<usize> = self
            .running
            .keys()
            .copied()
            .filter(|s| !want.contains(s))
            .collect();
        for shard in unwanted {
            self.release(shard).await;
        }
        let now = Instant::now();
        self.resting.retain(|_, until| *until > now);
        for &shard in &want {
            if !self.running.contains_key(&shard) && !self.resting.contains_key(&shard) {
                self.acquire(current, shard).await?;
            }
        }
        let mut held: Vec<usize> = self.running.keys().copied().collect();
        held.sort_unstable();
        crate::telemetry::shards_owned(held.len());
        Ok(held)
    }

    /// The shards this node should consume now (all of them with only this node live).
    async fn wanted(&self) -> Vec<usize> {
        let live: Vec<String> = match self.registry.live_nodes().await {
            Ok(live) => live.into_iter().map(|n| n.node_id).collect(),
            Err(err) => {
                tracing::warn!(error = %err, "live nodes unknown; keeping the current shards");
                let mut held: Vec<usize> = self.running.keys().copied().collect();
                held.sort_unstable();
                return held;
            }
        };
        assign::shards_of(&self.config.node_id, &live, self.config.shards)
    }

    /// Forgets consumers that ended on their own; a shard given up rests a while.
    async fn reap(&mut self) {
        let ended: Vec<usize> = self
            .running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(s, _)| *s)
            .collect();
        for shard in ended {
            if let Some(running) = self.running.remove(&shard)
                && let Ok(ShardExit::Failed) = running.task.await
            {
                let until = Instant::now() + self.config.failed_shard_rest;
                self.resting.insert(shard, until);
            }
        }
    }

    async fn acquire(&mut self, link: &Link, shard: usize) -> Result<(), AmqpError> {
        let Some(writer) = self.writers.get(shard) else {
            return Ok(());
        };
        // Whatever the writer knew of the shard's rooms may be stale: another node may have
        // written them since it last held the shard.
        writer.lock().await.reset();
        let (channel, consumer) = match self.consume(link, shard).await {
            Ok(consuming) => consuming,
            Err(err) => {
                // The queue may be gone (deleted by hand, by a policy, by a broken deployment):
                // the broker closed the channel with NOT_FOUND, and the connection, still up,
                // would never declare it again. Declaring is idempotent: do it, then retry once.
                tracing::warn!(shard, error = %err, "cannot consume a shard queue; declaring the topology again");
                let declarer = link.consume.create_channel().await?;
                topology::declare(&declarer, &self.config).await?;
                let _ = declarer.close(200, "declared".into()).await;
                self.consume(link, shard).await?
            }
        };
        let (stop, stopped) = oneshot::channel();
        let consumer = ShardConsumer {
            config: Arc::clone(&self.config),
            shard,
            channel,
            consumer,
            writer: Arc::clone(writer),
            replies: link.replies.clone(),
        };
        let task = tokio::spawn(consumer.run(stopped));
        if let Ok(mut aborts) = self.aborts.lock() {
            aborts.retain(|a| !a.is_finished());
            aborts.push(task.abort_handle());
        }
        self.running.insert(shard, Running { stop, task });
        Ok(())
    }

    /// Opens a channel with the prefetch and starts consuming `shard`'s queue.
    async fn consume(
        &self,
        link: &Link,
        shard: usize,
    ) -> Result<(Channel, lapin::Consumer), AmqpError> {
        let channel = link.consume.create_channel().await?;
        channel
            .basic_qos(self.config.prefetch.max(1), BasicQosOptions::default())
            .await?;
        let queue = topology::shard_queue(&self.config.queue_prefix, shard);
        let tag = format!("{}:{shard}", self.config.node_id);
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }

    async fn release(&mut self, shard: usize) {
        if let Some(running) = self.running.remove(&shard) {
            let _ = running.stop.send(());
            let _ = running.task.await;
        }
    }

    async fn release_all(&mut self) {
        let shards: Vec<usize> = self.running.keys().copied().collect();
        for shard in shards {
            self.release(shard).await;
        }
    }
}

/// Renews the node's registry row every `interval` until `stop`.
pub(crate) async fn heartbeat(
    registry: Arc<dyn NodeRegistry>,
    node: LiveNode,
    interval: Duration,
    ttl: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = registry.heartbeat(&node, ttl_ms).await {
            tracing::warn!(node = %node.node_id, error = %err, "node heartbeat failed");
        }
    }
}
