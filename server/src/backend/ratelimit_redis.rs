//! Rate limits in Redis ([`RedisRateLimiter`]): the token buckets of
//! [`super::ratelimit::LocalRateLimiter`], shared by every gateway node (docs/architecture.md "Data
//! flow").
//!
//! ```text
//!  take(key, rate, now_ms) ─▶ EVALSHA token bucket (EVAL once on NOSCRIPT) ─▶ Ok / Err(retry_after_ms)
//!                                 │ HMGET t u ─ refill ─ take ─ HSET t u ─ PEXPIRE
//!                                 ▼
//!                  hash `<prefix><key>` {t: tokens, u: last update ms}
//! ```
//!
//! - One Lua script reads, refills, takes and writes a bucket, so takes from many nodes never
//!   interleave. It does the same double arithmetic as the local limiter, and stores the numbers
//!   with 17 significant digits so they read back exactly: both answer the same
//!   `retry_after_ms` for the same calls.
//! - Time is the caller's `now_ms`, never Redis `TIME`, as for the local limiter (and so the
//!   shared behavioural suite can drive it).
//! - A bucket expires two full refill periods after its last take (at least
//!   [`MIN_TTL_MS`], at most [`MAX_TTL_MS`]): by then it is full, so forgetting it changes
//!   nothing.
//!
//! **Redis errors fail open.** When Redis cannot answer (down, unreachable, slower than
//! [`TAKE_DEADLINE`], script error), `take` allows the call and logs a warning, at most once
//! every [`WARN_EVERY_MS`]. Redis being down never fails a send; a limiter that
//! refused everything would turn a Redis outage into a chat outage, while allowing lets the
//! other limits (connection caps per address, frame and queue limits) hold for that time.
//!
//! **Redis being down costs nothing per request.** A take that finds Redis unreachable or
//! silent (not a script error: that is Redis answering) opens a breaker: from then on takes
//! allow at once without a round trip, and at most once every [`PROBE_EVERY_MS`] (by the
//! callers' clock) one take starts a background PING. The first PING Redis answers closes the
//! breaker. So a dead or frozen Redis costs the one take that found it out, at most
//! [`TAKE_DEADLINE`], and then nothing.
//!
//! Does not: pick the limiter from configuration (the caller builds one and puts it in
//! `Services::limiter`), or use Redis Cluster (one key per script call, so it could).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::ratelimit::RateLimiter;
use crate::config::RateLimit;

/// The longest a take waits for Redis before it fails open.
pub const TAKE_DEADLINE: Duration = Duration::from_secs(1);
/// The shortest life of a bucket, so a slow round trip or clocks apart between nodes never
/// drop the state of a fast bucket that still matters.
pub const MIN_TTL_MS: u64 = 10_000;
/// The longest life of a bucket (a week).
pub const MAX_TTL_MS: u64 = 7 * 24 * 3_600_000;
/// Fail-open warnings come at most this often (by the callers' clock).
pub const WARN_EVERY_MS: i64 = 10_000;
/// While Redis is down, a background PING checks on it at most this often (callers' clock).
pub const PROBE_EVERY_MS: i64 = 1_000;

/// `open_until_ms` when the breaker is closed.
const CLOSED: i64 = i64::MIN;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
const RECONNECT_RETRIES: usize = 3;
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// The token bucket: KEYS[1] the bucket hash; ARGV now_ms, rate_per_minute, burst, ttl_ms.
/// Returns -1 when a token was taken, else the wait in ms. Mirrors `LocalRateLimiter::take`.
const TAKE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
local elapsed = math.max(now - updated, 0)
tokens = math.min(tokens + elapsed * (rate / 60000.0), burst)
updated = math.max(updated, now)
local result = -1
if tokens >= 1 then
  tokens = tokens - 1
else
  result = math.ceil((1 - tokens) / (math.max(rate, 1) / 60000.0))
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'u', string.format('%.17g', updated))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return result
";

/// Why a [`RedisRateLimiter`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RedisRateLimiterError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// Redis did not answer the first connection.
    #[error("cannot connect to Redis: {0}")]
    Connect(String),
}

/// Token buckets in Redis, shared by every node using the same Redis and key prefix.
pub struct RedisRateLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    prefix: String,
    last_warn_ms: AtomicI64,
    /// The breaker: [`CLOSED`], or the callers' time from which the next probe may start.
    /// Shared with the probe task.
    open_until_ms: Arc<AtomicI64>,
    /// How many takes found Redis down. A probe closes the breaker only when no take found
    /// Redis down while it ran; a later probe starting does not void an earlier one, so a busy
    /// caller's takes cannot keep the breaker open against a Redis that answers.
    downs: Arc<AtomicU64>,
}

