//! The downstream-events outbox (issue 15 H4, docs/architecture.md "Downstream events"),
//! written once and run against every store: a room writer over a real store and a real
//! embedded event queue, with the two faults that used to lose events: an append that is
//! applied but reported failed (its retry deduped silently), and a writer whose events were
//! never queued (the queue down, or the process gone before the queue write).
//!
//! Each test compares what was queued with the room's log: every log event's id
//! (`room:seq:kind`) queued, in seq order; none missing. Timeouts are the writer's own clock
//! (manual) and a zero publish-retry window; nothing sleeps.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chatwire_protocol::v1;
use chatwire_server::backend::events::{
    DownstreamEvent, EventPublisher, EventQueue, Lane, QueueError,
};
use chatwire_server::backend::events_embedded::{EmbeddedEventQueue, EventQueueOptions};
use chatwire_server::backend::fanout_local::LocalFanout;
use chatwire_server::backend::store::{RoomLog, Store};
use chatwire_server::backend::store_counting::CountingStore;
use chatwire_server::chat::command::{Outcome, RoomCommand, RoomOp};
use chatwire_server::chat::error::ChatError;
use chatwire_server::chat::ids::{RoomId, UserId};
use chatwire_server::clock::ManualClock;
use chatwire_server::writer::RoomWriter;
use chatwire_server::writer::downstream::events_of_batch;
use chatwire_server::writer::draft::WriterConfig;
use chatwire_server::writer::outbox::SWEEP_EVERY_MS;
use tempfile::TempDir;

use super::pipeline_suite::{command, send, user};
use super::store_suite::StoreFactory;

/// Makes one `#[tokio::test]` per behaviour of the suite, each calling `$factory()` for a fresh
/// store factory.
macro_rules! outbox_suite_tests {
    ($factory:path) => {
        $crate::support::outbox_suite::outbox_suite_tests!(
            @tests $factory;
            an_applied_append_reported_failed_is_still_published,
            an_unknown_outcome_is_published_by_the_next_tick,
            events_not_queued_are_caught_up_in_order,
            a_new_writer_publishes_what_a_dead_one_left,
            a_busy_room_is_marked_once_while_busy,
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory();
                $crate::support::outbox_suite::$name(&factory).await;
            }
        )*
    };
}
pub(crate) use outbox_suite_tests;

const T0: i64 = 1_750_000_000_000;

/// A real embedded event queue that can be switched off (a broker outage): while down, every
/// publish is refused with `Unavailable`.
#[derive(Debug)]
pub struct Queue {
    queue: Arc<EmbeddedEventQueue>,
    down: AtomicBool,
    _dir: TempDir,
}

impl Queue {
    pub fn open() -> Arc<Self> {
        let dir = TempDir::new().expect("temporary folder");
        let options = EventQueueOptions {
            sync: false,
            ..EventQueueOptions::default()
        };
        let queue = EmbeddedEventQueue::open_with(&dir.path().join("events.redb"), options)
            .expect("open queue");
        Arc::new(Self {
            queue: Arc::new(queue),
            down: AtomicBool::new(false),
            _dir: dir,
        })
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The ids of every event queued so far, in queue order (leased and acknowledged here).
    pub async fn drain(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for lane in Lane::ALL {
            loop {
                let leased = self.queue.lease(lane, 100, T0).await.expect("lease");
                if leased.is_empty() {
                    break;
                }
                for delivery in leased {
                    ids.push(delivery.event.id.clone());
                    self.queue.ack(delivery.tag).await.expect("ack");
                }
            }
        }
        ids
    }
}

#[async_trait]
impl EventPublisher for Queue {
    async fn publish(&self, events: Vec<DownstreamEvent>) -> Result<(), QueueError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::Unavailable("switched off (test)".into()));
        }
        self.queue.publish(events).await
    }
}

/// A writer over `store` publishing to `queue`, as the only shard, never waiting on a refused
/// publish (the outbox catches up instead).
pub fn writer(store: Arc<dyn Store>, queue: &Arc<Queue>, clock: Arc<ManualClock>) -> RoomWriter {
    let fanout = Arc::new(LocalFanout::new(clock.clone()));
    let publisher: Arc<dyn EventPublisher> = queue.clone();
    RoomWriter::new(store, fanout, clock, WriterConfig::default())
        .with_shard(0, 1)
        .with_events_retrying(Some(publisher), std::time::Duration::ZERO)
}

async fn run(writer: &mut RoomWriter, command: RoomCommand) -> Result<Outcome, ChatError> {
    let room = command.room.clone();
    writer
        .execute(&room, std::slice::from_ref(&command))
        .await
        .pop()
        .expect("one result")
}

