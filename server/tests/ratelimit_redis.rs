//! The rate limiter suite against the Redis token buckets of the distributed backend, plus its
//! fail-open behaviour. Needs Redis: fails (never skips) when `CHATWIRE_TEST_REDIS_URL` is unset.
//!
//! ```sh
//! scripts/services start && set -a && . .services/env && set +a
//! cargo test -p chatwire-server --test ratelimit_redis
//! ```

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chatwire_server::backend::ratelimit::RateLimiter;
use chatwire_server::backend::ratelimit_redis::RedisRateLimiter;
use support::ratelimit_suite::{self, LimiterFactory, rate};

/// Makes limiters on the test Redis, each under a key prefix no other limiter uses.
struct Redis {
    url: String,
}

fn redis_url() -> String {
    match std::env::var("CHATWIRE_TEST_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "CHATWIRE_TEST_REDIS_URL is not set: start the services with `scripts/services start` \
             and load them with `set -a; . .services/env; set +a` (scripts/test does both)"
        ),
    }
}

/// A key prefix unique to this call, this process and this run.
fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("chatwire-test:rl:{}:{nanos}:{n}:", std::process::id())
}

impl Redis {
    async fn connect(&self, prefix: &str) -> RedisRateLimiter {
        RedisRateLimiter::connect(&self.url, prefix)
            .await
            .unwrap_or_else(|e| panic!("Redis rate limiter at {}: {e}", self.url))
    }
}

#[async_trait]
impl LimiterFactory for Redis {
    async fn limiter(&self) -> Arc<dyn RateLimiter> {
        Arc::new(self.connect(&unique_prefix()).await)
    }
}

fn redis() -> Redis {
    Redis { url: redis_url() }
}

ratelimit_suite::ratelimit_suite_tests!(redis);

/// Two limiters on one Redis and prefix (two gateway nodes) share their buckets.
#[tokio::test]
async fn nodes_share_buckets() {
    let factory = redis();
    let prefix = unique_prefix();
    let a = factory.connect(&prefix).await;
    let b = factory.connect(&prefix).await;
    let limit = rate(60, 2);
    assert_eq!(a.take("u", limit, 1_000).await, Ok(()));
    assert_eq!(b.take("u", limit, 1_000).await, Ok(()));
    assert_eq!(a.take("u", limit, 1_000).await, Err(1000));
    assert_eq!(b.take("u", limit, 1_500).await, Err(500));
}

/// When Redis cannot run the bucket (here: the key holds a string, not a hash), takes are
/// allowed rather than refused.
#[tokio::test]
async fn redis_errors_fail_open() {
    let factory = redis();
    let prefix = unique_prefix();
    let limiter = factory.connect(&prefix).await;
    let client = redis::Client::open(factory.url.as_str()).expect("Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let key = format!("{prefix}broken");
    redis::cmd("SET")
        .arg(&key)
        .arg("not a hash")
        .arg("PX")
        .arg(60_000)
        .exec_async(&mut connection)
        .await
        .expect("SET");
    let limit = rate(1, 1);
    for _ in 0..5 {
        assert_eq!(limiter.take("broken", limit, 1_000).await, Ok(()));
    }
    // Other buckets still work.
    assert_eq!(limiter.take("fine", limit, 1_000).await, Ok(()));
    assert_eq!(limiter.take("fine", limit, 1_000).await, Err(60_000));
}

/// A Redis that is not there is refused when the limiter is made, not at the first take.
#[tokio::test]
async fn an_unreachable_redis_is_refused_up_front() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let url = format!("redis://{addr}");
    let started = std::time::Instant::now();
    let result = RedisRateLimiter::connect(&url, "t:").await;
    assert!(result.is_err(), "connected to {url}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A TCP proxy in front of Redis that can freeze: connections stay open and what clients send
/// is held back until the thaw, as with a SIGSTOPped Redis. It counts the `EVAL`/`EVALSHA`
/// commands clients send through it, frozen or not: the round trips the limiter attempts.
struct FreezingProxy {
    url: String,
    frozen: tokio::sync::watch::Sender<bool>,
    evals: Arc<AtomicU64>,
}

impl FreezingProxy {
    async fn start(upstream_url: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = upstream_url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("redis://{}", listener.local_addr().expect("address"));
        let (frozen, thawed) = tokio::sync::watch::channel(false);
        let evals = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&evals);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut client_read, client_write) = client.into_split();
                let (server_read, mut server_write) = server.into_split();
                let (counted, mut thawed) = (Arc::clone(&counted), thawed.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = client_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
                        counted.fetch_add(text.matches("EVAL").count() as u64, Ordering::SeqCst);
                        if thawed.wait_for(|frozen| !frozen).await.is_err()
                            || server_write.write_all(&buf[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let (mut from, mut to) = (server_read, client_write);
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                });
            }
        });
        Self { url, frozen, evals }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    fn evals(&self) -> u64 {
        self.evals.load(Ordering::SeqCst)
    }
}

/// Issue 15 H5: with Redis frozen, only the take that finds it out waits for the deadline;
/// every take after that is allowed without a round trip to Redis, until a probe finds Redis
/// answering again and the buckets are enforced once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_no_round_trip_per_take() {
    let proxy = FreezingProxy::start(&redis_url()).await;
    let limiter = RedisRateLimiter::connect(&proxy.url, &unique_prefix())
        .await
        .expect("connect through the proxy");
    let limit = rate(1, 1);
    assert_eq!(limiter.take("u", limit, 1_000).await, Ok(()));
    assert_eq!(limiter.take("u", limit, 1_000).await, Err(60_000), "live");
    assert!(!limiter.is_failing_open());

    proxy.freeze(true);
    assert_eq!(
        limiter.take("u", limit, 1_000).await,
        Ok(()),
        "a silent Redis fails open"
    );
    assert!(limiter.is_failing_open(), "and opens the breaker");
    let before = proxy.evals();
    for i in 0..200 {
        assert_eq!(limiter.take(&format!("k{i}"), limit, 1_500).await, Ok(()));
    }
    assert_eq!(
        proxy.evals(),
        before,
        "no take reached for Redis while the breaker was open"
    );

    proxy.freeze(false);
    // A take past the probe interval starts a PING; the breaker closes once it is answered.
    assert_eq!(limiter.take("v", limit, 2_500).await, Ok(()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut now_ms = 2_500;
    while limiter.is_failing_open() {
        assert!(
            std::time::Instant::now() < deadline,
            "the breaker never closed"
        );
        // The probe may have met a connection still recovering from the freeze; later takes
        // start further probes, as fast as a busy caller can, and none of them voids an earlier
        // probe that Redis answers.
        now_ms += 1_000;
        let _ = limiter.take("v", limit, now_ms).await;
        tokio::task::yield_now().await;
    }
    // The bucket of "u" is still empty in Redis: enforcement is back.
    assert_eq!(limiter.take("u", limit, 1_000).await, Err(60_000));
}
