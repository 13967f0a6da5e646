//! The downstream-events outbox (docs/architecture.md "Downstream events"): the room log is the
//! outbox, and a per-room durable mark says where a room's unpublished events start.
//!
//! ```text
//!  append (mark if the room has none, no later than the events) ──▶ publish the batch's events
//!        │ error / crash / queue down: the mark stays                       │ published
//!        ▼                                                                  ▼
//!  catch-up: read the log from the mark ──▶ publish ──▶ sweep: move the marks of busy rooms
//!                                                              past what was published, clear
//!                                                              the marks of quiet ones
//! ```
//!
//! A writer marks a room in its append ([`Batch::mark_outbox`](crate::backend::store::Batch))
//! when it does not know of a mark already; it publishes each batch's events after the fan-out;
//! a room whose publishing failed, or whose outcome was unknown, is caught up from its mark by
//! reading the log (before the room's next events, or on the next tick). A sweep moves the
//! mark of each published room that was busy since the last sweep past its head (an upsert:
//! the room stays marked, and no tombstone is left on ScyllaDB), clears the marks of published
//! rooms that were quiet, and catches up the marks it does not know of (a writer that died
//! between an append and its publish): on the first batch after a [`Outbox::reset`], then
//! every [`SWEEP_EVERY_MS`] while the shard is busy, and on every idle tick. Publishing is at
//! least once: a catch-up may publish events again; consumers dedupe by event id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::events::{DownstreamEvent, EventPublisher};
use crate::backend::store::Store;
use crate::chat::ids::RoomId;

use super::downstream;

/// How often a busy writer sweeps its shard's marks, in milliseconds of its clock.
pub const SWEEP_EVERY_MS: i64 = 5_000;

/// Log events read per page while catching a room up.
const CATCH_UP_PAGE: usize = 256;

/// Most bytes of log events read per page while catching a room up.
const CATCH_UP_PAGE_BYTES: usize = 1 << 20;

/// How long a writer keeps retrying downstream events its queue refused (a broker restarting)
/// before it leaves them to a catch-up. The room's log has them either way; the shard waits
/// meanwhile, which is what a broker outage means for it anyway.
pub const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(60);

/// What a writer knows of one room's durable mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    /// The first seq whose events may be unpublished (meaningful while `published` is false).
    from: u64,
    /// Every event the room has was published; only the durable mark is left to settle.
    published: bool,
    /// A batch was appended since the last sweep (the room is busy: its mark is moved, not
    /// cleared).
    touched: bool,
    /// The head after the room's last appended batch.
    head: u64,
}

impl Mark {
    /// A mark whose events from `from` on may be unpublished.
    fn unpublished(from: u64) -> Self {
        Self {
            from,
            published: false,
            touched: false,
            head: 0,
        }
    }
}

/// One writer's outbox: its shard, the publisher, and the marks it knows of.
#[derive(Debug)]
pub struct Outbox {
    publisher: Arc<dyn EventPublisher>,
    shard: usize,
    shards: usize,
    marks: HashMap<RoomId, Mark>,
    /// When the last sweep ran (writer clock); `None`: none since the last reset.
    swept_at_ms: Option<i64>,
    /// A batch was appended since the last sweep.
    busy: bool,
    /// An append's outcome was unknown since the last sweep: the store may hold a mark this
    /// writer no longer knows of.
    unsure: bool,
    /// How long a publish is retried before it is left to a catch-up.
    retry_for: Duration,
}

impl Outbox {
    /// An outbox for the writer of `shard` (of `shards`).
    pub fn new(publisher: Arc<dyn EventPublisher>, shard: usize, shards: usize) -> Self {
        Self {
            publisher,
            shard,
            shards: shards.max(1),
            marks: HashMap::new(),
            swept_at_ms: None,
            busy: false,
            unsure: false,
            retry_for: PUBLISH_RETRY_FOR,
        }
    }

    /// Retries a refused publish for `retry_for` instead of [`PUBLISH_RETRY_FOR`].
    pub fn retrying_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// Forgets every mark it knew of: the store's marks are the truth again (a shard taken
    /// over: another writer may have cleared or set them meanwhile).
    pub fn reset(&mut self) {
        self.marks.clear();
        self.swept_at_ms = None;
        self.busy = false;
        self.unsure = false;
    }

    /// Whether an append to `room` must set a mark (the writer knows of none).
    pub fn needs_mark(&self, room: &RoomId) -> bool {
        !self.marks.contains_key(room)
    }

    /// A room was loaded from the store with the durable mark `from` (if any): a mark this
    /// writer did not know of is one whose events may be unpublished.
    pub fn loaded(&mut self, room: &RoomId, from: Option<u64>) {
        if let Some(from) = from {
            self.marks
                .entry(room.clone())
                .or_insert(Mark::unpublished(from));
        }
    }

    /// The batch `first_seq ..= head` was appended to `room` (marked now if it was not).
    pub fn appended(&mut self, room: &RoomId, first_seq: u64, head: u64) {
        self.busy = true;
        let mark = self
            .marks
            .entry(room.clone())
            .or_insert(Mark::unpublished(first_seq));
        if mark.published {
            mark.from = first_seq;
            mark.published = false;
        }
        mark.touched = true;
        mark.head = head;
    }

    /// An append to `room` failed with an unknown outcome, or was fenced: what this writer
    /// knew of its mark no longer holds; the store's mark is read again when the room is.
    pub fn forget(&mut self, room: &RoomId) {
        self.marks.remove(room);
        self.unsure = true;
    }

    /// Whether the writer has marks to clear or rooms to catch up: the pipeline then calls
    /// [`Outbox::tick`] when the shard is idle.
    pub fn wants_tick(&self) -> bool {
        self.unsure || !self.marks.is_empty()
    }

