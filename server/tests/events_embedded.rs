//! The event queue suite against the embedded (redb) queue, each queue in a fresh temporary
//! folder, plus the built-in consumers end to end: signed webhook POSTs to a real HTTP
//! receiver on 127.0.0.1:0, retries driven by an injected clock, and offline push.
//!
//! ```sh
//! cargo test -p chatwire-server --test events_embedded
//! ```

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use chatwire_protocol::v1;
use chatwire_protocol::v1::room_event::Kind;
use chatwire_server::backend::embedded::{EmbeddedOptions, EmbeddedStore};
use chatwire_server::backend::events::{EventPublisher, EventQueue, Lane, RetryPolicy, Tee};
use chatwire_server::backend::events_embedded::{EmbeddedEventQueue, EventQueueOptions};
use chatwire_server::backend::fanout::{Fanout, SessionLink};
use chatwire_server::backend::fanout_local::LocalFanout;
use chatwire_server::backend::store::{PushToken, Store, StoreError};
use chatwire_server::chat::ids::{RoomId, UserId};
use chatwire_server::clock::{Clock, ManualClock};
use chatwire_server::webhook::{
    Consumers, EVENT_ID_HEADER, Polled, PushAudience, PushDevice, SIGNATURE_HEADER, SigningKey,
    SigningKeys, StoreAudience, WebhookConsumer, WebhookSender,
};
use chatwire_server::writer::downstream::events_of_batch;
use serde_json::Value;
use support::events_suite::{self, QueueFactory, T0};
use support::store_suite::{RoomScript, apply, room_id, user};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One queue file per factory, in its own temporary folder (removed with the factory).
struct Embedded {
    dir: TempDir,
}

fn embedded() -> Embedded {
    Embedded {
        dir: TempDir::new().expect("temporary folder"),
    }
}

impl Embedded {
    fn open_queue(&self, retry: RetryPolicy) -> EmbeddedEventQueue {
        let options = EventQueueOptions { retry, sync: true };
        let path = self.dir.path().join("events").join("test.redb");
        EmbeddedEventQueue::open_with(&path, options).expect("open queue")
    }
}

#[async_trait]
impl QueueFactory for Embedded {
    async fn open(&self, policy: RetryPolicy) -> Arc<dyn EventQueue> {
        Arc::new(self.open_queue(policy))
    }
}

events_suite::events_suite_tests!(embedded);

#[test]
fn invalid_policies_are_refused() {
    let factory = embedded();
    let path = factory.dir.path().join("bad.redb");
    for retry in [
        RetryPolicy {
            tiers_ms: vec![1, -1],
            lease_timeout_ms: 10,
        },
        RetryPolicy {
            tiers_ms: vec![],
            lease_timeout_ms: 0,
        },
    ] {
        let options = EventQueueOptions { retry, sync: false };
        assert!(EmbeddedEventQueue::open_with(&path, options).is_err());
    }
    assert!(EmbeddedEventQueue::open(&path).is_ok());
}

#[tokio::test]
async fn tee_gives_every_consumer_its_own_copy() {
    let (a, b) = (embedded(), embedded());
    let (qa, qb): (Arc<dyn EventQueue>, Arc<dyn EventQueue>) = (
        Arc::new(a.open_queue(RetryPolicy::default())),
        Arc::new(b.open_queue(RetryPolicy::default())),
    );
    let tee = Tee::new(vec![Arc::clone(&qa), Arc::clone(&qb)]);
    tee.publish(vec![events_suite::event(Lane::High, "g:tee", 1)])
        .await
        .expect("publish");
    for queue in [qa, qb] {
        let leased = queue.lease(Lane::High, 10, T0).await.expect("lease");
        assert_eq!(leased.len(), 1);
        queue.ack(leased[0].tag).await.expect("ack");
    }
}

// ---------------------------------------------------------------------------------------------
// A webhook receiver on 127.0.0.1:0

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    signature: String,
    event_id: String,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

#[derive(Clone)]
struct Receiver {
    status: Arc<AtomicU16>,
    tx: mpsc::UnboundedSender<Received>,
}

