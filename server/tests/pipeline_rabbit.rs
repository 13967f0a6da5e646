//! The RabbitMQ pipeline: the shared pipeline suite, two nodes sharing shard queues and a
//! store (clean leave and crash mid-burst), a full shard queue at the broker, shard
//! assignment, and the wire codec.
//!
//! ```sh
//! set -a; . .services/env; set +a
//! cargo test -p chatwire-server --test pipeline_rabbit
//! ```
//!
//! Needs `CHATWIRE_TEST_AMQP_URL`; a missing variable is a failure, never a skip. Every
//! pipeline gets its own queue prefix; the queues expire a minute after their last consumer.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chatwire_protocol::v1;
use chatwire_server::backend::embedded::{EmbeddedOptions, EmbeddedStore};
use chatwire_server::backend::fanout_local::LocalFanout;
use chatwire_server::backend::nodes::{MemoryRegistry, NodeRegistry};
use chatwire_server::backend::pipeline::{Pipeline, RoomExecutor};
use chatwire_server::backend::pipeline_rabbit::codec::{
    decode_command, decode_reply, encode_command, encode_reply,
};
use chatwire_server::backend::pipeline_rabbit::{RabbitConfig, RabbitPipeline, assign};
use chatwire_server::backend::store::Store;
use chatwire_server::chat::command::{
    CreateGroup, Outcome, RoomCommand, RoomOp, RoomSettings, SendOp, Verdict,
};
use chatwire_server::chat::error::ChatError;
use chatwire_server::chat::ids::RoomId;
use chatwire_server::clock::ManualClock;
use chatwire_server::writer::RoomWriter;
use chatwire_server::writer::draft::WriterConfig;
use support::pipeline_suite::{self, PipelineFactory, create, log, send, user};
use tempfile::TempDir;

const T0: i64 = 1_700_000_000_000;

/// Only a guard against hanging.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn amqp_url() -> String {
    match std::env::var("CHATWIRE_TEST_AMQP_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "CHATWIRE_TEST_AMQP_URL is not set: start the services with `scripts/services start` \
             and load them with `set -a; . .services/env; set +a`"
        ),
    }
}

fn unique(tag: &str) -> String {
    format!("test.{tag}.{}.", uuid::Uuid::new_v4().simple())
}

/// Test settings: a unique prefix, short rebalance interval, queues that expire.
fn config(prefix: &str, node: &str, shards: usize) -> RabbitConfig {
    let mut config = RabbitConfig::new(&amqp_url(), node, shards, prefix);
    config.queue_expires_ms = Some(60_000);
    config.rebalance_interval = Duration::from_millis(200);
    config.request_timeout = Duration::from_secs(10);
    config.failed_shard_rest = Duration::from_millis(500);
    config
}

fn writers(store: &Arc<dyn Store>, shards: usize) -> Vec<Box<dyn RoomExecutor>> {
    let clock = ManualClock::at(T0);
    let fanout = Arc::new(LocalFanout::new(clock.clone()));
    (0..shards)
        .map(|_| {
            RoomWriter::new(
                Arc::clone(store),
                fanout.clone(),
                clock.clone(),
                WriterConfig::default(),
            )
            .boxed()
        })
        .collect()
}

fn open_store(dir: &TempDir) -> Arc<dyn Store> {
    let options = EmbeddedOptions {
        sync: false,
        ..EmbeddedOptions::default()
    };
    Arc::new(EmbeddedStore::open(dir.path(), options).expect("open store"))
}

// ---------------------------------------------------------------------------------------------
// The shared suite

struct Rabbit;

#[async_trait]
impl PipelineFactory for Rabbit {
    async fn start(&self, writers: Vec<Box<dyn RoomExecutor>>, queue: usize) -> Arc<dyn Pipeline> {
        let mut config = config(&unique("suite"), "suite-node", writers.len());
        config.max_queue_length = queue;
        config.max_in_flight_per_shard = queue;
        let registry = Arc::new(MemoryRegistry::new(ManualClock::at(T0)));
        let pipeline = RabbitPipeline::start(config, writers, registry)
            .await
            .expect("start the RabbitMQ pipeline");
        Arc::new(pipeline)
    }
}

