//! Downstream events (docs/architecture.md "Downstream events"): what the room writer hands to
//! consumers outside the chat (the offline push webhook, app webhooks), queued durably per lane
//! with retry tiers and a dead-letter queue.
//!
//! ```text
//!  room writer ──publish──▶ EventPublisher ──▶ one EventQueue per consumer ──lease──▶ consumer
//!                                               │  ▲ nack: next retry tier     ack ◀──┘
//!                                               ▼  │ replay
//!                                              DLQ (after the last tier)
//! ```
//!
//! The order of calls on a queue: [`EventPublisher::publish`] (durable once it returns);
//! a consumer calls [`EventQueue::lease`], then exactly one of [`EventQueue::ack`] or
//! [`EventQueue::nack`] per [`Delivery`] before its lease runs out. A lease that runs out (the
//! consumer died) makes the event leasable again. Time is always passed in (`now_ms`): queues
//! read no clock, so retries and lease timeouts are tested without sleeping.
//!
//! Ordering: each lane is FIFO by publish order, and the writer publishes a room's events in
//! seq order. Retries are not: an event waiting in a retry tier is overtaken by the events
//! behind it. Consumers dedupe by [`DownstreamEvent::id`] and order by `seq`; delivery is at
//! least once.
//!
//! Every consumer sees every event: give each one its own queue and publish through a [`Tee`].
//! One implementation per backend (`events_embedded`, later RabbitMQ), all passing the suite in
//! `server/tests/support/events_suite.rs`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// A priority lane; each lane is its own queue, so a slow low lane never delays messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Messages and calls.
    High,
    /// Membership, edits, deletes, reactions, room changes.
    Medium,
    /// Presence, analytics.
    Low,
}

impl Lane {
    /// Every lane, highest first.
    pub const ALL: [Lane; 3] = [Lane::High, Lane::Medium, Lane::Low];

    /// The lane's name: `high`, `medium` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::High => "high",
            Lane::Medium => "medium",
            Lane::Low => "low",
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One downstream event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamEvent {
    /// `room:seq:kind` for room log events (see [`log_event_id`]); a unique id for events
    /// outside the log (calls, presence). Consumers dedupe by it.
    pub id: String,
    /// The lane it travels in.
    pub lane: Lane,
    /// What happened, dotted: `message.created`, `member.joined`, ...
    pub kind: String,
    /// The room, for room events.
    pub room_id: Option<String>,
    /// The room log seq, for log events: the order consumers restore.
    pub seq: Option<u64>,
    /// When it happened (the log timestamp for log events), Unix milliseconds.
    pub occurred_at_ms: i64,
    /// The event as JSON (for log events the proto3 JSON of the `v1::RoomEvent`).
    pub payload: Bytes,
}

impl DownstreamEvent {
    /// An event outside the room log, with a fresh unique id and no seq.
    pub fn unordered(
        lane: Lane,
        kind: impl Into<String>,
        room_id: Option<String>,
        occurred_at_ms: i64,
        payload: Bytes,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            lane,
            kind: kind.into(),
            room_id,
            seq: None,
            occurred_at_ms,
            payload,
        }
    }
}

/// The id of a log event: `room:seq:kind`. Room ids may hold `:` themselves; the seq and
/// kind never do, so the id still parses from the right.
pub fn log_event_id(room_id: &str, seq: u64, kind: &str) -> String {
    format!("{room_id}:{seq}:{kind}")
}

/// Names one lease of one event; meaningful only to the queue that handed it out. A tag whose
/// lease ran out is refused with [`QueueError::LeaseLost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryTag {
    /// The queue's key of the event.
    pub key: u64,
    /// Which lease of it.
    pub lease: u64,
}

/// A leased event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event.
    pub event: DownstreamEvent,
    /// 1 on the first delivery, counting every lease since publish (or replay).
    pub attempt: u32,
    /// Acknowledge or reject with this.
    pub tag: DeliveryTag,
}

/// An event that used up its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event.
    pub event: DownstreamEvent,
    /// How many deliveries were tried.
    pub attempts: u32,
    /// When it was dead-lettered, Unix milliseconds.
    pub dead_at_ms: i64,
    /// The last failure reported by the consumer.
    pub reason: String,
}

