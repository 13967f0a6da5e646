//! What an operator scrapes and reads: `/metrics` parsed with a Prometheus text parser (every
//! family of docs/operations.md present; the send, slow-consumer and rate-limit counters rise
//! when this test causes each), the metrics table of docs/operations.md generated from the
//! code's list, the health report behind `/dashboard`, and the API document's paths against
//! what the server routes.
//!
//! ```sh
//! cargo test -p chatwire-server --test observability
//! ```

mod support;

use std::collections::BTreeMap;

use chatwire_conformance::client::{Client, ClientOptions};
use chatwire_protocol::v1;
use chatwire_server::config::{RateLimit, WebhookConfig};
use chatwire_server::telemetry::{FAMILIES, Kind};
use support::server::{TestServer, group, send, within};

/// One scrape, parsed.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    async fn of(server: &TestServer) -> Self {
        let response = within(
            support::http_client()
                .get(format!("{}/metrics", server.http_url()))
                .send(),
        )
        .await
        .expect("scrape");
        assert_eq!(response.status(), 200);
        let text = within(response.text()).await.expect("body");
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        Self(prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text"))
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    }

    /// Every family with at least one sample.
    fn families(&self) -> BTreeMap<String, usize> {
        let mut families = BTreeMap::new();
        for sample in &self.0.samples {
            *families.entry(sample.metric.clone()).or_insert(0) += 1;
        }
        families
    }
}

#[tokio::test]
async fn every_documented_family_is_scraped_and_the_counters_rise() {
    let server = TestServer::start_with(|config| {
        config.limits.rate_typing = RateLimit {
            rate_per_minute: 1,
            burst: 1,
        };
        config.session.outbound_queue_frames = 16;
        // A receiver that refuses connections: downstream deliveries fail and retry.
        config.events.app = Some(WebhookConfig::new(
            "http://127.0.0.1:9/",
            "app-1",
            "app-webhook-secret-0123456789abcdef",
        ));
    })
    .await;
    let before = Scrape::of(&server).await;

    // A send.
    let alice = server.client("alice").await;
    let room = group(&alice, &["bob"]).await;
    within(alice.send(send(&room, "m-0", "hello")))
        .await
        .expect("send");

    // A rate-limit refusal: the typing bucket holds one.
    let typing = || {
        alice.call(v1::client_frame::Request::Typing(v1::TypingRequest {
            room_id: room.clone(),
            active: true,
        }))
    };
    within(typing()).await.expect("first typing");
    let refused = within(typing()).await;
    assert!(
        matches!(&refused, Ok(v1::reply::Result::Error(e)) if e.code() == v1::ErrorCode::RateLimited),
        "{refused:?}"
    );

    // A slow consumer: bob stops reading; four senders write until the server closes bob.
    let senders = ["s1", "s2", "s3", "s4"];
    let flood = group(&alice, &["bob", "s1", "s2", "s3", "s4"]).await;
    let options = ClientOptions {
        event_buffer: 1,
        ..ClientOptions::default()
    };
    let bob = Client::open_with(&server.target(), options)
        .await
        .expect("open");
    bob.connect(&server.token("bob")).await.expect("connect");
    bob.subscribe(v1::SubscribeRequest {
        room_id: flood.clone(),
        after_seq: 0,
        limit: 0,
    })
    .await
    .expect("subscribe");
    let mut clients = Vec::new();
    for sender in senders {
        clients.push((sender, server.client(sender).await));
    }
    let body = "€".repeat(4000);
    let mut round = 0;
    // Until bob's session ends (the sessions gauge drops): a session that ends for another
    // reason, or a close that is not counted, fails below.
    let sessions = Scrape::of(&server).await.value("chatwire_sessions", &[]);
    while Scrape::of(&server).await.value("chatwire_sessions", &[]) >= sessions {
        assert!(round < 200, "bob was never closed");
        let sends = clients.iter().map(|(name, client)| {
            let (flood, body) = (&flood, &body);
            async move {
                for i in 0..10 {
                    let id = format!("{name}-{round}-{i}");
                    within(client.send(send(flood, &id, body)))
                        .await
                        .expect("send");
                }
            }
        });
        futures_util::future::join_all(sends).await;
        round += 1;
    }
    // Bob reads what reached him, up to the close.
    while within(bob.next_event()).await.is_ok() {}
    let closed = bob.closed().expect("bob's session ended");
    // The close frame may not fit in the full socket buffers: then the connection just ends.
    assert!(
        closed.code == 4004 || closed.code == 1006,
        "bob was closed as a slow consumer: {closed:?}"
    );

    let after = Scrape::of(&server).await;
    let families = after.families();
    for family in FAMILIES {
        let present = match family.kind {
            Kind::Histogram => {
                families.contains_key(&format!("{}_count", family.name))
                    || families.contains_key(family.name)
            }
            _ => families.contains_key(family.name),
        };
        assert!(present, "{} is scraped: {families:?}", family.name);
    }
    let help: Vec<&str> = after.0.docs.keys().map(String::as_str).collect();
    for family in FAMILIES {
        assert!(
            help.contains(&family.name),
            "{} has its help text",
            family.name
        );
    }

    let rose = |name: &str, labels: &[(&str, &str)]| {
        let (b, a) = (before.value(name, labels), after.value(name, labels));
        assert!(a > b, "{name}{labels:?} rose: {b} -> {a}");
    };
    rose(
        "chatwire_requests_total",
        &[("kind", "send"), ("outcome", "OK")],
    );
    rose("chatwire_send_ack_seconds_count", &[]);
    rose("chatwire_deliveries_total", &[]);
    rose("chatwire_rate_limited_total", &[("bucket", "typing")]);
    rose(
        "chatwire_requests_total",
        &[("kind", "typing"), ("outcome", "RATE_LIMITED")],
    );
    rose("chatwire_slow_consumer_closes_total", &[]);
    rose(
        "chatwire_connections_closed_total",
        &[("transport", "websocket"), ("code", "SLOW_CONSUMER")],
    );
    rose(
        "chatwire_connections_opened_total",
        &[("transport", "websocket")],
    );
    rose(
        "chatwire_store_operation_seconds_count",
        &[("backend", "embedded"), ("op", "append")],
    );
    assert!(after.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(after.value("process_open_fds", &[]) > 0.0);
    assert!(after.value("chatwire_sessions", &[]) >= 1.0);
    assert!(after.value("chatwire_rooms_active", &[]) >= 1.0);
    server.stop().await;
}

/// docs/operations.md's metrics table is the one generated from the code's list of families.
#[test]
fn the_operations_guide_lists_every_family() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
    let doc = std::fs::read_to_string(path).expect("docs/operations.md");
    let begin = "<!-- metrics-table: generated from server/src/telemetry.rs -->\n";
    let end = "<!-- /metrics-table -->";
    let table = chatwire_server::telemetry::markdown_table();
    let found = doc
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(table, _)| table);
    if std::env::var_os("CHATWIRE_BLESS").is_some() {
        let (head, rest) = doc.split_once(begin).expect("the table's begin marker");
        let (_, tail) = rest.split_once(end).expect("the table's end marker");
        std::fs::write(path, format!("{head}{begin}{table}{end}{tail}")).expect("write");
        return;
    }
    assert_eq!(
        found,
        Some(table.as_str()),
        "docs/operations.md's metrics table differs from server/src/telemetry.rs \
         (CHATWIRE_BLESS=1 cargo test -p chatwire-server --test observability rewrites it)"
    );
}