fn rabbit() -> Rabbit {
    Rabbit
}

pipeline_suite::pipeline_suite_tests!(rabbit);

// ---------------------------------------------------------------------------------------------
// Two nodes

/// Sends `id` through `nodes[first]`, then through the others in turn while the answer is a
/// retryable failure (UNAVAILABLE: a node stopped or died; RATE_LIMITED), with the same
/// client_msg_id each time.
async fn send_until_answered(
    nodes: &[Arc<RabbitPipeline>],
    first: usize,
    room: &RoomId,
    actor: &chatwire_server::chat::ids::UserId,
    id: &str,
) -> v1::SendResponse {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    for attempt in 0.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id}: never answered"
        );
        let node = &nodes[(first + attempt) % nodes.len()];
        match node.execute(send(room, actor, id, id)).await {
            Ok(Outcome::Sent(answer)) => return answer,
            Err(ChatError::Unavailable(_) | ChatError::RateLimited { .. }) => {
                tokio::task::yield_now().await;
            }
            other => panic!("{id}: unexpected answer {other:?}"),
        }
    }
    unreachable!()
}

/// Checks the room's log: seqs 1.. without a gap, each answered send exactly once at its
/// answered seq, no client_msg_id twice.
async fn assert_log(store: &dyn Store, room: &RoomId, answers: &BTreeMap<String, u64>) {
    let log = log(store, room).await;
    let seqs: Vec<u64> = log.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
    let mut seen = HashSet::new();
    let mut logged = BTreeMap::new();
    for (seq, id) in log {
        if let Some(id) = id {
            assert!(seen.insert(id.clone()), "{id} logged twice");
            logged.insert(id, seq);
        }
    }
    assert_eq!(&logged, answers, "every answered send once, at its seq");
}

