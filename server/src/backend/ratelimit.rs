//! Rate limits: token buckets keyed by user or address. Embedded: in process
//! ([`LocalRateLimiter`]); distributed: Redis ([`super::ratelimit_redis`]). Time comes from
//! the caller.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::config::RateLimit;

/// Takes tokens from named buckets.
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// Takes one token from bucket `key` refilled at `rate`. `Err(retry_after_ms)` when the
    /// bucket is empty: the earliest time a token will be there.
    async fn take(&self, key: &str, rate: RateLimit, now_ms: i64) -> Result<(), u32>;
}

/// Most buckets kept before idle (full) ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: i64,
    /// The rate the bucket was last taken at, to judge it by when forgetting full buckets.
    rate: RateLimit,
}

/// In-process token buckets.
#[derive(Debug, Default)]
pub struct LocalRateLimiter {
    inner: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<String, Bucket>,
    /// The size at which the next sweep runs: at least [`MAX_BUCKETS`], and twice what the
    /// last sweep kept, so sweeping costs O(1) per new key however many buckets stay busy
    /// (issue 15 M6: a sweep per new key was O(n) each once n busy buckets passed the cap).
    sweep_at: usize,
    /// Buckets looked at by sweeps, for the tests that count them.
    swept: u64,
}

impl LocalRateLimiter {
    /// No buckets yet.
    pub fn new() -> Self {
        Self::default()
    }
}

fn refill(bucket: &mut Bucket, rate: RateLimit, now_ms: i64) {
    let elapsed = now_ms.saturating_sub(bucket.updated_ms).max(0) as f64;
    let per_ms = f64::from(rate.rate_per_minute) / 60_000.0;
    bucket.tokens = (bucket.tokens + elapsed * per_ms).min(f64::from(rate.burst));
    bucket.updated_ms = bucket.updated_ms.max(now_ms);
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn take(&self, key: &str, rate: RateLimit, now_ms: i64) -> Result<(), u32> {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let inner = &mut *guard;
        if inner.map.len() >= inner.sweep_at.max(MAX_BUCKETS) && !inner.map.contains_key(key) {
            // Forget buckets that have refilled: they hold no state worth keeping.
            inner.swept += inner.map.len() as u64;
            inner.map.retain(|_, b| {
                let mut b = *b;
                let rate = b.rate;
                refill(&mut b, rate, now_ms);
                b.tokens < f64::from(rate.burst)
            });
            inner.sweep_at = inner.map.len().saturating_mul(2);
        }
        let buckets = &mut inner.map;
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: f64::from(rate.burst),
            updated_ms: now_ms,
            rate,
        });
        bucket.rate = rate;
        refill(bucket, rate, now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let per_ms = f64::from(rate.rate_per_minute.max(1)) / 60_000.0;
        let wait = ((1.0 - bucket.tokens) / per_ms).ceil();
        Err(if wait >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            wait as u32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: RateLimit = RateLimit {
        rate_per_minute: 60,
        burst: 3,
    };

    #[tokio::test]
    async fn a_burst_passes_then_the_rate_applies() {
        let limiter = LocalRateLimiter::new();
        for _ in 0..3 {
            assert_eq!(limiter.take("u", RATE, 0).await, Ok(()));
        }
        // One token per second: the next is a second away.
        assert_eq!(limiter.take("u", RATE, 0).await, Err(1000));
        assert_eq!(limiter.take("u", RATE, 400).await, Err(600));
        assert_eq!(limiter.take("u", RATE, 1000).await, Ok(()));
        assert_eq!(limiter.take("u", RATE, 1000).await, Err(1000));
    }

    #[tokio::test]
    async fn buckets_are_separate_and_refill_to_the_burst_only() {
        let limiter = LocalRateLimiter::new();
        for _ in 0..3 {
            assert_eq!(limiter.take("a", RATE, 0).await, Ok(()));
        }
        assert_eq!(limiter.take("b", RATE, 0).await, Ok(()));
        // An hour later "a" holds the burst, not 3600 tokens.
        for _ in 0..3 {
            assert_eq!(limiter.take("a", RATE, 3_600_000).await, Ok(()));
        }
        assert!(limiter.take("a", RATE, 3_600_000).await.is_err());
    }

    #[tokio::test]
    async fn busy_buckets_past_the_cap_are_swept_once_per_doubling_not_per_new_key() {
        let limiter = LocalRateLimiter::new();
        // MAX_BUCKETS busy buckets (each has just taken a token), then as many new keys again.
        for n in 0..2 * MAX_BUCKETS {
            assert_eq!(limiter.take(&format!("k{n}"), RATE, 0).await, Ok(()));
        }
        let inner = limiter.inner.lock().expect("lock");
        assert_eq!(
            inner.map.len(),
            2 * MAX_BUCKETS,
            "busy buckets are all kept"
        );
        assert_eq!(
            inner.swept, MAX_BUCKETS as u64,
            "one sweep of the full map, not one per new key"
        );
    }

    #[tokio::test]
    async fn refilled_buckets_are_forgotten_at_the_cap() {
        let limiter = LocalRateLimiter::new();
        for n in 0..MAX_BUCKETS {
            assert_eq!(limiter.take(&format!("k{n}"), RATE, 0).await, Ok(()));
        }
        // Ten seconds later every bucket is full again: the next new key sweeps them all out.
        assert_eq!(limiter.take("new", RATE, 10_000).await, Ok(()));
        assert_eq!(limiter.inner.lock().expect("lock").map.len(), 1);
    }

    #[tokio::test]
    async fn a_clock_going_backwards_does_not_mint_tokens() {
        let limiter = LocalRateLimiter::new();
        for _ in 0..3 {
            assert_eq!(limiter.take("u", RATE, 10_000).await, Ok(()));
        }
        assert!(limiter.take("u", RATE, 5_000).await.is_err());
    }
}
