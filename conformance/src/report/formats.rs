//! The report formats. Each is a pure function from a [`Report`] to text.

use std::fmt::Write as _;

use super::Report;
use crate::suite::{CaseResult, Outcome};

fn status(result: &CaseResult) -> &'static str {
    match (&result.outcome, &result.expected_failure) {
        (Outcome::Pass, None) => "PASS",
        (Outcome::Pass, Some(_)) => "PASS (unexpected: listed as failing)",
        (Outcome::Fail { .. }, Some(_)) => "XFAIL",
        (Outcome::Fail { .. }, None) => "FAIL",
        (Outcome::Skipped(_), _) => "SKIP",
    }
}

fn detail(result: &CaseResult) -> String {
    match &result.outcome {
        Outcome::Pass => String::new(),
        Outcome::Fail { expected, actual } => format!("expected: {expected}; actual: {actual}"),
        Outcome::Skipped(reason) => format!("skipped: {reason}"),
    }
}

/// The terminal summary: one line per case, failures with expected vs actual, then counts.
pub fn terminal(report: &Report) -> String {
    let mut out = format!(
        "chatwire-conformance server: {} ({})\n",
        report.target, report.transport
    );
    for r in &report.results {
        let _ = writeln!(
            out,
            "{:<6} {:<6} [{}] {} ({})",
            r.case.id,
            status(r),
            r.case.level.as_str(),
            r.case.title,
            r.case.reqs.join(", ")
        );
        if let Outcome::Fail { expected, actual } = &r.outcome {
            let _ = writeln!(
                out,
                "         expected: {expected}\n         actual:   {actual}"
            );
            if let Some(reason) = &r.expected_failure {
                let _ = writeln!(out, "         expected failure: {reason}");
            }
        } else if let Outcome::Skipped(reason) = &r.outcome {
            let _ = writeln!(out, "         skipped: {reason}");
        }
    }
    let c = report.counts();
    let _ = writeln!(
        out,
        "{} passed, {} failed unexpectedly, {} expected failures, {} unexpected passes, {} skipped; {} requirements without a case (see the coverage gaps)",
        c.passed,
        c.unexpected_failures,
        c.expected_failures,
        c.unexpected_passes,
        c.skipped,
        report.gaps.len()
    );
    out
}

/// The JSON report.
pub fn json(report: &Report) -> String {
    let c = report.counts();
    let cases: Vec<serde_json::Value> = report
        .results
        .iter()
        .map(|r| {
            let (expected, actual, reason) = match &r.outcome {
                Outcome::Pass => (None, None, None),
                Outcome::Fail { expected, actual } => {
                    (Some(expected.clone()), Some(actual.clone()), None)
                }
                Outcome::Skipped(reason) => (None, None, Some(reason.clone())),
            };
            serde_json::json!({
                "id": r.case.id, "group": r.case.group, "title": r.case.title,
                "level": r.case.level.as_str(), "requirements": r.case.reqs, "rpcs": r.case.rpcs,
                "outcome": r.outcome.label(), "expected": expected, "actual": actual,
                "skip_reason": reason, "expected_failure": r.expected_failure,
                "elapsed_ms": r.elapsed.as_millis() as u64,
            })
        })
        .collect();
    let value = serde_json::json!({
        "target": report.target, "transport": report.transport,
        "counts": {
            "passed": c.passed, "unexpected_failures": c.unexpected_failures,
            "expected_failures": c.expected_failures, "unexpected_passes": c.unexpected_passes,
            "skipped": c.skipped,
        },
        "cases": cases,
        "uncovered_requirements": report.gaps,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test suite per group; expected failures count as passes with a note.
pub fn junit(report: &Report) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"chatwire-conformance\">\n",
    );
    let mut groups: Vec<&str> = report.results.iter().map(|r| r.case.group).collect();
    groups.dedup();
    for group in groups {
        let cases: Vec<&CaseResult> = report
            .results
            .iter()
            .filter(|r| r.case.group == group)
            .collect();
        let failures = cases.iter().filter(|r| r.is_unexpected_failure()).count();
        let skipped = cases
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Skipped(_)))
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}.{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
            xml(&report.transport),
            xml(group),
            cases.len()
        );
        for r in cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{} {}\" time=\"{:.3}\">",
                xml(group),
                r.case.id,
                xml(r.case.title),
                r.elapsed.as_secs_f64()
            );
            match (&r.outcome, &r.expected_failure) {
                (Outcome::Fail { expected, actual }, None) => {
                    let _ = write!(
                        out,
                        "<failure message=\"{}\">expected: {}\nactual: {}</failure>",
                        xml(&r.case.reqs.join(", ")),
                        xml(expected),
                        xml(actual)
                    );
                }
                (Outcome::Skipped(reason), _) => {
                    let _ = write!(out, "<skipped message=\"{}\"/>", xml(reason));
                }
                (_, Some(reason)) => {
                    let _ = write!(
                        out,
                        "<system-out>expected failure: {}</system-out>",
                        xml(reason)
                    );
                }
                _ => {}
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// A static HTML page: counts, one row per case, and the requirements without a case.
pub fn html(report: &Report) -> String {
    let c = report.counts();
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Chatwire conformance: {}</title>\n<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}.PASS{{background:#dfd}}.FAIL{{background:#fcc}}.XFAIL{{background:#ffd}}.SKIP{{background:#eee}}</style></head><body>\n<h1>Chatwire conformance</h1>\n<p>Target: <code>{}</code> ({})</p>\n<p>{} passed, {} failed unexpectedly, {} expected failures, {} unexpected passes, {} skipped.</p>\n<table><tr><th>case</th><th>status</th><th>level</th><th>requirements</th><th>what</th><th>details</th></tr>\n",
        xml(&report.target),
        xml(&report.target),
        xml(&report.transport),
        c.passed,
        c.unexpected_failures,
        c.expected_failures,
        c.unexpected_passes,
        c.skipped
    );
    for r in &report.results {
        let class = status(r).split(' ').next().unwrap_or("PASS");
        let mut details = detail(r);
        if let Some(reason) = &r.expected_failure {
            details = format!("{details} (expected failure: {reason})");
        }
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.case.id,
            xml(status(r)),
            r.case.level.as_str(),
            xml(&r.case.reqs.join(", ")),
            xml(r.case.title),
            xml(&details)
        );
    }
    out.push_str("</table>\n<h2>Requirements without a case</h2>\n<table><tr><th>requirement</th><th>why</th></tr>\n");
    for (id, reason) in &report.gaps {
        let _ = writeln!(out, "<tr><td>{}</td><td>{}</td></tr>", xml(id), xml(reason));
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

/// The compact listing kept in the repository: `CASE-ID outcome` per line.
pub fn results_listing(report: &Report) -> String {
    let mut out = format!(
        "# chatwire-conformance results ({}); regenerate with CHATWIRE_REGEN=1\n",
        report.transport
    );
    for r in &report.results {
        let _ = writeln!(out, "{} {}", r.case.id, r.outcome.label());
    }
    out
}
