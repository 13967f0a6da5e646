//! A circuit breaker in front of the command pipeline (DESIGN §4.4, last point): when the
//! pipeline's backend keeps failing (RabbitMQ down, the store unreachable behind the writers),
//! commands fail fast with a retryable UNAVAILABLE instead of each waiting for its own timeout
//! and piling onto a backend that is already down.
//!
//! ```text
//!  closed ──threshold consecutive failures──▶ open ──cool-down over──▶ half-open
//!    ▲                                          ▲                        │ one probe command
//!    └──────────── probe succeeded ─────────────┴──── probe failed ◀─────┘
//! ```
//!
//! Only backend failures count (`ChatError::Unavailable`); a refusal (forbidden, conflict,
//! rate limited) is an answer, so it closes the breaker like a success. Time comes from the
//! injected [`Clock`], so the state machine is tested without sleeping.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::pipeline::Pipeline;
use crate::chat::command::{Outcome, RoomCommand};
use crate::chat::error::ChatError;
use crate::clock::Clock;

/// What the breaker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Commands pass; `failures` consecutive backend failures so far.
    Closed {
        /// Consecutive backend failures.
        failures: u32,
    },
    /// Commands fail fast until `until_ms`.
    Open {
        /// When one probe may pass.
        until_ms: i64,
    },
    /// One probe command is on its way; others fail fast until it answers.
    HalfOpen,
}

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive backend failures that open the breaker.
    pub threshold: u32,
    /// How long it stays open before it lets one probe through.
    pub cool_down_ms: i64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            cool_down_ms: 2_000,
        }
    }
}

/// The state machine, shared by every caller of one backend.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<BreakerState>,
}

/// Why a command was refused without trying.
const OPEN: &str = "circuit open: the command pipeline is failing, retry shortly";

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // A poisoned lock only means a panic elsewhere; the state itself is always valid.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// May a command go through now? Err (retryable UNAVAILABLE) when open, or half-open with
    /// the probe still out.
    pub fn admit(&self) -> Result<(), ChatError> {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until_ms } if self.clock.now_ms() >= until_ms => {
                *state = BreakerState::HalfOpen;
                Ok(())
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => {
                Err(ChatError::Unavailable(OPEN.to_owned()))
            }
        }
    }

    /// Records the outcome of an admitted command.
    pub fn record(&self, backend_failed: bool) {
        let mut state = self.lock();
        *state = match (*state, backend_failed) {
            (_, false) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, true) if failures + 1 < self.config.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => BreakerState::Open {
                until_ms: self.clock.now_ms().saturating_add(self.config.cool_down_ms),
            },
        };
    }
}

/// A pipeline behind a breaker.
#[derive(Debug)]
pub struct BreakerPipeline {
    inner: Arc<dyn Pipeline>,
    breaker: Arc<Breaker>,
}

impl BreakerPipeline {
    /// Puts `inner` behind `breaker`.
    pub fn new(inner: Arc<dyn Pipeline>, breaker: Arc<Breaker>) -> Self {
        Self { inner, breaker }
    }
}

#[async_trait]
impl Pipeline for BreakerPipeline {
    async fn execute(&self, command: RoomCommand) -> Result<Outcome, ChatError> {
        self.breaker.admit()?;
        let result = self.inner.execute(command).await;
        self.breaker
            .record(matches!(result, Err(ChatError::Unavailable(_))));
        crate::telemetry::circuit_state(match self.breaker.state() {
            BreakerState::Closed { .. } => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open { .. } => 2,
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker(clock: &Arc<ManualClock>) -> Breaker {
        Breaker::new(
            BreakerConfig {
                threshold: 3,
                cool_down_ms: 1_000,
            },
            Arc::clone(clock) as Arc<dyn Clock>,
        )
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let clock = ManualClock::at(0);
        let b = breaker(&clock);
        b.record(true);
        b.record(true);
        b.record(false);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        for _ in 0..3 {
            assert!(b.admit().is_ok());
            b.record(true);
        }
        assert_eq!(b.state(), BreakerState::Open { until_ms: 1_000 });
        assert!(matches!(b.admit(), Err(ChatError::Unavailable(_))));
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let clock = ManualClock::at(0);
        let b = breaker(&clock);
        for _ in 0..3 {
            b.record(true);
        }
        clock.set(999);
        assert!(b.admit().is_err(), "still cooling down");
        clock.set(1_000);
        assert!(b.admit().is_ok(), "the probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit().is_err(), "only one probe at a time");
        b.record(true);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 2_000 });
        clock.set(2_000);
        assert!(b.admit().is_ok());
        b.record(false);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        assert!(b.admit().is_ok());
    }
}
