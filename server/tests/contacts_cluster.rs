//! Contacts across the nodes of a cluster (issue 22): two users on different nodes become
//! contacts and see each other's presence without watching by hand, and each user's accepted
//! contact ids are cached in Redis as a set, rebuilt from the store on a miss and deleted on
//! every change (real `chatwire` processes on the shared Cassandra, RabbitMQ and Redis).
//!
//! ```sh
//! set -a; . .services/env; set +a
//! cargo test -p chatwire-server --test contacts_cluster
//! ```

mod support;

use chatwire_conformance::client::Client;
use chatwire_protocol::v1;
use support::cluster::{Cluster, Services};
use support::server::wait_for;

async fn next_change(client: &Client) -> (String, v1::ContactState) {
    let (_, contact) = wait_for(client, |kind| match kind {
        v1::event::Kind::ContactChanged(changed) => changed.contact.clone(),
        _ => None,
    })
    .await;
    (contact.user_id.clone(), contact.state())
}

async fn next_presence_of(client: &Client, user: &str) -> v1::Presence {
    let (_, presence) = wait_for(client, |kind| match kind {
        v1::event::Kind::Presence(p) if p.user_id == user => Some(p.clone()),
        _ => None,
    })
    .await;
    presence
}

/// The members of a Redis set, sorted; empty when the key does not exist.
async fn members(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    let mut members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(key)
        .query_async(redis)
        .await
        .expect("SMEMBERS");
    members.sort();
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_on_two_nodes_see_each_others_presence_through_the_cached_ids() {
    let services = Services::shared();
    let mut cluster = Cluster::new(services.clone());
    let prefix = cluster
        .envs()
        .into_iter()
        .find(|(k, _)| k == "CHATWIRE_REDIS__KEY_PREFIX")
        .map(|(_, v)| v)
        .expect("key prefix");
    let mut redis = redis::Client::open(services.redis_url.as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects");
    let key = |user: &str| format!("{prefix}contacts:{user}");
    let (one, two) = (cluster.node().await, cluster.node().await);

    let alice = cluster.client(&one, "alice").await;
    // Alice's Connect read her (empty) contacts: cached as the marker alone.
    assert_eq!(members(&mut redis, &key("alice")).await, [""]);
    let bob = cluster.client(&two, "bob").await;
    let sent = alice
        .send_contact_request(v1::SendContactRequestRequest {
            user_id: "bob".into(),
        })
        .await
        .expect("send");
    assert_eq!(
        sent.contact.expect("contact").state(),
        v1::ContactState::Outgoing
    );
    // Bob, on the other node, hears of it and accepts.
    assert_eq!(
        next_change(&bob).await,
        ("alice".into(), v1::ContactState::Incoming)
    );
    bob.accept_contact_request(v1::AcceptContactRequestRequest {
        user_id: "alice".into(),
    })
    .await
    .expect("accept");
    // The accept invalidated both users' cached ids.
    assert!(members(&mut redis, &key("alice")).await.is_empty());
    assert!(members(&mut redis, &key("bob")).await.is_empty());
    // Each is now watched by the other's session, across nodes, without WatchPresence.
    assert!(next_presence_of(&alice, "bob").await.online);
    assert!(next_presence_of(&bob, "alice").await.online);

    // A new session of alice on node two: presence of bob from Connect, ids rebuilt in Redis.
    let alice_two = cluster.client(&two, "alice").await;
    assert!(next_presence_of(&alice_two, "bob").await.online);
    assert_eq!(members(&mut redis, &key("alice")).await, ["", "bob"]);
    // Bob leaves node two; both of alice's sessions (one on each node) see him go offline.
    bob.close(4012, "bye").await;
    for session in [&alice, &alice_two] {
        let gone = next_presence_of(session, "bob").await;
        assert!(!gone.online && gone.last_seen_ms > 0, "{gone:?}");
    }
    // A session of bob on node one: cached ids read at Connect (a hit), presence both ways.
    let bob_one = cluster.client(&one, "bob").await;
    assert!(next_presence_of(&bob_one, "alice").await.online);
    assert_eq!(members(&mut redis, &key("bob")).await, ["", "alice"]);
    for session in [&alice, &alice_two] {
        assert!(next_presence_of(session, "bob").await.online);
    }

    // Removal: cache deleted for both, and a later Connect caches the empty list.
    alice_two
        .remove_contact(v1::RemoveContactRequest {
            user_id: "bob".into(),
        })
        .await
        .expect("remove");
    assert!(members(&mut redis, &key("alice")).await.is_empty());
    assert!(members(&mut redis, &key("bob")).await.is_empty());
    assert_eq!(
        next_change(&bob_one).await,
        ("alice".into(), v1::ContactState::Unspecified)
    );
    let _bob_again = cluster.client(&two, "bob").await;
    assert_eq!(members(&mut redis, &key("bob")).await, [""]);
    let listed = alice
        .list_contacts(v1::ListContactsRequest::default())
        .await
        .expect("list");
    assert!(listed.contacts.is_empty(), "{listed:?}");
}
