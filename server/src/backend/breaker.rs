//! A circuit breaker in front of the command pipeline (docs/architecture.md "Downstream events",
//! last point): when the pipeline's backend keeps failing (RabbitMQ down, the store unreachable
//! behind the writers), commands fail fast with a retryable UNAVAILABLE instead of each waiting for
//! its own timeout and piling onto a backend that is already down.
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
//!
//! The probe can never wedge the breaker half-open: [`Breaker::admit`] hands out an
//! [`Admission`] that, when dropped without an outcome (the caller's future was cancelled: the
//! client went away, a timeout fired), reopens the breaker with its cool-down already over, so
//! the next command probes again. A probe that neither answers nor is dropped is given up on
//! after one cool-down, and the next command probes in its place.

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
    /// One probe command is on its way since `since_ms`; others fail fast until it answers,
    /// is dropped, or has been out for a whole cool-down.
    HalfOpen {
        /// When the probe was admitted.
        since_ms: i64,
    },
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
    /// the probe still out. The [`Admission`] must be given the command's outcome with
    /// [`Admission::record`]; dropping it unrecorded gives up the probe (see the module docs).
    pub fn admit(&self) -> Result<Admission<'_>, ChatError> {
        let mut state = self.lock();
        let now = self.clock.now_ms();
        let probe = match *state {
            BreakerState::Closed { .. } => false,
            BreakerState::Open { until_ms } if now >= until_ms => true,
            BreakerState::HalfOpen { since_ms }
                if now >= since_ms.saturating_add(self.config.cool_down_ms) =>
            {
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                return Err(ChatError::Unavailable(OPEN.to_owned()));
            }
        };
        if probe {
            *state = BreakerState::HalfOpen { since_ms: now };
        }
        Ok(Admission {
            breaker: self,
            probe_since_ms: probe.then_some(now),
        })
    }

    fn record(&self, backend_failed: bool) {
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

/// One admitted command. Give it the outcome with [`Admission::record`]; dropped unrecorded,
/// a probe is given up and the breaker reopens with its cool-down over.
#[derive(Debug)]
#[must_use = "record the command's outcome"]
pub struct Admission<'a> {
    breaker: &'a Breaker,
    /// `Some(admitted at)` when this command is the half-open probe.
    probe_since_ms: Option<i64>,
}

impl Admission<'_> {
    /// Records the outcome of the admitted command.
    pub fn record(mut self, backend_failed: bool) {
        self.probe_since_ms = None;
        self.breaker.record(backend_failed);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        let Some(since_ms) = self.probe_since_ms else {
            return;
        };
        let mut state = self.breaker.lock();
        // Only this probe's own half-open state is given up: a later probe that took over
        // after the give-up bound is left alone.
        if *state == (BreakerState::HalfOpen { since_ms }) {
            *state = BreakerState::Open { until_ms: since_ms };
        }
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
        let admission = self.breaker.admit()?;
        let result = self.inner.execute(command).await;
        admission.record(matches!(result, Err(ChatError::Unavailable(_))));
        crate::telemetry::circuit_state(match self.breaker.state() {
            BreakerState::Closed { .. } => 0,
            BreakerState::HalfOpen { .. } => 1,
            BreakerState::Open { .. } => 2,
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::future::Future;

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
        b.admit().unwrap().record(true);
        b.admit().unwrap().record(true);
        b.admit().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        for _ in 0..3 {
            b.admit().unwrap().record(true);
        }
        assert_eq!(b.state(), BreakerState::Open { until_ms: 1_000 });
        assert!(matches!(b.admit(), Err(ChatError::Unavailable(_))));
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let clock = ManualClock::at(0);
        let b = breaker(&clock);
        for _ in 0..3 {
            b.admit().unwrap().record(true);
        }
        clock.set(999);
        assert!(b.admit().is_err(), "still cooling down");
        clock.set(1_000);
        let probe = b.admit().expect("the probe");
        assert_eq!(b.state(), BreakerState::HalfOpen { since_ms: 1_000 });
        assert!(b.admit().is_err(), "only one probe at a time");
        probe.record(true);
        assert_eq!(b.state(), BreakerState::Open { until_ms: 2_000 });
        clock.set(2_000);
        b.admit().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        assert!(b.admit().is_ok());
    }

    fn opened(clock: &Arc<ManualClock>) -> Breaker {
        let b = breaker(clock);
        for _ in 0..3 {
            b.admit().unwrap().record(true);
        }
        clock.set(1_000);
        b
    }

    #[test]
    fn a_dropped_probe_lets_the_next_command_probe() {
        // Issue 15 H3: the probe's future was dropped (client gone, timeout), so nobody
        // records its outcome. The breaker must not stay half-open forever.
        let clock = ManualClock::at(0);
        let b = opened(&clock);
        drop(b.admit().expect("the probe"));
        assert_eq!(b.state(), BreakerState::Open { until_ms: 1_000 });
        b.admit().expect("a new probe at once").record(false);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn a_probe_that_never_answers_is_given_up_after_a_cool_down() {
        let clock = ManualClock::at(0);
        let b = opened(&clock);
        let stuck = b.admit().expect("the probe");
        clock.set(1_999);
        assert!(
            b.admit().is_err(),
            "the probe is still within its cool-down"
        );
        clock.set(2_000);
        let second = b.admit().expect("a second probe replaces the stuck one");
        assert_eq!(b.state(), BreakerState::HalfOpen { since_ms: 2_000 });
        drop(stuck);
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen { since_ms: 2_000 },
            "the stuck probe, dropped late, leaves the second probe's state alone"
        );
        second.record(false);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    #[tokio::test]
    async fn a_cancelled_execute_does_not_wedge_the_pipeline() {
        #[derive(Debug)]
        struct Never;
        #[async_trait]
        impl Pipeline for Never {
            async fn execute(&self, _command: RoomCommand) -> Result<Outcome, ChatError> {
                std::future::pending().await
            }
        }
        let clock = ManualClock::at(0);
        let b = Arc::new(opened(&clock));
        let pipeline = BreakerPipeline::new(Arc::new(Never), Arc::clone(&b));
        let command = RoomCommand {
            room: crate::chat::ids::RoomId::parse("g.r").expect("room id"),
            actor: crate::chat::ids::UserId::parse("alice").expect("user id"),
            op: crate::chat::command::RoomOp::Leave,
            trace_id: String::new(),
            privileged: false,
        };
        let mut probe = Box::pin(pipeline.execute(command));
        let first =
            std::future::poll_fn(|cx| std::task::Poll::Ready(probe.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        assert!(matches!(b.state(), BreakerState::HalfOpen { .. }));
        drop(probe);
        assert!(b.admit().is_ok(), "the next command may probe");
    }
}
