//! The admin HTTP API against a real server: the admin key, rooms and members, server-side
//! sends seen live by a WebSocket client, idempotency, history, moderation, revocation,
//! token minting, erasure, the OpenAPI document, readiness and metrics.
//!
//! ```sh
//! cargo test -p chatwire-server --test admin_api
//! ```

mod support;

use chatwire_protocol::v1;
use chatwire_server::clock::{Clock, SystemClock};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::server::{TestServer, group, room_events, send, within};

/// A plain-HTTP client of one test server's admin API.
struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Admin {
    fn new(server: &TestServer) -> Self {
        Self {
            http: support::http_client(),
            base: server.http_url(),
            key: server.admin_key(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = within(request.send()).await.expect("request");
        let status = response.status();
        let body = within(response.json::<Value>()).await.expect("JSON body");
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let response = within(self.http.get(format!("{}{path}", self.base)).send())
            .await
            .expect("request");
        let status = response.status();
        (status, within(response.text()).await.expect("text"))
    }

    /// Creates a group owned by `owner` with `members`; returns its id.
    async fn group(&self, owner: &str, members: &[&str]) -> String {
        let (status, body) = self
            .post(
                "/admin/rooms",
                json!({ "owner": owner, "name": "ops", "member_ids": members }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["room"]["id"].as_str().expect("room id").to_owned()
    }
}

fn texts(history: &Value) -> Vec<(String, String, bool)> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["sender"].as_str().unwrap_or_default().to_owned(),
                m["content"]["text"].as_str().unwrap_or_default().to_owned(),
                m["deleted"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_key() {
    let server = TestServer::start().await;
    let http = support::http_client();
    let url = format!("{}/admin/stats", server.http_url());
    let missing = within(http.get(&url).send()).await.expect("request");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let body: Value = within(missing.json()).await.expect("JSON error");
    assert_eq!(body["code"], "UNAUTHENTICATED");

    let wrong = within(http.get(&url).bearer_auth("not-the-key").send())
        .await
        .expect("request");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let unknown = within(
        http.get(format!("{}/admin/nowhere", server.http_url()))
            .send(),
    )
    .await
    .expect("request");
    assert_eq!(
        unknown.status(),
        StatusCode::UNAUTHORIZED,
        "every /admin path"
    );

    let admin = Admin::new(&server);
    let (status, stats) = admin.get("/admin/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    let (status, body) = admin.get("/admin/nowhere").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (status, body) = admin.get("/admin/rooms/g.missing").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (status, body) = admin
        .post("/admin/rooms", json!({ "name": "no owner" }))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_ARGUMENT"))
    );
    let (status, body) = admin
        .post("/admin/rooms", json!({ "owner": "a b", "name": "x" }))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("owner"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_side_send_reaches_a_subscribed_member_live_and_is_idempotent() {
    let server = TestServer::start().await;
    let admin = Admin::new(&server);
    let room = admin.group("alice", &[]).await;
    let (status, added) = admin
        .post(
            &format!("/admin/rooms/{room}/members"),
            json!({ "user_ids": ["bob"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["added"][0]["user_id"], "bob");
    assert_eq!(added["added"][0]["role"], "member");
    let (_, members) = admin
        .get(&format!("/admin/rooms/{room}/members?limit=1"))
        .await;
    assert_eq!(members["members"][0]["user_id"], "alice");
    assert_eq!(members["next_after"], "alice");

    let bob = server.client("bob").await;
    let page = bob
        .subscribe(v1::SubscribeRequest {
            room_id: room.clone(),
            after_seq: 0,
            limit: 0,
        })
        .await
        .expect("subscribe");
    assert!(page.complete);

    let message = json!({
        "sender": "deploy-bot",
        "client_msg_id": "deploy-42",
        "content": { "text": "deploy finished" },
    });
    let path = format!("/admin/rooms/{room}/messages");
    let (status, sent) = admin.post(&path, message.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let seq = sent["seq"].as_u64().expect("seq");
    assert_eq!(sent["ordinal"], 1);
    assert_eq!(sent["duplicate"], false);

    let live = room_events(&bob, 1).await;
    assert_eq!(live[0].seq, seq);
    assert_eq!(live[0].sender, "deploy-bot");
    assert!(matches!(
        &live[0].kind,
        Some(v1::room_event::Kind::MessageCreated(m))
            if m.content.as_ref().is_some_and(|c| c.text == "deploy finished")
    ));

    let (status, retry) = admin.post(&path, message).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (retry["seq"].as_u64(), retry["duplicate"].as_bool()),
        (Some(seq), Some(true))
    );
    let changed = json!({
        "sender": "deploy-bot",
        "client_msg_id": "deploy-42",
        "content": { "text": "something else" },
    });
    let (status, conflict) = admin.post(&path, changed).await;
    assert_eq!(
        (status, conflict["code"].as_str()),
        (StatusCode::CONFLICT, Some("CONFLICT"))
    );

    let (status, history) = admin.get(&format!("/admin/rooms/{room}/history")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        texts(&history),
        vec![("deploy-bot".to_owned(), "deploy finished".to_owned(), false)]
    );
    assert_eq!(history["messages"][0]["seq"].as_u64(), Some(seq));
    let (_, before) = admin
        .get(&format!("/admin/rooms/{room}/history?before_seq={seq}"))
        .await;
    assert!(texts(&before).is_empty());
    // R-9.1.1, as on the protocol: before_seq 0 is no position, the newest page.
    let (status, zero) = admin
        .get(&format!("/admin/rooms/{room}/history?before_seq=0"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&zero), texts(&history));
    let (status, _) = admin
        .get(&format!(
            "/admin/rooms/{room}/history?before_seq=5&after_seq=1"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, room_view) = admin.get(&format!("/admin/rooms/{room}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            room_view["member_count"].as_u64(),
            room_view["last_seq"].as_u64()
        ),
        (Some(2), Some(seq))
    );
    let (status, presence) = admin.get("/admin/users/bob/presence").await;
    assert_eq!(
        (status, presence["online"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (_, rooms) = admin.get("/admin/users/bob/rooms").await;
    assert_eq!(rooms["rooms"][0]["room_id"].as_str(), Some(room.as_str()));
    server.stop().await;
}

#[tokio::test]
async fn settings_roles_and_removal_go_through_the_writer() {
    let server = TestServer::start().await;
    let admin = Admin::new(&server);
    let room = admin.group("alice", &["bob", "carol"]).await;
    let (status, updated) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/admin/rooms/{room}"),
            Some(json!({ "topic": "incidents", "history_visibility": "full" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["room"]["topic"], "incidents");
    assert_eq!(updated["room"]["history_visibility"], "full");
    assert!(updated["seq"].as_u64() > Some(0));

    let (status, role) = admin
        .call(
            reqwest::Method::PUT,
            &format!("/admin/rooms/{room}/members/bob/role"),
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{role}");
    let (status, removed) = admin
        .delete(&format!("/admin/rooms/{room}/members/carol"))
        .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    let (_, members) = admin.get(&format!("/admin/rooms/{room}/members")).await;
    let roles: Vec<(&str, &str)> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap_or(""),
                m["role"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(roles, vec![("alice", "owner"), ("bob", "admin")]);
    server.stop().await;
}

/// Retention of a room whose log lies in one time bucket: nothing to drop, however late the
/// cut (the head's bucket is always kept); clients still read from seq 1. Rooms spread over
/// several buckets are covered by `tests/retention.rs` and the store suite.
#[tokio::test]
async fn retention_keeps_the_head_bucket_and_reports_the_cut() {
    // Week-long buckets: the whole test runs in one of them.
    let server = TestServer::start_with(|c| {
        c.storage.bucket_width_ms = chatwire_server::config::MAX_BUCKET_WIDTH_MS;
    })
    .await;
    let admin = Admin::new(&server);
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    alice.send(send(&room, "m1", "kept")).await.expect("send");
    let path = format!("/admin/rooms/{room}/retention");
    let (status, body) = admin
        .post(
            &path,
            json!({ "keep_after_ms": SystemClock.now_ms() + 60_000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "dropped_buckets": 0, "first_retained_seq": 1 })
    );
    let replay = alice
        .subscribe(v1::SubscribeRequest {
            room_id: room.clone(),
            after_seq: 0,
            limit: 0,
        })
        .await
        .expect("subscribe");
    assert_eq!(replay.first_visible_seq, 1);
    assert_eq!(replay.events.first().map(|e| e.seq), Some(1));

    let (status, body) = admin.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = admin
        .post(
            "/admin/rooms/g:missing/retention",
            json!({ "keep_after_ms": 0 }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_moderation_delete_shows_as_a_tombstone_in_client_history() {
    let server = TestServer::start().await;
    let admin = Admin::new(&server);
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    let sent = alice
        .send(send(&room, "m1", "something rude"))
        .await
        .expect("send");
    let (status, deleted) = admin
        .delete(&format!("/admin/rooms/{room}/messages/{}", sent.seq))
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert!(deleted["seq"].as_u64() > Some(sent.seq));
    let history = alice
        .history(v1::HistoryRequest {
            room_id: room.clone(),
            ..Default::default()
        })
        .await
        .expect("history");
    let message = &history.messages[0];
    assert_eq!(message.seq, sent.seq);
    assert!(message.deleted);
    assert!(message.content.is_none());
    let (_, again) = admin
        .delete(&format!("/admin/rooms/{room}/messages/{}", sent.seq))
        .await;
    assert_eq!(again["seq"], 0, "deleting twice changes nothing");
    let (status, _) = admin
        .delete(&format!("/admin/rooms/{room}/messages/999"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// Issue 21: a moderator's deletion and a member's restriction, by a client and by the admin
/// API, appear in the room's audit with who, when, why and which seq, and never with content;
/// the restricted member's Send is refused with RESTRICTED until the admin API lifts it.
#[tokio::test]
async fn the_audit_lists_deletions_and_restrictions_without_content() {
    let server = TestServer::start().await;
    let admin = Admin::new(&server);
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob", "carol"]).await;
    alice
        .set_role(v1::SetRoleRequest {
            room_id: room.clone(),
            user_id: "carol".into(),
            role: v1::Role::Moderator as i32,
        })
        .await
        .expect("make carol a moderator");
    let carol = server.client("carol").await;
    let own = bob.send(send(&room, "b1", "typo")).await.expect("send");
    let rude = bob
        .send(send(&room, "b2", "something rude"))
        .await
        .expect("send");
    let by_author = bob
        .delete(v1::DeleteRequest {
            room_id: room.clone(),
            target_seq: own.seq,
            reason: String::new(),
        })
        .await
        .expect("own delete");
    let by_moderator = carol
        .delete(v1::DeleteRequest {
            room_id: room.clone(),
            target_seq: rude.seq,
            reason: "insults".into(),
        })
        .await
        .expect("moderator delete");
    let until = SystemClock.now_ms() + 3_600_000;
    let (status, restricted) = admin
        .put(
            &format!("/admin/rooms/{room}/members/bob/restriction"),
            json!({ "until_ms": until, "reason": "cool down" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restricted}");
    let restricted_seq = restricted["seq"].as_u64().expect("seq");
    let refused = bob
        .send(send(&room, "b3", "again"))
        .await
        .expect_err("restricted");
    assert!(
        matches!(&refused, chatwire_conformance::client::ClientError::Server(e) if e.code() == v1::ErrorCode::Restricted),
        "{refused:?}"
    );
    let (_, members) = admin.get(&format!("/admin/rooms/{room}/members")).await;
    let shown: Vec<(String, String, i64)> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap_or_default().to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["restricted_until_ms"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        shown.contains(&("bob".into(), "member".into(), until)),
        "{shown:?}"
    );
    assert!(
        shown.contains(&("carol".into(), "moderator".into(), 0)),
        "{shown:?}"
    );
    let (status, lifted) = admin
        .put(
            &format!("/admin/rooms/{room}/members/bob/restriction"),
            json!({ "until_ms": 0 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{lifted}");
    bob.send(send(&room, "b3", "again")).await.expect("lifted");

    let (status, audit) = admin.get(&format!("/admin/rooms/{room}/audit")).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries: Vec<(u64, String, String, u64, String, String)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap_or_default(),
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["actor"].as_str().unwrap_or_default().to_owned(),
                e["target_seq"].as_u64().unwrap_or_default(),
                e["user_id"].as_str().unwrap_or_default().to_owned(),
                e["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let row = |seq: u64, action: &str, actor: &str, target: u64, user: &str, reason: &str| {
        (
            seq,
            action.into(),
            actor.into(),
            target,
            user.into(),
            reason.into(),
        )
    };
    assert_eq!(
        entries,
        vec![
            row(by_author.seq, "message_deleted", "bob", own.seq, "bob", ""),
            row(
                by_moderator.seq,
                "message_removed",
                "carol",
                rude.seq,
                "bob",
                "insults"
            ),
            row(
                restricted_seq,
                "member_restricted",
                "system",
                0,
                "bob",
                "cool down"
            ),
            row(
                lifted["seq"].as_u64().unwrap_or_default(),
                "member_restricted",
                "system",
                0,
                "bob",
                ""
            ),
        ]
    );
    assert!(audit["entries"][0]["ts_ms"].as_i64() > Some(0));
    assert!(
        !audit.to_string().contains("rude"),
        "no content in the audit: {audit}"
    );
    assert_eq!(audit["has_more"], false);
    // Paging: one entry, then the rest after it.
    let (_, first) = admin
        .get(&format!("/admin/rooms/{room}/audit?limit=1"))
        .await;
    assert_eq!(first["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(first["has_more"], true);
    let next = first["next_after_seq"].as_u64().expect("cursor");
    let (_, rest) = admin
        .get(&format!("/admin/rooms/{room}/audit?after_seq={next}"))
        .await;
    assert_eq!(rest["entries"].as_array().map(Vec::len), Some(3));
    // A restriction of an owner is refused; a reason too long is 413.
    let (status, _) = admin
        .put(
            &format!("/admin/rooms/{room}/members/alice/restriction"),
            json!({ "until_ms": until }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin
        .delete(&format!(
            "/admin/rooms/{room}/messages/{}?reason={}",
            rude.seq,
            "x".repeat(501)
        ))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    server.stop().await;
}

#[tokio::test]
async fn revocation_closes_sessions_and_refuses_older_tokens() {
    let server = TestServer::start().await;
    let admin = Admin::new(&server);
    let issued = SystemClock.now_ms();
    let old_token = server.token_issued_at("bob", issued);
    let bob = server.open().await;
    bob.connect(&old_token).await.expect("connect");

    // Cut at the next whole second: the old token's `iat` is before it, a token issued at the
    // cut is not (JWT times are whole seconds).
    let cut = (issued.div_euclid(1000) + 1) * 1000;
    let (status, revoked) = admin
        .post(
            "/admin/users/bob/revoke",
            json!({ "issued_before_ms": cut }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["closed_sessions"], 1);
    assert_eq!(revoked["issued_before_ms"].as_i64(), Some(cut));
    assert_eq!(within(bob.wait_closed()).await.code, 4003);

    let again = server.open().await;
    assert!(again.connect(&old_token).await.is_err());
    assert_eq!(within(again.wait_closed()).await.code, 4003);

    let fresh = server.open().await;
    fresh
        .connect(&server.token_issued_at("bob", cut))
        .await
        .expect("a token issued at the cut connects");
    let (_, presence) = admin.get("/admin/users/bob/presence").await;
    assert_eq!(presence["sessions"], 1);

    let carol = server.client("carol").await;
    let response = within(
        support::http_client()
            .post(format!("{}/admin/users/carol/revoke", server.http_url()))
            .bearer_auth(server.admin_key())
            .send(),
    )
    .await
    .expect("request");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "an empty body revokes up to now"
    );
    assert_eq!(within(carol.wait_closed()).await.code, 4003);
    server.stop().await;
}

#[tokio::test]
async fn minted_tokens_connect() {
    let server = TestServer::start().await;
    let admin = Admin::new(&server);
    let (status, minted) = admin
        .post(
            "/admin/tokens",
            json!({ "user_id": "dave", "ttl_ms": 60_000 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let client = server.open().await;
    let connected = client
        .connect(minted["token"].as_str().expect("token"))
        .await
        .expect("connect");
    assert_eq!(connected.user_id, "dave");
    let (status, _) = admin
        .post("/admin/tokens", json!({ "user_id": "dave", "ttl_ms": 0 }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn erasure_redacts_the_users_messages_and_leaves_their_groups() {
    let server = TestServer::start().await;
    let admin = Admin::new(&server);
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    let bob = server.client("bob").await;
    bob.send(send(&room, "b1", "my address is ..."))
        .await
        .expect("send");
    alice.send(send(&room, "a1", "thanks")).await.expect("send");
    bob.send(send(&room, "b2", "and my phone ..."))
        .await
        .expect("send");
    let direct = bob
        .open_direct(v1::OpenDirectRequest {
            user_id: "alice".into(),
        })
        .await
        .expect("direct")
        .room
        .expect("room")
        .id;
    bob.send(send(&direct, "d1", "psst")).await.expect("send");

    let (status, erased) = admin.post("/admin/users/bob/erase", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["rooms"], 2);
    assert_eq!(erased["messages_redacted"], 3);
    assert_eq!(erased["groups_left"], 1);
    assert_eq!(erased["direct_rooms_kept"], 1);
    assert_eq!(erased["sessions_closed"], 1);
    assert_eq!(within(bob.wait_closed()).await.code, 4003);

    let (_, history) = admin.get(&format!("/admin/rooms/{room}/history")).await;
    assert_eq!(
        texts(&history),
        vec![
            ("bob".to_owned(), String::new(), true),
            ("alice".to_owned(), "thanks".to_owned(), false),
            ("bob".to_owned(), String::new(), true),
        ]
    );
    let (_, direct_history) = admin.get(&format!("/admin/rooms/{direct}/history")).await;
    assert_eq!(
        texts(&direct_history),
        vec![("bob".to_owned(), String::new(), true)]
    );
    let (_, rooms) = admin.get("/admin/users/bob/rooms").await;
    let rooms: Vec<&str> = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r["room_id"].as_str())
        .collect();
    assert_eq!(rooms, vec![direct.as_str()], "only the direct room is kept");
    server.stop().await;
}

#[tokio::test]
async fn openapi_docs_readiness_and_metrics_are_served() {
    let server = TestServer::start().await;
    let admin = Admin::new(&server);
    let (status, doc) = admin.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/admin/rooms",
        "/admin/rooms/{room_id}",
        "/admin/rooms/{room_id}/members",
        "/admin/rooms/{room_id}/members/{user_id}",
        "/admin/rooms/{room_id}/members/{user_id}/role",
        "/admin/rooms/{room_id}/messages",
        "/admin/rooms/{room_id}/messages/{seq}",
        "/admin/rooms/{room_id}/history",
        "/admin/rooms/{room_id}/retention",
        "/admin/users/{user_id}/rooms",
        "/admin/users/{user_id}/presence",
        "/admin/users/{user_id}/revoke",
        "/admin/users/{user_id}/erase",
        "/admin/tokens",
        "/admin/stats",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    assert!(doc["components"]["securitySchemes"]["admin_key"].is_object());
    assert!(doc["components"]["schemas"]["MessageView"].is_object());

    let (status, page) = admin.get_text("/docs/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("swagger-ui"), "the Swagger UI page");
    let (status, bundle) = admin.get_text("/docs/swagger-ui-bundle.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        bundle.len() > 100_000,
        "its script is served from the binary"
    );

    let (status, ready) = admin.get("/readyz").await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );

    let _client = server.client("erin").await;
    let (status, metrics) = admin.get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("# TYPE chatwire_sessions gauge"),
        "{metrics}"
    );
    assert!(metrics.contains("\nchatwire_sessions 1\n"), "{metrics}");
    server.stop().await;
}