async fn record(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let _ = receiver.tx.send(Received {
        signature: header(SIGNATURE_HEADER),
        event_id: header(EVENT_ID_HEADER),
        body,
    });
    StatusCode::from_u16(receiver.status.load(Ordering::SeqCst))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Starts a receiver answering `status` (changeable later); returns its URL, the status
/// switch and the stream of requests it got.
async fn receiver(status: u16) -> (String, Arc<AtomicU16>, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (tx, rx) = mpsc::unbounded_channel();
    let status = Arc::new(AtomicU16::new(status));
    let state = Receiver {
        status: Arc::clone(&status),
        tx,
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(record))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), status, rx)
}

async fn next_request(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the receiver got a request")
        .expect("receiver running")
}

fn rotated_keys() -> Arc<SigningKeys> {
    Arc::new(
        SigningKeys::new(vec![
            SigningKey::new("k-2024", "old secret").expect("key"),
            SigningKey::new("k-2025", "new secret").expect("key"),
        ])
        .expect("keys"),
    )
}

fn sender(url: &str) -> WebhookSender {
    WebhookSender::new(url, rotated_keys(), Duration::from_secs(5), None).expect("sender")
}

/// A message event of `room` at `seq` from `from`, mentioning `mentions`.
fn message(room: &str, seq: u64, from: &str, mentions: &[&str]) -> v1::RoomEvent {
    v1::RoomEvent {
        room_id: room.to_owned(),
        seq,
        ts_ms: T0 + seq as i64,
        sender: from.to_owned(),
        kind: Some(Kind::MessageCreated(v1::MessageCreated {
            ordinal: seq,
            client_msg_id: format!("c{seq}"),
            content: Some(v1::Content {
                text: format!("message {seq}"),
                mentions: mentions.iter().map(|m| (*m).to_owned()).collect(),
                ..v1::Content::default()
            }),
            ..v1::MessageCreated::default()
        })),
    }
}

fn queue_with(tiers_ms: Vec<i64>) -> (Embedded, Arc<dyn EventQueue>) {
    let factory = embedded();
    let queue = factory.open_queue(RetryPolicy {
        tiers_ms,
        lease_timeout_ms: 30_000,
    });
    (factory, Arc::new(queue))
}

#[tokio::test]
async fn app_webhook_posts_signed_events() {
    let (url, _status, mut rx) = receiver(200).await;
    let (_dir, queue) = queue_with(vec![1_000]);
    let clock = ManualClock::at(T0 + 50);
    let batch = [message("g:hook", 7, "alice", &[])];
    queue
        .publish(events_of_batch(&batch))
        .await
        .expect("publish");
    let consumer =
        WebhookConsumer::app_webhook(Arc::clone(&queue), Lane::High, sender(&url), clock.clone());

    let polled = consumer.poll_once().await.expect("poll");
    assert_eq!(
        polled,
        Polled {
            acked: 1,
            nacked: 0,
            lost: 0
        }
    );
    let request = next_request(&mut rx).await;
    assert_eq!(request.event_id, "g:hook:7:message.created");
    assert!(
        request
            .signature
            .starts_with(&format!("t={},kid=k-2025,v1=", T0 + 50))
    );
    let receiver_keys = rotated_keys();
    receiver_keys
        .verify(&request.signature, &request.body, clock.now_ms(), 300_000)
        .expect("valid signature");
    assert!(
        receiver_keys
            .verify(&request.signature, b"{}", clock.now_ms(), 300_000)
            .is_err(),
        "the signature covers the body"
    );
    let body = request.json();
    assert_eq!(body["id"], "g:hook:7:message.created");
    assert_eq!(body["kind"], "message.created");
    assert_eq!(body["lane"], "high");
    assert_eq!(body["roomId"], "g:hook");
    assert_eq!(body["seq"], 7);
    assert_eq!(body["attempt"], 1);
    assert_eq!(
        body["data"]["messageCreated"]["content"]["text"],
        "message 7"
    );
    assert_eq!(queue.depth(Lane::High).await.expect("depth"), 0);
    assert_eq!(consumer.poll_once().await.expect("poll"), Polled::default());
}

