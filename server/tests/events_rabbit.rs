//! The event queue suite against RabbitMQ (`events_rabbit`), plus what only a broker shows:
//! a lease surviving its consumer's connection dropping, unroutable publishes failing, the
//! topic exchange fanning out to every consumer, the DLQ listing and replay, and a retry
//! tier's real TTL bringing an event back to its lane.
//!
//! Needs the shared RabbitMQ (fails, never skips, without it); every test uses its own
//! random queue prefix and deletes its queues at the end.
//!
//! ```sh
//! set -a; . /work/main/.services/env; set +a
//! cargo test -p chatwire-server --test events_rabbit
//! ```

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chatwire_server::backend::events::{
    Delivery, DownstreamEvent, EventPublisher, EventQueue, Lane, QueueError, RetryPolicy,
};
use chatwire_server::backend::events_rabbit::{
    RabbitEventPublisher, RabbitEventQueue, RabbitEventsConfig,
};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use support::events_suite::{self, QueueFactory, T0, event, ids};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Overall deadline of every wait on the broker.
const DEADLINE: Duration = Duration::from_secs(60);

fn amqp_url() -> String {
    std::env::var("CHATWIRE_TEST_AMQP_URL")
        .expect("CHATWIRE_TEST_AMQP_URL must point at RabbitMQ (. /work/main/.services/env)")
}

fn unique_prefix() -> String {
    format!("test-{}.", uuid::Uuid::new_v4().simple())
}

fn config(url: &str, prefix: &str, consumer: &str, retry: RetryPolicy) -> RabbitEventsConfig {
    RabbitEventsConfig {
        heartbeat_s: 5,
        ..RabbitEventsConfig::new(url, prefix, consumer, retry)
    }
}

/// Queues of one prefix; deletes every queue it opened (and the exchange) when dropped.
struct Rabbit {
    url: String,
    prefix: String,
    /// The last queue opened, closed cleanly before the next open (a restart).
    current: tokio::sync::Mutex<Option<RabbitEventQueue>>,
    cleanup: Mutex<Vec<String>>,
}

fn rabbit() -> Rabbit {
    Rabbit {
        url: amqp_url(),
        prefix: unique_prefix(),
        current: tokio::sync::Mutex::new(None),
        cleanup: Mutex::new(Vec::new()),
    }
}

impl Rabbit {
    async fn queue(&self, consumer: &str, retry: RetryPolicy) -> RabbitEventQueue {
        let queue = RabbitEventQueue::connect(config(&self.url, &self.prefix, consumer, retry))
            .await
            .expect("connect the event queue");
        self.cleanup
            .lock()
            .expect("lock")
            .extend(queue.queue_names());
        queue
    }

    async fn publisher(&self) -> RabbitEventPublisher {
        let config = config(&self.url, &self.prefix, "writer", RetryPolicy::default());
        RabbitEventPublisher::connect(&config)
            .await
            .expect("connect the publisher")
    }
}

#[async_trait]
impl QueueFactory for Rabbit {
    async fn open(&self, policy: RetryPolicy) -> Arc<dyn EventQueue> {
        let mut current = self.current.lock().await;
        if let Some(previous) = current.take() {
            previous.close().await;
        }
        let queue = self.queue("suite", policy).await;
        *current = Some(queue.clone());
        Arc::new(queue)
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.cleanup.lock().unwrap_or_else(|e| e.into_inner()));
        let (url, exchange) = (self.url.clone(), format!("{}events", self.prefix));
        // Drop cannot await: delete on a thread of its own with its own runtime.
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(delete_all(&url, names, &exchange));
        });
        let _ = done.join();
    }
}

