//! The consumer loop: lease a batch from one lane of an [`EventQueue`], hand each delivery to
//! a [`Handler`] in order, ack what succeeded and nack what failed (the queue walks the retry
//! tiers and dead-letters). Time comes from an injected [`Clock`], and [`WebhookConsumer::poll_once`]
//! is one pass with no waiting, so tests drive it step by step.
//!
//! Started as one task per consumer and lane, with the server's shutdown signal:
//!
//! ```ignore
//! let consumer = WebhookConsumer::app_webhook(queue, Lane::High, sender, clock)
//!     .with_poll_interval(Duration::from_millis(500));
//! tokio::spawn(consumer.run(shutdown_signal));
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::push::{OfflinePush, PushAudience};
use super::sender::{WebhookSender, envelope};
use crate::backend::events::{Delivery, EventQueue, Lane, QueueError};
use crate::clock::Clock;

/// Delivers one event somewhere.
#[async_trait]
pub trait Handler: Send + Sync + std::fmt::Debug {
    /// Delivers `delivery`; `Err(reason)` to have it retried later (the reason is kept in the
    /// dead-letter queue). Events the handler does not want are `Ok`.
    async fn handle(&self, delivery: &Delivery, now_ms: i64) -> Result<(), String>;
}

/// The app webhook handler: every event, as its envelope.
#[derive(Debug, Clone)]
pub struct AppWebhook {
    sender: WebhookSender,
}

impl AppWebhook {
    /// Sends through `sender`.
    pub fn new(sender: WebhookSender) -> Self {
        Self { sender }
    }
}

#[async_trait]
impl Handler for AppWebhook {
    async fn handle(&self, delivery: &Delivery, now_ms: i64) -> Result<(), String> {
        let body = serde_json::to_vec(&envelope(delivery)).map_err(|e| e.to_string())?;
        self.sender
            .post(&delivery.event.id, body, now_ms)
            .await
            .map_err(|e| e.to_string())
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Polled {
    /// Deliveries handled and acknowledged.
    pub acked: usize,
    /// Deliveries that failed and were sent back for a retry (or to the DLQ).
    pub nacked: usize,
    /// Deliveries whose lease ran out before their outcome was recorded (they come again).
    pub lost: usize,
}

impl Polled {
    /// Deliveries leased in the pass.
    pub fn leased(&self) -> usize {
        self.acked + self.nacked + self.lost
    }
}

/// A consumer of one lane of one queue.
#[derive(Debug)]
pub struct WebhookConsumer {
    queue: Arc<dyn EventQueue>,
    lane: Lane,
    handler: Arc<dyn Handler>,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
    batch: usize,
}

impl WebhookConsumer {
    /// A consumer of `lane` handing deliveries to `handler`; polls every second when idle,
    /// 32 events a lease.
    pub fn new(
        queue: Arc<dyn EventQueue>,
        lane: Lane,
        handler: Arc<dyn Handler>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            queue,
            lane,
            handler,
            clock,
            poll_interval: Duration::from_secs(1),
            batch: 32,
        }
    }

    /// An app webhook consumer of `lane`: POSTs every event to `sender`.
    pub fn app_webhook(
        queue: Arc<dyn EventQueue>,
        lane: Lane,
        sender: WebhookSender,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::new(queue, lane, Arc::new(AppWebhook::new(sender)), clock)
    }

    /// The offline push consumer of one lane: new messages for offline recipients; other
    /// events are acknowledged without a call (run one per lane so no lane piles up).
    pub fn offline_push(
        queue: Arc<dyn EventQueue>,
        lane: Lane,
        sender: WebhookSender,
        audience: Arc<dyn PushAudience>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let handler = Arc::new(OfflinePush::new(sender, audience));
        Self::new(queue, lane, handler, clock)
    }

    /// How long to wait when the lane had nothing due.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The most events leased at once (handled one after the other, in order).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// One pass: lease what is due now, handle each in order, record each outcome.
    pub async fn poll_once(&self) -> Result<Polled, QueueError> {
        let now_ms = self.clock.now_ms();
        let deliveries = self.queue.lease(self.lane, self.batch, now_ms).await?;
        let mut polled = Polled::default();
        for delivery in deliveries {
            let outcome = self.handler.handle(&delivery, now_ms).await;
            let recorded = match &outcome {
                Ok(()) => self.queue.ack(delivery.tag).await,
                Err(reason) => {
                    tracing::debug!(id = %delivery.event.id, attempt = delivery.attempt, %reason, "downstream delivery failed");
                    self.queue
                        .nack(delivery.tag, self.clock.now_ms(), reason)
                        .await
                }
            };
            crate::telemetry::event_delivery(self.lane.as_str(), outcome.is_ok());
            match (recorded, outcome) {
                (Ok(()), Ok(())) => polled.acked += 1,
                (Ok(()), Err(_)) => polled.nacked += 1,
                (Err(QueueError::LeaseLost), _) => polled.lost += 1,
                (Err(err), _) => return Err(err),
            }
        }
        Ok(polled)
    }

    /// Polls until `shutdown` resolves: at once again after a pass that leased something,
    /// after the poll interval otherwise (and after a queue failure).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        loop {
            let pause = match self.poll_once().await {
                Ok(polled) if polled.leased() > 0 => Duration::ZERO,
                Ok(_) => self.poll_interval,
                Err(err) => {
                    tracing::warn!(lane = %self.lane, error = %err, "event consumer cannot reach its queue");
                    self.poll_interval
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}
