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