/// Starts `tasks` senders that each send `each` messages to `room`, alternating between the
/// nodes, in order; `answered` counts answers as they come.
fn burst(
    nodes: &[Arc<RabbitPipeline>],
    room: &RoomId,
    tag: &str,
    tasks: usize,
    each: usize,
    answered: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<(String, v1::SendResponse)>>> {
    (0..tasks)
        .map(|t| {
            let (nodes, room, answered) = (nodes.to_vec(), room.clone(), Arc::clone(answered));
            let tag = tag.to_owned();
            tokio::spawn(async move {
                let alice = user("alice");
                let mut answers: Vec<(String, v1::SendResponse)> = Vec::new();
                for i in 0..each {
                    let id = format!("{tag}-t{t}-{i}");
                    let answer = send_until_answered(&nodes, t + i, &room, &alice, &id).await;
                    if let Some((_, last)) = answers.last() {
                        assert!(answer.seq > last.seq, "{id}: order kept within a task");
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                    answers.push((id, answer));
                }
                answers
            })
        })
        .collect()
}

async fn wait_for(answered: &AtomicUsize, count: usize) {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while answered.load(Ordering::SeqCst) < count {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Vec<(String, v1::SendResponse)>>>,
    answers: &mut BTreeMap<String, u64>,
) {
    for task in tasks {
        for (id, answer) in task.await.expect("sender task") {
            answers.insert(id, answer.seq);
        }
    }
}

/// Two nodes over one store and one set of queues: sends through either apply once and in
/// order; when one node leaves cleanly and when another is killed mid-burst, the remaining
/// node takes its shards over, every answered send is logged once, and retries with the
/// same client_msg_id are not duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_survive_a_leave_and_a_crash() {
    const SHARDS: usize = 4;
    let dir = TempDir::new().expect("temporary folder");
    let store = open_store(&dir);
    let prefix = unique("two-nodes");
    let registry: Arc<dyn NodeRegistry> = Arc::new(MemoryRegistry::new(ManualClock::at(T0)));
    let start = |node: &str| {
        let (config, writers, registry) = (
            config(&prefix, node, SHARDS),
            writers(&store, SHARDS),
            Arc::clone(&registry),
        );
        async move {
            Arc::new(
                RabbitPipeline::start(config, writers, registry)
                    .await
                    .expect("start a node"),
            )
        }
    };
    let a = start("node-a").await;
    let b = start("node-b").await;
    // Two live nodes: each is owner or standby of every shard.
    assert_eq!(a.rebalance().await.expect("rebalance"), vec![0, 1, 2, 3]);
    assert_eq!(b.rebalance().await.expect("rebalance"), vec![0, 1, 2, 3]);

    let alice = user("alice");
    let (room, _) = create(&*a, &alice, "two-nodes", &[]).await;
    let mut answers = BTreeMap::new();

    // Phase 1: both nodes, then A leaves cleanly mid-burst.
    let answered = Arc::new(AtomicUsize::new(0));
    let nodes = vec![Arc::clone(&a), Arc::clone(&b)];
    let tasks = burst(&nodes, &room, "leave", 4, 30, &answered);
    wait_for(&answered, 40).await;
    a.shutdown().await;
    assert!(
        !registry
            .live_nodes()
            .await
            .expect("live nodes")
            .iter()
            .any(|n| n.node_id == "node-a"),
        "a clean stop leaves the registry"
    );
    collect(tasks, &mut answers).await;
    assert_log(&*store, &room, &answers).await;

    // Phase 2: a new node C joins, then B is killed mid-burst.
    let c = start("node-c").await;
    assert_eq!(c.rebalance().await.expect("rebalance"), vec![0, 1, 2, 3]);
    let answered = Arc::new(AtomicUsize::new(0));
    let nodes = vec![Arc::clone(&b), Arc::clone(&c)];
    let tasks = burst(&nodes, &room, "kill", 4, 30, &answered);
    wait_for(&answered, 40).await;
    b.kill();
    collect(tasks, &mut answers).await;
    assert_log(&*store, &room, &answers).await;

    // Retries of answered sends (through the survivor) are duplicates of the original.
    for id in ["leave-t0-0", "kill-t1-29"] {
        let again = send_until_answered(&[Arc::clone(&c)], 0, &room, &alice, id).await;
        assert_eq!((again.seq, again.duplicate), (answers[id], true), "{id}");
    }
    assert_log(&*store, &room, &answers).await;
    assert_eq!(answers.len(), 4 * 30 * 2);

    c.delete_queues().await.expect("delete the queues");
    c.shutdown().await;
}

/// A node joining a running one takes the shards it now ranks among the top two for, and
/// a node stopping releases its shards to the ones left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_follow_the_live_nodes() {
    const SHARDS: usize = 16;
    let dir = TempDir::new().expect("temporary folder");
    let store = open_store(&dir);
    let prefix = unique("assign");
    let registry: Arc<dyn NodeRegistry> = Arc::new(MemoryRegistry::new(ManualClock::at(T0)));
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        let node = RabbitPipeline::start(
            config(&prefix, id, SHARDS),
            writers(&store, SHARDS),
            Arc::clone(&registry),
        )
        .await
        .expect("start a node");
        nodes.push(node);
    }
    let live: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
    for node in &nodes {
        let held = node.rebalance().await.expect("rebalance");
        assert_eq!(held, assign::shards_of(node.node_id(), &live, SHARDS));
        assert!(
            held.len() < SHARDS,
            "with three nodes, a node holds only some shards"
        );
    }
    // Each shard has exactly an owner and a standby.
    let mut per_shard = vec![0; SHARDS];
    for node in &nodes {
        for shard in assign::shards_of(node.node_id(), &live, SHARDS) {
            per_shard[shard] += 1;
        }
    }
    assert!(per_shard.iter().all(|&n| n == 2), "{per_shard:?}");

    // Commands to rooms of every shard are served.
    let alice = user("alice");
    for i in 0..8 {
        create(&nodes[i % 3], &alice, &format!("assign-{i}"), &[]).await;
    }

    // n3 stops: the two left hold every shard.
    let n3 = nodes.pop().expect("three nodes");
    n3.shutdown().await;
    for node in &nodes {
        assert_eq!(
            node.rebalance().await.expect("rebalance"),
            (0..SHARDS).collect::<Vec<_>>()
        );
    }
    for i in 8..16 {
        create(&nodes[i % 2], &alice, &format!("assign-{i}"), &[]).await;
    }
    nodes[0].delete_queues().await.expect("delete the queues");
    for node in nodes {
        node.shutdown().await;
    }
}

