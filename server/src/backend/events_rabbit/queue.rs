//! [`RabbitEventQueue`]: one consumer's lanes, retry tiers and DLQ, and the trait's
//! operations on them. Every operation on the consuming channel runs under one lock, so a
//! lease and an ack of the same message never interleave.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicRejectOptions};
use tokio::sync::MutexGuard;

use super::ledger::{Hold, Ledger, RecentIds, Source};
use super::link::{Link, Outgoing, broker};
use super::message::{self, Envelope};
use super::topology::{Topology, ready, short};
use super::{RabbitEventsConfig, Recent, publish_on, redacted};
use crate::backend::events::{
    DeadLetter, Delivery, DeliveryTag, DownstreamEvent, EventPublisher, EventQueue, Lane,
    QueueError,
};

/// Messages taken from a lane past the ones leased, parked because they are not due yet.
const PARK_LIMIT: usize = 64;
/// Dead letters held at most while browsing the DLQ (a listing or replay scans from its head).
const BROWSE_LIMIT: usize = 10_000;
/// Ids remembered to skip a re-published batch.
const RECENT_IDS: usize = 100_000;
/// Reason recorded when a consumer never answered on its last attempt.
const LEASE_RAN_OUT: &str = "lease ran out on the last attempt";

/// Longest wait for one broker operation on the consuming side. A broker that accepted the
/// connection but does not answer (still starting, or a quorum queue without a leader) must
/// not stall the consumers for good: past this, the connection is dropped and opened again on
/// the next call, and what it held is delivered again.
const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `operation`, or Unavailable after [`OPERATION_TIMEOUT`].
async fn timed<T>(
    what: &str,
    operation: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<Result<T, lapin::Error>, QueueError> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation)
        .await
        .map_err(|_| QueueError::Unavailable(format!("rabbitmq: {what} timed out")))
}

/// One consumer's RabbitMQ event queue. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct RabbitEventQueue {
    inner: Arc<Inner>,
}

struct Inner {
    config: RabbitEventsConfig,
    topology: Topology,
    publish: tokio::sync::Mutex<Option<Link>>,
    consume: tokio::sync::Mutex<Consume>,
    recent: Recent,
}

/// The consuming connection and what it holds.
struct Consume {
    link: Option<Link>,
    ledger: Ledger,
}

impl fmt::Debug for RabbitEventQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitEventQueue")
            .field("url", &redacted(&self.inner.config.amqp_url))
            .field("consumer", &self.inner.config.consumer)
            .field("dlq", &self.inner.topology.dlq)
            .finish()
    }
}

