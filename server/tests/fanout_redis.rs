//! The fan-out suite against the Redis fan-out of the distributed backend, plus what only a
//! cluster shows: two nodes on one Redis (room events, user events, closes and presence across
//! nodes, a node that stops heartbeating), and a Redis killed and restarted in the middle of a
//! run of published batches. Needs Redis: fails (never skips) when `CHATWIRE_TEST_REDIS_URL` is
//! unset; the kill test starts its own `redis-server` on a free port.
//!
//! ```sh
//! scripts/services start && set -a && . .services/env && set +a
//! cargo test -p chatwire-server --test fanout_redis
//! ```

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chatwire_protocol::v1;
use chatwire_server::backend::embedded::{EmbeddedOptions, EmbeddedStore};
use chatwire_server::backend::fanout::{Audience, Delivery, Fanout};
use chatwire_server::backend::fanout_redis::{RedisFanout, RedisFanoutConfig};
use chatwire_server::backend::store::{Batch, Head, RoomLog};
use chatwire_server::clock::{Clock, ManualClock};
use support::fanout_suite::{self, FanoutFactory, Session, attach, events, room, tagged, user};

/// Generous bound for anything that must happen; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

fn redis_url() -> String {
    match std::env::var("CHATWIRE_TEST_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "CHATWIRE_TEST_REDIS_URL is not set: start the services with `scripts/services start` \
             and load them with `set -a; . .services/env; set +a` (scripts/test does both)"
        ),
    }
}

/// A key prefix unique to this call, this process and this run.
fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("chatwire-test:fo:{}:{nanos}:{n}:", std::process::id())
}

/// A store in a temporary folder (kept alive by the returned guard).
fn temp_store() -> (Arc<EmbeddedStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = EmbeddedOptions {
        sync: false,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).expect("open store");
    (Arc::new(store), dir)
}

/// Short intervals, so that heartbeats, expiry and head checks happen within a test.
fn config(url: &str, prefix: &str, node: &str) -> RedisFanoutConfig {
    let mut config = RedisFanoutConfig::new(url, prefix, node);
    config.heartbeat_interval = Duration::from_millis(200);
    config.node_ttl = Duration::from_secs(3);
    config.head_check_interval = Duration::from_millis(100);
    config.store_check_every = 3;
    config.max_backoff = Duration::from_millis(400);
    config
}

async fn node(
    url: &str,
    prefix: &str,
    id: &str,
    store: &Arc<EmbeddedStore>,
    clock: Arc<dyn Clock>,
) -> Arc<RedisFanout> {
    node_with(config(url, prefix, id), store, clock).await
}

async fn node_with(
    config: RedisFanoutConfig,
    store: &Arc<EmbeddedStore>,
    clock: Arc<dyn Clock>,
) -> Arc<RedisFanout> {
    let log: Arc<dyn RoomLog> = store.clone();
    Arc::new(
        RedisFanout::connect(config, log, clock)
            .await
            .unwrap_or_else(|e| panic!("Redis fan-out: {e}")),
    )
}

