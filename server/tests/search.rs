//! Message search (docs/protocol.md §23) on real servers over real WebSockets: words found in
//! their other forms with a highlighted snippet and the message's current state; edits,
//! deletes, membership and history visibility applied at query time; bad input refused with
//! its field; paging by cursor; the index rebuilt from the room log at start and by
//! `chatwire reindex`; a server without search answers UNSUPPORTED.
//!
//! ```sh
//! cargo test -p chatwire-server --test search
//! ```

mod support;

use std::time::Duration;

use chatwire_conformance::client::Client;
use chatwire_protocol::v1;
use support::server::{TestServer, code_of, group, refused, send, within};
use v1::ErrorCode;

fn query(text: &str) -> v1::SearchRequest {
    v1::SearchRequest {
        query: text.to_owned(),
        ..Default::default()
    }
}

/// Searches until `done` holds for the hits (the index follows the log asynchronously); fails
/// after 20 s with the last answer.
async fn search_until(
    client: &Client,
    request: v1::SearchRequest,
    done: impl Fn(&[v1::SearchHit]) -> bool,
) -> v1::SearchResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = within(client.search(request.clone()))
            .await
            .expect("search");
        if done(&response.hits) {
            return response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "search {:?} never satisfied the condition; last hits {:?}",
            request.query,
            response.hits
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn texts(hits: &[v1::SearchHit]) -> Vec<String> {
    hits.iter()
        .map(|h| {
            h.message
                .as_ref()
                .and_then(|m| m.content.as_ref())
                .map(|c| c.text.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// The highlighted parts of a hit's snippet.
fn highlighted(hit: &v1::SearchHit) -> Vec<String> {
    let points: Vec<char> = hit.snippet.chars().collect();
    hit.highlights
        .iter()
        .map(|r| points[r.start as usize..r.end as usize].iter().collect())
        .collect()
}

async fn sent(client: &Client, room: &str, id: &str, body: &str) -> u64 {
    within(client.send(send(room, id, body)))
        .await
        .expect("send")
        .seq
}

#[tokio::test]
async fn words_are_found_in_other_forms_with_snippet_and_current_state() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    let seq = sent(
        &alice,
        &room,
        "m1",
        "The deployment was RUNNING smoothly at the café",
    )
    .await;
    sent(&alice, &room, "m2", "lunch plans?").await;
    sent(&alice, &room, "m3", "東京都に行きます").await;

    // Stemming and case: "runs" finds "RUNNING"; accents: "cafe" finds "café".
    let found = search_until(&alice, query("runs cafe"), |h| h.len() == 1).await;
    let hit = &found.hits[0];
    assert_eq!((hit.room_id.as_str(), hit.seq), (room.as_str(), seq));
    assert_eq!(highlighted(hit), ["RUNNING", "café"]);
    let message = hit.message.as_ref().expect("current message");
    assert_eq!(message.sender, "alice");
    assert!(!message.deleted);
    assert!(found.next_cursor.is_empty());

    // CJK: a two-character word inside a run without spaces.
    let found = search_until(&alice, query("東京"), |h| h.len() == 1).await;
    assert_eq!(texts(&found.hits), ["東京都に行きます"]);
    assert_eq!(highlighted(&found.hits[0]), ["東京"]);

    // A quoted phrase needs its words in order; plain terms do not.
    let phrase = within(alice.search(query("\"smoothly running\"")))
        .await
        .expect("search");
    assert!(phrase.hits.is_empty(), "{:?}", phrase.hits);
    let terms = within(alice.search(query("smoothly running")))
        .await
        .expect("search");
    assert_eq!(terms.hits.len(), 1);
    let phrase = within(alice.search(query("\"running smoothly\"")))
        .await
        .expect("search");
    assert_eq!(phrase.hits.len(), 1);

    // The engine's syntax is plain text: no field queries, no wildcards.
    let syntax = within(alice.search(query("-lunch"))).await.expect("search");
    assert_eq!(
        texts(&syntax.hits),
        ["lunch plans?"],
        "`-` excludes nothing"
    );
    let field = within(alice.search(query("text:lunch")))
        .await
        .expect("search");
    assert!(
        field.hits.is_empty(),
        "`text:lunch` is the phrase \"text lunch\""
    );
    let wildcard = within(alice.search(query("lun*"))).await.expect("search");
    assert!(wildcard.hits.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn edits_and_deletes_are_searched_in_their_current_state() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let room = group(&alice, &[]).await;
    let seq = sent(&alice, &room, "m1", "meet at the harbour").await;
    let gone = sent(&alice, &room, "m2", "the secret harbour code").await;
    search_until(&alice, query("harbour"), |h| h.len() == 2).await;

    within(alice.edit(v1::EditRequest {
        room_id: room.clone(),
        target_seq: seq,
        content: support::server::text("meet at the lighthouse"),
    }))
    .await
    .expect("edit");
    within(alice.delete(v1::DeleteRequest {
        room_id: room.clone(),
        target_seq: gone,
        ..Default::default()
    }))
    .await
    .expect("delete");

    let found = search_until(&alice, query("lighthouse"), |h| h.len() == 1).await;
    assert_eq!(texts(&found.hits), ["meet at the lighthouse"]);
    search_until(&alice, query("harbour"), <[_]>::is_empty).await;
    let code = within(alice.search(query("secret"))).await.expect("search");
    assert!(code.hits.is_empty(), "a deleted message is never returned");
    server.stop().await;
}

#[tokio::test]
async fn only_what_the_caller_may_read_now() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let carol = server.client("carol").await;
    let room = group(&alice, &["bob"]).await;
    sent(&alice, &room, "m1", "quarterly numbers are in").await;
    search_until(&bob, query("quarterly"), |h| h.len() == 1).await;

    // A user outside the room finds nothing, and a room filter on it is NOT_FOUND exactly as
    // History's (R-6.4.2).
    let outside = within(carol.search(query("quarterly")))
        .await
        .expect("search");
    assert!(outside.hits.is_empty());
    let filtered = refused(
        within(carol.search(v1::SearchRequest {
            room_id: room.clone(),
            ..query("quarterly")
        }))
        .await,
    );
    let history = refused(
        within(carol.history(v1::HistoryRequest {
            room_id: room.clone(),
            ..Default::default()
        }))
        .await,
    );
    assert_eq!(filtered.code(), ErrorCode::NotFound);
    assert_eq!(
        (filtered.message.as_str(), filtered.field.as_str()),
        (history.message.as_str(), history.field.as_str())
    );
    let missing = refused(
        within(carol.search(v1::SearchRequest {
            room_id: "g.00000000000000000000000000000000".into(),
            ..query("quarterly")
        }))
        .await,
    );
    assert_eq!(
        (missing.code(), missing.message.as_str()),
        (ErrorCode::NotFound, history.message.as_str())
    );

    // Carol joins later (visibility since join): the older message stays hidden from her.
    within(alice.add_members(v1::AddMembersRequest {
        room_id: room.clone(),
        user_ids: vec!["carol".into()],
        role: v1::Role::Member as i32,
    }))
    .await
    .expect("add carol");
    sent(&alice, &room, "m2", "quarterly review tomorrow").await;
    let found = search_until(&carol, query("quarterly"), |h| !h.is_empty()).await;
    assert_eq!(texts(&found.hits), ["quarterly review tomorrow"]);

    // Bob is removed: he finds nothing there any more, at once.
    within(alice.remove_member(v1::RemoveMemberRequest {
        room_id: room.clone(),
        user_id: "bob".into(),
    }))
    .await
    .expect("remove bob");
    let after = within(bob.search(query("quarterly")))
        .await
        .expect("search");
    assert!(
        after.hits.is_empty(),
        "a removed member found {:?}",
        after.hits
    );
    server.stop().await;
}

#[tokio::test]
async fn filters_and_cursor_paging() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    let other = group(&alice, &[]).await;
    for i in 0..7 {
        sent(
            &alice,
            &room,
            &format!("a{i}"),
            &format!("status report {i}"),
        )
        .await;
    }
    sent(&bob, &room, "b1", "my status report").await;
    sent(&alice, &other, "o1", "status of the other room").await;
    let all = search_until(&alice, query("status"), |h| h.len() == 9).await;
    // Newest first.
    let created: Vec<i64> = all
        .hits
        .iter()
        .map(|h| h.message.as_ref().expect("message").created_at_ms)
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted);

    // Pages of 3 walk every hit once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = within(alice.search(v1::SearchRequest {
            limit: 3,
            cursor: cursor.clone(),
            ..query("status")
        }))
        .await
        .expect("page");
        assert!(page.hits.len() <= 3);
        seen.extend(page.hits.iter().map(|h| (h.room_id.clone(), h.seq)));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let expected: Vec<(String, u64)> = all
        .hits
        .iter()
        .map(|h| (h.room_id.clone(), h.seq))
        .collect();
    assert_eq!(seen, expected);

    // Room, sender and time filters.
    let in_other = within(alice.search(v1::SearchRequest {
        room_id: other.clone(),
        ..query("status")
    }))
    .await
    .expect("room filter");
    assert_eq!(texts(&in_other.hits), ["status of the other room"]);
    let by_bob = within(alice.search(v1::SearchRequest {
        sender: "bob".into(),
        ..query("status")
    }))
    .await
    .expect("sender filter");
    assert_eq!(texts(&by_bob.hits), ["my status report"]);
    let newest = created[0];
    let window = within(alice.search(v1::SearchRequest {
        after_ms: newest,
        before_ms: newest + 1,
        ..query("status")
    }))
    .await
    .expect("time filter");
    assert!(!window.hits.is_empty());
    assert!(
        window
            .hits
            .iter()
            .all(|h| h.message.as_ref().expect("m").created_at_ms == newest)
    );

    // limit is capped at max_page_size, not refused.
    let capped = within(alice.search(v1::SearchRequest {
        limit: 100_000,
        ..query("status")
    }))
    .await
    .expect("capped");
    assert_eq!(capped.hits.len(), 9);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_names_its_field() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let cases = [
        (query(""), "query"),
        (query("   "), "query"),
        (query(&"a".repeat(257)), "query"),
        (query("?!"), "query"),
        (
            v1::SearchRequest {
                cursor: "not-a-cursor".into(),
                ..query("hello")
            },
            "cursor",
        ),
        (
            v1::SearchRequest {
                after_ms: 2_000,
                before_ms: 1_000,
                ..query("hello")
            },
            "before_ms",
        ),
        (
            v1::SearchRequest {
                sender: "Not A User!".into(),
                ..query("hello")
            },
            "sender",
        ),
    ];
    for (request, field) in cases {
        let err = refused(within(alice.search(request.clone())).await);
        assert_eq!(
            (err.code(), err.field.as_str()),
            (ErrorCode::InvalidArgument, field),
            "{request:?}"
        );
    }
    // 256 characters is allowed.
    let longest = format!("{}a", "ab ".repeat(85));
    assert_eq!(longest.chars().count(), 256);
    within(alice.search(query(&longest)))
        .await
        .expect("256 characters");
    server.stop().await;
}

