//! The behavioural suite of the command pipeline trait (`Pipeline`), written once and run
//! against every implementation.
//!
//! An implementation provides a [`PipelineFactory`] and expands [`pipeline_suite_tests!`] with
//! it, which makes one `#[tokio::test]` per behaviour, named after it:
//!
//! ```ignore
//! mod support;
//! fn factory() -> MyFactory { ... }
//! support::pipeline_suite::pipeline_suite_tests!(factory);
//! ```
//!
//! The writers behind the pipeline are real: [`RoomWriter`]s over an embedded store in a
//! temporary folder and an in-process fan-out, with a manual clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use chatwire_protocol::v1;
use chatwire_server::backend::embedded::{EmbeddedOptions, EmbeddedStore};
use chatwire_server::backend::fanout_local::LocalFanout;
use chatwire_server::backend::pipeline::{Pipeline, RoomExecutor, shard_of};
use chatwire_server::backend::store::Store;
use chatwire_server::chat::command::{CreateGroup, Outcome, RoomCommand, RoomOp, SendOp};
use chatwire_server::chat::error::ChatError;
use chatwire_server::chat::ids::{RoomId, UserId};
use chatwire_server::clock::ManualClock;
use chatwire_server::writer::RoomWriter;
use chatwire_server::writer::draft::WriterConfig;
use tempfile::TempDir;

/// Makes the pipelines under test.
#[async_trait]
pub trait PipelineFactory: Send + Sync {
    /// Starts a pipeline with one shard per writer (shard `i` runs on `writers[i]`) and room
    /// for `queue` waiting commands per shard.
    async fn start(&self, writers: Vec<Box<dyn RoomExecutor>>, queue: usize) -> Arc<dyn Pipeline>;
}

/// Makes one `#[tokio::test]` per behaviour of the suite, each calling `$factory()` for a fresh
/// factory. A full queue is tested on a current-thread runtime, where the shard cannot take
/// commands from its queue while the test is not waiting.
#[allow(unused_macros)] // test binaries that do not test a pipeline
macro_rules! pipeline_suite_tests {
    ($factory:path) => {
        $crate::support::pipeline_suite::pipeline_suite_tests!(
            @tests $factory, "multi_thread";
            concurrent_sends_to_one_room_apply_once,
            rooms_of_all_shards_proceed,
            one_task_keeps_its_order,
            a_retried_send_is_a_duplicate,
            a_failing_command_fails_alone,
            shard_of_is_stable_and_spreads,
        );
        $crate::support::pipeline_suite::pipeline_suite_tests!(
            @tests $factory, "current_thread";
            a_full_queue_is_rate_limited,
        );
    };
    (@tests $factory:path, $flavor:literal; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = $flavor)]
            async fn $name() {
                let factory = $factory();
                $crate::support::pipeline_suite::$name(&factory).await;
            }
        )*
    };
}
#[allow(unused_imports)] // test binaries that do not test a pipeline
pub(crate) use pipeline_suite_tests;

// ---------------------------------------------------------------------------------------------
// Builders

/// The time the clock starts at.
const T0: i64 = 1_700_000_000_000;

/// Only a guard against hanging.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A pipeline over real writers, and the store they write.
pub struct Rig {
    /// The pipeline under test.
    pub pipeline: Arc<dyn Pipeline>,
    /// The store behind the writers.
    pub store: Arc<dyn Store>,
    /// The number of shards.
    pub shards: usize,
    _dir: TempDir,
}

/// Starts `shards` writers over a fresh store behind the factory's pipeline.
pub async fn rig(factory: &dyn PipelineFactory, shards: usize, queue: usize) -> Rig {
    let dir = TempDir::new().expect("temporary folder");
    let options = EmbeddedOptions {
        sync: false,
        ..EmbeddedOptions::default()
    };
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path(), options).expect("open store"));
    let clock = ManualClock::at(T0);
    let fanout = Arc::new(LocalFanout::new(clock.clone()));
    let writers = (0..shards)
        .map(|_| {
            RoomWriter::new(
                Arc::clone(&store),
                fanout.clone(),
                clock.clone(),
                WriterConfig::default(),
            )
            .boxed()
        })
        .collect();
    Rig {
        pipeline: factory.start(writers, queue).await,
        store,
        shards,
        _dir: dir,
    }
}

