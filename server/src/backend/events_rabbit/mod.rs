//! Downstream events on RabbitMQ (docs/architecture.md "Downstream events"): the distributed
//! [`EventQueue`] and [`EventPublisher`]. Topology and decisions: docs/events-rabbitmq.md.
//!
//! ```text
//!  room writer ─▶ RabbitEventPublisher ─▶ {p}events (topic, `{lane}.{kind}`)
//!                                            │ {lane}.#  (one binding per consumer and lane)
//!                                            ▼
//!  RabbitEventQueue (one per consumer) ◀─ basic.get ─ {p}events.{consumer}.{lane}  ◀──┐
//!     ack ─▶ basic.ack                                                                 │ TTL
//!     nack ─▶ publish {p}events.{consumer}.{lane}.retry{n}.{ttl}ms, then basic.ack ────┘
//!          └▶ after the last tier: publish {p}events.{consumer}.dlq, then basic.ack
//! ```
//!
//! A lease is a message taken with `basic.get` and left unacknowledged on the consuming
//! channel: if the process or its connection dies, the broker puts it back. The trait's clock
//! is the injected `now_ms`; the broker's TTLs run on real time. Both are honoured: every
//! retry carries its due time in a header, a lease takes a retry from its tier as soon as the
//! injected clock says it is due (before the TTL), and a message that the TTL brought back
//! early waits until it is due (see [`ledger`]).
//!
//! Publishing and consuming use separate connections (a publisher blocked by flow control
//! must not stall acks), both with a short heartbeat; a broken one is reopened on the next
//! call, and the leases it held are lost ([`QueueError::LeaseLost`]) and delivered again.

mod ledger;
mod link;
mod message;
mod queue;
mod topology;

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use self::link::{Link, Outgoing};
use self::message::Envelope;
pub use self::queue::RabbitEventQueue;
use super::events::{DownstreamEvent, EventPublisher, QueueError, RetryPolicy};

/// Default AMQP heartbeat, seconds: a hung broker or peer is noticed in about two of them.
pub const DEFAULT_HEARTBEAT_S: u16 = 10;

/// What the server's configuration provides to build the RabbitMQ event queues.
#[derive(Clone, PartialEq, Eq)]
pub struct RabbitEventsConfig {
    /// `amqp://user:pass@host:port/vhost`.
    pub amqp_url: String,
    /// Prefix of the exchange and queue names (`cluster.queue_prefix`, e.g. `chatwire.`).
    pub queue_prefix: String,
    /// The consumer's name (`push`, `app`): one word of letters, digits, `-`, `_`.
    pub consumer: String,
    /// Retry tiers (one queue per tier and lane) and lease time.
    pub retry: RetryPolicy,
    /// AMQP heartbeat in seconds, unless the URL sets `heartbeat=` itself.
    pub heartbeat_s: u16,
}

impl RabbitEventsConfig {
    /// A configuration with the default heartbeat.
    pub fn new(
        amqp_url: impl Into<String>,
        queue_prefix: impl Into<String>,
        consumer: impl Into<String>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            amqp_url: amqp_url.into(),
            queue_prefix: queue_prefix.into(),
            consumer: consumer.into(),
            retry,
            heartbeat_s: DEFAULT_HEARTBEAT_S,
        }
    }
}

impl fmt::Debug for RabbitEventsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitEventsConfig")
            .field("amqp_url", &redacted(&self.amqp_url))
            .field("queue_prefix", &self.queue_prefix)
            .field("consumer", &self.consumer)
            .field("retry", &self.retry)
            .field("heartbeat_s", &self.heartbeat_s)
            .finish()
    }
}

/// The URL without its credentials, for logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The writer's side: publishes each event once to the topic exchange with routing key
/// `{lane}.{kind}`, which copies it into the lane queue of every consumer. Publisher confirms
/// and `mandatory`: an event that no queue takes (no consumer declared for its lane) is a
/// failure, even though the broker then confirms it.
///
/// It does not skip ids still queued (it cannot see the queues): a batch published again is
/// delivered again, and consumers dedupe by [`DownstreamEvent::id`].
pub struct RabbitEventPublisher {
    url: String,
    exchange: String,
    heartbeat_s: u16,
    link: tokio::sync::Mutex<Option<Link>>,
}

impl fmt::Debug for RabbitEventPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitEventPublisher")
            .field("url", &redacted(&self.url))
            .field("exchange", &self.exchange)
            .finish()
    }
}

impl RabbitEventPublisher {
    /// Connects and declares the exchange of `queue_prefix` (the consumers declare and bind
    /// their queues). The consumer name and retry policy of `config` are not used.
    pub async fn connect(config: &RabbitEventsConfig) -> Result<Self, QueueError> {
        let exchange = topology::exchange_name(&config.queue_prefix);
        let link = Link::open(
            &config.amqp_url,
            "chatwire events publisher",
            config.heartbeat_s,
            true,
        )
        .await?;
        topology::declare_exchange(&link.channel, &exchange).await?;
        Ok(Self {
            url: config.amqp_url.clone(),
            exchange,
            heartbeat_s: config.heartbeat_s,
            link: tokio::sync::Mutex::new(Some(link)),
        })
    }

    /// Closes the connection.
    pub async fn close(&self) {
        if let Some(link) = self.link.lock().await.take() {
            link.close().await;
        }
    }
}

#[async_trait]
impl EventPublisher for RabbitEventPublisher {
    async fn publish(&self, events: Vec<DownstreamEvent>) -> Result<(), QueueError> {
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            let routing_key = format!("{}.{}", event.lane, event.kind);
            let envelope = Envelope::new(event);
            messages.push(Outgoing {
                exchange: self.exchange.clone(),
                routing_key,
                properties: envelope.properties()?,
                body: envelope.event.payload.to_vec(),
            });
        }
        let link = &self.link;
        publish_on(link, &self.url, self.heartbeat_s, messages).await
    }
}

/// Publishes on the link in `slot`, (re)connecting it first when it is missing or broken,
/// and dropping it when the publish broke it.
async fn publish_on(
    slot: &tokio::sync::Mutex<Option<Link>>,
    url: &str,
    heartbeat_s: u16,
    messages: Vec<Outgoing>,
) -> Result<(), QueueError> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut guard = slot.lock().await;
    // A kept connection may have died without lapin noticing yet (the broker restarted): if
    // publishing on it fails, publish once more on a fresh one. A message the old connection
    // did deliver then arrives twice; consumers dedupe by event id.
    let (link, retry) = match guard.take() {
        Some(link) if link.usable() => (link, Some(messages.clone())),
        _ => (
            Link::open(url, "chatwire events publisher", heartbeat_s, true).await?,
            None,
        ),
    };
    let mut result = link.publish_all(messages).await;
    let mut link = link;
    if let (Err(_), Some(messages)) = (&result, retry) {
        link = Link::open(url, "chatwire events publisher", heartbeat_s, true).await?;
        result = link.publish_all(messages).await;
    }
    if link.usable() {
        *guard = Some(link);
    }
    result
}

/// Shared by clones of a [`RabbitEventQueue`]: ids published and not acknowledged.
type Recent = Arc<Mutex<ledger::RecentIds>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let config = RabbitEventsConfig::new(
            "amqp://guest:secret@127.0.0.1:5672/%2f",
            "chatwire.",
            "push",
            RetryPolicy::default(),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("amqp://***@127.0.0.1:5672/%2f"), "{shown}");
    }
}
