//! The server suite: numbered black-box cases, grouped like docs/protocol.md, each citing the
//! requirements it checks, run one after another against one server.
//!
//! ```text
//!  cases::all() ──select (group / id)──▶ run(case, Ctx) ──▶ Outcome ──▶ CaseResult ──▶ report
//!                                         │ Ctx: transport factory, token source, fresh user ids
//! ```
//!
//! A case opens as many clients as it needs, with user ids unique to the run, so a run never
//! depends on what an earlier run left on the server. Cases never sleep to synchronise: they
//! wait for frames, each wait bounded by a generous deadline that fails the case as "hung".

mod cases;
mod check;
mod ctx;
mod token;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub use cases::all;
pub use check::Failure;
pub use ctx::{Ctx, Target, TransportKind};
pub use token::{Claims, JwtKey, TokenError, TokenSource};

/// The strength of a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// MUST / MUST NOT / REQUIRED.
    Must,
    /// SHOULD / SHOULD NOT / RECOMMENDED.
    Should,
}

impl Level {
    /// `MUST` or `SHOULD`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Must => "MUST",
            Self::Should => "SHOULD",
        }
    }
}

/// What a case's run returns.
pub type CaseFuture = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// One numbered case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The stable id, `GROUP-NN` (for example `AUTH-03`).
    pub id: &'static str,
    /// The group, named like the spec's sections.
    pub group: &'static str,
    /// What it checks, in one line.
    pub title: &'static str,
    /// The requirement tags of docs/protocol.md it checks.
    pub reqs: &'static [&'static str],
    /// The strongest level among them, as the report shows it.
    pub level: Level,
    /// The rpcs of `ChatwireService` it exercises.
    pub rpcs: &'static [&'static str],
    /// Only on this transport (`None`: both).
    pub only: Option<TransportKind>,
    /// It crafts tokens, so it needs the signing key.
    pub needs_key: bool,
    /// The case itself.
    pub run: fn(Ctx) -> CaseFuture,
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Pass,
    /// A check failed: what the spec requires and what the server did.
    Fail {
        /// What the requirement asks for.
        expected: String,
        /// What was observed.
        actual: String,
    },
    /// Not run, with the reason (`no key`, another transport).
    Skipped(String),
}

impl Outcome {
    /// `pass`, `fail` or `skip`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail { .. } => "fail",
            Self::Skipped(_) => "skip",
        }
    }
}

/// A case and how it ended.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// Its outcome.
    pub outcome: Outcome,
    /// The reason from the expected-failures file, when the case is listed there.
    pub expected_failure: Option<String>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CaseResult {
    /// A failure not listed as expected.
    pub fn is_unexpected_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Fail { .. }) && self.expected_failure.is_none()
    }

    /// A case listed as an expected failure that passed.
    pub fn is_unexpected_pass(&self) -> bool {
        self.outcome == Outcome::Pass && self.expected_failure.is_some()
    }
}

/// Which cases to run: ids and groups (case-insensitive); both empty means every case.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Case ids.
    pub ids: Vec<String>,
    /// Group names.
    pub groups: Vec<String>,
}

impl Selection {
    /// Whether the case is selected.
    pub fn includes(&self, case: &Case) -> bool {
        if self.ids.is_empty() && self.groups.is_empty() {
            return true;
        }
        self.ids.iter().any(|id| id.eq_ignore_ascii_case(case.id))
            || self
                .groups
                .iter()
                .any(|g| g.eq_ignore_ascii_case(case.group))
    }
}

/// Runs the selected cases one after another and returns their results in case order.
pub async fn run(ctx: &Ctx, selection: &Selection, case_timeout: Duration) -> Vec<CaseResult> {
    let mut results = Vec::new();
    for case in all().into_iter().filter(|c| selection.includes(c)) {
        let started = Instant::now();
        let outcome = run_one(ctx, &case, case_timeout).await;
        results.push(CaseResult {
            case,
            outcome,
            expected_failure: None,
            elapsed: started.elapsed(),
        });
    }
    results
}

async fn run_one(ctx: &Ctx, case: &Case, case_timeout: Duration) -> Outcome {
    if let Some(only) = case.only
        && only != ctx.kind()
    {
        return Outcome::Skipped(format!("not applicable: {} only", only.as_str()));
    }
    if case.needs_key && !ctx.has_key() {
        return Outcome::Skipped("no key".to_owned());
    }
    // Each case runs as its own task, so a panic in a case is a failure, not the end of the run.
    let task = tokio::spawn((case.run)(ctx.clone()));
    let abort = task.abort_handle();
    match tokio::time::timeout(case_timeout, task).await {
        Ok(Ok(Ok(()))) => Outcome::Pass,
        Ok(Ok(Err(Failure::Skip(reason)))) => Outcome::Skipped(reason),
        Ok(Ok(Err(Failure::Check { expected, actual }))) => Outcome::Fail { expected, actual },
        Ok(Err(join)) => Outcome::Fail {
            expected: "the case completes".to_owned(),
            actual: format!("the case crashed: {join}"),
        },
        Err(_) => {
            abort.abort();
            Outcome::Fail {
                expected: format!("the case completes within {case_timeout:?}"),
                actual: "it hung".to_owned(),
            }
        }
    }
}