impl RabbitEventQueue {
    /// Connects (a consuming and a publishing connection) and declares the exchange and
    /// this consumer's queues: one quorum queue per lane bound to `{lane}.#`, one per retry
    /// tier and lane, and the DLQ.
    pub async fn connect(config: RabbitEventsConfig) -> Result<Self, QueueError> {
        check_policy(&config)?;
        let topology = Topology::new(&config.queue_prefix, &config.consumer, &config.retry)?;
        let first_lease = uuid::Uuid::new_v4().as_u64_pair().0 >> 1;
        let inner = Inner {
            topology,
            publish: tokio::sync::Mutex::new(None),
            consume: tokio::sync::Mutex::new(Consume {
                link: None,
                ledger: Ledger::new(first_lease),
            }),
            recent: Arc::new(Mutex::new(RecentIds::new(RECENT_IDS))),
            config,
        };
        drop(inner.consume().await?);
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Every queue of this consumer: lanes, retry tiers, DLQ (for operators and tests).
    pub fn queue_names(&self) -> Vec<String> {
        self.inner.topology.all_queues().cloned().collect()
    }

    /// The topic exchange the consumer's lanes are bound to.
    pub fn exchange_name(&self) -> &str {
        &self.inner.topology.exchange
    }

    /// Shuts down cleanly: every held message goes back to its queue, confirmed, before the
    /// connections close. Leased ones count their delivery (as after a crash) and are due at
    /// once; parked ones keep their due time; browsed dead letters are requeued in place.
    /// Later calls reconnect.
    pub async fn close(&self) {
        let inner = &self.inner;
        let mut consume = inner.consume.lock().await;
        let held = consume.ledger.drain();
        if let Some(link) = consume.link.take() {
            let (mut back, mut settle, mut requeue) = (Vec::new(), Vec::new(), Vec::new());
            for (key, held) in held {
                let (queue, envelope) = match held.hold {
                    Hold::Browsed => {
                        requeue.push(key);
                        continue;
                    }
                    Hold::Leased { .. } => (
                        inner.topology.lane(held.lane()).to_owned(),
                        Envelope {
                            attempts: held.attempts,
                            due_ms: None,
                            ..held.envelope
                        },
                    ),
                    Hold::Parked { .. } => (
                        inner.source_queue(held.lane(), held.source),
                        Envelope {
                            attempts: held.attempts,
                            ..held.envelope
                        },
                    ),
                };
                if let Ok(message) = to_queue(&queue, &envelope) {
                    back.push(message);
                    settle.push(key);
                }
            }
            if inner.publish_messages(back).await.is_ok() {
                for key in settle {
                    let _ = link
                        .channel
                        .basic_ack(key, BasicAckOptions::default())
                        .await;
                }
            }
            for key in requeue {
                let options = BasicRejectOptions { requeue: true };
                let _ = link.channel.basic_reject(key, options).await;
            }
            link.close().await;
        }
        drop(consume);
        if let Some(link) = inner.publish.lock().await.take() {
            link.close().await;
        }
    }
}

fn check_policy(config: &RabbitEventsConfig) -> Result<(), QueueError> {
    let policy = &config.retry;
    if policy.lease_timeout_ms <= 0 || policy.tiers_ms.iter().any(|&delay| delay < 0) {
        return Err(QueueError::Unavailable(format!(
            "invalid retry policy {policy:?}: the lease must be positive, delays not negative"
        )));
    }
    Ok(())
}

/// A message straight to `queue` through the default exchange.
fn to_queue(queue: &str, envelope: &Envelope) -> Result<Outgoing, QueueError> {
    Ok(Outgoing {
        exchange: String::new(),
        routing_key: queue.to_owned(),
        properties: envelope.properties()?,
        body: envelope.event.payload.to_vec(),
    })
}

impl Inner {
    /// The consuming side, connected (and the topology declared) if it was not.
    async fn consume(&self) -> Result<MutexGuard<'_, Consume>, QueueError> {
        let mut consume = self.consume.lock().await;
        if !consume.link.as_ref().is_some_and(Link::usable) {
            consume.reset();
            let config = &self.config;
            let name = format!("chatwire events consumer {}", config.consumer);
            let open = async {
                let link = Link::open(&config.amqp_url, &name, config.heartbeat_s, false).await?;
                self.topology.declare(&link.channel).await?;
                Ok::<_, QueueError>(link)
            };
            let link = tokio::time::timeout(OPERATION_TIMEOUT, open)
                .await
                .map_err(|_| QueueError::Unavailable("rabbitmq: opening timed out".into()))??;
            consume.link = Some(link);
        }
        Ok(consume)
    }

    /// Publishes on the publishing connection, with confirms.
    async fn publish_messages(&self, messages: Vec<Outgoing>) -> Result<(), QueueError> {
        let config = &self.config;
        publish_on(
            &self.publish,
            &config.amqp_url,
            config.heartbeat_s,
            messages,
        )
        .await
    }

    /// The queue a held message was taken from.
    fn source_queue(&self, lane: Lane, source: Source) -> String {
        let tier = match source {
            Source::Tier(n) => self.topology.tiers(lane).get(n),
            Source::Lane => None,
            Source::Dead => return self.topology.dlq.clone(),
        };
        tier.map_or_else(|| self.topology.lane(lane).to_owned(), |(q, _)| q.clone())
    }

