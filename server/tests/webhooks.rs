//! Downstream events end to end (docs/architecture.md "Downstream events"): a real server whose
//! `events.app` / `events.push` webhooks point at a small HTTP receiver on 127.0.0.1:0. A message
//! sent over a WebSocket arrives signed (checked here with the hmac crate, independently of the
//! server's signer); offline push reaches offline members only; a failing receiver sends the event
//! through the retry tiers into the dead-letter queue, from which the admin API replays it.
//!
//! ```sh
//! cargo test -p chatwire-server --test webhooks
//! ```

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chatwire_protocol::v1;
use chatwire_server::config::WebhookConfig;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::Value;
use sha2::Sha256;
use support::server::{TestServer, group, send, within};
use tokio::sync::{Mutex, mpsc};

/// The app webhook's secret (32 bytes or more).
const APP_SECRET: &str = "app-webhook-secret-0123456789abcdef";
/// The push webhook's secret.
const PUSH_SECRET: &str = "push-webhook-secret-0123456789abcdef";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    /// The `Chatwire-Event-Id` header.
    event_id: String,
    /// The `Chatwire-Signature` header.
    signature: String,
    /// The raw body, as signed.
    body: Bytes,
    /// What the receiver answered.
    status: u16,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Clone)]
struct HookState {
    seen: mpsc::UnboundedSender<Received>,
    failing: Arc<AtomicBool>,
    /// Answer `307 Temporary Redirect` to this URL instead of 200.
    redirect_to: Option<String>,
}

/// A webhook receiver: records every request, answers 200, or 500 while told to fail.
struct Hook {
    addr: SocketAddr,
    /// What arrived, and what arrived before a test asked for it (lanes are not ordered
    /// relative to each other, so an event may come before the one a test waits for first).
    seen: Mutex<(mpsc::UnboundedReceiver<Received>, Vec<Received>)>,
    failing: Arc<AtomicBool>,
}

impl Hook {
    async fn start() -> Self {
        Self::start_with(None, None).await
    }