/// Retry tiers and lease time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay before each retry, in milliseconds: a nack of delivery `n` waits `tiers_ms[n - 1]`;
    /// a nack after the last tier dead-letters the event. So an event is tried at most
    /// `tiers_ms.len() + 1` times.
    pub tiers_ms: Vec<i64>,
    /// How long a lease lasts before the event may be leased again, in milliseconds.
    pub lease_timeout_ms: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            tiers_ms: vec![1_000, 10_000, 60_000],
            lease_timeout_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// The most deliveries of one event before it is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.tiers_ms.len())
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1)
    }

    /// The delay after a failed delivery `attempt` (1-based); `None` when it was the last.
    pub fn delay_after(&self, attempt: u32) -> Option<i64> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        self.tiers_ms.get(index).copied()
    }
}

/// Event queue failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The backend is unreachable or refused the operation; the caller may retry.
    #[error("event queue unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded, or another invariant is broken.
    #[error("event queue corrupt: {0}")]
    Corrupt(String),
    /// The tag's lease ran out (or the queue was reopened): the event was or will be delivered
    /// again, so this delivery's outcome no longer counts.
    #[error("lease lost")]
    LeaseLost,
}

/// The publishing side: what the room writer holds.
#[async_trait]
pub trait EventPublisher: Send + Sync + fmt::Debug {
    /// Queues `events` in their order. Durable once it returns. An event whose id is still in
    /// the queue (waiting, leased or dead) is skipped, so publishing a batch again is harmless.
    async fn publish(&self, events: Vec<DownstreamEvent>) -> Result<(), QueueError>;
}

/// One consumer's durable queue: lanes, leases, retry tiers and the dead-letter queue.
#[async_trait]
pub trait EventQueue: EventPublisher {
    /// Leases up to `max` events of `lane` that are due at `now_ms`, oldest first: new events,
    /// retries whose delay is over, and leased events whose lease ran out.
    async fn lease(&self, lane: Lane, max: usize, now_ms: i64)
    -> Result<Vec<Delivery>, QueueError>;

    /// The delivery succeeded: the event is gone.
    async fn ack(&self, tag: DeliveryTag) -> Result<(), QueueError>;

    /// The delivery failed: the event waits for the next retry tier, or goes to the
    /// dead-letter queue after the last one. `reason` is kept for the dead-letter listing.
    async fn nack(&self, tag: DeliveryTag, now_ms: i64, reason: &str) -> Result<(), QueueError>;

    /// Dead letters, oldest dead first, at most `limit`.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Puts a dead letter back in its lane, due at `now_ms`, with a fresh set of retries.
    /// False when no dead letter has that id.
    async fn replay_dead_letter(&self, id: &str, now_ms: i64) -> Result<bool, QueueError>;

    /// Events of `lane` waiting or leased.
    async fn depth(&self, lane: Lane) -> Result<u64, QueueError>;

    /// Events in the dead-letter queue.
    async fn dlq_len(&self) -> Result<u64, QueueError>;
}

/// Publishes every event to several queues, one per consumer. Queues already written keep
/// their copy when a later one fails; the caller's retry is deduplicated by event id.
#[derive(Debug, Clone, Default)]
pub struct Tee {
    queues: Vec<Arc<dyn EventQueue>>,
}

impl Tee {
    /// A publisher writing to each of `queues`.
    pub fn new(queues: Vec<Arc<dyn EventQueue>>) -> Self {
        Self { queues }
    }
}

#[async_trait]
impl EventPublisher for Tee {
    async fn publish(&self, events: Vec<DownstreamEvent>) -> Result<(), QueueError> {
        if let Some((last, rest)) = self.queues.split_last() {
            for queue in rest {
                queue.publish(events.clone()).await?;
            }
            last.publish(events).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_tiers_then_dead_letter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 4);
        assert_eq!(policy.delay_after(1), Some(1_000));
        assert_eq!(policy.delay_after(3), Some(60_000));
        assert_eq!(policy.delay_after(4), None);
        assert_eq!(policy.delay_after(0), None);
    }

    #[test]
    fn log_ids_keep_colons_of_room_ids() {
        assert_eq!(
            log_event_id("g:team", 7, "message.created"),
            "g:team:7:message.created"
        );
    }
}