async fn create(writer: &mut RoomWriter, owner: &UserId, name: &str) -> RoomId {
    let room = RoomId::group(owner, name);
    let op = RoomOp::CreateGroup(chatwire_server::chat::command::CreateGroup {
        name: name.to_owned(),
        topic: String::new(),
        members: Vec::new(),
        history_visibility: v1::HistoryVisibility::SinceJoin,
        member_cap: 100,
        app_data: bytes::Bytes::new(),
    });
    let created = run(writer, command(&room, owner, op)).await;
    assert!(matches!(created, Ok(Outcome::Room { .. })), "{created:?}");
    room
}

fn seq_of(result: &Result<Outcome, ChatError>) -> u64 {
    match result {
        Ok(Outcome::Sent(sent)) => sent.seq,
        other => panic!("expected a sent message, got {other:?}"),
    }
}

/// The downstream ids of every event in the room's log, in seq order.
async fn log_ids(store: &dyn Store, room: &RoomId) -> Vec<String> {
    let events = store
        .read_events(room, 0, 10_000, usize::MAX)
        .await
        .expect("read log");
    events_of_batch(&events).into_iter().map(|e| e.id).collect()
}

/// Every log id is in `queued`; within each lane (new messages travel in the high lane, the
/// other log events in the medium one) the first copy of each comes in seq order.
fn assert_complete_in_order(queued: &[String], log: &[String]) {
    let mut first_copies = Vec::new();
    let mut seen = BTreeSet::new();
    for id in queued {
        if seen.insert(id.clone()) {
            first_copies.push(id.clone());
        }
    }
    let missing: Vec<&String> = log.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "never queued: {missing:?}");
    for high in [true, false] {
        let in_lane = |id: &&String| id.ends_with(":message.created") == high;
        let queued: Vec<&String> = first_copies
            .iter()
            .filter(|id| log.contains(id))
            .filter(in_lane)
            .collect();
        let logged: Vec<&String> = log.iter().filter(in_lane).collect();
        assert_eq!(queued, logged, "queued out of seq order");
    }
}

/// An append that is durably applied but reported failed (a ScyllaDB materialization or a
/// lost transaction reply): the client retries, the retry dedupes, and the message's events
/// are published all the same: from the log, by the outbox.
pub async fn an_applied_append_reported_failed_is_still_published(factory: &dyn StoreFactory) {
    let counting = Arc::new(CountingStore::new(factory.open().await));
    let store: Arc<dyn Store> = counting.clone();
    let queue = Queue::open();
    let mut writer = writer(Arc::clone(&store), &queue, ManualClock::at(T0));
    let alice = user("alice");
    let room = create(&mut writer, &alice, "lost-reply").await;
    let first = seq_of(&run(&mut writer, send(&room, &alice, "c1", "one")).await);

    counting.lose_next_append_reply(&room);
    let lost = run(&mut writer, send(&room, &alice, "c2", "two")).await;
    assert!(lost.is_err(), "the append's reply was lost: {lost:?}");
    let retried = run(&mut writer, send(&room, &alice, "c2", "two")).await;
    match &retried {
        Ok(Outcome::Sent(sent)) => {
            assert!(sent.duplicate, "the retry finds the applied message");
            assert_eq!(sent.seq, first + 1);
        }
        other => panic!("expected the deduped message, got {other:?}"),
    }

    let log = log_ids(store.as_ref(), &room).await;
    assert!(log.contains(&format!("{room}:{}:message.created", first + 1)));
    assert_complete_in_order(&queue.drain().await, &log);
}

/// The same lost reply with no retry: the writer's next idle tick publishes the message.
pub async fn an_unknown_outcome_is_published_by_the_next_tick(factory: &dyn StoreFactory) {
    let counting = Arc::new(CountingStore::new(factory.open().await));
    let store: Arc<dyn Store> = counting.clone();
    let queue = Queue::open();
    let mut writer = writer(Arc::clone(&store), &queue, ManualClock::at(T0));
    let alice = user("alice");
    let room = create(&mut writer, &alice, "no-retry").await;
    counting.lose_next_append_reply(&room);
    assert!(
        run(&mut writer, send(&room, &alice, "c1", "one"))
            .await
            .is_err()
    );
    assert!(writer.wants_tick(), "an unknown outcome leaves outbox work");

    writer.tick().await;
    let log = log_ids(store.as_ref(), &room).await;
    assert_eq!(log.len(), 3, "created, joined, the message: {log:?}");
    assert_complete_in_order(&queue.drain().await, &log);
    assert!(
        store.outbox_marks(0, 1).await.expect("marks").is_empty(),
        "the sweep cleared the published room's mark"
    );
    assert!(!writer.wants_tick());
}

