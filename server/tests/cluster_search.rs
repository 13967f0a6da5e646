//! Message search on a cluster (docs/architecture.md "Message search"): each node keeps its own
//! index in its data folder, fed by its own RabbitMQ index queue that the event exchange fills
//! with every node's events. A message sent on one node is found on another; a node started
//! later catches up from the room log; a node that was down catches up from its queue.
//!
//! ```sh
//! set -a; . .services/env; set +a
//! cargo test -p chatwire-server --test cluster_search
//! ```

mod support;

use std::time::Duration;

use chatwire_conformance::client::Client;
use chatwire_protocol::v1;
use support::cluster::{Cluster, Services};
use support::server::{group, send, within};

/// Searches until `want` hits come back (the index follows the log); fails after 30 s.
async fn found(client: &Client, words: &str, want: usize) -> Vec<v1::SearchHit> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = within(client.search(v1::SearchRequest {
            query: words.to_owned(),
            ..Default::default()
        }))
        .await
        .expect("search");
        if response.hits.len() == want {
            return response.hits;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{words:?}: wanted {want} hits, last {:?}",
            response.hits
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_on_one_node_is_found_on_every_node() {
    let mut cluster = Cluster::new(Services::shared());
    cluster.set_env("CHATWIRE_LIMITS__RATE_SEARCH__RATE_PER_MINUTE", "1000000");
    cluster.set_env("CHATWIRE_LIMITS__RATE_SEARCH__BURST", "100000");
    let nodes = [
        cluster.node().await,
        cluster.node().await,
        cluster.node().await,
    ];
    let alice = cluster.client(&nodes[0], "alice").await;
    let room = group(&alice, &["bob"]).await;
    let sent = within(alice.send(send(&room, "m1", "the aurora was visible tonight")))
        .await
        .expect("send");

    // Found on node 3 (and node 2) by a word of it, in its current state.
    let bob3 = cluster.client(&nodes[2], "bob").await;
    let hits = found(&bob3, "auroras", 1).await;
    assert_eq!(
        (hits[0].room_id.as_str(), hits[0].seq),
        (room.as_str(), sent.seq)
    );
    let bob2 = cluster.client(&nodes[1], "bob").await;
    found(&bob2, "aurora", 1).await;

    // A node that was down catches up from its own queue: stop node 2, send on node 1,
    // start node 2 again on the same data folder.
    let [first, second, third] = nodes;
    second.kill();
    within(alice.send(send(&room, "m2", "a comet while node two was away")))
        .await
        .expect("send");
    let second = cluster.node_in(&cluster.node_dir(2)).await;
    let bob2 = cluster.client(&second, "bob").await;
    found(&bob2, "comet", 1).await;

    // A new node catches up from the room log (its index is built before it serves).
    let fourth = cluster.node().await;
    let bob4 = cluster.client(&fourth, "bob").await;
    let hits = within(bob4.search(v1::SearchRequest {
        query: "aurora".into(),
        ..Default::default()
    }))
    .await
    .expect("search");
    assert_eq!(hits.hits.len(), 1, "the new node indexed the log at start");
    found(&bob4, "comet", 1).await;

    // A removed member finds nothing on any node.
    within(alice.remove_member(v1::RemoveMemberRequest {
        room_id: room.clone(),
        user_id: "bob".into(),
    }))
    .await
    .expect("remove bob");
    for bob in [&bob2, &bob3, &bob4] {
        let after = within(bob.search(v1::SearchRequest {
            query: "aurora".into(),
            ..Default::default()
        }))
        .await
        .expect("search");
        assert!(after.hits.is_empty(), "{:?}", after.hits);
    }
    drop((first, third));
}
