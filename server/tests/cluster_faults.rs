//! A cluster survives its services failing (issue 5): each test starts a private instance of
//! the service it kills or stops (`scripts/services` in a temporary folder, free ports), shares
//! the other services with the rest of the suite, and runs alone after the other tests
//! (`scripts/test` runs this binary last, with one test thread).
//!
//! Each run is bounded in messages and reports lost / duplicated / out-of-order / skipped-seq
//! counts, which must all be zero.
//!
//! ```sh
//! set -a; . .services/env; set +a
//! cargo test -p chatwire-server --test cluster_faults -- --test-threads=1
//! ```

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use chatwire_conformance::client::Client;
use support::cluster::{
    Cluster, EventSink, LogCheck, PrivateServices, Services, check_log, check_stream, live_until,
    send_through_faults,
};
use support::server::{ServerProcess, group, send, subscribe_live, within};
use tokio::sync::Mutex;

/// Sends `ids` one after another through `client`; returns the last seq.
async fn send_all(client: &Client, room: &str, ids: std::ops::Range<usize>) -> u64 {
    let mut head = 0;
    for i in ids {
        let id = format!("m{i}");
        head = within(client.send(send(room, &id, &id)))
            .await
            .expect("a send never fails because Redis is down")
            .seq;
    }
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_fault_redis_killed_during_fanout_loses_no_event() {
    let mut redis = PrivateServices::start("redis");
    let services = Services {
        redis_url: redis.var("CHATWIRE_TEST_REDIS_URL"),
        ..Services::shared()
    };
    let mut cluster = Cluster::new(services);
    let (a, b) = (cluster.node().await, cluster.node().await);
    let alice = cluster.client(&a, "alice").await;
    let room = group(&alice, &["bob"]).await;
    let bob = cluster.client(&b, "bob").await;
    let seqs: Vec<u64> = subscribe_live(&bob, &room)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();

    let head = send_all(&alice, &room, 0..20).await;
    let seqs = live_until(&bob, &room, seqs, head).await;
    // The last messages before the kill race it: whether Redis published them or not, they
    // must reach bob.
    let last_before = send_all(&alice, &room, 20..30).await;
    redis.kill("redis");
    let head = send_all(&alice, &room, 30..40).await;
    let seqs = live_until(&bob, &room, seqs, head).await;
    assert!(
        seqs.contains(&last_before),
        "the last message before the kill"
    );
    // Redis comes back (empty); live delivery resumes through it.
    redis.restart();
    let head = send_all(&alice, &room, 40..50).await;
    let seqs = live_until(&bob, &room, seqs, head).await;
    assert_eq!(check_stream(&seqs), (0, 0), "in order, no gap: {seqs:?}");
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
    eprintln!(
        "redis kill: {} events delivered, 0 lost, 0 duplicated",
        seqs.len()
    );
}

/// What a burst left: the room, the acknowledgements, the log check, and the nodes (still
/// running, so downstream events can still be delivered).
type Burst = (String, Vec<(String, u64)>, LogCheck, [ServerProcess; 2]);

/// Sends `count` messages into one room from a client that fails over between the cluster's
/// two nodes while `fault` runs once `wait_acks` messages were acknowledged.
async fn burst_through_service_fault(
    cluster: &mut Cluster,
    count: usize,
    wait_acks: usize,
    fault: impl AsyncFnOnce(),
) -> Burst {
    let nodes = [cluster.node().await, cluster.node().await];
    let alice = cluster.client(&nodes[0], "alice").await;
    let room = group(&alice, &["bob"]).await;
    let addrs = Arc::new(Mutex::new(nodes.iter().map(|n| n.addr).collect::<Vec<_>>()));
    let (progress_tx, mut progress) = tokio::sync::watch::channel(vec![0usize]);
    let sender = tokio::spawn(send_through_faults(
        addrs,
        cluster.token("alice"),
        room.clone(),
        "m".to_owned(),
        count,
        (Arc::new(progress_tx), 0),
    ));
    within(progress.wait_for(|acks| acks[0] >= wait_acks))
        .await
        .expect("sender alive");
    fault().await;
    let acked = tokio::time::timeout(std::time::Duration::from_secs(180), sender)
        .await
        .expect("the burst finished after the service came back")
        .expect("sender");
    assert_eq!(acked.len(), count, "every send was acknowledged in the end");
    let reader = cluster.client(&nodes[1], "bob").await;
    let log = subscribe_live(&reader, &room).await;
    let check = check_log(&log, &acked);
    eprintln!(
        "{count} messages: lost {}, duplicated {}, out of order {}, skipped seqs {}",
        check.lost, check.duplicated, check.out_of_order, check.skipped_seqs
    );
    (room, acked, check, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_fault_rabbitmq_restarted_during_a_burst_loses_nothing() {
    let mut rabbit = PrivateServices::start("rabbitmq");
    let sink = EventSink::start().await;
    let services = Services {
        amqp_url: rabbit.var("CHATWIRE_TEST_AMQP_URL"),
        ..Services::shared()
    };
    let mut cluster = Cluster::new(services);
    cluster.with_config(&sink.app_webhook_toml());
    let (room, acked, check, _nodes) =
        burst_through_service_fault(&mut cluster, 60, 15, async || {
            rabbit.stop();
            rabbit.restart();
        })
        .await;
    assert_eq!(check, LogCheck::default());
    // Every acknowledged message's downstream event reaches the app webhook after RabbitMQ
    // returns (at least once; receivers dedupe by event id).
    let expected: BTreeSet<String> = acked
        .iter()
        .map(|(_, seq)| format!("{room}:{seq}:message.created"))
        .collect();
    let delivered = sink.wait_for_all(&expected).await;
    assert!(delivered >= expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_fault_cassandra_killed_and_restarted_keeps_every_acknowledged_message() {
    let mut cassandra = PrivateServices::start("cassandra");
    let services = Services {
        cql_nodes: cassandra.var("CHATWIRE_TEST_CQL_NODES"),
        ..Services::shared()
    };
    let mut cluster = Cluster::new(services);
    let (_, _, check, _nodes) = burst_through_service_fault(&mut cluster, 40, 15, async || {
        cassandra.kill("cassandra");
        cassandra.restart();
    })
    .await;
    assert_eq!(check, LogCheck::default());
}
