//! The storage suite against the ScyllaDB store on the project's Apache Cassandra (each factory
//! migrates a fresh keyspace with a random name and drops it at the end), plus the
//! distributed store's own behaviours: idempotent migrate, the typed error of an unmigrated
//! keyspace, the roll-forward of a crashed writer's pending batch, and the node registry.
//!
//! ```sh
//! set -a; . .services/env; set +a
//! cargo test -p chatwire-server --test store_scylla
//! ```

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chatwire_server::backend::nodes::{LiveNode, NodeRegistry};
use chatwire_server::backend::scylla::{
    ClusterMeta, SCHEMA_VERSION, ScyllaError, ScyllaOptions, ScyllaStore, migrate,
};
use chatwire_server::backend::store::{AppendOutcome, HistoryAnchor, RoomLog, Store};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use support::store_suite::{self, RoomScript, StoreFactory, apply, at, history, room_id, user};
use tokio::sync::Mutex;

/// A small bucket width, so tests spread events over many buckets.
const WIDTH_MS: i64 = 1_000;

/// The CQL contact points of the project's Cassandra; the test fails without them.
fn nodes() -> Vec<String> {
    let raw = std::env::var("CHATWIRE_TEST_CQL_NODES")
        .expect("CHATWIRE_TEST_CQL_NODES is not set: `set -a; . .services/env; set +a`");
    raw.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A keyspace name no other test uses.
fn fresh_keyspace() -> String {
    format!("cw_test_{}", uuid::Uuid::new_v4().simple())
}

fn options(keyspace: &str, bucket_width_ms: i64) -> ScyllaOptions {
    ScyllaOptions {
        nodes: nodes(),
        keyspace: keyspace.to_owned(),
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(20),
        bucket_width_ms,
        shards: 8,
    }
}

async fn raw_session() -> Session {
    SessionBuilder::new()
        .known_nodes(nodes())
        .build()
        .await
        .expect("connect to Cassandra")
}

/// One keyspace per factory, migrated on the first open and dropped with the factory.
struct Scylla {
    keyspace: String,
    migrated: Mutex<bool>,
}

fn scylla() -> Scylla {
    Scylla {
        keyspace: fresh_keyspace(),
        migrated: Mutex::new(false),
    }
}

impl Scylla {
    async fn store(&self) -> ScyllaStore {
        let options = options(&self.keyspace, WIDTH_MS);
        let mut migrated = self.migrated.lock().await;
        if !*migrated {
            migrate(&options, 1).await.expect("migrate");
            *migrated = true;
        }
        drop(migrated);
        ScyllaStore::connect(&options).await.expect("connect")
    }
}

impl Drop for Scylla {
    fn drop(&mut self) {
        support::cluster::drop_keyspace(nodes(), self.keyspace.clone());
    }
}

#[async_trait]
impl StoreFactory for Scylla {
    fn bucket_width_ms(&self) -> i64 {
        WIDTH_MS
    }

    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.store().await)
    }
}

store_suite::store_suite_tests!(scylla);
support::contacts_suite::contacts_suite_tests!(scylla);

mod outbox {
    use super::scylla;
    crate::support::outbox_suite::outbox_suite_tests!(scylla);
}

mod reviews {
    use super::scylla;
    crate::support::reviews_suite::reviews_suite_tests!(scylla);
}