/// A user id.
pub fn user(raw: &str) -> UserId {
    UserId::parse(raw).expect("valid user id")
}

/// A command of `actor` on `room`.
pub fn command(room: &RoomId, actor: &UserId, op: RoomOp) -> RoomCommand {
    RoomCommand {
        room: room.clone(),
        actor: actor.clone(),
        op,
        trace_id: String::new(),
        privileged: false,
    }
}

/// A Send of `body` with idempotency key `id`.
pub fn send(room: &RoomId, actor: &UserId, id: &str, body: &str) -> RoomCommand {
    let op = SendOp {
        client_msg_id: id.to_owned(),
        content: v1::Content {
            text: body.to_owned(),
            ..Default::default()
        },
        reply_to_seq: 0,
        thread_root_seq: 0,
    };
    command(room, actor, RoomOp::Send(op))
}

/// Runs a command, guarded against hanging.
pub async fn execute(pipeline: &dyn Pipeline, command: RoomCommand) -> Result<Outcome, ChatError> {
    tokio::time::timeout(HANG_GUARD, pipeline.execute(command))
        .await
        .expect("an answer within the hang guard")
}

/// The answer to a Send that must have succeeded.
pub fn sent(result: Result<Outcome, ChatError>) -> v1::SendResponse {
    match result {
        Ok(Outcome::Sent(response)) => response,
        other => panic!("expected a sent message, got {other:?}"),
    }
}

/// Creates group `request_id` of `owner` with `members`; returns it and its head seq.
pub async fn create(
    pipeline: &dyn Pipeline,
    owner: &UserId,
    request_id: &str,
    members: &[UserId],
) -> (RoomId, u64) {
    let room = RoomId::group(owner, request_id);
    let op = RoomOp::CreateGroup(CreateGroup {
        name: request_id.to_owned(),
        topic: String::new(),
        members: members.to_vec(),
        history_visibility: v1::HistoryVisibility::SinceJoin,
        member_cap: 100,
        app_data: bytes::Bytes::new(),
    });
    match execute(pipeline, command(&room, owner, op)).await {
        Ok(Outcome::Room {
            room: settings,
            created: true,
            ..
        }) => (room, settings.last_seq),
        other => panic!("expected a new room, got {other:?}"),
    }
}

/// The room's log: each event's seq and, for messages, the client_msg_id.
pub async fn log(store: &dyn Store, room: &RoomId) -> Vec<(u64, Option<String>)> {
    let events = store
        .read_events(room, 0, 100_000, usize::MAX)
        .await
        .expect("read the log");
    events
        .into_iter()
        .map(|event| match event.kind {
            Some(v1::room_event::Kind::MessageCreated(m)) => (event.seq, Some(m.client_msg_id)),
            _ => (event.seq, None),
        })
        .collect()
}

/// Checks that the room's log is seqs `1..` without a gap and holds each of `ids` exactly
/// once, at the seq its Send answered.
async fn assert_logged_once(store: &dyn Store, room: &RoomId, answers: &[(String, u64)]) {
    let log = log(store, room).await;
    let seqs: Vec<u64> = log.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>(), "{room}");
    let messages: Vec<(String, u64)> = log
        .into_iter()
        .filter_map(|(seq, id)| id.map(|id| (id, seq)))
        .collect();
    let mut expected = answers.to_vec();
    expected.sort_by_key(|(_, seq)| *seq);
    assert_eq!(messages, expected, "{room}: one message per answered Send");
}

/// Polls a future once: it starts (a pipeline queues the command) without being awaited.
pub async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// `count` request ids whose groups (of `owner`) land on every shard of `shards`, in turn.
fn rooms_over_shards(owner: &UserId, shards: usize, count: usize) -> Vec<RoomId> {
    let mut by_shard: Vec<Vec<RoomId>> = vec![Vec::new(); shards];
    for i in 0.. {
        let room = RoomId::group(owner, &format!("spread-{i}"));
        let bucket = &mut by_shard[shard_of(room.as_str(), shards)];
        if bucket.len() < count.div_ceil(shards) {
            bucket.push(room);
        }
        if by_shard.iter().all(|b| b.len() == count.div_ceil(shards)) {
            break;
        }
    }
    let mut rooms: Vec<RoomId> = (0..count.div_ceil(shards))
        .flat_map(|i| by_shard.iter().map(move |b| b[i].clone()))
        .collect();
    rooms.truncate(count);
    rooms
}