    /// Dead-letters a held message: published to the DLQ (confirmed), then settled.
    async fn bury(
        &self,
        consume: &mut Consume,
        key: u64,
        now_ms: i64,
        reason: &str,
    ) -> Result<(), QueueError> {
        let Some(held) = consume.ledger.get(key) else {
            return Ok(());
        };
        let envelope = Envelope {
            attempts: held.attempts,
            due_ms: None,
            reason: reason.to_owned(),
            dead_at_ms: Some(now_ms),
            ..held.envelope.clone()
        };
        self.publish_messages(vec![to_queue(&self.topology.dlq, &envelope)?])
            .await?;
        consume.ack(key).await?;
        consume.ledger.remove(key);
        Ok(())
    }

    /// Takes messages from retry tier `tier` of `lane` while they are due, leasing them; the
    /// first one not due stays parked (nothing behind it is due earlier).
    async fn lease_tier(
        &self,
        consume: &mut Consume,
        lane: Lane,
        tier: usize,
        max: usize,
        now_ms: i64,
        out: &mut Vec<Delivery>,
    ) -> Result<(), QueueError> {
        let Some((queue, _)) = self.topology.tiers(lane).get(tier) else {
            return Ok(());
        };
        if consume.ledger.has_parked(lane, Source::Tier(tier)) {
            return Ok(());
        }
        while out.len() < max {
            let Some(key) = consume.take(queue, lane, Source::Tier(tier)).await? else {
                break;
            };
            if !consume.ledger.is_due(key, now_ms) {
                break;
            }
            out.extend(self.lease_held(consume, key, now_ms));
        }
        Ok(())
    }

    /// Takes messages from the lane queue, leasing the due ones and parking the others.
    async fn lease_lane(
        &self,
        consume: &mut Consume,
        lane: Lane,
        max: usize,
        now_ms: i64,
        out: &mut Vec<Delivery>,
    ) -> Result<(), QueueError> {
        let queue = self.topology.lane(lane);
        let mut takes = 0;
        while out.len() < max && takes < max.saturating_add(PARK_LIMIT) {
            takes += 1;
            let Some(key) = consume.take(queue, lane, Source::Lane).await? else {
                break;
            };
            if consume.ledger.is_due(key, now_ms) {
                out.extend(self.lease_held(consume, key, now_ms));
            }
        }
        Ok(())
    }

    fn lease_held(&self, consume: &mut Consume, key: u64, now_ms: i64) -> Option<Delivery> {
        let delivery = consume
            .ledger
            .lease(key, now_ms, self.config.retry.lease_timeout_ms)?;
        lock(&self.recent).insert(&delivery.event.id);
        Some(delivery)
    }
}

impl Consume {
    /// Forgets the connection and what it held (the broker requeues those messages).
    fn reset(&mut self) {
        self.link = None;
        self.ledger.clear();
    }

    fn link(&self) -> Result<&Link, QueueError> {
        (self.link.as_ref()).ok_or_else(|| QueueError::Unavailable("rabbitmq: disconnected".into()))
    }

    /// Runs a channel operation; a failure resets the connection (its leases are lost).
    fn check<T>(&mut self, result: Result<T, lapin::Error>) -> Result<T, QueueError> {
        result.map_err(|err| {
            self.reset();
            broker(err)
        })
    }

    async fn ack(&mut self, key: u64) -> Result<(), QueueError> {
        let channel = &self.link()?.channel;
        let result = timed("ack", channel.basic_ack(key, BasicAckOptions::default())).await;
        self.check_timed(result)
    }

    async fn get(&mut self, queue: &str) -> Result<Option<BasicGetMessage>, QueueError> {
        let channel = &self.link()?.channel;
        let options = BasicGetOptions { no_ack: false };
        let result = timed("get", channel.basic_get(short(queue)?, options)).await;
        self.check_timed(result)
    }

    /// [`Consume::check`] for a [`timed`] operation: a timeout resets the connection too.
    fn check_timed<T>(
        &mut self,
        result: Result<Result<T, lapin::Error>, QueueError>,
    ) -> Result<T, QueueError> {
        match result {
            Ok(result) => self.check(result),
            Err(timed_out) => {
                self.reset();
                Err(timed_out)
            }
        }
    }