async fn delete_all(url: &str, names: Vec<String>, exchange: &str) {
    let Ok(conn) = Connection::connect(url, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(channel) = conn.create_channel().await else {
        return;
    };
    for name in names {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = channel
        .exchange_delete(
            exchange.into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await;
    let _ = conn.close(200, "done".into()).await;
}

/// Messages ready in `queue`, read by a connection of the test's own.
async fn ready_in(url: &str, queue: &str) -> u32 {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .expect("queue exists");
    let _ = conn.close(200, "done".into()).await;
    declared.message_count()
}

/// Polls `lease` until it hands out something, within [`DEADLINE`].
async fn lease_eventually(queue: &dyn EventQueue, lane: Lane, now_ms: i64) -> Vec<Delivery> {
    let started = tokio::time::Instant::now();
    loop {
        let leased = queue.lease(lane, 10, now_ms).await.expect("lease");
        if !leased.is_empty() {
            return leased;
        }
        assert!(started.elapsed() < DEADLINE, "nothing to lease in {lane}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

events_suite::events_suite_tests!(rabbit);

// ---------------------------------------------------------------------------------------------
// A TCP proxy whose connections the test can cut, standing in for a network failure.

struct Proxy {
    url: String,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy in front of the broker of `url`; its URL points at the proxy.
    async fn start(url: &str) -> Self {
        let (head, rest) = url.split_once('@').expect("amqp url with credentials");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream = authority.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let local = listener.local_addr().expect("address");
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = Arc::clone(&pipes);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tracked.lock().expect("lock").push(pipe);
            }
        });
        Self {
            url: format!("{head}@{local}/{path}"),
            pipes,
            accept,
        }
    }

    /// Drops every proxied connection at once, as a broken network would.
    fn cut(&self) {
        self.accept.abort();
        for pipe in self.pipes.lock().expect("lock").drain(..) {
            pipe.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Broker behaviours

/// A leased event whose consumer's connection drops before the ack is delivered again, its
/// interrupted delivery counted; the old consumer's tag no longer settles anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_event_survives_consumer_connection_drop() {
    let rabbit = rabbit();
    let proxy = Proxy::start(&rabbit.url).await;
    let through_proxy = RabbitEventQueue::connect(config(
        &proxy.url,
        &rabbit.prefix,
        "push",
        events_suite::policy(),
    ))
    .await
    .expect("connect through the proxy");
    rabbit
        .cleanup
        .lock()
        .expect("lock")
        .extend(through_proxy.queue_names());
    let sent = event(Lane::High, "g:drop", 1);
    through_proxy
        .publish(vec![sent.clone()])
        .await
        .expect("publish");
    let leased = through_proxy
        .lease(Lane::High, 10, T0)
        .await
        .expect("lease");
    assert_eq!(ids(&leased), vec![sent.id.clone()]);

    proxy.cut();
    let other = rabbit.queue("push", events_suite::policy()).await;
    let again = lease_eventually(&other, Lane::High, T0).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event, sent, "every field survives");
    assert_eq!(again[0].attempt, 2, "the interrupted delivery counts");
    assert!(
        through_proxy.ack(leased[0].tag).await.is_err(),
        "the dropped lease settles nothing"
    );
    other.ack(again[0].tag).await.expect("ack");
    assert_eq!(other.depth(Lane::High).await.expect("depth"), 0);
}

/// An event no queue takes is a failure although the broker confirms it: from the topic
/// publisher with no consumer bound, and from a queue whose lane queue was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_publish_is_a_failure() {
    let rabbit = rabbit();
    let publisher = rabbit.publisher().await;
    let lonely = event(Lane::Low, "g:none", 1);
    let err = publisher
        .publish(vec![lonely.clone()])
        .await
        .expect_err("no consumer bound: unroutable");
    assert!(
        matches!(&err, QueueError::Unavailable(why) if why.contains("unroutable")),
        "{err:?}"
    );

    let queue = rabbit.queue("app", events_suite::policy()).await;
    publisher
        .publish(vec![lonely.clone()])
        .await
        .expect("routed once a consumer is bound");
    assert_eq!(queue.depth(Lane::Low).await.expect("depth"), 1);

    let conn = Connection::connect(&rabbit.url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    let medium = format!("{}events.app.medium", rabbit.prefix);
    channel
        .queue_delete(medium.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete the medium lane");
    let err = queue
        .publish(vec![event(Lane::Medium, "g:none", 2)])
        .await
        .expect_err("the lane queue is gone");
    assert!(matches!(err, QueueError::Unavailable(_)), "{err:?}");
    let _ = conn.close(200, "done".into()).await;
}

/// One publish through the topic exchange reaches the lane of every consumer, and only that
/// lane; depth counts each consumer's lanes apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_publisher_reaches_every_consumer_lane() {
    let rabbit = rabbit();
    let push = rabbit.queue("push", events_suite::policy()).await;
    let app = rabbit.queue("app", events_suite::policy()).await;
    let publisher = rabbit.publisher().await;
    let events = vec![
        event(Lane::High, "g:fan", 1),
        event(Lane::High, "g:fan", 2),
        event(Lane::Low, "g:fan", 3),
    ];
    publisher.publish(events.clone()).await.expect("publish");

    for queue in [&push, &app] {
        assert_eq!(queue.depth(Lane::High).await.expect("depth"), 2);
        assert_eq!(queue.depth(Lane::Medium).await.expect("depth"), 0);
        assert_eq!(queue.depth(Lane::Low).await.expect("depth"), 1);
    }
    let leased = push.lease(Lane::High, 10, T0).await.expect("lease");
    assert_eq!(
        leased.iter().map(|d| d.event.clone()).collect::<Vec<_>>(),
        events[..2].to_vec()
    );
    push.ack(leased[0].tag).await.expect("ack");
    push.nack(leased[1].tag, T0, "down").await.expect("nack");
    assert_eq!(
        push.depth(Lane::High).await.expect("depth"),
        1,
        "one retrying"
    );
    assert_eq!(
        app.depth(Lane::High).await.expect("depth"),
        2,
        "app untouched"
    );
    let app_low = app.lease(Lane::Low, 10, T0).await.expect("lease");
    assert_eq!(app_low[0].event, events[2]);
    assert_eq!(
        app.depth(Lane::Low).await.expect("depth"),
        1,
        "leased counts"
    );
    assert_eq!(push.dlq_len().await.expect("dlq"), 0);
}

/// Dead letters are listed oldest first, as often as asked, without being consumed; a replay
/// moves one back to its lane with fresh retries; a clean restart keeps the rest in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_and_replay_round_trip() {
    let rabbit = rabbit();
    let no_retries = RetryPolicy {
        tiers_ms: vec![],
        lease_timeout_ms: 30_000,
    };
    let queue = rabbit.queue("app", no_retries.clone()).await;
    let events: Vec<DownstreamEvent> = (1..=3)
        .map(|seq| event(Lane::Medium, "g:dlq", seq))
        .collect();
    queue.publish(events.clone()).await.expect("publish");
    for (i, delivery) in queue
        .lease(Lane::Medium, 10, T0)
        .await
        .expect("lease")
        .into_iter()
        .enumerate()
    {
        let reason = format!("answered 50{i}");
        queue
            .nack(delivery.tag, T0 + i as i64, &reason)
            .await
            .expect("nack");
    }
    assert_eq!(queue.depth(Lane::Medium).await.expect("depth"), 0);
    assert_eq!(queue.dlq_len().await.expect("dlq"), 3);
    for _ in 0..2 {
        let dead = queue.dead_letters(10).await.expect("dead letters");
        let listed: Vec<_> = dead
            .iter()
            .map(|d| (d.event.clone(), d.attempts, d.dead_at_ms, d.reason.clone()))
            .collect();
        let expected: Vec<_> = (0..3)
            .map(|i| {
                (
                    events[i].clone(),
                    1,
                    T0 + i as i64,
                    format!("answered 50{i}"),
                )
            })
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(
            queue.dlq_len().await.expect("dlq"),
            3,
            "listing consumes nothing"
        );
    }

    assert!(
        queue
            .replay_dead_letter(&events[1].id, T0 + 100)
            .await
            .expect("replay")
    );
    assert_eq!(queue.dlq_len().await.expect("dlq"), 2);
    assert_eq!(queue.depth(Lane::Medium).await.expect("depth"), 1);
    let replayed = queue
        .lease(Lane::Medium, 10, T0 + 100)
        .await
        .expect("lease");
    assert_eq!(ids(&replayed), vec![events[1].id.clone()]);
    assert_eq!(replayed[0].attempt, 1);
    queue.ack(replayed[0].tag).await.expect("ack");

    queue.close().await;
    let restarted = rabbit.queue("app", no_retries).await;
    assert_eq!(restarted.dlq_len().await.expect("dlq"), 2);
    let dead = restarted.dead_letters(10).await.expect("dead letters");
    let dead_ids: Vec<_> = dead.iter().map(|d| d.event.id.clone()).collect();
    assert_eq!(dead_ids, vec![events[0].id.clone(), events[2].id.clone()]);
}

/// A retry tier is a real queue with a TTL: without any lease in between, the event comes
/// back to its lane by at-least-once dead-lettering, and is leased from there with its
/// attempt count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_tier_ttl_brings_the_event_back_to_its_lane() {
    let rabbit = rabbit();
    let queue = rabbit
        .queue(
            "push",
            RetryPolicy {
                tiers_ms: vec![50],
                lease_timeout_ms: 30_000,
            },
        )
        .await;
    let sent = event(Lane::High, "g:ttl", 1);
    queue.publish(vec![sent.clone()]).await.expect("publish");
    let leased = queue.lease(Lane::High, 10, T0).await.expect("lease");
    queue.nack(leased[0].tag, T0, "later").await.expect("nack");

    let lane_queue = format!("{}events.push.high", rabbit.prefix);
    let started = tokio::time::Instant::now();
    while ready_in(&rabbit.url, &lane_queue).await == 0 {
        assert!(started.elapsed() < DEADLINE, "the tier never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tier_queue = format!("{}events.push.high.retry1.50ms", rabbit.prefix);
    assert_eq!(ready_in(&rabbit.url, &tier_queue).await, 0);
    assert_eq!(queue.depth(Lane::High).await.expect("depth"), 1);
    let again = queue.lease(Lane::High, 10, T0 + 50).await.expect("lease");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event, sent);
    assert_eq!(again[0].attempt, 2);
    queue
        .nack(again[0].tag, T0 + 50, "still down")
        .await
        .expect("nack");
    let dead = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(
        (dead[0].attempts, dead[0].reason.as_str()),
        (2, "still down")
    );
}
