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
