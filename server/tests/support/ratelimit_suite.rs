//! The behavioural suite of the rate limiter trait (`RateLimiter`), written once and run
//! against every implementation.
//!
//! An implementation provides a [`LimiterFactory`] and expands [`ratelimit_suite_tests!`] with
//! it, which makes one `#[tokio::test]` per behaviour, named after it:
//!
//! ```ignore
//! mod support;
//! fn factory() -> MyFactory { ... }
//! support::ratelimit_suite::ratelimit_suite_tests!(factory);
//! ```
//!
//! Time is passed to `take`, never slept.

use std::sync::Arc;

use async_trait::async_trait;
use chatwire_server::backend::ratelimit::RateLimiter;
use chatwire_server::config::RateLimit;
use futures_util::StreamExt;

/// Makes the limiters under test.
#[async_trait]
pub trait LimiterFactory: Send + Sync {
    /// A limiter with no buckets.
    async fn limiter(&self) -> Arc<dyn RateLimiter>;
}

/// Makes one `#[tokio::test]` per behaviour of the suite, each calling `$factory()` for a fresh
/// factory.
#[allow(unused_macros)] // test binaries that do not test a limiter
macro_rules! ratelimit_suite_tests {
    ($factory:path) => {
        $crate::support::ratelimit_suite::ratelimit_suite_tests!(
            @tests $factory;
            a_burst_passes_then_the_rate_applies,
            retry_after_is_exact,
            retry_after_is_never_too_early,
            keys_are_independent,
            refill_is_capped_at_the_burst,
            a_clock_going_backwards_mints_nothing,
            many_keys_keep_their_own_state,
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory();
                $crate::support::ratelimit_suite::$name(&factory).await;
            }
        )*
    };
}
#[allow(unused_imports)] // test binaries that do not test a limiter
pub(crate) use ratelimit_suite_tests;

/// The time the tests start at.
const T0: i64 = 1_700_000_000_000;

/// A bucket of `burst` refilled at `rate_per_minute`.
pub fn rate(rate_per_minute: u32, burst: u32) -> RateLimit {
    RateLimit {
        rate_per_minute,
        burst,
    }
}

/// One token a second, three at most.
const PER_SECOND: RateLimit = RateLimit {
    rate_per_minute: 60,
    burst: 3,
};

/// Takes the whole burst of a fresh bucket `key` at `now_ms`.
async fn drain(limiter: &dyn RateLimiter, key: &str, limit: RateLimit, now_ms: i64) {
    for i in 0..limit.burst {
        assert_eq!(
            limiter.take(key, limit, now_ms).await,
            Ok(()),
            "{key}: token {i}"
        );
    }
}

/// A burst passes at once; then tokens come at the rate, and failed takes consume nothing.
pub async fn a_burst_passes_then_the_rate_applies(factory: &dyn LimiterFactory) {
    let limiter = factory.limiter().await;
    drain(&*limiter, "u", PER_SECOND, T0).await;
    assert_eq!(limiter.take("u", PER_SECOND, T0).await, Err(1000));
    assert_eq!(limiter.take("u", PER_SECOND, T0 + 400).await, Err(600));
    assert!(limiter.take("u", PER_SECOND, T0 + 999).await.is_err());
    assert_eq!(limiter.take("u", PER_SECOND, T0 + 1_000).await, Ok(()));
    assert_eq!(limiter.take("u", PER_SECOND, T0 + 1_000).await, Err(1000));
    // Two and a half seconds later: two tokens and half of the next.
    assert_eq!(limiter.take("u", PER_SECOND, T0 + 3_500).await, Ok(()));
    assert_eq!(limiter.take("u", PER_SECOND, T0 + 3_500).await, Ok(()));
    assert_eq!(limiter.take("u", PER_SECOND, T0 + 3_500).await, Err(500));
}

/// The answer is the wait until the next token, rounded up to a millisecond: a take one
/// millisecond earlier fails, a take then succeeds.
pub async fn retry_after_is_exact(factory: &dyn LimiterFactory) {
    let limiter = factory.limiter().await;
    for (limit, wait) in [
        (rate(1, 1), 60_000),
        (rate(120, 5), 500),
        (rate(600, 30), 100),
        (rate(3000, 100), 20),
        (rate(60_000, 2), 1),
        // 8571.43 ms a token: rounded up.
        (rate(7, 1), 8_572),
    ] {
        let key = format!("k{}", limit.rate_per_minute);
        drain(&*limiter, &key, limit, T0).await;
        assert_eq!(limiter.take(&key, limit, T0).await, Err(wait), "{limit:?}");
        let then = T0 + i64::from(wait);
        assert!(
            limiter.take(&key, limit, then - 1).await.is_err(),
            "{limit:?}"
        );
        assert_eq!(limiter.take(&key, limit, then).await, Ok(()), "{limit:?}");
    }
}