// ---------------------------------------------------------------------------------------------
// Behaviours

/// Sends to one room from many tasks at once each run once, with distinct contiguous seqs and
/// ordinals, and the log holds each once.
pub async fn concurrent_sends_to_one_room_apply_once(factory: &dyn PipelineFactory) {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let rig = rig(factory, 4, 1024).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let (room, head) = create(&*rig.pipeline, &alice, "busy", std::slice::from_ref(&bob)).await;

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let pipeline = Arc::clone(&rig.pipeline);
            let room = room.clone();
            let sender = if t % 2 == 0 {
                alice.clone()
            } else {
                bob.clone()
            };
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..EACH {
                    let id = format!("t{t}-{i}");
                    let answer = sent(execute(&*pipeline, send(&room, &sender, &id, &id)).await);
                    assert!(!answer.duplicate, "{id}");
                    answers.push((id, answer));
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("sender task"));
    }

    let mut seqs: Vec<u64> = answers.iter().map(|(_, a)| a.seq).collect();
    let mut ordinals: Vec<u64> = answers.iter().map(|(_, a)| a.ordinal).collect();
    seqs.sort_unstable();
    ordinals.sort_unstable();
    let total = (TASKS * EACH) as u64;
    assert_eq!(seqs, (head + 1..=head + total).collect::<Vec<_>>());
    assert_eq!(ordinals, (1..=total).collect::<Vec<_>>());
    let by_id: Vec<(String, u64)> = answers.into_iter().map(|(id, a)| (id, a.seq)).collect();
    assert_logged_once(&*rig.store, &room, &by_id).await;
}

/// Rooms on every shard, written at once, each get all their commands with contiguous seqs.
pub async fn rooms_of_all_shards_proceed(factory: &dyn PipelineFactory) {
    const EACH: usize = 20;
    let rig = rig(factory, 4, 1024).await;
    let alice = user("alice");
    let rooms = rooms_over_shards(&alice, rig.shards, 8);
    let mut heads = Vec::new();
    for room in &rooms {
        let op = RoomOp::CreateGroup(CreateGroup {
            name: "spread".to_owned(),
            topic: String::new(),
            members: Vec::new(),
            history_visibility: v1::HistoryVisibility::Full,
            member_cap: 10,
            app_data: bytes::Bytes::new(),
        });
        match execute(&*rig.pipeline, command(room, &alice, op)).await {
            Ok(Outcome::Room { room, .. }) => heads.push(room.last_seq),
            other => panic!("expected a room, got {other:?}"),
        }
    }

    let tasks: Vec<_> = rooms
        .iter()
        .map(|room| {
            let (pipeline, room, alice) = (Arc::clone(&rig.pipeline), room.clone(), alice.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..EACH {
                    let id = format!("m{i}");
                    let answer = sent(execute(&*pipeline, send(&room, &alice, &id, "x")).await);
                    answers.push((id, answer.seq));
                }
                answers
            })
        })
        .collect();
    for ((room, head), task) in rooms.iter().zip(heads).zip(tasks) {
        let answers = task.await.expect("room task");
        let seqs: Vec<u64> = answers.iter().map(|(_, seq)| *seq).collect();
        assert_eq!(seqs, (head + 1..=head + EACH as u64).collect::<Vec<_>>());
        assert_logged_once(&*rig.store, room, &answers).await;
    }
}