/// Makes one node per call, on the shared test Redis, under a prefix no other node uses.
struct Redis {
    url: String,
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

#[async_trait]
impl FanoutFactory for Redis {
    async fn fanout(&self, clock: Arc<dyn Clock>) -> Arc<dyn Fanout> {
        let (store, dir) = temp_store();
        self.dirs.lock().expect("dirs").push(dir);
        node(&self.url, &unique_prefix(), "solo", &store, clock).await
    }
}

fn redis() -> Redis {
    Redis {
        url: redis_url(),
        dirs: Mutex::default(),
    }
}

fanout_suite::fanout_suite_tests!(redis);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Polls `check` until it holds (panics after [`DEADLINE`]).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads room deliveries until seqs 1..=last arrived; every other delivery is a failure.
async fn collect_seqs(session: &mut Session, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seqs.last().copied().unwrap_or(0) < last {
        let next = tokio::time::timeout_at(deadline, session.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only got {seqs:?} of 1..={last}"))
            .expect("link open");
        match next {
            Delivery::Room(events) => seqs.extend(events.iter().map(|e| e.seq)),
            other => panic!("expected room events, got {other:?}"),
        }
    }
    seqs
}

/// Appends events `seqs` (contiguous, after the current head) to the store, as a writer does.
async fn append(
    store: &EmbeddedStore,
    g: &chatwire_server::chat::ids::RoomId,
    seqs: std::ops::RangeInclusive<u64>,
) -> Arc<[v1::RoomEvent]> {
    let batch = events(g, seqs.clone());
    let expected = seqs.start() - 1;
    let last = batch.last().expect("non-empty");
    let head = Head {
        seq: last.seq,
        ordinal: last.seq,
        ts_ms: last.ts_ms,
    };
    let outcome = store
        .append(
            g,
            expected,
            &Batch {
                head,
                events: batch.to_vec(),
                writes: Vec::new(),
                mark_outbox: false,
            },
        )
        .await
        .expect("append");
    assert_eq!(
        outcome,
        chatwire_server::backend::store::AppendOutcome::Applied
    );
    batch
}

// ---------------------------------------------------------------------------------------------
// Two nodes

/// A session on node B receives node A's room events, in order, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_cross_nodes_in_order() {
    let (url, prefix) = (redis_url(), unique_prefix());
    let (store, _dir) = temp_store();
    let clock = ManualClock::at(1_000);
    let a = node(&url, &prefix, "a", &store, clock.clone()).await;
    let b = node(&url, &prefix, "b", &store, clock.clone()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let _on_a = attach(&*a, 1, &alice, 1024);
    let mut on_b = attach(&*b, 2, &bob, 1024);
    let g = room("g.cross");

    for first in (1..=40).step_by(4) {
        let batch = append(&store, &g, first..=first + 3).await;
        a.publish_room(&g, batch, &Audience::users([alice.clone(), bob.clone()]));
    }

    assert_eq!(
        collect_seqs(&mut on_b, 40).await,
        (1..=40).collect::<Vec<_>>()
    );
    on_b.assert_quiet(&*b).await;
}

/// User events, session events and closes reach the user's sessions on the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_and_closes_cross_nodes() {
    let (url, prefix) = (redis_url(), unique_prefix());
    let (store, _dir) = temp_store();
    let clock = ManualClock::at(1_000);
    let a = node(&url, &prefix, "a", &store, clock.clone()).await;
    let b = node(&url, &prefix, "b", &store, clock.clone()).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut a1 = attach(&*a, 10, &alice, 64);
    let mut a2 = attach(&*b, 20, &alice, 64);
    let mut bob_b = attach(&*b, 21, &bob, 64);
    eventually("node A lists alice's session on B", || {
        a.sessions_of(&alice).contains(&20)
    })
    .await;
    let mut listed = a.sessions_of(&alice);
    listed.sort_unstable();
    assert_eq!(listed, vec![10, 20]);

    a.publish_user(&alice, tagged("everyone"), None);
    a.publish_user(&alice, tagged("not-20"), Some(20));
    assert!(a.publish_session(20, tagged("just-20")));
    assert_eq!(a1.user_event().await, tagged("everyone"));
    assert_eq!(a1.user_event().await, tagged("not-20"));
    assert_eq!(a2.user_event().await, tagged("everyone"));
    assert_eq!(a2.user_event().await, tagged("just-20"));
    a2.assert_quiet(&*b).await;

    assert_eq!(a.close_sessions(Some(&alice), v1::CloseCode::Revoked), 2);
    assert_eq!(a1.close().await, v1::CloseCode::Revoked);
    assert_eq!(a2.close().await, v1::CloseCode::Revoked);
    bob_b.assert_quiet(&*b).await;
    a1.assert_quiet(&*a).await;
}

/// Presence of a user with sessions on both nodes: online with the first, offline only when
/// the last one, on either node, ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_nodes() {
    let (url, prefix) = (redis_url(), unique_prefix());
    let (store, _dir) = temp_store();
    let clock = ManualClock::at(1_000);
    let a = node(&url, &prefix, "a", &store, clock.clone()).await;
    let b = node(&url, &prefix, "b", &store, clock.clone()).await;
    let (alice, wendy) = (user("alice"), user("wendy"));
    let mut watcher = attach(&*a, 100, &wendy, 64);
    a.watch_presence(100, std::slice::from_ref(&alice), &[], 10)
        .expect("within the cap");

