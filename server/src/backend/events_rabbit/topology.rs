//! Names and declarations of the exchange and queues (see docs/events-rabbitmq.md).
//!
//! ```text
//!  {p}events (topic) ──{lane}.#──▶ {p}events.{consumer}.{lane}          (quorum, one per lane)
//!                                   ▲ TTL, at-least-once dead-lettering
//!                                   │
//!        nack ──▶ {p}events.{consumer}.{lane}.retry{n}.{ttl}ms            (quorum, one per tier)
//!        nack after the last tier ──▶ {p}events.{consumer}.dlq           (quorum)
//! ```
//!
//! A tier's TTL is part of its name: queue arguments cannot change once declared, so a new
//! retry policy declares new tiers instead of failing on the old ones (which still drain
//! into the lane).

use lapin::Channel;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};

use super::link::broker;
use crate::backend::events::{Lane, QueueError, RetryPolicy};

/// Every name one consumer's queue uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Topology {
    /// The topic exchange every consumer of the prefix binds to.
    pub(super) exchange: String,
    /// One queue per lane, in [`Lane::ALL`] order.
    lanes: [String; 3],
    /// Per lane, the retry tiers: (queue, TTL in ms).
    tiers: [Vec<(String, i64)>; 3],
    /// The dead-letter queue.
    pub(super) dlq: String,
}

/// The topic exchange of `prefix`.
pub(super) fn exchange_name(prefix: &str) -> String {
    format!("{prefix}events")
}

/// The index of a lane in [`Lane::ALL`].
pub(super) fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::High => 0,
        Lane::Medium => 1,
        Lane::Low => 2,
    }
}

impl Topology {
    /// The names for `consumer` under `prefix`. The consumer name is one routing word
    /// (letters, digits, `-`, `_`) and every name must fit AMQP's 255 bytes.
    pub(super) fn new(
        prefix: &str,
        consumer: &str,
        policy: &RetryPolicy,
    ) -> Result<Self, QueueError> {
        let word_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if consumer.is_empty() || !consumer.chars().all(word_ok) {
            return Err(QueueError::Unavailable(format!(
                "invalid consumer name {consumer:?}: use letters, digits, '-' and '_'"
            )));
        }
        let base = format!("{}.{consumer}", exchange_name(prefix));
        let lanes = Lane::ALL.map(|lane| format!("{base}.{lane}"));
        let tiers = Lane::ALL.map(|lane| {
            (policy.tiers_ms.iter().enumerate())
                .map(|(i, ttl)| (format!("{base}.{lane}.retry{}.{ttl}ms", i + 1), *ttl))
                .collect()
        });
        let topology = Self {
            exchange: exchange_name(prefix),
            lanes,
            tiers,
            dlq: format!("{base}.dlq"),
        };
        for name in topology.all_queues() {
            short(name)?;
        }
        Ok(topology)
    }

    /// The queue of a lane.
    pub(super) fn lane(&self, lane: Lane) -> &str {
        &self.lanes[lane_index(lane)]
    }

    /// The retry tiers of a lane, first tier first.
    pub(super) fn tiers(&self, lane: Lane) -> &[(String, i64)] {
        &self.tiers[lane_index(lane)]
    }

    /// Every queue: lanes, tiers, the DLQ.
    pub(super) fn all_queues(&self) -> impl Iterator<Item = &String> {
        self.lanes
            .iter()
            .chain(self.tiers.iter().flatten().map(|(name, _)| name))
            .chain(std::iter::once(&self.dlq))
    }

    /// Declares the exchange and every queue, and binds the lanes (idempotent).
    pub(super) async fn declare(&self, channel: &Channel) -> Result<(), QueueError> {
        declare_exchange(channel, &self.exchange).await?;
        for lane in Lane::ALL {
            let queue = self.lane(lane);
            declare_queue(channel, queue, quorum()).await?;
            channel
                .queue_bind(
                    short(queue)?,
                    short(&self.exchange)?,
                    short(&format!("{lane}.#"))?,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(broker)?;
            for (tier, ttl) in self.tiers(lane) {
                declare_queue(channel, tier, retry_tier(queue, *ttl)).await?;
            }
        }
        declare_queue(channel, &self.dlq, quorum()).await
    }
}

/// Declares the durable topic exchange.
pub(super) async fn declare_exchange(channel: &Channel, name: &str) -> Result<(), QueueError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            short(name)?,
            lapin::ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
        .map_err(broker)
}

async fn declare_queue(
    channel: &Channel,
    name: &str,
    arguments: FieldTable,
) -> Result<(), QueueError> {
    channel
        .queue_declare(short(name)?, QueueDeclareOptions::durable(), arguments)
        .await
        .map_err(broker)?;
    Ok(())
}

/// Messages ready in `queue` (leased ones are not counted by the broker).
pub(super) async fn ready(channel: &Channel, queue: &str) -> Result<u64, QueueError> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::durable()
    };
    let declared = channel
        .queue_declare(short(queue)?, options, FieldTable::default())
        .await
        .map_err(broker)?;
    Ok(u64::from(declared.message_count()))
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    arguments
}

/// A retry tier: holds each message `ttl_ms`, then dead-letters it to `lane_queue` through
/// the default exchange. At-least-once dead-lettering keeps the message in the tier until
/// the lane confirms it (it needs `reject-publish`).
fn retry_tier(lane_queue: &str, ttl_ms: i64) -> FieldTable {
    let mut arguments = quorum();
    let mut put = |key: &'static str, value: AMQPValue| {
        arguments.insert(key.into(), value);
    };
    put("x-message-ttl", AMQPValue::LongLongInt(ttl_ms));
    put("x-dead-letter-exchange", AMQPValue::LongString("".into()));
    put(
        "x-dead-letter-routing-key",
        AMQPValue::LongString(lane_queue.into()),
    );
    put(
        "x-dead-letter-strategy",
        AMQPValue::LongString("at-least-once".into()),
    );
    put("x-overflow", AMQPValue::LongString("reject-publish".into()));
    arguments
}

/// An AMQP short string, refusing names over 255 bytes instead of panicking.
pub(super) fn short(name: &str) -> Result<ShortString, QueueError> {
    ShortString::try_new(name)
        .map_err(|_| QueueError::Unavailable(format!("AMQP name too long: {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prefix_consumer_lane_and_tier() {
        let policy = RetryPolicy {
            tiers_ms: vec![1_000, 10_000],
            lease_timeout_ms: 30_000,
        };
        let t = Topology::new("chatwire.", "push", &policy).expect("names");
        assert_eq!(t.exchange, "chatwire.events");
        assert_eq!(t.lane(Lane::Medium), "chatwire.events.push.medium");
        assert_eq!(
            t.tiers(Lane::High)[1],
            (
                "chatwire.events.push.high.retry2.10000ms".to_owned(),
                10_000
            )
        );
        assert_eq!(t.dlq, "chatwire.events.push.dlq");
        assert_eq!(t.all_queues().count(), 3 + 6 + 1);
    }

    #[test]
    fn bad_consumer_names_are_refused() {
        let policy = RetryPolicy::default();
        for name in ["", "a.b", "with space", &"x".repeat(300)] {
            assert!(Topology::new("p.", name, &policy).is_err(), "{name}");
        }
    }
}