/// One task's commands to a room run in the order it submitted them, even while other tasks
/// write the same room; commands it starts back to back without awaiting keep their order too.
pub async fn one_task_keeps_its_order(factory: &dyn PipelineFactory) {
    let rig = rig(factory, 2, 1024).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let (room, _) = create(&*rig.pipeline, &alice, "order", std::slice::from_ref(&bob)).await;
    let noise = tokio::spawn({
        let (pipeline, room) = (Arc::clone(&rig.pipeline), room.clone());
        async move {
            for i in 0..60 {
                let id = format!("noise-{i}");
                sent(execute(&*pipeline, send(&room, &bob, &id, "n")).await);
            }
        }
    });

    let mut last = 0;
    for i in 0..60 {
        let id = format!("seq-{i}");
        let answer = sent(execute(&*rig.pipeline, send(&room, &alice, &id, "s")).await);
        assert!(answer.seq > last, "{id}: seq {} after {last}", answer.seq);
        last = answer.seq;
    }

    // Started in order, then awaited together.
    let mut pending: Vec<_> = (0..20)
        .map(|i| {
            let id = format!("burst-{i}");
            rig.pipeline.execute(send(&room, &alice, &id, "b"))
        })
        .collect();
    for future in &mut pending {
        let _ = poll_once(future).await;
    }
    let mut burst = Vec::new();
    for future in pending {
        let answer = tokio::time::timeout(HANG_GUARD, future)
            .await
            .expect("an answer within the hang guard");
        burst.push(sent(answer).seq);
    }
    assert!(burst.windows(2).all(|w| w[0] < w[1]), "{burst:?}");
    noise.await.expect("noise task");
}

/// A retried Send (same client_msg_id and content) answers the original seq with
/// `duplicate`, also when retried in the same batch and after a restart of the writers; the
/// same id with other content is a CONFLICT. The log holds the message once.
pub async fn a_retried_send_is_a_duplicate(factory: &dyn PipelineFactory) {
    let rig = rig(factory, 2, 1024).await;
    let alice = user("alice");
    let (room, _) = create(&*rig.pipeline, &alice, "retry", &[]).await;

    let first = sent(execute(&*rig.pipeline, send(&room, &alice, "c1", "hello")).await);
    assert!(!first.duplicate);
    let again = sent(execute(&*rig.pipeline, send(&room, &alice, "c1", "hello")).await);
    assert_eq!(
        again,
        v1::SendResponse {
            duplicate: true,
            ..first
        }
    );
    let conflict = execute(&*rig.pipeline, send(&room, &alice, "c1", "bye")).await;
    assert!(
        matches!(conflict, Err(ChatError::Conflict(_))),
        "{conflict:?}"
    );

    // Three copies started together: one new message, two duplicates of it.
    let mut copies: Vec<_> = (0..3)
        .map(|_| rig.pipeline.execute(send(&room, &alice, "c2", "same")))
        .collect();
    for copy in &mut copies {
        let _ = poll_once(copy).await;
    }
    let mut answers = Vec::new();
    for copy in copies {
        answers.push(sent(
            tokio::time::timeout(HANG_GUARD, copy)
                .await
                .expect("answer"),
        ));
    }
    assert_eq!(answers.iter().filter(|a| !a.duplicate).count(), 1);
    assert!(answers.iter().all(|a| a.seq == answers[0].seq));

    // New writers over the same store still know both.
    let restarted = {
        let clock = ManualClock::at(T0 + 60_000);
        let fanout = Arc::new(LocalFanout::new(clock.clone()));
        let writer = RoomWriter::new(
            Arc::clone(&rig.store),
            fanout,
            clock,
            WriterConfig::default(),
        );
        factory.start(vec![writer.boxed()], 16).await
    };
    let after = sent(execute(&*restarted, send(&room, &alice, "c1", "hello")).await);
    assert_eq!((after.seq, after.duplicate), (first.seq, true));
    let conflict = execute(&*restarted, send(&room, &alice, "c2", "changed")).await;
    assert!(
        matches!(conflict, Err(ChatError::Conflict(_))),
        "{conflict:?}"
    );
    let answers = [
        ("c1".to_owned(), first.seq),
        ("c2".to_owned(), answers[0].seq),
    ];
    assert_logged_once(&*rig.store, &room, &answers).await;
}

/// A command that fails in a batch fails alone: the commands around it apply, contiguously.
pub async fn a_failing_command_fails_alone(factory: &dyn PipelineFactory) {
    let rig = rig(factory, 1, 1024).await;
    let (alice, mallory) = (user("alice"), user("mallory"));
    let (room, head) = create(&*rig.pipeline, &alice, "alone", &[]).await;

    let mut batch = [
        rig.pipeline.execute(send(&room, &alice, "a1", "one")),
        rig.pipeline
            .execute(send(&room, &mallory, "m1", "not a member")),
        rig.pipeline.execute(send(&room, &alice, "a2", "two")),
    ];
    for future in &mut batch {
        let _ = poll_once(future).await;
    }
    let [a1, m1, a2] = batch;
    let (a1, m1, a2) = (sent(a1.await), m1.await, sent(a2.await));

    assert!(m1.is_err(), "{m1:?}");
    assert_eq!((a1.seq, a2.seq), (head + 1, head + 2));
    let answers = [("a1".to_owned(), a1.seq), ("a2".to_owned(), a2.seq)];
    assert_logged_once(&*rig.store, &room, &answers).await;
}