#[tokio::test]
async fn failing_receiver_is_retried_until_it_recovers() {
    let (url, status, mut rx) = receiver(500).await;
    let (_dir, queue) = queue_with(vec![1_000, 10_000]);
    let clock = ManualClock::at(T0);
    queue
        .publish(events_of_batch(&[message("g:retry", 1, "alice", &[])]))
        .await
        .expect("publish");
    let consumer =
        WebhookConsumer::app_webhook(Arc::clone(&queue), Lane::High, sender(&url), clock.clone());

    assert_eq!(consumer.poll_once().await.expect("poll").nacked, 1);
    assert_eq!(next_request(&mut rx).await.json()["attempt"], 1);
    clock.advance(999);
    assert_eq!(
        consumer.poll_once().await.expect("poll").leased(),
        0,
        "waits for its tier"
    );
    clock.advance(1);
    assert_eq!(consumer.poll_once().await.expect("poll").nacked, 1);
    assert_eq!(next_request(&mut rx).await.json()["attempt"], 2);

    status.store(200, Ordering::SeqCst);
    clock.advance(10_000);
    assert_eq!(consumer.poll_once().await.expect("poll").acked, 1);
    let request = next_request(&mut rx).await;
    assert_eq!(request.json()["attempt"], 3);
    assert_eq!(request.event_id, "g:retry:1:message.created");
    assert_eq!(queue.depth(Lane::High).await.expect("depth"), 0);
    assert_eq!(queue.dlq_len().await.expect("dlq"), 0);
}

#[tokio::test]
async fn receiver_that_never_recovers_dead_letters_the_event() {
    let (url, _status, mut rx) = receiver(503).await;
    let (_dir, queue) = queue_with(vec![10]);
    let clock = ManualClock::at(T0);
    queue
        .publish(events_of_batch(&[message("g:dlq", 1, "alice", &[])]))
        .await
        .expect("publish");
    let consumer =
        WebhookConsumer::app_webhook(Arc::clone(&queue), Lane::High, sender(&url), clock.clone());
    assert_eq!(consumer.poll_once().await.expect("poll").nacked, 1);
    clock.advance(10);
    assert_eq!(consumer.poll_once().await.expect("poll").nacked, 1);
    for _ in 0..2 {
        next_request(&mut rx).await;
    }
    let dead = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].reason, "webhook answered 503");
    assert!(
        queue
            .replay_dead_letter("g:dlq:1:message.created", clock.now_ms())
            .await
            .expect("replay")
    );
    assert_eq!(queue.depth(Lane::High).await.expect("depth"), 1);
}