    clock.set(2_000);
    let _b1 = attach(&*b, 200, &alice, 16);
    let online = watcher.presence().await;
    assert_eq!((online.user_id.as_str(), online.online), ("alice", true));
    assert!(a.presence(&alice).online);

    let _a1 = attach(&*a, 101, &alice, 16);
    clock.set(3_000);
    b.detach(200);
    eventually("node A forgets alice's session on B", || {
        a.sessions_of(&alice) == vec![101]
    })
    .await;
    assert!(a.presence(&alice).online, "still online on node A");
    watcher.assert_quiet(&*a).await;

    clock.set(4_000);
    a.detach(101);
    assert_eq!(
        watcher.presence().await,
        v1::Presence {
            user_id: "alice".to_owned(),
            online: false,
            last_seen_ms: 4_000,
        }
    );
    eventually("node B sees alice offline", || !b.presence(&alice).online).await;
    assert_eq!(b.presence(&alice).last_seen_ms, 4_000);
}

/// A node that stops heartbeating disappears: its sessions leave the other nodes' lists and
/// presence, last seen at its last heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_disappears() {
    let (url, prefix) = (redis_url(), unique_prefix());
    let (store, _dir) = temp_store();
    let clock = ManualClock::at(5_000);
    let a = node(&url, &prefix, "a", &store, clock.clone()).await;
    let mut short = config(&url, &prefix, "b");
    short.node_ttl = Duration::from_millis(800);
    let b = node_with(short, &store, clock.clone()).await;
    let (carol, wendy) = (user("carol"), user("wendy"));
    let mut watcher = attach(&*a, 100, &wendy, 64);
    a.watch_presence(100, std::slice::from_ref(&carol), &[], 10)
        .expect("within the cap");
    let _c = attach(&*b, 300, &carol, 16);
    assert!(watcher.presence().await.online);
    eventually("node A lists carol's session", || {
        a.sessions_of(&carol) == vec![300]
    })
    .await;

    // B stops: no detach, no goodbye, only silence. Its last heartbeat was at 5_000.
    drop(b);
    clock.set(9_000);
    eventually("carol's session expires", || {
        a.sessions_of(&carol).is_empty()
    })
    .await;
    assert_eq!(
        watcher.presence().await,
        v1::Presence {
            user_id: "carol".to_owned(),
            online: false,
            last_seen_ms: 5_000,
        }
    );
    assert_eq!(a.presence(&carol).last_seen_ms, 5_000);
    assert_eq!(a.cluster_session_count(), 1);
}