    async fn ready(&mut self, queue: &str) -> Result<u64, QueueError> {
        let result = tokio::time::timeout(OPERATION_TIMEOUT, ready(&self.link()?.channel, queue))
            .await
            .unwrap_or_else(|_| Err(QueueError::Unavailable("rabbitmq: count timed out".into())));
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Takes the next message of `queue` into the ledger (parked until due; browsed when
    /// from the DLQ); `None` when the queue is empty. A message that is not an event is
    /// dropped with a warning; a duplicate of a held event is settled and skipped.
    async fn take(
        &mut self,
        queue: &str,
        lane: Lane,
        source: Source,
    ) -> Result<Option<u64>, QueueError> {
        loop {
            let Some(message) = self.get(queue).await? else {
                return Ok(None);
            };
            let key = message.delivery.delivery_tag;
            let properties = &message.delivery.properties;
            let envelope = match Envelope::decode(properties, &message.delivery.data) {
                Ok(envelope) => envelope,
                Err(err) => {
                    tracing::warn!(queue, error = %err, "dropping a message that is not an event");
                    let result = (self.link()?.channel)
                        .basic_reject(key, BasicRejectOptions { requeue: false })
                        .await;
                    self.check(result)?;
                    continue;
                }
            };
            if source != Source::Dead && self.ledger.holds_id(lane, &envelope.event.id) {
                self.ack(key).await?;
                continue;
            }
            let attempts = match source {
                Source::Dead => envelope.attempts,
                _ => envelope
                    .attempts
                    .saturating_add(message::returns(properties)),
            };
            self.ledger.hold(key, source, envelope, attempts);
            return Ok(Some(key));
        }
    }
}

fn lock(recent: &Recent) -> std::sync::MutexGuard<'_, RecentIds> {
    recent.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl EventPublisher for RabbitEventQueue {
    /// Straight into this consumer's lane queues (default exchange, `mandatory`, confirms),
    /// skipping ids this handle published or leased and has not seen acknowledged.
    async fn publish(&self, events: Vec<DownstreamEvent>) -> Result<(), QueueError> {
        let inner = &self.inner;
        let mut ids = Vec::new();
        let mut messages = Vec::new();
        {
            let recent = lock(&inner.recent);
            for event in events {
                if recent.contains(&event.id) || ids.contains(&event.id) {
                    continue;
                }
                let queue = inner.topology.lane(event.lane).to_owned();
                ids.push(event.id.clone());
                messages.push(to_queue(&queue, &Envelope::new(event))?);
            }
        }
        inner.publish_messages(messages).await?;
        let mut recent = lock(&inner.recent);
        for id in ids {
            recent.insert(&id);
        }
        Ok(())
    }
}

#[async_trait]
impl EventQueue for RabbitEventQueue {
    async fn lease(
        &self,
        lane: Lane,
        max: usize,
        now_ms: i64,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let mut consume = inner.consume().await?;
        let max_attempts = inner.config.retry.max_attempts();
        let (again, bury) = consume.ledger.due(lane, now_ms, max_attempts);
        for key in bury {
            inner.bury(&mut consume, key, now_ms, LEASE_RAN_OUT).await?;
        }
        let mut out = Vec::new();
        for key in again.into_iter().take(max) {
            out.extend(inner.lease_held(&mut consume, key, now_ms));
        }
        for tier in 0..inner.topology.tiers(lane).len() {
            inner
                .lease_tier(&mut consume, lane, tier, max, now_ms, &mut out)
                .await?;
        }
        inner
            .lease_lane(&mut consume, lane, max, now_ms, &mut out)
            .await?;
        Ok(out)
    }

    async fn ack(&self, tag: DeliveryTag) -> Result<(), QueueError> {
        let mut consume = self.inner.consume().await?;
        let id = consume.ledger.leased(tag)?.envelope.event.id.clone();
        consume.ack(tag.key).await?;
        consume.ledger.remove(tag.key);
        lock(&self.inner.recent).remove(&id);
        Ok(())
    }

    async fn nack(&self, tag: DeliveryTag, now_ms: i64, reason: &str) -> Result<(), QueueError> {
        let inner = &self.inner;
        let mut consume = inner.consume().await?;
        let held = consume.ledger.leased(tag)?;
        let lane = held.lane();
        let delay = inner.config.retry.delay_after(held.attempts);
        let tier = held
            .attempts
            .checked_sub(1)
            .and_then(|n| usize::try_from(n).ok());
        let tier = tier.and_then(|n| inner.topology.tiers(lane).get(n));
        let (Some(delay), Some((queue, _))) = (delay, tier) else {
            return inner.bury(&mut consume, tag.key, now_ms, reason).await;
        };
        let envelope = Envelope {
            attempts: held.attempts,
            due_ms: Some(now_ms.saturating_add(delay)),
            reason: reason.to_owned(),
            dead_at_ms: None,
            ..held.envelope.clone()
        };
        inner
            .publish_messages(vec![to_queue(queue, &envelope)?])
            .await?;
        consume.ack(tag.key).await?;
        consume.ledger.remove(tag.key);
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let inner = &self.inner;
        let mut consume = inner.consume().await?;
        let mut browsed = consume.ledger.browsed();
        while browsed.len() < limit.min(BROWSE_LIMIT) {
            let dlq = &inner.topology.dlq;
            match consume.take(dlq, Lane::High, Source::Dead).await? {
                Some(key) => browsed.push(key),
                None => break,
            }
        }
        let listed = browsed.into_iter().take(limit);
        let held = listed.filter_map(|key| consume.ledger.get(key));
        Ok(held
            .map(|held| DeadLetter {
                event: held.envelope.event.clone(),
                attempts: held.envelope.attempts,
                dead_at_ms: held.envelope.dead_at_ms.unwrap_or_default(),
                reason: held.envelope.reason.clone(),
            })
            .collect())
    }

    async fn replay_dead_letter(&self, id: &str, now_ms: i64) -> Result<bool, QueueError> {
        let inner = &self.inner;
        let mut consume = inner.consume().await?;
        let mut found = consume.ledger.browsed_id(id);
        let mut browsed = consume.ledger.browsed().len();
        while found.is_none() && browsed < BROWSE_LIMIT {
            let dlq = &inner.topology.dlq;
            let Some(key) = consume.take(dlq, Lane::High, Source::Dead).await? else {
                break;
            };
            browsed += 1;
            found = consume
                .ledger
                .get(key)
                .filter(|held| held.envelope.event.id == id)
                .map(|_| key);
        }
        let Some((key, held)) = found.and_then(|key| Some((key, consume.ledger.get(key)?))) else {
            return Ok(false);
        };
        let envelope = Envelope {
            due_ms: Some(now_ms),
            ..Envelope::new(held.envelope.event.clone())
        };
        let queue = inner.topology.lane(envelope.event.lane);
        inner
            .publish_messages(vec![to_queue(queue, &envelope)?])
            .await?;
        consume.ack(key).await?;
        consume.ledger.remove(key);
        lock(&inner.recent).insert(id);
        Ok(true)
    }

    async fn depth(&self, lane: Lane) -> Result<u64, QueueError> {
        let inner = &self.inner;
        let mut consume = inner.consume().await?;
        let mut total = consume.ready(inner.topology.lane(lane)).await?;
        for (tier, _) in inner.topology.tiers(lane) {
            total += consume.ready(tier).await?;
        }
        Ok(total + consume.ledger.count(lane))
    }

    async fn dlq_len(&self) -> Result<u64, QueueError> {
        let inner = &self.inner;
        let mut consume = inner.consume().await?;
        let ready = consume.ready(&inner.topology.dlq).await?;
        Ok(ready + consume.ledger.browsed().len() as u64)
    }
}