#[tokio::test]
async fn searches_are_rate_limited_per_user() {
    let server = TestServer::start_with(|c| {
        c.limits.rate_search = chatwire_server::config::RateLimit {
            rate_per_minute: 1,
            burst: 2,
        };
    })
    .await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    within(alice.search(query("one"))).await.expect("first");
    within(alice.search(query("two"))).await.expect("second");
    let err = refused(within(alice.search(query("three"))).await);
    assert_eq!(err.code(), ErrorCode::RateLimited);
    assert!(err.retry_after_ms > 0);
    within(bob.search(query("one")))
        .await
        .expect("bob has his own bucket");
    server.stop().await;
}

#[tokio::test]
async fn capability_listed_only_when_search_is_on() {
    let on = TestServer::start().await;
    let client = on.open().await;
    let response = within(client.connect(&on.token("alice")))
        .await
        .expect("connect");
    assert!(response.capabilities.iter().any(|c| c == "search"));
    on.stop().await;

    let off = TestServer::start_with(|c| c.search.enabled = false).await;
    let client = off.open().await;
    let response = within(client.connect(&off.token("alice")))
        .await
        .expect("connect");
    assert!(!response.capabilities.iter().any(|c| c == "search"));
    assert_eq!(
        code_of(within(client.search(query("hello"))).await),
        ErrorCode::Unsupported
    );
    assert!(
        !off.config.data_dir.join("search").exists(),
        "no index without search"
    );
    off.stop().await;
}