/// Redis keeps the last-seen times of the most recently seen users only (issue 15: the hash grew
/// with every user ever seen): past the cap the least recently seen are trimmed, and a node
/// that starts later reads the kept ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seen_in_redis_keeps_the_most_recently_seen() {
    let (url, prefix) = (redis_url(), unique_prefix());
    let (store, _dir) = temp_store();
    let clock = ManualClock::at(1_000);
    let mut capped = config(&url, &prefix, "a");
    capped.last_seen_cap = 2;
    let a = node_with(capped, &store, clock.clone()).await;
    let users = [user("ann"), user("ben"), user("cid")];
    for (n, who) in users.iter().enumerate() {
        let session = 500 + n as u64;
        let _s = attach(&*a, session, who, 4);
        clock.set(1_000 * (n as i64 + 2));
        a.detach(session);
    }
    let key = format!("{prefix}lastseen:z");
    let read = || -> Vec<(String, i64)> {
        let Ok(mut redis) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
        else {
            return Vec::new();
        };
        redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(&mut redis)
            .unwrap_or_default()
    };
    // The offline writes go through the node's outbound queue: wait for the last one.
    eventually("cid's last seen reaches Redis", || {
        read().iter().any(|(u, _)| u == "cid")
    })
    .await;
    let kept = read();
    assert_eq!(
        kept,
        vec![("ben".to_owned(), 3_000), ("cid".to_owned(), 4_000)]
    );

    let b = node(&url, &prefix, "b", &store, clock.clone()).await;
    assert_eq!(b.presence(&users[2]).last_seen_ms, 4_000);
    assert_eq!(b.presence(&users[1]).last_seen_ms, 3_000);
    assert_eq!(b.presence(&users[0]).last_seen_ms, 0, "trimmed: never seen");
}

// ---------------------------------------------------------------------------------------------
// Redis killed

/// A private redis-server on a free port, killed with SIGKILL on drop.
struct PrivateRedis {
    port: u16,
    child: Child,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/services installs it)");
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn ready(&self) {
        let url = self.url();
        eventually("the private Redis answers", || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        })
        .await;
    }

    fn kill(&mut self) {
        self.child.kill().expect("kill -9 redis-server");
        self.child.wait().expect("reap redis-server");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Redis is killed (SIGKILL) in the middle of a run of published batches and restarted empty:
/// the subscriber on the other node still gets every event once and in order, those published
/// while Redis was down (polled from the store) and the last one before the restart included,
/// and a batch whose publish was lost while Redis was up (no jump shows it, only the head).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_loses_nothing() {
    let mut redis = PrivateRedis::start(free_port());
    redis.ready().await;
    let prefix = unique_prefix();
    let (store, _dir) = temp_store();
    let clock = ManualClock::at(1_000);
    let writer = node(&redis.url(), &prefix, "writer", &store, clock.clone()).await;
    let reader = node(&redis.url(), &prefix, "reader", &store, clock.clone()).await;
    let bob = user("bob");
    let mut session = attach(&*reader, 7, &bob, 4096);
    let g = room("g.kill");
    let audience = Audience::users([user("alice"), bob.clone()]);
    let publish = |seqs: std::ops::RangeInclusive<u64>| {
        let (store, writer, g, audience) =
            (store.clone(), writer.clone(), g.clone(), audience.clone());
        async move {
            let batch = append(&store, &g, seqs).await;
            writer.publish_room(&g, batch, &audience);
        }
    };

    for first in (1..=30).step_by(3) {
        publish(first..=first + 2).await;
    }
    assert_eq!(
        collect_seqs(&mut session, 30).await,
        (1..=30).collect::<Vec<_>>()
    );

    redis.kill();
    // Published while Redis is down: the writer drops them, the reader polls the store.
    publish(31..=33).await;
    publish(34..=34).await;
    assert_eq!(
        collect_seqs(&mut session, 34).await,
        (31..=34).collect::<Vec<_>>()
    );
    assert!(!reader.is_subscribed(), "the reader noticed the outage");

    // Back, empty: publishing resumes, and the reader resubscribes.
    let port = redis.port;
    drop(redis);
    let redis = PrivateRedis::start(port);
    redis.ready().await;
    eventually("the reader resubscribes", || reader.is_subscribed()).await;
    for first in (35..=50).step_by(4) {
        publish(first..=first + 3).await;
    }
    assert_eq!(
        collect_seqs(&mut session, 50).await,
        (35..=50).collect::<Vec<_>>()
    );

    // A last batch that only reached the store (its publish lost with Redis up).
    append(&store, &g, 51..=52).await;
    assert_eq!(collect_seqs(&mut session, 52).await, vec![51, 52]);
    session.assert_quiet(&*reader).await;
}