/// The API document lists what the server routes: each documented operation reaches a handler
/// (not the not-found fallback), the routes left out are the listed ones, and the 401 example
/// is the body the server really answers without a key.
#[tokio::test]
async fn the_api_document_matches_the_routes_and_the_real_401() {
    let server = TestServer::start().await;
    let http = support::http_client();
    let (status, doc) = server.admin(reqwest::Method::GET, "/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/dashboard",
        "/admin/health",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }

    let unauthenticated = within(
        http.get(format!("{}/admin/stats", server.http_url()))
            .send(),
    )
    .await
    .expect("request");
    assert_eq!(unauthenticated.status(), 401);
    let real_401: serde_json::Value = within(unauthenticated.json()).await.expect("json");
    assert_eq!(real_401["code"], "UNAUTHENTICATED");

    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{room_id}", "g:absent")
            .replace("{user_id}", "nobody")
            .replace("{seq}", "1")
            .replace("{id}", "absent");
        for (method, operation) in item.as_object().expect("path item") {
            let Ok(method) = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            operations += 1;
            let mut request = http
                .request(method.clone(), format!("{}{concrete}", server.http_url()))
                .bearer_auth(server.admin_key());
            if operation.get("requestBody").is_some() {
                request = request.json(&serde_json::json!({}));
            }
            let response = within(request.send()).await.expect("request");
            let status = response.status().as_u16();
            let body = within(response.text()).await.expect("body");
            assert!(
                status != 405
                    && !(status == 404 && (body.is_empty() || body.contains("no such endpoint"))),
                "{method} {path} reaches a handler: {status} {body}"
            );
            let documented = operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .any(|s| s == &status.to_string());
            assert!(documented, "{method} {path} documents its {status}");
            for (status, response) in operation["responses"].as_object().expect("responses") {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has a description"
                );
            }
            if path.starts_with("/admin/") {
                let example =
                    &operation["responses"]["401"]["content"]["application/json"]["example"];
                assert_eq!(
                    example, &real_401,
                    "{method} {path}: the 401 example is the real one"
                );
            }
        }
    }
    assert!(operations >= 25, "{operations} operations");
    let healthz = within(
        support::http_client()
            .get(format!("{}/healthz", server.http_url()))
            .send(),
    )
    .await
    .expect("healthz")
    .text()
    .await
    .expect("text");
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["text/plain"]["example"],
        healthz.as_str(),
        "the /healthz example is what it answers"
    );

    for (path, why) in chatwire_server::http::UNDOCUMENTED_ROUTES {
        assert!(!paths.contains_key(*path), "{path} ({why}) is left out");
        let response = within(http.get(format!("{}{path}", server.http_url())).send())
            .await
            .expect("request");
        assert_ne!(response.status(), 404, "{path} ({why}) is routed");
    }
    // The check above can fail: a path nobody routes is the fallback.
    for path in ["/nothing-here", "/admin/nothing-here"] {
        let response = within(
            http.get(format!("{}{path}", server.http_url()))
                .bearer_auth(server.admin_key())
                .send(),
        )
        .await
        .expect("request");
        assert_eq!(response.status(), 404, "{path}");
    }
    server.stop().await;
}