#[tokio::test]
async fn the_index_is_rebuilt_from_the_room_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    // Messages written while search is off are in the log only.
    let server = TestServer::start_in(data.clone(), |c| c.search.enabled = false).await;
    let alice = server.client("alice").await;
    let room = group(&alice, &[]).await;
    sent(&alice, &room, "m1", "archived invoice from last year").await;
    let deleted = sent(&alice, &room, "m2", "invoice draft").await;
    within(alice.delete(v1::DeleteRequest {
        room_id: room.clone(),
        target_seq: deleted,
        ..Default::default()
    }))
    .await
    .expect("delete");
    server.stop().await;

    // First start with search: the index is built from the log before serving.
    let server = TestServer::start_in(data.clone(), |_| {}).await;
    let alice = server.client("alice").await;
    let found = within(alice.search(query("invoice")))
        .await
        .expect("search");
    assert_eq!(texts(&found.hits), ["archived invoice from last year"]);
    server.stop().await;

    // `chatwire reindex` on a stopped server: empties and refills it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatwire"))
        .args(["reindex", "--data-dir"])
        .arg(&data)
        .output()
        .expect("chatwire reindex runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "reindex failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("reindexed 1 messages of 1 rooms"),
        "{stdout}"
    );
    let server = TestServer::start_in(data.clone(), |_| {}).await;
    let alice = server.client("alice").await;
    let found = within(alice.search(query("archived")))
        .await
        .expect("search");
    assert_eq!(found.hits.len(), 1);
    server.stop().await;

    // A restored backup (no index: it is derived data) is searchable at its first start.
    let chatwire = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatwire"))
            .args(args)
            .output()
            .expect("chatwire runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let backup = dir.path().join("backup");
    let restored = dir.path().join("restored");
    chatwire(&[
        "backup".as_ref(),
        "--to".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    chatwire(&[
        "restore".as_ref(),
        "--from".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        restored.as_os_str(),
    ]);
    assert!(
        !restored.join("search").exists(),
        "the index is not restored"
    );
    let server = TestServer::start_in(restored, |_| {}).await;
    let alice = server.client("alice").await;
    let found = within(alice.search(query("invoice")))
        .await
        .expect("search");
    assert_eq!(texts(&found.hits), ["archived invoice from last year"]);
    server.stop().await;
}