#[test]
fn only_absolute_http_and_https_urls_are_accepted() {
    for url in ["ftp://example.invalid/hook", "not a url", "/relative"] {
        assert!(
            WebhookSender::new(url, rotated_keys(), Duration::from_secs(1), None).is_err(),
            "{url}"
        );
    }
    assert!(
        WebhookSender::new(
            "https://example.invalid/hook",
            rotated_keys(),
            Duration::from_secs(1),
            None
        )
        .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// Offline push

/// Lookups from fixed sets.
#[derive(Debug, Default)]
struct FixedAudience {
    /// Members by room.
    members: Vec<(&'static str, Vec<&'static str>)>,
    online: HashSet<&'static str>,
    muted: HashSet<&'static str>,
    without_devices: HashSet<&'static str>,
    /// Members who joined at a seq other than 1.
    joined_late: Vec<(&'static str, u64)>,
    /// Seqs of messages deleted since.
    deleted: HashSet<u64>,
    asked_online: Mutex<Vec<String>>,
}

#[async_trait]
impl PushAudience for FixedAudience {
    async fn members(&self, room: &RoomId) -> Result<Vec<(UserId, u64)>, StoreError> {
        let members = self.members.iter().find(|(r, _)| *r == room.as_str());
        let joined = |m: &str| {
            self.joined_late
                .iter()
                .find(|(u, _)| *u == m)
                .map_or(1, |(_, seq)| *seq)
        };
        Ok(members.map_or_else(Vec::new, |(_, m)| {
            m.iter().map(|m| (user(m), joined(m))).collect()
        }))
    }

    async fn readable(&self, _room: &RoomId, seq: u64) -> Result<bool, StoreError> {
        Ok(!self.deleted.contains(&seq))
    }

    fn is_online(&self, user: &UserId) -> bool {
        self.asked_online
            .lock()
            .expect("lock")
            .push(user.as_str().to_owned());
        self.online.contains(user.as_str())
    }

    async fn muted(&self, user: &UserId, _room: &RoomId, _now: i64) -> Result<bool, StoreError> {
        Ok(self.muted.contains(user.as_str()))
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<PushDevice>, StoreError> {
        if self.without_devices.contains(user.as_str()) {
            return Ok(Vec::new());
        }
        Ok(vec![PushDevice {
            platform: "PUSH_PLATFORM_APNS".to_owned(),
            token: format!("token-{user}"),
            device_id: format!("phone-{user}"),
        }])
    }
}

#[tokio::test]
async fn offline_push_reaches_offline_members_with_mentions_over_mutes() {
    let (url, _status, mut rx) = receiver(200).await;
    let (_dir, queue) = queue_with(vec![1_000]);
    let clock = ManualClock::at(T0);
    let audience = Arc::new(FixedAudience {
        members: vec![
            (
                "g:push",
                vec!["alice", "bob", "carol", "dave", "erin", "frank", "gina"],
            ),
            ("g:quiet", vec!["carol", "erin"]),
            ("g:gone", vec!["alice", "bob"]),
        ],
        online: ["carol"].into(),
        muted: ["bob", "dave"].into(),
        without_devices: ["erin"].into(),
        // gina joined after message 5; message 9 was deleted before its push went out.
        joined_late: vec![("gina", 6)],
        deleted: [9].into(),
        ..FixedAudience::default()
    });
    // carol is online and erin has no device: nobody to push.
    let nobody = message("g:quiet", 3, "erin", &[]);
    let joined = v1::RoomEvent {
        kind: Some(Kind::MemberJoined(v1::MemberJoined {
            user_id: "frank".to_owned(),
            role: v1::Role::Member as i32,
        })),
        ..message("g:push", 4, "frank", &[])
    };
    // alice sends, carol is online, dave muted, erin has no device: bob (muted but mentioned)
    // and frank get the push.
    let pushed = message("g:push", 5, "alice", &["bob", "erin"]);
    let deleted = message("g:gone", 9, "alice", &["bob"]);
    let batch = [nobody, joined, pushed, deleted];
    queue
        .publish(events_of_batch(&batch))
        .await
        .expect("publish");

    let consumer = WebhookConsumer::offline_push(
        Arc::clone(&queue),
        Lane::High,
        sender(&url),
        audience.clone(),
        clock.clone(),
    );
    let polled = consumer.poll_once().await.expect("poll");
    assert_eq!(
        polled.acked, 3,
        "the messages handled, those without recipients unsent"
    );
    let request = next_request(&mut rx).await;
    assert_eq!(request.event_id, "g:push:5:message.created");
    let body = request.json();
    let recipients = body["recipients"].as_array().expect("recipients");
    let summary: Vec<(String, bool)> = recipients
        .iter()
        .map(|r| {
            (
                r["userId"].as_str().unwrap_or_default().to_owned(),
                r["mentioned"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("bob".to_owned(), true), ("frank".to_owned(), false)]
    );
    assert_eq!(recipients[0]["devices"][0]["token"], "token-bob");
    assert_eq!(
        recipients[0]["devices"][0]["platform"],
        "PUSH_PLATFORM_APNS"
    );
    assert_eq!(
        body["data"]["messageCreated"]["content"]["mentions"][0],
        "bob"
    );
    assert!(rx.try_recv().is_err(), "one push only");
    assert_eq!(
        queue.depth(Lane::Medium).await.expect("depth"),
        1,
        "the push consumer reads the high lane only"
    );
    let asked = audience.asked_online.lock().expect("lock").clone();
    assert!(
        !asked.contains(&"alice".to_owned()),
        "the sender is never pushed"
    );
}

#[tokio::test]
async fn store_audience_reads_members_mutes_devices_and_sessions() {
    let dir = TempDir::new().expect("temporary folder");
    let store = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            sync: false,
            ..EmbeddedOptions::default()
        },
    )
    .expect("store");
    let store: Arc<dyn Store> = Arc::new(store);
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let room = room_id("g:audience");
    let mut script = RoomScript::new(&room);
    for batch in [
        script.create(T0, &alice),
        script.join(T0 + 1, &bob, v1::Role::Member),
        script.join(T0 + 2, &carol, v1::Role::Member),
    ] {
        apply(&*store, &room, &batch).await;
    }
    store.set_mute(&bob, &room, T0 + 1_000).await.expect("mute");
    let token = PushToken {
        platform: v1::PushPlatform::Fcm,
        token: "fcm-bob".to_owned(),
        device_id: "pixel".to_owned(),
    };
    store.register_push_token(&bob, token).await.expect("token");
    let clock: Arc<dyn Clock> = ManualClock::at(T0);
    let fanout = Arc::new(LocalFanout::new(clock));
    let (link, _rx, _overflow) = SessionLink::new(4);
    fanout.attach(1, &carol, link);

    let audience = StoreAudience::new(Arc::clone(&store), fanout);
    assert_eq!(
        audience.members(&room).await.expect("members"),
        vec![(alice.clone(), 2), (bob.clone(), 3), (carol.clone(), 4)]
    );
    let sent = script.send(T0 + 3, &alice, "hello", 0);
    apply(&*store, &room, &sent).await;
    assert!(audience.readable(&room, 5).await.expect("readable"));
    let deleted = script.delete(T0 + 4, &alice, 5);
    apply(&*store, &room, &deleted).await;
    assert!(
        !audience.readable(&room, 5).await.expect("readable"),
        "a deleted message is not pushed"
    );
    assert!(
        !audience.readable(&room, 99).await.expect("readable"),
        "nor a missing one"
    );
    assert!(audience.is_online(&carol));
    assert!(!audience.is_online(&bob));
    assert!(audience.muted(&bob, &room, T0).await.expect("muted"));
    assert!(
        !audience
            .muted(&bob, &room, T0 + 1_000)
            .await
            .expect("mute over")
    );
    assert!(!audience.muted(&carol, &room, T0).await.expect("not muted"));
    let devices = audience.devices(&bob).await.expect("devices");
    assert_eq!(
        devices,
        vec![PushDevice {
            platform: "PUSH_PLATFORM_FCM".to_owned(),
            token: "fcm-bob".to_owned(),
            device_id: "pixel".to_owned(),
        }]
    );
}

#[tokio::test]
async fn run_delivers_until_shutdown() {
    let (url, _status, mut rx) = receiver(200).await;
    let (_dir, queue) = queue_with(vec![1_000]);
    let clock = ManualClock::at(T0);
    let consumer =
        WebhookConsumer::app_webhook(Arc::clone(&queue), Lane::Medium, sender(&url), clock)
            .with_poll_interval(Duration::from_millis(5))
            .with_batch(1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(async {
        let _ = stopped.await;
    }));
    let joined = v1::RoomEvent {
        kind: Some(Kind::MemberJoined(v1::MemberJoined {
            user_id: "bob".to_owned(),
            role: v1::Role::Member as i32,
        })),
        ..message("g:run", 2, "bob", &[])
    };
    queue
        .publish(events_of_batch(&[joined]))
        .await
        .expect("publish");
    assert_eq!(
        next_request(&mut rx).await.event_id,
        "g:run:2:member.joined"
    );
    stop.send(()).expect("consumer running");
    task.await.expect("consumer stopped");
}

#[tokio::test]
async fn configured_consumers_get_every_event_until_shutdown() {
    let (app_url, _app_status, mut app_rx) = receiver(200).await;
    let (push_url, _push_status, mut push_rx) = receiver(200).await;
    let dir = TempDir::new().expect("temporary folder");
    let audience = Arc::new(FixedAudience {
        members: vec![("g:both", vec!["alice", "bob"])],
        ..FixedAudience::default()
    });
    let options = EventQueueOptions {
        sync: false,
        ..EventQueueOptions::default()
    };
    let mut consumers = Consumers::open(
        &dir.path().join("events"),
        &options,
        Some((sender(&push_url), audience)),
        Some(sender(&app_url)),
        ManualClock::at(T0),
    )
    .expect("open");
    let names: Vec<_> = consumers.queues().iter().map(|(name, _)| *name).collect();
    assert_eq!(names, vec!["push", "app"]);
    let none = Consumers::open(
        &dir.path().join("none"),
        &options,
        None,
        None,
        ManualClock::at(T0),
    )
    .expect("open");
    assert!(none.publisher().is_none() && none.queues().is_empty());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let tasks = consumers.spawn(&shutdown);
    assert_eq!(tasks.len(), 6, "push and app, each on every lane");

    let batch = [message("g:both", 1, "alice", &[])];
    consumers
        .publisher()
        .expect("consumers configured")
        .publish(events_of_batch(&batch))
        .await
        .expect("publish");
    assert_eq!(
        next_request(&mut app_rx).await.event_id,
        "g:both:1:message.created"
    );
    let push = next_request(&mut push_rx).await;
    assert_eq!(push.json()["recipients"][0]["userId"], "bob");

    stop.send(true).expect("consumers running");
    for task in tasks {
        task.await.expect("consumer stopped");
    }
}
