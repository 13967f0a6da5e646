//! The moderation stage end to end (issue 21; docs/protocol.md §8.10, docs/operations.md
//! "Moderation"): a real server configured with a server-wide and a per-room word list, real
//! WebSocket clients. A rejected word fails with CONTENT_REJECTED and creates nothing; a masked
//! word is stored masked (History, live events), yet a retry of the Send is recognised by the
//! content the client sent; an edit is masked too; a room's own list applies in that room only;
//! the spam repeat rule flags without refusing under the defaults.
//!
//! ```sh
//! cargo test -p chatwire-server --test moderation
//! ```

mod support;

use std::collections::BTreeMap;

use chatwire_protocol::v1;
use chatwire_server::chat::ids::{RoomId, UserId};
use chatwire_server::config::{WordAction, WordRule};
use support::server::{TestServer, code_of, group, history, refused, send};

fn rule(word: &str, action: WordAction) -> WordRule {
    WordRule {
        word: word.into(),
        action,
    }
}

/// The page's texts in seq order.
fn texts(page: &v1::HistoryResponse) -> Vec<String> {
    let mut messages = page.messages.clone();
    messages.sort_by_key(|m| m.seq);
    messages
        .iter()
        .map(|m| {
            m.content
                .as_ref()
                .map(|c| c.text.clone())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn word_lists_reject_and_mask_and_dedupe_compares_what_the_client_sent() {
    let alice = UserId::parse("alice").expect("user id");
    let kids = RoomId::group(&alice, "kids").to_string();
    let server = TestServer::start_with(|config| {
        config.moderation.words = vec![
            rule("scam", WordAction::Reject),
            rule("heck", WordAction::Mask),
        ];
        config.moderation.rooms =
            BTreeMap::from([(kids.clone(), vec![rule("darn", WordAction::Mask)])]);
    })
    .await;
    let a = server.client("alice").await;
    let room = group(&a, &["bob"]).await;

    // R-8.10.1: rejected, nothing created.
    let err = refused(a.send(send(&room, "m1", "a SCAM for sure")).await);
    assert_eq!(err.code(), v1::ErrorCode::ContentRejected);
    assert_eq!(err.field, "content.text");
    assert!(!err.retryable);
    assert!(history(&a, &room, None, 50).await.messages.is_empty());

    // R-8.10.2: stored masked; a retry of the same Send is the same message.
    let first = a
        .send(send(&room, "m2", "what the heck"))
        .await
        .expect("send");
    let retry = a
        .send(send(&room, "m2", "what the heck"))
        .await
        .expect("retry");
    assert_eq!((retry.seq, retry.duplicate), (first.seq, true));
    // The same id with the content as stored (masked) is other content: a conflict.
    assert_eq!(
        code_of(a.send(send(&room, "m2", "what the ****")).await),
        v1::ErrorCode::Conflict
    );
    // Only the room's own list masks "darn"; here it passes.
    a.send(send(&room, "m3", "darn it")).await.expect("send");
    let page = history(&a, &room, None, 50).await;
    assert_eq!(texts(&page), vec!["what the ****", "darn it"]);

    // Edits are moderated too: masked, and a rejected word refuses the edit.
    let edited = a
        .edit(v1::EditRequest {
            room_id: room.clone(),
            target_seq: first.seq,
            content: Some(v1::Content {
                text: "heck no".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("edit");
    assert!(edited.seq > 0);
    let err = refused(
        a.edit(v1::EditRequest {
            room_id: room.clone(),
            target_seq: first.seq,
            content: Some(v1::Content {
                text: "scam".into(),
                ..Default::default()
            }),
        })
        .await,
    );
    assert_eq!(err.code(), v1::ErrorCode::ContentRejected);
    let page = history(&a, &room, None, 50).await;
    assert_eq!(texts(&page), vec!["**** no", "darn it"]);

    // The room with its own list.
    let created = a
        .create_group(v1::CreateGroupRequest {
            name: "kids".into(),
            client_request_id: "kids".into(),
            ..Default::default()
        })
        .await
        .expect("create");
    assert_eq!(created.room.map(|r| r.id), Some(kids.clone()));
    a.send(send(&kids, "k1", "darn, heck")).await.expect("send");
    assert_eq!(
        texts(&history(&a, &kids, None, 50).await),
        vec!["****, ****"]
    );
    server.stop().await;
}

#[tokio::test]
async fn spam_rules_flag_but_do_not_refuse_under_the_defaults() {
    let server = TestServer::start().await;
    let a = server.client("alice").await;
    let room = group(&a, &[]).await;
    // More repeats than the default max_repeats (3): still posted (flagged for review only).
    for n in 0..6 {
        a.send(send(&room, &format!("r{n}"), "same text"))
            .await
            .expect("posted");
    }
    assert_eq!(history(&a, &room, None, 50).await.messages.len(), 6);
    server.stop().await;
}

/// R-18.1.7: a room's own send bucket refuses whoever sends once it is empty, while another
/// room is unaffected; the limit is advertised in `Limits`.
#[tokio::test]
async fn a_room_send_limit_refuses_any_member_once_the_room_bucket_is_empty() {
    let server = TestServer::start_with(|config| {
        config.limits.rate_room_sends = chatwire_server::config::RateLimit {
            rate_per_minute: 60,
            burst: 2,
        };
    })
    .await;
    let (a, connected) = {
        let client = server.open().await;
        let connected = client
            .connect(&server.token("alice"))
            .await
            .expect("connect");
        (client, connected)
    };
    let limits = connected.limits.expect("limits");
    assert_eq!(
        (limits.room_send_rate_per_second, limits.room_send_burst),
        (1, 2)
    );
    let b = server.client("bob").await;
    let room = group(&a, &["bob"]).await;
    let other = group(&a, &[]).await;
    a.send(send(&room, "a1", "one")).await.expect("first");
    b.send(send(&room, "b1", "two")).await.expect("second");
    let err = refused(b.send(send(&room, "b2", "three")).await);
    assert_eq!(err.code(), v1::ErrorCode::RateLimited);
    assert!(err.retry_after_ms > 0);
    a.send(send(&other, "a2", "elsewhere"))
        .await
        .expect("another room");
    server.stop().await;
}

/// A scorer on loopback: answers `{"score": N}` where N is the number of `!` in the text
/// times 40, and records the texts it was asked about; a text holding "hang" never gets an
/// answer.
async fn scorer() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/score",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let tx = tx.clone();
            async move {
                let text = body["text"].as_str().unwrap_or_default().to_owned();
                let _ = tx.send(body);
                if text.contains("hang") {
                    std::future::pending::<()>().await;
                }
                let score = 40 * text.matches('!').count();
                axum::Json(serde_json::json!({ "score": score }))
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/score"), rx)
}

/// The external scorer over real HTTP: its score counts toward `reject_score`, and a scorer
/// that does not answer in time fails closed (UNAVAILABLE, retryable) when so configured.
#[tokio::test]
async fn an_external_scorer_scores_and_a_silent_one_fails_closed() {
    let (url, mut asked) = scorer().await;
    let server = TestServer::start_with(|config| {
        config.moderation.scorer.url = Some(url);
        config.moderation.scorer.timeout_ms = 300;
        config.moderation.scorer.fail_open = false;
        config.moderation.reject_score = 80;
    })
    .await;
    let a = server.client("alice").await;
    let room = group(&a, &[]).await;
    a.send(send(&room, "s1", "calm!")).await.expect("score 40");
    let body = asked.recv().await.expect("the scorer was asked");
    assert_eq!(body["text"], "calm!");
    assert_eq!(body["sender"], "alice");
    assert_eq!(body["room_id"], room.as_str());
    let err = refused(a.send(send(&room, "s2", "angry!!")).await);
    assert_eq!(err.code(), v1::ErrorCode::ContentRejected);
    let err = refused(a.send(send(&room, "s3", "hang on")).await);
    assert_eq!(err.code(), v1::ErrorCode::Unavailable);
    assert!(err.retryable);
    let texts = texts(&history(&a, &room, None, 50).await);
    assert_eq!(texts, vec!["calm!"]);
    server.stop().await;
}

fn report(room: &str, seq: u64, reason: &str) -> v1::ReportMessageRequest {
    v1::ReportMessageRequest {
        room_id: room.to_owned(),
        target_seq: seq,
        reason: reason.to_owned(),
    }
}

/// The `(id, status)` of each item of a review page.
fn statuses(page: &serde_json::Value) -> Vec<(String, String)> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            let field = |name: &str| item[name].as_str().unwrap_or_default().to_owned();
            (field("id"), field("status"))
        })
        .collect()
}

/// Issue 21 part 2, end to end: a message the stage flags and one members report land in the
/// review queue of the admin API (a clean one does not); an approval keeps the message, a
/// removal deletes it for everyone with its reason in the room's audit; the first review
/// stands; the queue survives a restart.
#[tokio::test]
async fn flagged_and_reported_messages_are_reviewed_from_the_admin_api() {
    use reqwest::Method;
    let data = tempfile::tempdir().expect("data dir");
    let flag_bets = |config: &mut chatwire_server::config::Config| {
        config.moderation.words = vec![rule("bet", WordAction::Flag)];
    };
    let server = TestServer::start_in(data.path().to_path_buf(), flag_bets).await;
    let a = server.client("alice").await;
    let b = server.client("bob").await;
    let c = server.client("carol").await;
    let room = group(&a, &["bob", "carol"]).await;
    let bet = a
        .send(send(&room, "m1", "place your bet"))
        .await
        .expect("flagged, posted");
    let clean = a.send(send(&room, "m2", "hello")).await.expect("posted");
    let spam = a
        .send(send(&room, "m3", "buy followers"))
        .await
        .expect("posted");

    let reported = b
        .report_message(report(&room, spam.seq, "spam"))
        .await
        .expect("report");
    let again = b
        .report_message(report(&room, spam.seq, "spam again"))
        .await
        .expect("repeat");
    let other = c
        .report_message(report(&room, spam.seq, "scam"))
        .await
        .expect("report");
    assert_eq!(reported.report_id, format!("{room}:{}", spam.seq));
    assert_eq!(
        (&again.report_id, &other.report_id),
        (&reported.report_id, &reported.report_id)
    );
    let own = refused(a.report_message(report(&room, bet.seq, "mine")).await);
    assert_eq!(
        (own.code(), own.field.as_str()),
        (v1::ErrorCode::InvalidArgument, "target_seq")
    );

    let (status, queue) = server.admin(Method::GET, "/admin/reviews").await;
    assert_eq!(status, 200, "{queue}");
    let bet_id = format!("{room}:{}", bet.seq);
    assert_eq!(
        statuses(&queue),
        [
            (bet_id.clone(), "open".to_owned()),
            (reported.report_id.clone(), "open".to_owned())
        ],
        "the clean message {} is not queued",
        clean.seq
    );
    let items = queue["items"].as_array().expect("items");
    assert_eq!(items[0]["flagged"], true);
    assert_eq!(items[0]["reasons"], serde_json::json!(["words.flag"]));
    assert_eq!(items[0]["text"], "place your bet");
    let reports: Vec<_> = items[1]["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .map(|r| {
            (
                r["reporter"].as_str().unwrap_or_default(),
                r["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(reports, [("bob", "spam"), ("carol", "scam")]);

    let (status, approved) = server
        .admin_json(
            Method::POST,
            &format!("/admin/reviews/{bet_id}/approve"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(
        (status, approved["status"].as_str()),
        (200, Some("approved")),
        "{approved}"
    );
    let spam_id = &reported.report_id;
    let (status, body) = server
        .admin_json(
            Method::POST,
            &format!("/admin/reviews/{spam_id}/remove"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 400, "a removal needs a reason: {body}");
    let (status, removed) = server
        .admin_json(
            Method::POST,
            &format!("/admin/reviews/{spam_id}/remove"),
            &serde_json::json!({"reason": "spam ring"}),
        )
        .await;
    assert_eq!(
        (status, removed["status"].as_str()),
        (200, Some("removed")),
        "{removed}"
    );
    assert_eq!(
        removed["text"],
        serde_json::Value::Null,
        "the content is gone"
    );
    let deleted_seq = removed["deleted_seq"].as_u64().expect("deleted_seq");
    assert!(deleted_seq > spam.seq);
    // The first review stands.
    let (_, still) = server
        .admin_json(
            Method::POST,
            &format!("/admin/reviews/{spam_id}/approve"),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(still["status"], "removed");

    // What members see: the removed message is a tombstone, the approved one stays.
    let page = history(&b, &room, None, 10).await;
    let by_seq = |seq: u64| page.messages.iter().find(|m| m.seq == seq).expect("listed");
    assert!(by_seq(spam.seq).deleted && by_seq(spam.seq).content.is_none());
    assert!(!by_seq(bet.seq).deleted);
    let (_, audit) = server
        .admin(Method::GET, &format!("/admin/rooms/{room}/audit"))
        .await;
    let entry = &audit["entries"][0];
    assert_eq!(
        (
            entry["action"].as_str(),
            entry["actor"].as_str(),
            entry["reason"].as_str()
        ),
        (Some("message_removed"), Some("system"), Some("spam ring"))
    );
    assert_eq!(
        (entry["seq"].as_u64(), entry["target_seq"].as_u64()),
        (Some(deleted_seq), Some(spam.seq))
    );

    let (_, open) = server.admin(Method::GET, "/admin/reviews").await;
    assert_eq!(statuses(&open), []);
    // A deleted message can no longer be reported.
    let gone = refused(c.report_message(report(&room, spam.seq, "late")).await);
    assert_eq!(gone.code(), v1::ErrorCode::NotFound);

    server.stop().await;
    let server = TestServer::start_in(data.path().to_path_buf(), flag_bets).await;
    let (_, kept) = server
        .admin(Method::GET, &format!("/admin/reviews?room_id={room}"))
        .await;
    assert_eq!(
        statuses(&kept),
        [
            (bet_id, "approved".to_owned()),
            (spam_id.clone(), "removed".to_owned())
        ]
    );
    server.stop().await;
}

/// R-8.11.3: reports are limited per user (`limits.rate_reports`), whatever the message.
#[tokio::test]
async fn reports_are_rate_limited_per_user() {
    let server = TestServer::start_with(|config| {
        config.limits.rate_reports = chatwire_server::config::RateLimit {
            rate_per_minute: 1,
            burst: 2,
        };
    })
    .await;
    let a = server.client("alice").await;
    let b = server.client("bob").await;
    let c = server.client("carol").await;
    let room = group(&a, &["bob", "carol"]).await;
    let mut seqs = Vec::new();
    for n in 0..3 {
        seqs.push(
            a.send(send(&room, &format!("m{n}"), "text"))
                .await
                .expect("sent")
                .seq,
        );
    }
    b.report_message(report(&room, seqs[0], "one"))
        .await
        .expect("first");
    b.report_message(report(&room, seqs[1], "two"))
        .await
        .expect("second");
    let err = refused(b.report_message(report(&room, seqs[2], "three")).await);
    assert_eq!(err.code(), v1::ErrorCode::RateLimited);
    assert!(err.retry_after_ms > 0);
    c.report_message(report(&room, seqs[2], "another user"))
        .await
        .expect("carol has her own bucket");
    server.stop().await;
}
