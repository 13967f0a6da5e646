//! Several gateway nodes behave as one server (issue 5; docs/architecture.md "Room writers" and
//! "Live fan-out"): real `chatwire` processes in distributed mode on the shared Cassandra, RabbitMQ
//! and Redis of the test command, each test in a keyspace, queue prefix and key prefix of its own.
//! Nodes are killed (SIGKILL) and frozen (SIGSTOP) here; the services are not (that is
//! `cluster_faults.rs`).
//!
//! Each run is bounded in messages and reports lost / duplicated / out-of-order / skipped-seq
//! counts, which must all be zero.
//!
//! ```sh
//! set -a; . .services/env; set +a
//! cargo test -p chatwire-server --test cluster -- --test-threads=1
//! ```

mod support;

use std::sync::Arc;

use chatwire_conformance::client::Client;
use chatwire_protocol::v1;
use support::cluster::{
    Cluster, LogCheck, Services, check_log, check_stream, live_until, send_through_faults,
};
use support::server::{ServerProcess, group, send, subscribe_from, subscribe_live, within};
use tokio::sync::Mutex;

/// [`live_until`] for several rooms at once (one client's events interleave rooms).
async fn live_until_all(
    client: &Client,
    rooms: &[String],
    mut seqs: Vec<Vec<u64>>,
    heads: &[u64],
) -> Vec<Vec<u64>> {
    let done = |seqs: &[Vec<u64>]| {
        seqs.iter()
            .zip(heads)
            .all(|(s, head)| s.last().copied().unwrap_or(0) >= *head)
    };
    while !done(&seqs) {
        let event = within(client.next_event()).await.expect("event");
        if let Some(v1::event::Kind::Room(e)) = event.kind
            && let Some(i) = rooms.iter().position(|r| *r == e.room_id)
        {
            seqs[i].push(e.seq);
        }
    }
    seqs
}