/// Why a take got no answer from the bucket.
enum Failure {
    /// Redis is unreachable, dropped the connection or did not answer in time.
    Down(String),
    /// Redis answered with an error (the key is not a bucket, the script failed).
    Answered(String),
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Connects to `url` (`redis://host:port/db`); bucket `key` lives at `<prefix><key>`.
    /// Fails when Redis does not answer now; later outages fail open instead.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RedisRateLimiterError> {
        let client = redis::Client::open(url)
            .map_err(|e| RedisRateLimiterError::InvalidUrl(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let connect = ConnectionManager::new_with_config(client, config);
        let connection = tokio::time::timeout(TAKE_DEADLINE * 5, connect)
            .await
            .map_err(|_| RedisRateLimiterError::Connect("timed out".to_owned()))?
            .map_err(|e| RedisRateLimiterError::Connect(e.to_string()))?;
        Ok(Self {
            connection,
            script: redis::Script::new(TAKE_SCRIPT),
            prefix: prefix.to_owned(),
            last_warn_ms: AtomicI64::new(i64::MIN),
            open_until_ms: Arc::new(AtomicI64::new(CLOSED)),
            downs: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Is the breaker open (Redis found down, not yet answering a probe)?
    pub fn is_failing_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != CLOSED
    }

    /// With the breaker open: `true` (allow without a round trip), after starting a probe when
    /// one is due. With it closed: `false`.
    fn open(&self, now_ms: i64) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == CLOSED {
            return false;
        }
        let next = now_ms.saturating_add(PROBE_EVERY_MS);
        if now_ms >= until
            && self
                .open_until_ms
                .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let mut connection = self.connection.clone();
            let (state, downs) = (Arc::clone(&self.open_until_ms), Arc::clone(&self.downs));
            let downs_before = downs.load(Ordering::Acquire);
            tokio::spawn(async move {
                let ping = redis::cmd("PING");
                let answer = ping.query_async::<String>(&mut connection);
                if let Ok(Ok(_)) = tokio::time::timeout(TAKE_DEADLINE, answer).await {
                    // A take that found Redis down while this probe ran leaves the breaker open.
                    let closed = state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |until| {
                        (until != CLOSED && downs.load(Ordering::Acquire) == downs_before)
                            .then_some(CLOSED)
                    });
                    if closed.is_ok() {
                        tracing::info!("Redis rate limiter answering again");
                    }
                }
            });
        }
        true
    }

    /// Runs the script: `Ok(None)` when a token was taken, `Ok(Some(wait))` when not.
    async fn run(&self, key: &str, rate: RateLimit, now_ms: i64) -> Result<Option<i64>, Failure> {
        let mut connection = self.connection.clone();
        let mut call = self.script.key(format!("{}{key}", self.prefix));
        call.arg(now_ms)
            .arg(rate.rate_per_minute)
            .arg(rate.burst)
            .arg(ttl_ms(rate));
        let answer = tokio::time::timeout(TAKE_DEADLINE, call.invoke_async::<i64>(&mut connection))
            .await
            .map_err(|_| Failure::Down(format!("no answer within {TAKE_DEADLINE:?}")))?
            .map_err(|e| {
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                {
                    Failure::Down(e.to_string())
                } else {
                    Failure::Answered(e.to_string())
                }
            })?;
        Ok((answer >= 0).then_some(answer))
    }

    /// Logs a fail-open warning unless one went out less than [`WARN_EVERY_MS`] ago.
    fn warn_failing_open(&self, now_ms: i64, error: &str) {
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error,
                "Redis rate limiter unavailable: allowing (fail open)"
            );
        }
    }
}

/// Two full refill periods of an empty bucket, within [`MIN_TTL_MS`]..=[`MAX_TTL_MS`].
fn ttl_ms(rate: RateLimit) -> u64 {
    let refill_ms =
        (u64::from(rate.burst) * 60_000).div_ceil(u64::from(rate.rate_per_minute.max(1)));
    refill_ms.saturating_mul(2).clamp(MIN_TTL_MS, MAX_TTL_MS)
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn take(&self, key: &str, rate: RateLimit, now_ms: i64) -> Result<(), u32> {
        if self.open(now_ms) {
            return Ok(());
        }
        match self.run(key, rate, now_ms).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(u32::try_from(wait).unwrap_or(u32::MAX)),
            Err(Failure::Down(error)) => {
                self.downs.fetch_add(1, Ordering::AcqRel);
                self.open_until_ms
                    .store(now_ms.saturating_add(PROBE_EVERY_MS), Ordering::Release);
                self.warn_failing_open(now_ms, &error);
                Ok(())
            }
            Err(Failure::Answered(error)) => {
                self.warn_failing_open(now_ms, &error);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_live_two_refill_periods_within_bounds() {
        let rate = |rate_per_minute, burst| RateLimit {
            rate_per_minute,
            burst,
        };
        assert_eq!(ttl_ms(rate(1, 3)), 360_000);
        assert_eq!(ttl_ms(rate(60_000, 1)), MIN_TTL_MS);
        assert_eq!(ttl_ms(rate(0, u32::MAX)), MAX_TTL_MS);
    }

    #[tokio::test]
    async fn a_bad_url_is_refused() {
        let err = RedisRateLimiter::connect("not a url", "t:")
            .await
            .unwrap_err();
        assert!(matches!(err, RedisRateLimiterError::InvalidUrl(_)), "{err}");
    }
}
