//! Reports of a run: a terminal summary, JSON, JUnit XML and a static HTML page, plus the
//! compact results listing that is kept in the repository and diffed against each run.
//!
//! ```text
//!  Vec<CaseResult> + expected failures ──▶ Report ──▶ terminal / JSON / JUnit / HTML / results
//! ```

pub mod expected;
mod formats;

use std::collections::BTreeMap;

pub use formats::{html, json, junit, results_listing, terminal};

use crate::suite::{CaseResult, Outcome};

/// The results of one run and what it was run against.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was tested (the URL), for the report headers.
    pub target: String,
    /// The transport (`websocket` or `quic`).
    pub transport: String,
    /// Every selected case, in order.
    pub results: Vec<CaseResult>,
    /// Requirements with no case, and why (from the coverage-gaps file).
    pub gaps: BTreeMap<String, String>,
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed, listed as expected.
    pub expected_failures: usize,
    /// Failed, not listed: these make the run fail.
    pub unexpected_failures: usize,
    /// Listed as expected failures but passed.
    pub unexpected_passes: usize,
    /// Skipped.
    pub skipped: usize,
}

impl Report {
    /// Marks each result listed in `expected` with its reason.
    pub fn new(
        target: String,
        transport: String,
        mut results: Vec<CaseResult>,
        expected: &BTreeMap<String, String>,
        gaps: BTreeMap<String, String>,
    ) -> Self {
        for result in &mut results {
            result.expected_failure = expected.get(result.case.id).cloned();
        }
        Self {
            target,
            transport,
            results,
            gaps,
        }
    }

    /// The counts.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for result in &self.results {
            match &result.outcome {
                Outcome::Pass if result.expected_failure.is_some() => counts.unexpected_passes += 1,
                Outcome::Pass => counts.passed += 1,
                Outcome::Fail { .. } if result.expected_failure.is_some() => {
                    counts.expected_failures += 1
                }
                Outcome::Fail { .. } => counts.unexpected_failures += 1,
                Outcome::Skipped(_) => counts.skipped += 1,
            }
        }
        counts
    }

    /// True when no case failed unexpectedly (the exit status is 0).
    pub fn ok(&self) -> bool {
        self.counts().unexpected_failures == 0
    }
}