    /// A receiver over TLS with `config` when given, answering redirects to `redirect_to` when
    /// given.
    async fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        redirect_to: Option<String>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let failing = Arc::new(AtomicBool::new(false));
        let state = HookState {
            seen: tx,
            failing: Arc::clone(&failing),
            redirect_to,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        match tls {
            Some(config) => {
                let listener = chatwire_server::http::tls::TlsListener::new(listener, config)
                    .expect("TLS listener");
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
            None => {
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
        }
        Self {
            addr,
            seen: Mutex::new((rx, Vec::new())),
            failing,
        }
    }

    /// Whether any request arrived that no test took yet.
    async fn idle(&self) -> bool {
        let mut guard = self.seen.lock().await;
        let (seen, earlier) = &mut *guard;
        earlier.is_empty() && seen.try_recv().is_err()
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The next request whose event id is `id` and that was answered `status`, skipping others.
    async fn next_with(&self, id: &str, status: u16) -> Received {
        let mut guard = self.seen.lock().await;
        let (seen, earlier) = &mut *guard;
        let wanted = |r: &Received| r.event_id == id && r.status == status;
        if let Some(i) = earlier.iter().position(wanted) {
            return earlier.remove(i);
        }
        loop {
            let received = within(seen.recv()).await.expect("receiver running");
            if wanted(&received) {
                return received;
            }
            earlier.push(received);
        }
    }
}

async fn receive(
    State(state): State<HookState>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let status = if state.failing.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if state.redirect_to.is_some() {
        StatusCode::TEMPORARY_REDIRECT
    } else {
        StatusCode::OK
    };
    let _ = state.seen.send(Received {
        event_id: header("chatwire-event-id"),
        signature: header("chatwire-signature"),
        body,
        status: status.as_u16(),
    });
    match state.redirect_to {
        Some(to) => (status, [(axum::http::header::LOCATION, to)]).into_response(),
        None => status.into_response(),
    }
}

/// Checks a `Chatwire-Signature` header the way an app developer would: parse
/// `t=<ms>,kid=<id>,v1=<hex>`, HMAC-SHA256 `t + "." + body` with the secret of `kid`, compare.
fn verify_signature(header: &str, body: &[u8], kid: &str, secret: &str) -> bool {
    let mut parts = header.split(',').filter_map(|p| p.split_once('='));
    let (Some(("t", t)), Some(("kid", got_kid)), Some(("v1", v1))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if got_kid != kid || t.parse::<i64>().is_err() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v1
}

/// Polls `GET path` on the admin API until `done` accepts the body; a hang guard bounds it.
async fn poll_admin(server: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (status, body) = server.admin(Method::GET, path).await;
            assert_eq!(status, 200, "{path}: {body}");
            if done(&body) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{path} never reached the expected state"))
}

/// The dead letter with this id in a listing, if any.
fn dead_letter<'a>(listing: &'a Value, id: &str) -> Option<&'a Value> {
    listing["dead_letters"]
        .as_array()
        .expect("dead_letters")
        .iter()
        .find(|d| d["id"] == id)
}

/// Issue 21 part 2: the moderation stage's flag and a member's report each reach the app
/// webhook as a `moderation.flagged` event whose id names the review entry (so a repeat of
/// the same report is the same event, deduped by the queue and the receiver).
#[tokio::test]
async fn flags_and_reports_reach_the_app_webhook_as_moderation_flagged() {
    use chatwire_server::config::{WordAction, WordRule};
    let hook = Hook::start().await;
    let url = hook.url();
    let server = TestServer::start_with(|config| {
        config.events.app = Some(WebhookConfig::new(url, "app-2026", APP_SECRET));
        config.moderation.words = vec![WordRule {
            word: "bet".into(),
            action: WordAction::Flag,
        }];
    })
    .await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    let room = group(&alice, &["bob"]).await;
    let sent = within(alice.send(send(&room, "m-1", "place your bet")))
        .await
        .expect("send");
    let review = format!("{room}:{}", sent.seq);

    let flag = hook
        .next_with(&format!("review:{review}:flag"), 200)
        .await
        .json();
    assert_eq!(flag["kind"], "moderation.flagged");
    assert_eq!(flag["roomId"], room.as_str());
    let data = &flag["data"];
    assert_eq!(
        (
            &data["source"],
            &data["reviewId"],
            &data["targetSeq"],
            &data["sender"]
        ),
        (
            &Value::from("filter"),
            &Value::from(review.as_str()),
            &Value::from(sent.seq),
            &Value::from("alice")
        )
    );
    assert_eq!(data["reasons"], serde_json::json!(["words.flag"]));

    let report = |reason: &str| v1::ReportMessageRequest {
        room_id: room.clone(),
        target_seq: sent.seq,
        reason: reason.to_owned(),
    };
    within(bob.report_message(report("gambling")))
        .await
        .expect("report");
    within(bob.report_message(report("again")))
        .await
        .expect("repeat");
    let reported = hook
        .next_with(&format!("review:{review}:report:bob"), 200)
        .await
        .json();
    let data = &reported["data"];
    assert_eq!(
        (
            &data["source"],
            &data["reporter"],
            &data["reason"],
            &data["reports"]
        ),
        (
            &Value::from("report"),
            &Value::from("bob"),
            &Value::from("gambling"),
            &Value::from(1)
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn a_sent_message_reaches_the_app_webhook_signed() {
    let hook = Hook::start().await;
    let url = hook.url();
    let server = TestServer::start_with(|config| {
        config.events.app = Some(WebhookConfig::new(url, "app-2026", APP_SECRET));
    })
    .await;
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    let sent = within(alice.send(send(&room, "m-1", "hello hooks")))
        .await
        .expect("send");
    let id = format!("{room}:{}:message.created", sent.seq);

    let received = hook.next_with(&id, 200).await;
    assert!(
        verify_signature(&received.signature, &received.body, "app-2026", APP_SECRET),
        "signature {:?} verifies with the configured secret",
        received.signature
    );
    assert!(
        !verify_signature(
            &received.signature,
            &received.body,
            "app-2026",
            "another-secret-0123456789abcdefghij"
        ),
        "and not with another"
    );
    let body = received.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["kind"], "message.created");
    assert_eq!(body["lane"], "high");
    assert_eq!(body["roomId"], room.as_str());
    assert_eq!(body["seq"], sent.seq);
    assert_eq!(body["attempt"], 1);
    assert_eq!(
        body["data"]["messageCreated"]["content"]["text"],
        "hello hooks"
    );
    assert_eq!(body["data"]["sender"], "alice");

    // Events of the medium lane (the room's creation) arrive too.
    let created = hook.next_with(&format!("{room}:1:room.created"), 200).await;
    assert_eq!(created.json()["lane"], "medium");
    server.stop().await;
}

#[tokio::test]
async fn offline_push_goes_to_offline_members_only() {
    let hook = Hook::start().await;
    let url = hook.url();
    let server = TestServer::start_with(|config| {
        config.events.push = Some(WebhookConfig::new(url, "push-1", PUSH_SECRET));
    })
    .await;
    let register = |platform: v1::PushPlatform, token: &str| v1::RegisterPushTokenRequest {
        platform: platform as i32,
        token: token.to_owned(),
        device_id: String::new(),
    };
    // Bob registers a device and goes offline; Carol has a device and stays online.
    let bob = server.client("bob").await;
    within(bob.register_push_token(register(v1::PushPlatform::Apns, "bob-apns-token")))
        .await
        .expect("register bob");
    within(bob.close(1000, "bye")).await;
    poll_admin(&server, "/admin/users/bob/presence", |p| {
        p["online"] == false
    })
    .await;
    let carol = server.client("carol").await;
    within(carol.register_push_token(register(v1::PushPlatform::Fcm, "carol-fcm-token")))
        .await
        .expect("register carol");

    let alice = server.client("alice").await;
    let room = group(&alice, &["bob", "carol"]).await;
    let sent = within(alice.send(send(&room, "m-1", "are you there?")))
        .await
        .expect("send");
    let id = format!("{room}:{}:message.created", sent.seq);

    let push = hook.next_with(&id, 200).await;
    assert!(verify_signature(
        &push.signature,
        &push.body,
        "push-1",
        PUSH_SECRET
    ));
    let body = push.json();
    let recipients = body["recipients"].as_array().expect("recipients");
    assert_eq!(recipients.len(), 1, "only bob is offline: {body}");
    assert_eq!(recipients[0]["userId"], "bob");
    assert_eq!(recipients[0]["mentioned"], false);
    assert_eq!(recipients[0]["devices"][0]["token"], "bob-apns-token");
    assert_eq!(
        recipients[0]["devices"][0]["platform"],
        "PUSH_PLATFORM_APNS"
    );
    assert_eq!(
        body["data"]["messageCreated"]["content"]["text"],
        "are you there?"
    );
    drop(carol);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_dead_letters_and_the_admin_api_replays() {
    let hook = Hook::start().await;
    hook.fail(true);
    let url = hook.url();
    let server = TestServer::start_with(|config| {
        config.events.app = Some(WebhookConfig::new(url, "app-1", APP_SECRET));
        config.events.retry_tiers_ms = vec![1, 1];
    })
    .await;
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    let sent = within(alice.send(send(&room, "m-1", "into the void")))
        .await
        .expect("send");
    let id = format!("{room}:{}:message.created", sent.seq);

    // Three tries (the first and one per tier), each answered 500.
    for attempt in 1..=3 {
        let failed = hook.next_with(&id, 500).await;
        assert_eq!(failed.json()["attempt"], attempt);
    }
    let listing = poll_admin(&server, "/admin/events/dead-letters?consumer=app", |l| {
        dead_letter(l, &id).is_some()
    })
    .await;
    assert_eq!(listing["consumer"], "app");
    let letter = dead_letter(&listing, &id).expect("dead letter");
    assert_eq!(letter["kind"], "message.created");
    assert_eq!(letter["lane"], "high");
    assert_eq!(letter["room"], room.as_str());
    assert_eq!(letter["seq"], sent.seq);
    assert_eq!(letter["attempts"], 3);
    assert!(
        letter["reason"].as_str().expect("reason").contains("500"),
        "{letter}"
    );
    assert!(letter["dead_at_ms"].as_i64().expect("dead_at_ms") > 0);

    let (status, stats) = server.admin(Method::GET, "/admin/events/stats").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["consumers"][0]["consumer"], "app");
    assert!(
        stats["consumers"][0]["dead_letters"]
            .as_u64()
            .expect("size")
            >= 1
    );
    let (_, metrics) = server.admin(Method::GET, "/metrics").await;
    let metrics = metrics.as_str().expect("text");
    assert!(metrics.contains("chatwire_events_dead_letters{consumer=\"app\"}"));
    assert!(metrics.contains("chatwire_events_queue_depth{consumer=\"app\",lane=\"high\"}"));

    // The receiver recovers; the replayed event is delivered afresh.
    hook.fail(false);
    let replay = format!("/admin/events/dead-letters/{id}/replay?consumer=app");
    let (status, body) = server.admin(Method::POST, &replay).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], true);
    let delivered = hook.next_with(&id, 200).await;
    assert_eq!(delivered.json()["attempt"], 1);
    assert!(verify_signature(
        &delivered.signature,
        &delivered.body,
        "app-1",
        APP_SECRET
    ));
    let listing = server
        .admin(
            Method::GET,
            "/admin/events/dead-letters?consumer=app&limit=1000",
        )
        .await
        .1;
    assert!(dead_letter(&listing, &id).is_none(), "{listing}");

    // Replaying it again, or naming a consumer that is not there, is refused.
    let (status, body) = server.admin(Method::POST, &replay).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, body) = server
        .admin(Method::GET, "/admin/events/dead-letters?consumer=push")
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, body) = server
        .admin(Method::GET, "/admin/events/dead-letters?consumer=mail")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    server.stop().await;
}