/// With no consumer, a shard queue at its max length nacks further publishes, which answer
/// RATE_LIMITED with a retry hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shard_queue_nacks_into_rate_limited() {
    let prefix = unique("full");
    let mut config = config(&prefix, "sender-only", 1);
    config.max_queue_length = 2;
    config.request_timeout = Duration::from_secs(1);
    let registry = Arc::new(MemoryRegistry::new(ManualClock::at(T0)));
    // No writers: this node only sends, so nothing drains the queue.
    let pipeline = Arc::new(
        RabbitPipeline::start(config, Vec::new(), registry)
            .await
            .expect("start a sending node"),
    );
    let room = RoomId::group(&user("alice"), "full");
    // Quorum queues notice the limit a little late: publish in waves until one is refused.
    let mut limited = 0;
    let mut published = 0;
    for wave in 0..10 {
        published += 10;
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let (pipeline, room) = (Arc::clone(&pipeline), room.clone());
                let id = format!("f{wave}-{i}");
                tokio::spawn(async move {
                    pipeline
                        .execute(send(&room, &user("alice"), &id, "x"))
                        .await
                })
            })
            .collect();
        for task in tasks {
            match task.await.expect("task") {
                Err(ChatError::RateLimited { retry_after_ms }) => {
                    assert!(retry_after_ms > 0);
                    limited += 1;
                }
                // Queued, but no writer answers.
                Err(ChatError::Unavailable(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        if limited > 0 {
            break;
        }
    }
    assert!(limited > 0, "a full queue nacks publishes");
    let held = pipeline.delete_queues().await.expect("delete the queues");
    assert!(
        held < published,
        "the queue held {held} of {published} messages: the limit was never enforced"
    );
    pipeline.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Assignment and codec (no broker)

#[test]
fn rendezvous_moves_only_the_shards_of_a_changed_node() {
    const SHARDS: usize = 64;
    let two: Vec<String> = vec!["a".into(), "b".into()];
    let three: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
    for node in ["a", "b"] {
        assert_eq!(assign::shards_of(node, &two, SHARDS).len(), SHARDS);
    }
    // A node missing from the registry still counts itself.
    assert_eq!(assign::shards_of("x", &[], 4), vec![0, 1, 2, 3]);
    // With c added, a and b keep every shard where c is not in the top two.
    for shard in 0..SHARDS {
        let ranked = assign::consumers_of(shard, &["a", "b", "c"]);
        assert_eq!(ranked.len(), 2);
        for node in ["a", "b", "c"] {
            let holds = assign::shards_of(node, &three, SHARDS).contains(&shard);
            assert_eq!(holds, ranked.contains(&node));
        }
    }
    let c = assign::shards_of("c", &three, SHARDS).len();
    assert!(c > SHARDS / 3 && c < SHARDS, "c takes a fair part: {c}");
}

fn content(text: &str) -> v1::Content {
    v1::Content {
        text: text.to_owned(),
        mentions: vec!["bob".into()],
        ..Default::default()
    }
}

fn every_command() -> Vec<RoomCommand> {
    let alice = user("alice");
    let room = RoomId::group(&alice, "codec");
    let ops = vec![
        RoomOp::CreateGroup(CreateGroup {
            name: "n".into(),
            topic: "t".into(),
            members: vec![user("bob"), user("carol")],
            history_visibility: v1::HistoryVisibility::Full,
            member_cap: 42,
            app_data: bytes::Bytes::from_static(b"\x00app"),
        }),
        RoomOp::OpenDirect { other: user("bob") },
        RoomOp::UpdateRoom(RoomSettings::default()),
        RoomOp::UpdateRoom(RoomSettings {
            name: Some(String::new()),
            topic: Some("topic".into()),
            history_visibility: Some(v1::HistoryVisibility::SinceJoin),
            member_cap: Some(0),
            app_data: Some(bytes::Bytes::new()),
        }),
        RoomOp::AddMembers {
            users: vec![user("dave")],
            role: v1::Role::Admin,
        },
        RoomOp::RemoveMember { user: user("dave") },
        RoomOp::SetRole {
            user: user("bob"),
            role: v1::Role::Owner,
        },
        RoomOp::Leave,
        RoomOp::Send(SendOp {
            client_msg_id: "c1".into(),
            content: content("hi"),
            reply_to_seq: 3,
            thread_root_seq: 2,
        }),
        RoomOp::Edit {
            target_seq: 7,
            content: content("edited"),
        },
        RoomOp::Delete {
            target_seq: 7,
            reason: String::new(),
        },
        RoomOp::Delete {
            target_seq: 7,
            reason: "spam".into(),
        },
        RoomOp::ModeratedSend {
            send: SendOp {
                client_msg_id: "c-2".into(),
                content: content("what the heck"),
                reply_to_seq: 0,
                thread_root_seq: 0,
            },
            verdict: Verdict {
                score: 60,
                flagged: true,
                reasons: vec!["words.mask".into(), "spam.repeat".into()],
                masked: Some(content("what the ****")),
            },
        },
        RoomOp::Restrict {
            user: user("bob"),
            until_ms: 1_700_000_000_000,
            reason: "flood".into(),
        },
        RoomOp::React {
            target_seq: 7,
            emoji: "👍".into(),
            add: true,
        },
        RoomOp::React {
            target_seq: 7,
            emoji: "👍".into(),
            add: false,
        },
    ];
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| RoomCommand {
            room: room.clone(),
            actor: alice.clone(),
            op,
            trace_id: format!("trace-{i}"),
            privileged: i % 2 == 0,
        })
        .collect()
}

#[test]
fn codec_round_trips_every_command_kind() {
    let commands = every_command();
    let kinds: HashSet<_> = commands
        .iter()
        .map(|c| std::mem::discriminant(&c.op))
        .collect();
    assert_eq!(kinds.len(), 13, "every RoomOp variant");
    for command in commands {
        let decoded = decode_command(&encode_command(&command)).expect("decode");
        assert_eq!(decoded, command);
    }
    assert!(decode_command(b"\xff\xff").is_err());
    assert!(decode_command(&[]).is_err(), "a command without an op");
}

#[test]
fn codec_round_trips_every_answer() {
    let room = v1::Room {
        id: "g.1".into(),
        name: "n".into(),
        last_seq: 9,
        ..Default::default()
    };
    let member = v1::Member {
        user_id: "alice".into(),
        ..Default::default()
    };
    let answers: Vec<Result<Outcome, ChatError>> = vec![
        Ok(Outcome::Room {
            room: room.clone(),
            me: Some(member.clone()),
            created: true,
        }),
        Ok(Outcome::Room {
            room: room.clone(),
            me: None,
            created: false,
        }),
        Ok(Outcome::Sent(v1::SendResponse {
            seq: 4,
            ordinal: 2,
            duplicate: true,
            ..Default::default()
        })),
        Ok(Outcome::Updated { room, seq: 0 }),
        Ok(Outcome::Added(vec![member])),
        Ok(Outcome::Edited {
            seq: 5,
            edited_at_ms: T0,
        }),
        Ok(Outcome::Seq(6)),
        Err(ChatError::Unauthenticated),
        Err(ChatError::TokenRefused),
        Err(ChatError::UnknownValue { field: "role" }),
        Err(ChatError::NotFound),
        Err(ChatError::MessageNotFound {
            field: "target_seq",
        }),
        Err(ChatError::PermissionDenied("needs a higher role")),
        Err(ChatError::invalid("role", "owners are made by SetRole")),
        Err(ChatError::TooLarge {
            field: "members",
            reason: "over the cap".into(),
        }),
        Err(ChatError::Conflict("room already exists")),
        Err(ChatError::FailedPrecondition("the message was deleted")),
        Err(ChatError::RateLimited {
            retry_after_ms: 250,
        }),
        Err(ChatError::Unavailable("store down".into())),
        Err(ChatError::Unsupported("threads")),
        Err(ChatError::ContentRejected("the text holds a listed word")),
        Err(ChatError::Restricted {
            retry_after_ms: 5_000,
            until_ms: 1_700_000_005_000,
        }),
        Err(ChatError::Internal),
    ];
    for answer in answers {
        let decoded = decode_reply(&encode_reply(&answer)).expect("decode");
        assert_eq!(decoded, answer);
    }
    assert!(decode_reply(&[]).is_err(), "a reply without a result");
}