/// Events the queue refused (down) are not lost: the room's next batch publishes them first,
/// from the log, then its own, in seq order.
pub async fn events_not_queued_are_caught_up_in_order(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let queue = Queue::open();
    let mut writer = writer(Arc::clone(&store), &queue, ManualClock::at(T0));
    let alice = user("alice");
    let room = create(&mut writer, &alice, "queue-down").await;

    queue.set_down(true);
    for i in 0..3 {
        let id = format!("down{i}");
        seq_of(&run(&mut writer, send(&room, &alice, &id, "while down")).await);
    }
    queue.set_down(false);
    let queued_while_down = queue.drain().await;
    assert!(
        !queued_while_down
            .iter()
            .any(|id| id.contains("message.created")),
        "nothing was queued while down: {queued_while_down:?}"
    );

    seq_of(&run(&mut writer, send(&room, &alice, "up", "back")).await);
    let mut queued = queued_while_down;
    queued.extend(queue.drain().await);
    assert_complete_in_order(&queued, &log_ids(store.as_ref(), &room).await);
}

/// A writer whose events were never queued (its process died after the appends) leaves its
/// marks in the store; the next writer of the shard publishes them on its first tick, and
/// clears the marks.
pub async fn a_new_writer_publishes_what_a_dead_one_left(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let queue = Queue::open();
    let alice = user("alice");
    let rooms = {
        let mut dying = writer(Arc::clone(&store), &queue, ManualClock::at(T0));
        let mut rooms = Vec::new();
        for name in ["dead-a", "dead-b"] {
            let room = create(&mut dying, &alice, name).await;
            queue.set_down(true);
            seq_of(&run(&mut dying, send(&room, &alice, "m1", "unqueued")).await);
            queue.set_down(false);
            rooms.push(room);
        }
        rooms
    };
    let before = queue.drain().await;
    let marks = store.outbox_marks(0, 1).await.expect("marks");
    assert_eq!(
        marks
            .iter()
            .map(|(room, _)| room.clone())
            .collect::<Vec<_>>(),
        {
            let mut sorted = rooms.clone();
            sorted.sort();
            sorted
        },
        "both rooms are marked"
    );

    let mut next = writer(Arc::clone(&store), &queue, ManualClock::at(T0 + 1));
    next.tick().await;
    let mut queued = before;
    queued.extend(queue.drain().await);
    for room in &rooms {
        let log = log_ids(store.as_ref(), room).await;
        let of_room: Vec<String> = queued
            .iter()
            .filter(|id| id.starts_with(&format!("{room}:")))
            .cloned()
            .collect();
        assert_complete_in_order(&of_room, &log);
    }
    assert!(store.outbox_marks(0, 1).await.expect("marks").is_empty());
}

/// The mark costs one write per room while it stays busy, not one per batch: a busy room is
/// marked by its first append; a sweep moves its mark past what was published (the room stays
/// marked, so no append marks it again); a sweep after it went quiet clears the mark, and its
/// next append marks it again.
pub async fn a_busy_room_is_marked_once_while_busy(factory: &dyn StoreFactory) {
    let counting = Arc::new(CountingStore::new(factory.open().await));
    let store: Arc<dyn Store> = counting.clone();
    let queue = Queue::open();
    let clock = ManualClock::at(T0);
    let mut writer = writer(Arc::clone(&store), &queue, clock.clone());
    let alice = user("alice");
    let room = create(&mut writer, &alice, "busy").await;
    for i in 0..10 {
        seq_of(&run(&mut writer, send(&room, &alice, &format!("b{i}"), "busy")).await);
    }
    assert_eq!(counting.calls("append"), 11);
    assert_eq!(counting.calls("append_marking_outbox"), 1);

    clock.advance(SWEEP_EVERY_MS);
    let after = seq_of(&run(&mut writer, send(&room, &alice, "after", "swept")).await);
    assert_eq!(counting.calls("append_marking_outbox"), 1, "still marked");
    assert_eq!(
        store.outbox_marks(0, 1).await.expect("marks"),
        vec![(room.clone(), after)],
        "the sweep before this batch moved the mark past everything published"
    );

    // Quiet now: one sweep moves the mark past `after`, the next clears it.
    writer.tick().await;
    assert_eq!(
        store.outbox_marks(0, 1).await.expect("marks"),
        vec![(room.clone(), after + 1)]
    );
    writer.tick().await;
    assert!(store.outbox_marks(0, 1).await.expect("marks").is_empty());
    assert!(!writer.wants_tick(), "nothing left to settle");

    seq_of(&run(&mut writer, send(&room, &alice, "again", "marked again")).await);
    assert_eq!(counting.calls("append_marking_outbox"), 2);
    assert_complete_in_order(&queue.drain().await, &log_ids(store.as_ref(), &room).await);
}