/// The whole log of `room` as `client` replays it.
async fn whole_log(client: &Client, room: &str) -> Vec<v1::RoomEvent> {
    subscribe_live(client, room).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_one_contiguous_log() {
    let mut cluster = Cluster::new(Services::shared());
    let nodes = [
        cluster.node().await,
        cluster.node().await,
        cluster.node().await,
    ];
    let users = ["alice", "bob", "carol"];
    let mut readers = Vec::new();
    for (node, user) in nodes.iter().zip(users) {
        readers.push(cluster.client(node, user).await);
    }
    let room = group(&readers[0], &["bob", "carol"]).await;
    let mut replayed = Vec::new();
    for reader in &readers {
        let seqs: Vec<u64> = subscribe_live(reader, &room)
            .await
            .iter()
            .map(|e| e.seq)
            .collect();
        replayed.push(seqs);
    }

    // Every user sends through a second connection on its node, all at once.
    let mut senders = Vec::new();
    for (node, user) in nodes.iter().zip(users) {
        let client = cluster.client(node, user).await;
        let room = room.clone();
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25 {
                let id = format!("{user}-{i}");
                let reply = within(client.send(send(&room, &id, &id)))
                    .await
                    .expect("send");
                acked.push((id, reply.seq));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for sender in senders {
        acked.extend(within(sender).await.expect("sender"));
    }
    let head = acked.iter().map(|(_, seq)| *seq).max().expect("sent");

    for (reader, seqs) in readers.iter().zip(replayed) {
        let seqs = live_until(reader, &room, seqs, head).await;
        assert_eq!(
            check_stream(&seqs),
            (0, 0),
            "every node delivers the room contiguously: {seqs:?}"
        );
        assert_eq!(seqs.first(), Some(&1));
    }
    // The log read through each node is the same log.
    let logs = [
        whole_log(&cluster.client(&nodes[0], "alice").await, &room).await,
        whole_log(&cluster.client(&nodes[1], "bob").await, &room).await,
        whole_log(&cluster.client(&nodes[2], "carol").await, &room).await,
    ];
    assert_eq!(check_log(&logs[0], &acked), LogCheck::default());
    assert_eq!(logs[0], logs[1]);
    assert_eq!(logs[1], logs[2]);
    assert_eq!(acked.len(), 75);

    // The health report lists the three nodes and the cluster's backends; the metrics show the
    // shards this node owns and the batches that came from the others through Redis.
    let key = std::fs::read_to_string(cluster.node_dir(1).join("admin-key")).expect("admin key");
    let http = support::http_client();
    let health: serde_json::Value = within(
        http.get(format!("http://{}/admin/health", nodes[0].addr))
            .bearer_auth(key.trim())
            .send(),
    )
    .await
    .expect("health")
    .json()
    .await
    .expect("json");
    assert_eq!(
        health["nodes"].as_array().map(Vec::len),
        Some(3),
        "{health}"
    );
    let backends: Vec<(&str, &str)> = health["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter_map(|b| Some((b["name"].as_str()?, b["status"].as_str()?)))
        .collect();
    assert_eq!(
        backends,
        [("store", "ok"), ("fanout", "ok"), ("pipeline", "ok")],
        "{health}"
    );
    assert_eq!(health["score"], 100, "{health}");
    let (mut owned, mut received) = (0.0, 0.0);
    for node in &nodes {
        let text = within(
            support::http_client()
                .get(format!("http://{}/metrics", node.addr))
                .send(),
        )
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        owned += value("chatwire_pipeline_shards_owned");
        // The room's writer runs on one node; the others get its batches through Redis.
        received += value("chatwire_fanout_redis_lag_seconds_count");
        assert!(
            text.contains("chatwire_store_operation_seconds_count{backend=\"scylla\""),
            "{text}"
        );
    }
    assert!(owned > 0.0, "the nodes own the shards between them");
    assert!(received > 0.0, "batches crossed nodes through Redis");
}

/// Progress of the senders: acknowledgements per room.
type Progress = tokio::sync::watch::Receiver<Vec<usize>>;

/// Waits until every room has at least `at_least` more acknowledgements than in `before`.
async fn every_room_moves(progress: &mut Progress, before: &[usize], at_least: usize) {
    within(progress.wait_for(|counts| {
        counts
            .iter()
            .zip(before)
            .all(|(now, then)| *now >= (*then + at_least).min(ROUND))
    }))
    .await
    .expect("senders alive");
}

/// Messages per room in a burst.
const ROUND: usize = 30;

/// Sends bursts into eight rooms (so the shards of every node are in play) from clients that
/// fail over between nodes, while `fault` runs against `nodes[0]` (it removes the nodes it
/// killed from the list); then checks every room's log against the acknowledgements and the
/// live stream of a reader on `nodes[2]`, which stays up.
async fn burst_through(
    fault: impl AsyncFnOnce(&mut Cluster, &mut Vec<ServerProcess>, &mut Progress),
) {
    let mut cluster = Cluster::new(Services::shared());
    // The reader only listens until the burst is over, sending no frame: on a loaded machine
    // the burst can outlast two default heartbeat intervals (30 s), and the server would close
    // the reader's session (4008), which is not what this test is about.
    cluster.set_env("CHATWIRE_SESSION__HEARTBEAT_INTERVAL_MS", "300000");
    let mut nodes = vec![
        cluster.node().await,
        cluster.node().await,
        cluster.node().await,
    ];
    let owner = cluster.client(&nodes[0], "alice").await;
    let mut rooms = Vec::new();
    for _ in 0..8 {
        rooms.push(group(&owner, &["bob"]).await);
    }
    let reader = cluster.client(&nodes[2], "bob").await;
    let mut replayed = Vec::new();
    for room in &rooms {
        replayed.push(
            subscribe_live(&reader, room)
                .await
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
        );
    }
    let addrs = Arc::new(Mutex::new(nodes.iter().map(|n| n.addr).collect::<Vec<_>>()));
    let (progress_tx, mut progress) = tokio::sync::watch::channel(vec![0; rooms.len()]);
    let progress_tx = Arc::new(progress_tx);
    let mut senders = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        senders.push(tokio::spawn(send_through_faults(
            Arc::clone(&addrs),
            cluster.token(if i % 2 == 0 { "alice" } else { "bob" }),
            room.clone(),
            format!("r{i}"),
            ROUND,
            (Arc::clone(&progress_tx), i),
        )));
    }
    fault(&mut cluster, &mut nodes, &mut progress).await;
    *addrs.lock().await = nodes.iter().map(|n| n.addr).collect();

    let mut acked_by_room = Vec::new();
    for sender in senders {
        acked_by_room.push(within(sender).await.expect("sender"));
    }
    let survivor = cluster.client(&nodes[nodes.len() - 1], "alice").await;
    let mut total = LogCheck::default();
    let mut heads = Vec::new();
    for (room, acked) in rooms.iter().zip(&acked_by_room) {
        assert_eq!(acked.len(), ROUND, "every send was acknowledged in the end");
        let log = whole_log(&survivor, room).await;
        let check = check_log(&log, acked);
        total.lost += check.lost;
        total.duplicated += check.duplicated;
        total.out_of_order += check.out_of_order;
        total.skipped_seqs += check.skipped_seqs;
        heads.push(log.last().map_or(0, |e| e.seq));
    }
    let streams = live_until_all(&reader, &rooms, replayed, &heads).await;
    for (room, seqs) in rooms.iter().zip(&streams) {
        assert_eq!(check_stream(seqs), (0, 0), "room {room} live: {seqs:?}");
    }
    eprintln!(
        "burst: {} rooms x {ROUND} messages: lost {}, duplicated {}, out of order {}, skipped seqs {}",
        rooms.len(),
        total.lost,
        total.duplicated,
        total.out_of_order,
        total.skipped_seqs
    );
    assert_eq!(
        total,
        LogCheck::default(),
        "lost / duplicated / out of order / skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_hands_its_shards_over_without_loss() {
    burst_through(async |_cluster, nodes, progress| {
        // Kill the first node in the middle of the burst.
        every_room_moves(progress, &[0; 8], 5).await;
        nodes.remove(0).kill();
        let now = progress.borrow().clone();
        every_room_moves(progress, &now, 5).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_cannot_write_after_the_takeover() {
    burst_through(async |_cluster, nodes, progress| {
        every_room_moves(progress, &[0; 8], 5).await;
        nodes[0].signal("STOP");
        // Every room moving on while the node is frozen means its shards were taken over.
        let now = progress.borrow().clone();
        every_room_moves(progress, &now, 5).await;
        // Thawed, its stale writer must be fenced: the log checks find any seq it wrote.
        nodes[0].signal("CONT");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_after_its_node_dies() {
    let mut cluster = Cluster::new(Services::shared());
    let first = cluster.node().await;
    let second = cluster.node().await;
    let alice = cluster.client(&first, "alice").await;
    let room = group(&alice, &["bob"]).await;
    let bob = cluster.client(&first, "bob").await;
    let seen: Vec<u64> = subscribe_live(&bob, &room)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    let mut head = 0;
    for i in 0..10 {
        head = within(alice.send(send(&room, &format!("m{i}"), "x")))
            .await
            .expect("send")
            .seq;
    }
    let seen = live_until(&bob, &room, seen, head).await;
    first.kill();
    // More messages through the other node while bob is away.
    let alice = cluster.client(&second, "alice").await;
    for i in 10..20 {
        head = within(alice.send(send(&room, &format!("m{i}"), "x")))
            .await
            .expect("send")
            .seq;
    }
    // Bob resumes on the other node from the last seq he saw: exactly the rest, in order.
    let bob = cluster.client(&second, "bob").await;
    let last = *seen.last().expect("seen");
    let rest: Vec<u64> = subscribe_from(&bob, &room, last)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(rest, (last + 1..=head).collect::<Vec<_>>());
    assert_eq!(rest.len(), 10, "the ten sent while bob was away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_over_websocket_on_a_cluster() {
    use chatwire_conformance::suite::{JwtKey, Selection, Target, TokenSource};
    let mut cluster = Cluster::new(Services::shared());
    // Production limits, as for the embedded run: the suite checks the send rate limit (here
    // shared through Redis); only the per-IP connect rate is raised (the suite opens ~70
    // connections from one address in seconds).
    let defaults = chatwire_server::config::Config::default();
    for (key, value) in [
        (
            "CHATWIRE_LIMITS__RATE_SENDS__RATE_PER_MINUTE",
            defaults.limits.rate_sends.rate_per_minute,
        ),
        (
            "CHATWIRE_LIMITS__RATE_SENDS__BURST",
            defaults.limits.rate_sends.burst,
        ),
        (
            "CHATWIRE_LIMITS__RATE_REQUESTS__RATE_PER_MINUTE",
            defaults.limits.rate_requests.rate_per_minute,
        ),
        (
            "CHATWIRE_LIMITS__RATE_REQUESTS__BURST",
            defaults.limits.rate_requests.burst,
        ),
        (
            "CHATWIRE_LIMITS__RATE_CONNECTS_PER_IP__RATE_PER_MINUTE",
            60_000,
        ),
        ("CHATWIRE_LIMITS__RATE_CONNECTS_PER_IP__BURST", 1_000),
    ] {
        cluster.set_env(key, &value.to_string());
    }
    // Two nodes, so room writers and sessions are spread; the suite talks to the first.
    let first = cluster.node().await;
    let _second = cluster.node().await;
    let tokens = TokenSource::Key(JwtKey {
        secret: cluster.jwt_secret(),
        issuer: defaults.auth.issuer.clone(),
        audience: defaults.auth.audience.clone(),
        kid: defaults.auth.hs256_kid.clone(),
    });
    let report = support::conformance_run::run(
        "distributed",
        Target::Ws(first.target()),
        tokens,
        &Selection::default(),
    )
    .await;
    support::conformance_run::check_kept(&report, "distributed-websocket.txt");
}
