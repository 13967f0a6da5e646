//! The `index` consumer: reads its own downstream event queue and keeps the index equal to the
//! messages' current state (docs/architecture.md "Message search").
//!
//! ```text
//!  EventQueue (index) ──lease batch──▶ targets (room, seq) ──store.message──▶ Upsert / Remove
//!        ▲                                                                    │ apply + commit
//!        └──────────────── ack every delivery of the batch (nack all on failure) ◀┘
//! ```
//!
//! Whatever the event (created, edited, deleted; erasure redacts through deletes), the
//! consumer reads the message as it is now: deleted, erased or dropped by retention means
//! removed. So a repeat, a retry out of order or a lost race converge to the same index, and
//! the consumer is idempotent by event id without remembering ids. Acks come after the commit:
//! a crash before it delivers the batch again.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chatwire_protocol::v1::room_event::Kind;

use super::index::{Change, IndexedMessage, SearchIndex};
use crate::backend::events::{Delivery, EventQueue, Lane, QueueError};
use crate::backend::store::Store;
use crate::chat::ids::RoomId;
use crate::clock::Clock;
use crate::writer::downstream::room_event_of;

/// Events leased at once per lane.
const BATCH: usize = 256;

/// The message an event is about: `(room, seq of its MessageCreated)`; `None` for events that
/// change no message text.
pub fn target_of(delivery: &Delivery) -> Option<(String, u64)> {
    let event = &delivery.event;
    let room = event.room_id.clone()?;
    match event.kind.as_str() {
        "message.created" => Some((room, event.seq?)),
        "message.edited" | "message.deleted" => {
            let logged = room_event_of(&event.payload)?;
            match logged.kind? {
                Kind::MessageEdited(e) => Some((room, e.target_seq)),
                Kind::MessageDeleted(d) => Some((room, d.target_seq)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The change that makes the index hold `(room, seq)` as the store has it now.
pub async fn current_change(store: &dyn Store, room: &str, seq: u64) -> Result<Change, String> {
    let remove = Change::Remove {
        room_id: room.to_owned(),
        seq,
    };
    let Ok(room_id) = RoomId::parse(room) else {
        return Ok(remove);
    };
    let message = store
        .message(&room_id, seq)
        .await
        .map_err(|e| e.to_string())?;
    Ok(match message {
        Some(m) if !m.deleted => Change::Upsert(indexed(m)),
        _ => remove,
    })
}

/// A stored message as the index keeps it.
pub fn indexed(m: chatwire_protocol::v1::Message) -> IndexedMessage {
    IndexedMessage {
        room_id: m.room_id,
        seq: m.seq,
        sender: m.sender,
        created_at_ms: m.created_at_ms,
        text: m.content.map(|c| c.text).unwrap_or_default(),
    }
}

/// Applies `changes` on a blocking thread.
pub async fn apply(index: &Arc<SearchIndex>, changes: Vec<Change>) -> Result<(), String> {
    if changes.is_empty() {
        return Ok(());
    }
    let index = Arc::clone(index);
    tokio::task::spawn_blocking(move || index.apply(&changes))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The index consumer of one queue.
#[derive(Debug)]
pub struct IndexConsumer {
    queue: Arc<dyn EventQueue>,
    index: Arc<SearchIndex>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
}

impl IndexConsumer {
    /// A consumer of every lane of `queue`, polling every `poll_interval` when idle.
    pub fn new(
        queue: Arc<dyn EventQueue>,
        index: Arc<SearchIndex>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        poll_interval: Duration,
    ) -> Self {
        Self {
            queue,
            index,
            store,
            clock,
            poll_interval,
        }
    }

    /// One pass over the lanes: lease, index the current state of each message named, commit,
    /// ack. Returns how many deliveries were leased.
    pub async fn poll_once(&self) -> Result<usize, QueueError> {
        let mut leased = 0;
        for lane in Lane::ALL {
            let now_ms = self.clock.now_ms();
            let deliveries = self.queue.lease(lane, BATCH, now_ms).await?;
            if deliveries.is_empty() {
                continue;
            }
            leased += deliveries.len();
            let outcome = self.index_batch(&deliveries).await;
            for delivery in &deliveries {
                let recorded = match &outcome {
                    Ok(()) => self.queue.ack(delivery.tag).await,
                    Err(reason) => {
                        self.queue
                            .nack(delivery.tag, self.clock.now_ms(), reason)
                            .await
                    }
                };
                match recorded {
                    Ok(()) | Err(QueueError::LeaseLost) => {}
                    Err(err) => return Err(err),
                }
            }
            if let Err(reason) = outcome {
                tracing::warn!(%reason, lane = %lane, "search index update failed; retried later");
            }
        }
        Ok(leased)
    }

    async fn index_batch(&self, deliveries: &[Delivery]) -> Result<(), String> {
        let targets: BTreeSet<(String, u64)> = deliveries.iter().filter_map(target_of).collect();
        let mut changes = Vec::with_capacity(targets.len());
        for (room, seq) in targets {
            changes.push(current_change(self.store.as_ref(), &room, seq).await?);
        }
        apply(&self.index, changes).await
    }

    /// Polls until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        loop {
            let pause = match self.poll_once().await {
                Ok(leased) if leased > 0 => Duration::ZERO,
                Ok(_) => self.poll_interval,
                Err(err) => {
                    tracing::warn!(error = %err, "index consumer cannot reach its queue");
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
