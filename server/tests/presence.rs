//! Presence over real sessions: watchers learn when a user comes online and goes offline
//! (with last seen), and blocks hide presence.

mod support;

use chatwire_protocol::v1;
use support::server::{TestServer, within};

async fn next_presence(client: &chatwire_conformance::client::Client) -> v1::Presence {
    loop {
        let event = within(client.next_event()).await.expect("event");
        if let Some(v1::event::Kind::Presence(presence)) = event.kind {
            return presence;
        }
    }
}

fn watch(users: &[&str]) -> v1::WatchPresenceRequest {
    v1::WatchPresenceRequest {
        user_ids: users.iter().map(|u| (*u).to_owned()).collect(),
        room_id: String::new(),
    }
}

#[tokio::test]
async fn watchers_see_a_user_come_online_and_go_offline_with_last_seen() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let now = alice.watch_presence(watch(&["bob"])).await.expect("watch");
    assert_eq!(now.presences.len(), 1);
    assert!(!now.presences[0].online);

    let bob = server.client("bob").await;
    let online = next_presence(&alice).await;
    assert_eq!((online.user_id.as_str(), online.online), ("bob", true));
    // A second device changes nothing; closing one of two leaves bob online.
    let bob_phone = server.client("bob").await;
    bob_phone.close(4012, "bye").await;
    bob.close(4012, "bye").await;
    let offline = next_presence(&alice).await;
    assert_eq!((offline.user_id.as_str(), offline.online), ("bob", false));
    assert!(offline.last_seen_ms > 0);
    let again = alice.watch_presence(watch(&["bob"])).await.expect("watch");
    assert_eq!(again.presences[0].last_seen_ms, offline.last_seen_ms);
    server.stop().await;
}

#[tokio::test]
async fn unwatching_stops_presence_events_and_blocks_hide_presence() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let carol = server.client("carol").await;
    carol
        .block_user(v1::BlockUserRequest {
            user_id: "alice".into(),
        })
        .await
        .expect("block");
    let seen = alice
        .watch_presence(watch(&["carol", "dave"]))
        .await
        .expect("watch");
    let carol_seen = seen
        .presences
        .iter()
        .find(|p| p.user_id == "carol")
        .expect("carol");
    assert!(!carol_seen.online, "a blocking user appears offline");
    alice
        .unwatch_presence(v1::UnwatchPresenceRequest {
            user_ids: vec!["dave".into()],
            room_id: String::new(),
        })
        .await
        .expect("unwatch");
    // Dave comes and goes unseen; erin, still watched, is the next presence event alice gets.
    alice
        .watch_presence(watch(&["erin"]))
        .await
        .expect("watch erin");
    let dave = server.client("dave").await;
    dave.close(4012, "bye").await;
    let _erin = server.client("erin").await;
    let next = next_presence(&alice).await;
    assert_eq!((next.user_id.as_str(), next.online), ("erin", true));
    drop(carol);
    server.stop().await;
}