    /// Whether a sweep is due before the next batch at `now_ms`.
    pub fn sweep_due(&self, now_ms: i64) -> bool {
        match self.swept_at_ms {
            None => true,
            Some(at) => self.busy && now_ms.saturating_sub(at) >= SWEEP_EVERY_MS,
        }
    }

    /// Publishes the events of a batch just appended to `room` (`events`, in seq order); a
    /// room with unpublished events before them is caught up from the log instead.
    pub async fn publish(
        &mut self,
        store: &dyn Store,
        room: &RoomId,
        events: &[chatwire_protocol::v1::RoomEvent],
    ) {
        match self.marks.get(room) {
            Some(mark) if !mark.published && events.first().is_some_and(|e| e.seq == mark.from) => {
                let published = publish_with_retry(
                    self.publisher.as_ref(),
                    room,
                    downstream::events_of_batch(events),
                    self.retry_for,
                )
                .await;
                self.set_published(room, published);
            }
            Some(mark) if !mark.published => {
                let from = mark.from;
                let published = self.catch_up(store, room, from).await;
                self.set_published(room, published);
            }
            _ => {}
        }
    }

    /// Catches `room` up if this writer knows of unpublished events in it.
    pub async fn catch_up_room(&mut self, store: &dyn Store, room: &RoomId) {
        if let Some(mark) = self.marks.get(room).copied()
            && !mark.published
        {
            let published = self.catch_up(store, room, mark.from).await;
            self.set_published(room, published);
        }
    }

    /// The sweep: catches up every mark of the shard not yet published (the store's and this
    /// writer's), then moves the marks of the published rooms that were busy past their head
    /// and clears those of the quiet ones. `load` brings a room this
    /// writer did not have loaded up to date first (a pending batch rolled forward), with the
    /// room's durable mark reported through [`Outbox::loaded`] by the caller.
    pub async fn sweep(&mut self, store: &dyn Store, now_ms: i64) {
        let stored = match store.outbox_marks(self.shard, self.shards).await {
            Ok(stored) => stored,
            Err(err) => {
                tracing::warn!(shard = self.shard, error = %err, "outbox marks not read");
                return;
            }
        };
        for (room, from) in &stored {
            self.marks
                .entry(room.clone())
                .or_insert(Mark::unpublished(*from));
        }
        let pending: Vec<(RoomId, u64)> = self
            .marks
            .iter()
            .filter(|(_, mark)| !mark.published)
            .map(|(room, mark)| (room.clone(), mark.from))
            .collect();
        for (room, from) in pending {
            // The room's log must be complete up to its head: a writer's load rolls a pending
            // batch forward (the ScyllaDB store).
            if let Err(err) = store.load_room(&room).await {
                tracing::warn!(room = %room, error = %err, "outbox room not loaded");
                continue;
            }
            let published = self.catch_up(store, &room, from).await;
            self.set_published(&room, published);
        }
        let settled: Vec<(RoomId, Option<u64>)> = self
            .marks
            .iter()
            .filter(|(_, mark)| mark.published)
            .map(|(room, mark)| {
                let moved = mark.touched.then(|| mark.head.saturating_add(1));
                (room.clone(), moved)
            })
            .collect();
        match store.update_outbox(&settled).await {
            Ok(()) => {
                for (room, moved) in &settled {
                    match moved {
                        Some(_) => {
                            if let Some(mark) = self.marks.get_mut(room) {
                                mark.touched = false;
                            }
                        }
                        None => {
                            self.marks.remove(room);
                        }
                    }
                }
                self.swept_at_ms = Some(now_ms);
                self.busy = false;
                self.unsure = false;
            }
            Err(err) => {
                tracing::warn!(shard = self.shard, error = %err, "outbox marks not settled");
            }
        }
    }

    fn set_published(&mut self, room: &RoomId, published: bool) {
        if let Some(mark) = self.marks.get_mut(room) {
            mark.published = published;
        }
    }

    /// Publishes every log event of `room` from seq `from` on; true when all were queued.
    async fn catch_up(&self, store: &dyn Store, room: &RoomId, from: u64) -> bool {
        let mut after = from.saturating_sub(1);
        loop {
            let page = match store
                .read_events(room, after, CATCH_UP_PAGE, CATCH_UP_PAGE_BYTES)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(room = %room, error = %err, "outbox catch-up not read");
                    return false;
                }
            };
            let Some(last) = page.last() else {
                return true;
            };
            after = last.seq;
            let events = downstream::events_of_batch(&page);
            if !events.is_empty()
                && !publish_with_retry(self.publisher.as_ref(), room, events, self.retry_for).await
            {
                return false;
            }
        }
    }
}

/// Queues downstream events, retrying with backoff for `retry_for` (a retried publish may
/// deliver an event twice; consumers dedupe by event id). False when they were not queued: the
/// room's mark keeps them for a catch-up.
async fn publish_with_retry(
    events: &dyn EventPublisher,
    room: &RoomId,
    downstream: Vec<DownstreamEvent>,
    retry_for: Duration,
) -> bool {
    if downstream.is_empty() {
        return true;
    }
    let deadline = tokio::time::Instant::now() + retry_for;
    let mut pause = Duration::from_millis(100);
    loop {
        match events.publish(downstream.clone()).await {
            Ok(()) => return true,
            Err(err) if tokio::time::Instant::now() + pause >= deadline => {
                tracing::warn!(room = %room, error = %err, "downstream events not queued; the outbox keeps them");
                return false;
            }
            Err(err) => {
                tracing::debug!(room = %room, error = %err, "downstream events refused; retrying");
                tokio::time::sleep(crate::jitter::global().apply(pause)).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}
