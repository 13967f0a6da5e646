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
    buckets: Mutex<HashMap<String, Bucket>>,
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
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            // Forget buckets that have refilled: they hold no state worth keeping.
            buckets.retain(|_, b| {
                let mut b = *b;
                let rate = b.rate;
                refill(&mut b, rate, now_ms);
                b.tokens < f64::from(rate.burst)
            });
        }
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
    async fn a_clock_going_backwards_does_not_mint_tokens() {
        let limiter = LocalRateLimiter::new();
        for _ in 0..3 {
            assert_eq!(limiter.take("u", RATE, 10_000).await, Ok(()));
        }
        assert!(limiter.take("u", RATE, 5_000).await.is_err());
    }
}
