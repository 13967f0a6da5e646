//! Jitter for retry backoffs, so that many waiters that failed together (every node when Redis
//! went away, every room writer when the event queue refused) do not all come back at the same
//! instant. "Equal jitter": a delay `d` becomes a uniform pick in `[d/2, d]`, so the backoff
//! keeps growing while the retries spread out.
//!
//! The generator is a SplitMix64 stream: seeded from the operating system in the server, and
//! from a fixed seed in tests, which then see the same delays on every run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A shareable source of jittered delays.
#[derive(Debug)]
pub struct Jitter {
    state: AtomicU64,
}

impl Jitter {
    /// A generator whose picks are fixed by `seed` (tests).
    pub const fn seeded(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the operating system (the clock when that fails).
    pub fn from_entropy() -> Self {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            seed = (now.as_nanos() as u64).to_le_bytes();
        }
        Self::seeded(u64::from_le_bytes(seed))
    }

    /// The next 64 random bits (SplitMix64).
    fn next(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `delay` with equal jitter: uniform in `[delay / 2, delay]`.
    pub fn apply(&self, delay: Duration) -> Duration {
        let full = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        let half = full / 2;
        let spread = full - half;
        let pick = if spread == 0 {
            0
        } else {
            self.next() % (spread + 1)
        };
        Duration::from_micros(half + pick)
    }
}

/// The process's jitter for backoffs.
pub fn global() -> &'static Jitter {
    static GLOBAL: std::sync::OnceLock<Jitter> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(Jitter::from_entropy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_half_to_full_and_spread_out() {
        let jitter = Jitter::seeded(42);
        let delay = Duration::from_millis(1_000);
        let picks: Vec<Duration> = (0..1_000).map(|_| jitter.apply(delay)).collect();
        assert!(
            picks
                .iter()
                .all(|d| *d >= Duration::from_millis(500) && *d <= delay)
        );
        let distinct: std::collections::BTreeSet<_> = picks.iter().collect();
        assert!(distinct.len() > 900, "{} distinct delays", distinct.len());
        let low = picks
            .iter()
            .filter(|d| **d < Duration::from_millis(750))
            .count();
        assert!((400..600).contains(&low), "{low} of 1000 in the lower half");
    }

    #[test]
    fn a_seed_fixes_the_delays() {
        let a = Jitter::seeded(7);
        let b = Jitter::seeded(7);
        let delay = Duration::from_secs(2);
        for _ in 0..10 {
            assert_eq!(a.apply(delay), b.apply(delay));
        }
        assert_eq!(Jitter::seeded(1).apply(Duration::ZERO), Duration::ZERO);
    }
}