#[tokio::test]
async fn without_consumers_nothing_is_queued_and_the_endpoints_are_documented() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    within(alice.send(send(&room, "m-1", "nobody listens")))
        .await
        .expect("send");
    // The search index (on by default) has its own queue, `index.redb`; no webhook has one.
    let queues: Vec<String> = std::fs::read_dir(server.config.data_dir.join("events"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with("index"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        queues.is_empty(),
        "no webhook queue without a consumer: {queues:?}"
    );
    let (status, stats) = server.admin(Method::GET, "/admin/events/stats").await;
    assert_eq!(status, 200);
    let consumers: Vec<&str> = stats["consumers"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["consumer"].as_str())
        .filter(|name| *name != "index")
        .collect();
    assert!(consumers.is_empty(), "no webhook consumer: {consumers:?}");
    let (status, _) = server
        .admin(Method::GET, "/admin/events/dead-letters?consumer=app")
        .await;
    assert_eq!(status, 404);
    let anonymous = within(
        support::http_client()
            .get(format!("{}/admin/events/stats", server.http_url()))
            .send(),
    )
    .await
    .expect("request");
    assert_eq!(anonymous.status(), 401, "the admin key is required");

    let (_, doc) = server.admin(Method::GET, "/openapi.json").await;
    for path in [
        "/admin/events/dead-letters",
        "/admin/events/dead-letters/{id}/replay",
        "/admin/events/stats",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    server.stop().await;
}

/// A test CA and a certificate for `localhost` it signed: the receiver's TLS configuration and
/// the CA's PEM for the server's `ca_file`.
fn private_ca_receiver() -> (Arc<rustls::ServerConfig>, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().expect("key"))
        .expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("leaf");
    let config =
        chatwire_server::http::tls::server_config(&[leaf.der().to_vec()], &key.serialize_der())
            .expect("server config");
    (config, ca.pem())
}

#[tokio::test]
async fn an_https_receiver_with_a_private_ca_gets_signed_events() {
    // Issue 15: webhooks over https (rustls, ring), trusting the consumer's `ca_file`.
    let (tls, ca_pem) = private_ca_receiver();
    let hook = Hook::start_with(Some(tls), None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write CA");
    let url = format!("https://localhost:{}/hook", hook.addr.port());
    let server = TestServer::start_with(|config| {
        let mut app = WebhookConfig::new(url, "app-2026", APP_SECRET);
        app.ca_file = Some(ca_file.clone());
        config.events.app = Some(app);
    })
    .await;
    let alice = server.client("alice").await;
    let room = group(&alice, &[]).await;
    let sent = within(alice.send(send(&room, "m-1", "over tls")))
        .await
        .expect("send");
    let id = format!("{room}:{}:message.created", sent.seq);
    let received = hook.next_with(&id, 200).await;
    assert!(verify_signature(
        &received.signature,
        &received.body,
        "app-2026",
        APP_SECRET
    ));
    assert_eq!(
        received.json()["data"]["messageCreated"]["content"]["text"],
        "over tls"
    );
    server.stop().await;
}

#[tokio::test]
async fn plain_http_to_another_host_is_refused_at_start() {
    let mut config = chatwire_server::config::Config::default();
    config.events.app = Some(WebhookConfig::new(
        "http://hooks.example:9000/x",
        "k",
        APP_SECRET,
    ));
    let err = config
        .validate()
        .expect_err("plain http to a non-loopback host");
    assert!(err.to_string().contains("allow_http"), "{err}");
    if let Some(app) = config.events.app.as_mut() {
        app.allow_http = true;
    }
    config.validate().expect("allowed explicitly");
}

#[tokio::test]
async fn redirects_are_never_followed() {
    // The receiver answers 307 to another receiver: the delivery counts as failed and is
    // retried at the first receiver; the second never sees the signed event.
    let elsewhere = Hook::start().await;
    let hook = Hook::start_with(None, Some(elsewhere.url())).await;
    let url = hook.url();
    let server = TestServer::start_with(|config| {
        config.events.retry_tiers_ms = vec![10, 10];
        config.events.app = Some(WebhookConfig::new(url, "app-2026", APP_SECRET));
    })
    .await;
    let alice = server.client("alice").await;
    let room = group(&alice, &[]).await;
    let sent = within(alice.send(send(&room, "m-1", "stay here")))
        .await
        .expect("send");
    let id = format!("{room}:{}:message.created", sent.seq);
    let first = hook.next_with(&id, 307).await;
    assert_eq!(first.json()["attempt"], 1);
    let second = hook.next_with(&id, 307).await;
    assert_eq!(second.json()["attempt"], 2, "retried where it was sent");
    assert!(elsewhere.idle().await, "the redirect target got nothing");
    server.stop().await;
}
