//! The shard queues and their dead-letter queues (docs/architecture.md "Room writers"), declared
//! identically by every node (a declaration with other arguments is refused by the broker):
//!
//! ```text
//!  {prefix}shard.{n}      quorum, single active consumer, delivery limit, max length with
//!                         reject-publish (a full queue nacks the publish: RATE_LIMITED),
//!                         at-least-once dead-lettering ──▶ {prefix}shard.{n}.dlq (quorum)
//! ```

use lapin::Channel;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};

use super::RabbitConfig;
use crate::backend::amqp::AmqpError;

/// The shard queue of `shard`.
pub(crate) fn shard_queue(prefix: &str, shard: usize) -> String {
    format!("{prefix}shard.{shard}")
}

/// The dead-letter queue of `shard`.
pub(crate) fn dead_letter_queue(prefix: &str, shard: usize) -> String {
    format!("{prefix}shard.{shard}.dlq")
}

fn long(value: u64) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(value).unwrap_or(i64::MAX))
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

fn common(config: &RabbitConfig) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    if let Some(expires) = config.queue_expires_ms {
        args.insert("x-expires".into(), long(expires));
    }
    args
}

fn shard_arguments(config: &RabbitConfig, shard: usize) -> FieldTable {
    let mut args = common(config);
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    args.insert(
        "x-delivery-limit".into(),
        long(u64::from(config.delivery_limit)),
    );
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert(
        "x-dead-letter-routing-key".into(),
        text(&dead_letter_queue(&config.queue_prefix, shard)),
    );
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
    args.insert(
        "x-max-length".into(),
        long(u64::try_from(config.max_queue_length.max(1)).unwrap_or(u64::MAX)),
    );
    args
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares every shard queue and its dead-letter queue (idempotent).
pub(crate) async fn declare(channel: &Channel, config: &RabbitConfig) -> Result<(), AmqpError> {
    for shard in 0..config.shards {
        let dlq = dead_letter_queue(&config.queue_prefix, shard);
        channel
            .queue_declare(dlq.as_str().into(), durable(), common(config))
            .await?;
        let queue = shard_queue(&config.queue_prefix, shard);
        channel
            .queue_declare(
                queue.as_str().into(),
                durable(),
                shard_arguments(config, shard),
            )
            .await?;
    }
    Ok(())
}

/// Deletes every shard queue and dead-letter queue (tests and decommissioning); returns how
/// many messages they held.
pub(crate) async fn delete(channel: &Channel, config: &RabbitConfig) -> Result<u64, AmqpError> {
    let mut dropped = 0;
    for shard in 0..config.shards {
        for queue in [
            shard_queue(&config.queue_prefix, shard),
            dead_letter_queue(&config.queue_prefix, shard),
        ] {
            dropped += u64::from(
                channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await?,
            );
        }
    }
    Ok(dropped)
}