/// Whatever the rate and whenever asked, a take after the wait it was told succeeds.
pub async fn retry_after_is_never_too_early(factory: &dyn LimiterFactory) {
    let limiter = factory.limiter().await;
    for per_minute in (1..=6_000).step_by(7) {
        let limit = rate(per_minute, 1);
        let key = format!("r{per_minute}");
        drain(&*limiter, &key, limit, T0).await;
        let asked = T0 + i64::from(per_minute % 13);
        let wait = match limiter.take(&key, limit, asked).await {
            Ok(()) => continue,
            Err(wait) => wait,
        };
        assert!(wait > 0, "{limit:?}");
        assert_eq!(
            limiter.take(&key, limit, asked + i64::from(wait)).await,
            Ok(()),
            "{limit:?}: told to wait {wait} ms at +{} ms",
            asked - T0
        );
    }
}

/// Draining one key leaves the others full, whatever their rates.
pub async fn keys_are_independent(factory: &dyn LimiterFactory) {
    let limiter = factory.limiter().await;
    drain(&*limiter, "send:alice", PER_SECOND, T0).await;
    assert!(limiter.take("send:alice", PER_SECOND, T0).await.is_err());
    drain(&*limiter, "send:bob", PER_SECOND, T0).await;
    drain(&*limiter, "typing:alice", rate(120, 5), T0).await;
    assert!(limiter.take("send:bob", PER_SECOND, T0).await.is_err());
    assert!(
        limiter
            .take("typing:alice", rate(120, 5), T0)
            .await
            .is_err()
    );
    assert_eq!(limiter.take("send:carol", PER_SECOND, T0).await, Ok(()));
}

/// A bucket left alone refills to its burst and no further.
pub async fn refill_is_capped_at_the_burst(factory: &dyn LimiterFactory) {
    let limiter = factory.limiter().await;
    drain(&*limiter, "u", PER_SECOND, T0).await;
    let hour_later = T0 + 3_600_000;
    drain(&*limiter, "u", PER_SECOND, hour_later).await;
    assert_eq!(limiter.take("u", PER_SECOND, hour_later).await, Err(1000));
    // A partly drained bucket too.
    assert_eq!(limiter.take("v", PER_SECOND, T0).await, Ok(()));
    drain(&*limiter, "v", PER_SECOND, T0 + 10_000).await;
    assert!(limiter.take("v", PER_SECOND, T0 + 10_000).await.is_err());
}

/// Time going backwards neither refills a bucket nor, when it comes forward again, counts the
/// same time twice.
pub async fn a_clock_going_backwards_mints_nothing(factory: &dyn LimiterFactory) {
    let limiter = factory.limiter().await;
    let later = T0 + 10_000;
    drain(&*limiter, "u", PER_SECOND, later).await;
    for earlier in [T0 + 5_000, T0, T0 - 3_600_000] {
        assert!(
            limiter.take("u", PER_SECOND, earlier).await.is_err(),
            "at {earlier}"
        );
    }
    assert!(limiter.take("u", PER_SECOND, later + 999).await.is_err());
    assert_eq!(limiter.take("u", PER_SECOND, later + 1_000).await, Ok(()));
    assert!(limiter.take("u", PER_SECOND, later + 1_000).await.is_err());
    // A first take at an old time after newer ones elsewhere is just a fresh bucket.
    drain(&*limiter, "w", PER_SECOND, T0 - 1).await;
}

/// How many keys [`many_keys_keep_their_own_state`] uses: enough to pass any in-memory cap.
pub const MANY_KEYS: usize = 100_000;

/// Many keys with one rate, then keys with another: each bucket keeps its own state (a drained
/// bucket stays drained at its own rate), and new keys start full.
pub async fn many_keys_keep_their_own_state(factory: &dyn LimiterFactory) {
    let limiter = factory.limiter().await;
    let slow = rate(1, 1);
    let fast = rate(60_000, 1);
    // Many takes in flight at once, as from many connections, so a limiter across the network
    // is not measured by its round trip.
    futures_util::stream::iter(0..MANY_KEYS)
        .for_each_concurrent(64, |i| {
            let limiter = &limiter;
            async move { assert_eq!(limiter.take(&format!("slow:{i}"), slow, T0).await, Ok(())) }
        })
        .await;
    // A second later a fast bucket would be full again; the slow ones hold 1/60 of a token.
    let second = T0 + 1_000;
    for i in 0..10 {
        assert_eq!(
            limiter.take(&format!("fast:{i}"), fast, second).await,
            Ok(())
        );
    }
    for i in (0..MANY_KEYS).step_by(997) {
        assert_eq!(
            limiter.take(&format!("slow:{i}"), slow, second).await,
            Err(59_000),
            "slow:{i}"
        );
    }
    // A minute on, every slow bucket has its token back.
    let minute = T0 + 60_000;
    for i in (0..MANY_KEYS).step_by(991) {
        assert_eq!(
            limiter.take(&format!("slow:{i}"), slow, minute).await,
            Ok(())
        );
    }
    assert_eq!(limiter.take("fresh", slow, minute).await, Ok(()));
}
