//! The built-in consumers of one server: one queue per consumer (on the embedded default a file
//! in the events folder, in a cluster RabbitMQ lane queues), a [`Tee`] the room writers publish
//! to, and the consumer tasks.
//!
//! ```text
//!  room writers ──publish──▶ Tee ──▶ events/push.redb ──▶ offline push consumer (high lane)
//!                                ├─▶ events/app.redb  ──▶ app webhook consumers (one per lane)
//!                                └─▶ events/index.redb ──▶ the search index consumer (all lanes)
//! ```
//!
//! With no consumer configured there is no publisher and nothing is stored.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::consumer::WebhookConsumer;
use super::push::PushAudience;
use super::sender::WebhookSender;
use crate::backend::events::{EventPublisher, EventQueue, Lane, QueueError, Tee};
use crate::backend::events_embedded::{EmbeddedEventQueue, EventQueueOptions};
use crate::clock::Clock;
use crate::search::IndexConsumer;

/// How often an idle consumer looks at its queue.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The offline push consumer's parts: its webhook, who is online, its queue.
pub type PushConsumer = (WebhookSender, Arc<dyn PushAudience>, Arc<dyn EventQueue>);

/// The configured consumers, their queues, and the publisher feeding them.
#[derive(Debug)]
pub struct Consumers {
    publisher: Arc<dyn EventPublisher>,
    queues: Vec<(&'static str, Arc<dyn EventQueue>)>,
    consumers: Vec<WebhookConsumer>,
    /// The embedded queues by name, for backups (none in a cluster).
    embedded: Vec<(String, EmbeddedEventQueue)>,
    /// The search index consumer, when search is on.
    index: Option<IndexConsumer>,
    /// The writers publish to a [`Tee`] of `queues` (false: to a shared exchange).
    tee: bool,
}

impl Consumers {
    /// Opens a queue in `dir` for each configured consumer: `push` (the push webhook and who
    /// is online) and `app` (the app webhook). Blocks on file I/O: call it at start-up.
    pub fn open(
        dir: &Path,
        options: &EventQueueOptions,
        push: Option<(WebhookSender, Arc<dyn PushAudience>)>,
        app: Option<WebhookSender>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let mut embedded = Vec::new();
        let mut open = |name: &str| -> Result<Arc<dyn EventQueue>, QueueError> {
            let queue = open_queue(dir, name, options)?;
            embedded.push((name.to_owned(), queue.clone()));
            Ok(Arc::new(queue))
        };
        let push = match push {
            Some((sender, audience)) => Some((sender, audience, open("push")?)),
            None => None,
        };
        let app = match app {
            Some(sender) => Some((sender, open("app")?)),
            None => None,
        };
        let mut consumers = Self::with_queues(push, app, None, clock);
        consumers.embedded = embedded;
        Ok(consumers)
    }

    /// The consumers over queues opened elsewhere (the RabbitMQ ones in a cluster): `push` with
    /// its sender, audience and queue, `app` with its sender and queue. `publisher` is what the
    /// writers publish to when the queues share one (a RabbitMQ exchange that copies each event
    /// into every consumer's lanes); `None` publishes to each queue in turn (a [`Tee`]).
    pub fn with_queues(
        push: Option<PushConsumer>,
        app: Option<(WebhookSender, Arc<dyn EventQueue>)>,
        publisher: Option<Arc<dyn EventPublisher>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let mut queues: Vec<(&'static str, Arc<dyn EventQueue>)> = Vec::new();
        let mut consumers = Vec::new();
        if let Some((sender, audience, queue)) = push {
            for lane in Lane::ALL {
                let consumer = WebhookConsumer::offline_push(
                    Arc::clone(&queue),
                    lane,
                    sender.clone(),
                    Arc::clone(&audience),
                    clock.clone(),
                );
                consumers.push(consumer.with_poll_interval(POLL_INTERVAL));
            }
            queues.push(("push", queue));
        }
        if let Some((sender, queue)) = app {
            for lane in Lane::ALL {
                let consumer = WebhookConsumer::app_webhook(
                    Arc::clone(&queue),
                    lane,
                    sender.clone(),
                    clock.clone(),
                );
                consumers.push(consumer.with_poll_interval(POLL_INTERVAL));
            }
            queues.push(("app", queue));
        }
        let tee = publisher.is_none();
        let publisher = publisher.unwrap_or_else(|| {
            Arc::new(Tee::new(
                queues.iter().map(|(_, q)| Arc::clone(q)).collect(),
            ))
        });
        Self {
            publisher,
            queues,
            consumers,
            embedded: Vec::new(),
            index: None,
            tee,
        }
    }

    /// Adds the search index consumer over its own `queue` (named `index`); on the embedded
    /// default the writers' [`Tee`] then copies every event into it too. `publisher` replaces
    /// a shared publisher (a cluster's exchange), when given.
    pub fn with_index(
        mut self,
        queue: Arc<dyn EventQueue>,
        consumer: IndexConsumer,
        publisher: Option<Arc<dyn EventPublisher>>,
    ) -> Self {
        self.queues.push(("index", queue));
        self.index = Some(consumer);
        if let Some(publisher) = publisher {
            self.publisher = publisher;
            self.tee = false;
        } else if self.tee {
            self.publisher = Arc::new(Tee::new(
                self.queues.iter().map(|(_, q)| Arc::clone(q)).collect(),
            ));
        }
        self
    }

    /// What the room writers publish to; `None` when no consumer is configured (the writers
    /// then skip building downstream events at all).
    pub fn publisher(&self) -> Option<Arc<dyn EventPublisher>> {
        (!self.queues.is_empty()).then(|| Arc::clone(&self.publisher))
    }

    /// Each consumer's queue by name (`push`, `app`), for DLQ listing and replay, and depths.
    pub fn queues(&self) -> &[(&'static str, Arc<dyn EventQueue>)] {
        &self.queues
    }

    /// The embedded queues by name (`push`, `app`), for backups; empty in a cluster.
    pub fn embedded_queues(&self) -> &[(String, EmbeddedEventQueue)] {
        &self.embedded
    }

    /// Starts one task per consumer and lane; each stops once `shutdown` holds `true`.
    pub fn spawn(&mut self, shutdown: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let stopped = |shutdown: &watch::Receiver<bool>| {
            let mut stop = shutdown.clone();
            async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            }
        };
        let mut tasks: Vec<JoinHandle<()>> = self
            .consumers
            .drain(..)
            .map(|consumer| tokio::spawn(consumer.run(stopped(shutdown))))
            .collect();
        if let Some(index) = self.index.take() {
            tasks.push(tokio::spawn(index.run(stopped(shutdown))));
        }
        tasks
    }
}

/// Opens (creating) the embedded queue `name` in `dir`. Blocks on file I/O.
pub fn open_queue(
    dir: &Path,
    name: &str,
    options: &EventQueueOptions,
) -> Result<EmbeddedEventQueue, QueueError> {
    let path = dir.join(format!("{name}.redb"));
    EmbeddedEventQueue::open_with(&path, options.clone())
}