/// `shard_of` is FNV-1a of the room id modulo the shard count: known values, the same on
/// every call, and rooms spread over the shards.
pub async fn shard_of_is_stable_and_spreads(_factory: &dyn PipelineFactory) {
    for (room, expected) in [
        ("", [0, 1, 2, 5, 37]),
        ("a", [0, 0, 5, 12, 12]),
        ("g.room", [0, 1, 3, 11, 43]),
        ("d.0123", [0, 1, 0, 11, 43]),
        ("chatwire", [0, 0, 6, 14, 30]),
    ] {
        let got = [1, 2, 7, 16, 64].map(|shards| shard_of(room, shards));
        assert_eq!(got, expected, "{room:?}");
    }
    assert_eq!(shard_of("g.room", 0), 0, "no shards counts as one");

    const SHARDS: usize = 8;
    const ROOMS: usize = 4_000;
    let alice = user("alice");
    let mut counts = [0_usize; SHARDS];
    for i in 0..ROOMS {
        let room = RoomId::group(&alice, &format!("spread-{i}"));
        let shard = shard_of(room.as_str(), SHARDS);
        assert_eq!(shard, shard_of(room.as_str(), SHARDS));
        counts[shard] += 1;
    }
    let fair = ROOMS / SHARDS;
    assert!(
        counts
            .iter()
            .all(|&n| n > fair * 8 / 10 && n < fair * 12 / 10),
        "{counts:?}"
    );
}

/// A shard whose queue is full answers RATE_LIMITED at once instead of waiting, while other
/// shards still take commands; the queued command runs, and a retry then succeeds.
pub async fn a_full_queue_is_rate_limited(factory: &dyn PipelineFactory) {
    let rig = rig(factory, 2, 1).await;
    let alice = user("alice");
    let rooms = rooms_over_shards(&alice, rig.shards, 2);
    let mut heads = Vec::new();
    for room in &rooms {
        let op = RoomOp::CreateGroup(CreateGroup {
            name: "queue".to_owned(),
            topic: String::new(),
            members: Vec::new(),
            history_visibility: v1::HistoryVisibility::Full,
            member_cap: 10,
            app_data: bytes::Bytes::new(),
        });
        match execute(&*rig.pipeline, command(room, &alice, op)).await {
            Ok(Outcome::Room { room, .. }) => heads.push(room.last_seq),
            other => panic!("expected a room, got {other:?}"),
        }
    }
    let (full, other) = (&rooms[0], &rooms[1]);

    // On this runtime the shards run only while the test waits: the first command fills the
    // first shard's queue of one.
    let mut queued = rig.pipeline.execute(send(full, &alice, "q1", "queued"));
    assert!(poll_once(&mut queued).await.is_pending());
    let mut refused = rig.pipeline.execute(send(full, &alice, "q2", "refused"));
    match poll_once(&mut refused).await {
        Poll::Ready(Err(ChatError::RateLimited { retry_after_ms })) => {
            assert!(retry_after_ms > 0);
        }
        other => panic!("expected RATE_LIMITED at once, got {other:?}"),
    }
    let mut elsewhere = rig
        .pipeline
        .execute(send(other, &alice, "e1", "other shard"));
    assert!(
        poll_once(&mut elsewhere).await.is_pending(),
        "other shards take commands"
    );

    let queued = sent(queued.await);
    assert_eq!(queued.seq, heads[0] + 1);
    assert_eq!(sent(elsewhere.await).seq, heads[1] + 1);
    let retried = sent(execute(&*rig.pipeline, send(full, &alice, "q2", "refused")).await);
    assert_eq!((retried.seq, retried.duplicate), (heads[0] + 2, false));
}