/// A writer that crashed after its transaction applied, before materializing or publishing
/// (issue 15 H4): the shard's next writer rolls the batch forward and publishes its events
/// from the log on its first tick, then clears the room's outbox mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_writers_unpublished_batch_is_published_by_the_next_writer() {
    use support::outbox_suite::{Queue, writer};
    let factory = scylla();
    let store = factory.store().await;
    let alice = user("alice");
    let room = room_id("g:crash-outbox");
    let mut script = RoomScript::new(&room);
    let created = script.create(at(&factory, 0, 0), &alice);
    apply(&store, &room, &created).await;
    let mut crashed = script.send(at(&factory, 1, 0), &alice, "published later", 0);
    crashed.mark_outbox = true;
    let outcome = store
        .append_without_materializing(&room, created.head.seq, &crashed)
        .await
        .expect("append");
    assert_eq!(outcome, AppendOutcome::Applied);

    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let queue = Queue::open();
    let clock = chatwire_server::clock::ManualClock::at(at(&factory, 2, 0));
    let mut next = writer(Arc::clone(&shared), &queue, clock);
    next.tick().await;
    let queued = queue.drain().await;
    let id = format!("{room}:{}:message.created", crashed.head.seq);
    assert_eq!(
        queued.iter().filter(|q| **q == id).count(),
        1,
        "{id} queued once: {queued:?}"
    );
    assert!(shared.outbox_marks(0, 1).await.expect("marks").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_twice_is_a_noop_and_the_recorded_metadata_wins() {
    let factory = scylla();
    let first = migrate(&options(&factory.keyspace, WIDTH_MS), 1)
        .await
        .expect("migrate");
    let expected = ClusterMeta {
        bucket_width_ms: WIDTH_MS,
        shards: 8,
    };
    assert_eq!(first, expected);
    let mut other = options(&factory.keyspace, 3_600_000);
    other.shards = 64;
    let second = migrate(&other, 1).await.expect("migrate again");
    assert_eq!(second, expected, "the first migrate's metadata is kept");

    let store = ScyllaStore::connect(&other).await.expect("connect");
    assert_eq!(store.meta(), expected);
    // The data written before the second migrate is still there.
    let (alice, room) = (user("alice"), room_id("g:migrate"));
    let mut script = RoomScript::new(&room);
    let batch = script.create(at(&factory, 0, 0), &alice);
    apply(&store, &room, &batch).await;
    migrate(&other, 1).await.expect("migrate a third time");
    assert_eq!(
        store.head(&room).await.expect("head"),
        Some(batch.head),
        "migrate leaves data alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_missing_or_foreign_schema() {
    let keyspace = fresh_keyspace();
    let missing = ScyllaStore::connect(&options(&keyspace, WIDTH_MS)).await;
    assert!(
        matches!(&missing, Err(ScyllaError::NotMigrated { keyspace: k }) if *k == keyspace),
        "{missing:?}"
    );

    let factory = scylla();
    let opts = options(&factory.keyspace, WIDTH_MS);
    migrate(&opts, 1).await.expect("migrate");
    let session = raw_session().await;
    let bump = format!(
        "UPDATE {}.meta SET value = ? WHERE name = 'schema_version'",
        factory.keyspace
    );
    session
        .query_unpaged(bump, (SCHEMA_VERSION + 1,))
        .await
        .expect("bump the schema version");
    let foreign = ScyllaStore::connect(&opts).await;
    assert!(
        matches!(
            foreign,
            Err(ScyllaError::SchemaVersion { found, expected, .. })
                if found == SCHEMA_VERSION + 1 && expected == SCHEMA_VERSION
        ),
        "{foreign:?}"
    );
    let bad = ScyllaStore::connect(&options("no-dashes", WIDTH_MS)).await;
    assert!(matches!(bad, Err(ScyllaError::InvalidOption(_))), "{bad:?}");
}

/// The `pending` column of a room's head row.
/// The room's batch not yet materialized: its last batch while `materialized_seq` is below
/// the head (the row keeps the last batch after it was materialized).
async fn pending_of(keyspace: &str, room: &str) -> Option<Vec<u8>> {
    let session = raw_session().await;
    let select =
        format!("SELECT seq, pending, materialized_seq FROM {keyspace}.heads WHERE room = ?");
    let rows = session
        .query_unpaged(select, (room,))
        .await
        .expect("select pending")
        .into_rows_result()
        .expect("rows");
    let (seq, pending, materialized): (i64, Option<Vec<u8>>, Option<i64>) =
        rows.single_row().expect("one head row");
    pending.filter(|_| materialized.unwrap_or(0) < seq)
}

/// One Paxos round per appended batch (issue 15 M4: clearing the pending batch was a second
/// lightweight transaction); the batch is then materialized, and a new reader sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_costs_one_paxos_round() {
    let factory = scylla();
    let store = factory.store().await;
    let alice = user("alice");
    let room = room_id("g:one-round");
    let mut script = RoomScript::new(&room);
    apply(&store, &room, &script.create(at(&factory, 0, 0), &alice)).await;
    let before = store.lwt_rounds();
    for i in 0..5 {
        let batch = script.send(at(&factory, 0, 1 + i), &alice, "one round", 0);
        apply(&store, &room, &batch).await;
    }
    assert_eq!(store.lwt_rounds() - before, 5, "one transaction per batch");
    assert_eq!(pending_of(&factory.keyspace, "g:one-round").await, None);
    let head = store.head(&room).await.expect("head").expect("room");
    assert_eq!(head.seq, 7, "readers see every batch as materialized");
    assert_eq!(
        store
            .read_events(&room, 0, 100, usize::MAX)
            .await
            .expect("read")
            .len(),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_writers_pending_batch_is_rolled_forward_once() {
    let factory = scylla();
    let store = factory.store().await;
    let (alice, bob) = (user("alice"), user("bob"));

    for (name, via_load_room) in [("g:crash-head", false), ("g:crash-load", true)] {
        let room = room_id(name);
        let mut script = RoomScript::new(&room);
        let created = script.create(at(&factory, 0, 0), &alice);
        apply(&store, &room, &created).await;
        assert_eq!(pending_of(&factory.keyspace, name).await, None);
        let before_crash = script.clone();

        // The writer's transaction applies, then it "crashes" before materializing.
        let crashed = store_suite::merge([
            script.join(
                at(&factory, 1, 0),
                &bob,
                chatwire_protocol::v1::Role::Member,
            ),
            script.send(at(&factory, 2, 0), &bob, "survives", 0),
        ]);
        let outcome = store
            .append_without_materializing(&room, 2, &crashed)
            .await
            .expect("append");
        assert_eq!(outcome, AppendOutcome::Applied);
        assert!(pending_of(&factory.keyspace, name).await.is_some());
        let before = store.read_events(&room, 2, 10, usize::MAX).await;
        assert!(before.expect("read").is_empty(), "not materialized yet");

        // Readers see the head the batch was appended on, and write nothing (issue 15 H2).
        let base = store.head(&room).await.expect("head").expect("room");
        assert_eq!(
            (base.seq, base.ordinal),
            (created.head.seq, created.head.ordinal)
        );
        assert!(
            pending_of(&factory.keyspace, name).await.is_some(),
            "a reader leaves the pending batch to the writer"
        );
        let unread = store.read_events(&room, 2, 10, usize::MAX).await;
        assert!(
            unread.expect("read").is_empty(),
            "a reader materialized nothing"
        );

        // The writer taking the room over rolls it forward.
        if via_load_room {
            let snapshot = store.load_room(&room).await.expect("load").expect("room");
            assert_eq!(snapshot.head, crashed.head);
            assert_eq!(snapshot.members.len(), 2, "bob's membership materialized");
        } else {
            // The writer of the next batch is fenced at the materialized head it asked for,
            // learns the real head, and takes the room over.
            let stale = before_crash
                .clone()
                .send(at(&factory, 3, 0), &alice, "stale", 0);
            let fenced = store.append(&room, 2, &stale).await.expect("append");
            assert_eq!(
                fenced,
                AppendOutcome::Fenced {
                    current: crashed.head
                }
            );
            let snapshot = store.load_room(&room).await.expect("load").expect("room");
            assert_eq!(snapshot.head, crashed.head);
        }
        assert_eq!(pending_of(&factory.keyspace, name).await, None, "cleared");
        // Reading the head again does not apply it twice.
        assert_eq!(store.head(&room).await.expect("head"), Some(crashed.head));
        let events = store_suite::all_events(&store, &room).await;
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4], "each event exactly once");
        assert_eq!(&events[2..], &crashed.events[..]);
        let page = store
            .read_messages(&room, history(HistoryAnchor::Latest, 10))
            .await
            .expect("history");
        assert_eq!(page.messages, vec![script.messages[&4].clone()]);
        let hit = store
            .dedupe(&room, &bob, "c4", at(&factory, 2, 0))
            .await
            .expect("dedupe");
        assert_eq!(hit.map(|e| e.seq), Some(4));
        let bobs = chatwire_server::backend::store::Directory::user_room(&store, &bob, &room)
            .await
            .expect("user room")
            .expect("member");
        assert_eq!((bobs.joined_seq, bobs.read_seq), (3, 4));

        // The log goes on from the rolled-forward head.
        let next = script.send(at(&factory, 3, 0), &alice, "next", 0);
        apply(&store, &room, &next).await;
        assert_eq!(
            store.head(&room).await.expect("head").map(|h| h.seq),
            Some(5)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registry_lists_live_nodes_and_forgets_leavers_and_expired_ones() {
    let factory = scylla();
    let store = factory.store().await;
    let node = |id: &str, address: &str| LiveNode {
        node_id: id.to_owned(),
        address: address.to_owned(),
    };
    assert!(store.live_nodes().await.expect("live").is_empty());
    let long = 600_000;
    store
        .heartbeat(&node("n-b", "10.0.0.2:443"), long)
        .await
        .expect("heartbeat");
    store
        .heartbeat(&node("n-a", "10.0.0.1:443"), long)
        .await
        .expect("heartbeat");
    store
        .heartbeat(&node("n-c", ""), long)
        .await
        .expect("heartbeat");
    store
        .heartbeat(&node("n-a", "10.0.0.9:443"), long)
        .await
        .expect("renew");
    assert_eq!(
        store.live_nodes().await.expect("live"),
        vec![
            node("n-a", "10.0.0.9:443"),
            node("n-b", "10.0.0.2:443"),
            node("n-c", ""),
        ]
    );

    store.leave("n-b").await.expect("leave");
    store.leave("n-b").await.expect("leave twice");
    assert_eq!(
        store.live_nodes().await.expect("live"),
        vec![node("n-a", "10.0.0.9:443"), node("n-c", "")]
    );

    // A node that stops renewing a 1-second heartbeat disappears on its own.
    store
        .heartbeat(&node("n-short", ""), 1_000)
        .await
        .expect("heartbeat");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live = store.live_nodes().await.expect("live");
        if !live.iter().any(|n| n.node_id == "n-short") {
            assert_eq!(live, vec![node("n-a", "10.0.0.9:443"), node("n-c", "")]);
            break;
        }
        assert!(Instant::now() < deadline, "the 1 s heartbeat never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
