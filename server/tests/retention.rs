//! Retention end to end: a room whose early events lie minutes back (written into the data
//! folder before the server starts, since the server runs on the system clock), a cut through
//! `POST /admin/rooms/{room_id}/retention`, then what clients read: History and Subscribe
//! start at the lowest retained seq and report it as `first_visible_seq` (docs/protocol.md
//! R-6.5.1, R-6.5.2, R-10.1.1), and the writer no longer finds the dropped messages.
//!
//! ```sh
//! cargo test -p chatwire-server --test retention
//! ```

mod support;

use chatwire_protocol::v1;
use chatwire_server::backend::embedded::{EmbeddedOptions, EmbeddedStore};
use chatwire_server::backend::store::Write;
use chatwire_server::clock::{Clock, SystemClock};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::server::{TestServer, code_of, history, send, seqs, texts, within};
use support::store_suite::{RoomScript, apply, merge, room_id, user};

/// The smallest bucket width the configuration accepts.
const WIDTH_MS: u64 = 60_000;

async fn post(server: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let response = within(
        support::http_client()
            .post(format!("{}{path}", server.http_url()))
            .bearer_auth(server.admin_key())
            .json(&body)
            .send(),
    )
    .await
    .expect("request");
    let status = response.status();
    (
        status,
        within(response.json::<Value>()).await.expect("JSON"),
    )
}

async fn subscribe(
    client: &chatwire_conformance::client::Client,
    room: &str,
    after_seq: u64,
) -> v1::SubscribeResponse {
    within(client.subscribe(v1::SubscribeRequest {
        room_id: room.to_owned(),
        after_seq,
        limit: 0,
    }))
    .await
    .expect("subscribe")
}

#[tokio::test]
async fn retention_drops_old_buckets_and_reads_start_after_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = SystemClock.now_ms();
    // The start of the bucket ten minutes back (one-minute buckets): the old events share one
    // bucket, well before the bucket of anything sent now.
    let old = (now.div_euclid(WIDTH_MS as i64) - 10) * WIDTH_MS as i64;
    let room = room_id("g:retention");
    let (alice, bob) = (user("alice"), user("bob"));
    {
        // Where `chatwire serve` keeps its store inside the data folder.
        let store = EmbeddedStore::open(
            &dir.path().join("store"),
            EmbeddedOptions {
                bucket_width_ms: WIDTH_MS as i64,
                sync: true,
            },
        )
        .expect("open store");
        let mut script = RoomScript::new(&room);
        let mut batch = merge([
            script.create(old, &alice),                        // 1, 2
            script.join(old, &bob, v1::Role::Member),          // 3
            script.send(old + 1, &alice, "old from alice", 0), // 4
            script.send(old + 2, &bob, "old from bob", 0),     // 5
        ]);
        batch.writes.push(Write::Room(v1::Room {
            member_count: 2,
            history_visibility: v1::HistoryVisibility::Full as i32,
            ..script.settings.clone()
        }));
        apply(&store, &room, &batch).await;
    }
    let server = TestServer::start_in(dir.path().to_path_buf(), |c| {
        c.storage.bucket_width_ms = WIDTH_MS;
    })
    .await;
    let (alice, bob) = (server.client("alice").await, server.client("bob").await);
    let sent = within(alice.send(send(room.as_str(), "n1", "new from alice")))
        .await
        .expect("send");
    assert_eq!(sent.seq, 6);

    let before = history(&bob, room.as_str(), None, 10).await;
    assert_eq!(seqs(&before.messages), vec![6, 5, 4]);
    assert_eq!(before.first_visible_seq, 1);

    let path = format!("/admin/rooms/{room}/retention");
    let keep_after_ms = SystemClock.now_ms() + 3_600_000;
    let (status, body) = post(&server, &path, json!({ "keep_after_ms": keep_after_ms })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "dropped_buckets": 1, "first_retained_seq": 6 }),
        "everything but the head's bucket"
    );
    let (status, body) = post(&server, &path, json!({ "keep_after_ms": keep_after_ms })).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({ "dropped_buckets": 0, "first_retained_seq": 6 })
        ),
        "a repeat changes nothing"
    );

    // R-6.5.1: the first visible seq is the larger of the visibility's (1 here) and the
    // lowest retained seq; R-6.5.2 / R-9.1.4: nothing below it.
    let page = history(&bob, room.as_str(), None, 10).await;
    assert_eq!(texts(&page.messages), vec!["new from alice"]);
    assert_eq!((page.first_visible_seq, page.has_more), (6, false));
    let older = history(
        &bob,
        room.as_str(),
        Some(v1::history_request::Position::BeforeSeq(6)),
        10,
    )
    .await;
    assert!(older.messages.is_empty() && !older.has_more);

    // R-10.1.1: replay from max(after_seq + 1, first_visible_seq), from 0 and from a dropped seq.
    for after_seq in [0, 4] {
        let replay = subscribe(&bob, room.as_str(), after_seq).await;
        assert_eq!(replay.first_visible_seq, 6, "after {after_seq}");
        assert!(replay.first_visible_seq > after_seq + 1);
        assert_eq!(
            replay.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![6],
            "after {after_seq}"
        );
        assert!(replay.complete);
        assert_eq!(replay.head_seq, 6);
    }

    // The writer no longer finds the dropped messages; the log goes on.
    let react = alice
        .react(v1::ReactRequest {
            room_id: room.to_string(),
            target_seq: 4,
            emoji: "+1".to_owned(),
            add: true,
        })
        .await;
    assert_eq!(code_of(react), v1::ErrorCode::NotFound);
    let again = within(alice.send(send(room.as_str(), "n2", "newer")))
        .await
        .expect("send");
    assert_eq!(again.seq, 7);
    let (status, admin_history) = server
        .admin(
            reqwest::Method::GET,
            &format!("/admin/rooms/{room}/history"),
        )
        .await;
    assert_eq!(status, 200, "{admin_history}");
    let admin_seqs: Vec<u64> = admin_history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert_eq!(admin_seqs, vec![7, 6]);

    let (status, body) = post(
        &server,
        "/admin/rooms/g:nothing/retention",
        json!({ "keep_after_ms": keep_after_ms }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    server.stop().await;
}
