//! Runs the conformance suite (`chatwire-conformance`) in-process against one of our servers and
//! diffs the outcomes with the kept listing `conformance/results/{mode}-{transport}.txt`
//! (`CHATWIRE_REGEN=1` rewrites it); a failure not listed with a reason in
//! `conformance/expected/{mode}.txt` fails the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chatwire_conformance::cli::{COVERAGE_GAPS, compare};
use chatwire_conformance::report::{self, Report, expected};
use chatwire_conformance::suite::{self, Ctx, Selection, Target, TokenSource};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `selection` against `target` as mode `mode` (`embedded`, `distributed`).
pub async fn run(mode: &str, target: Target, tokens: TokenSource, selection: &Selection) -> Report {
    let ctx = Ctx::new(target, tokens);
    let expected_failures = expected::parse(
        &std::fs::read_to_string(repo().join(format!("conformance/expected/{mode}.txt")))
            .expect("expected failures"),
    )
    .expect("expected failures parse");
    let gaps = expected::parse(COVERAGE_GAPS).expect("gaps parse");
    let results = suite::run(&ctx, selection, Duration::from_secs(120)).await;
    let report = Report::new(
        mode.into(),
        ctx.kind().as_str().into(),
        results,
        &expected_failures,
        gaps,
    );
    println!("{}", report::terminal(&report));
    report
}

/// Diffs `report` with `conformance/results/{name}` and fails on an unexpected failure.
pub fn check_kept(report: &Report, name: &str) {
    let path = repo().join("conformance/results").join(name);
    if std::env::var_os("CHATWIRE_REGEN").is_some() {
        std::fs::write(&path, report::results_listing(report)).expect("write results");
    }
    let kept = std::fs::read_to_string(&path).expect("kept results (CHATWIRE_REGEN=1 writes them)");
    let diff = compare(&kept, report);
    assert!(
        diff.is_empty(),
        "results differ from {}:\n{}",
        path.display(),
        diff.join("\n")
    );
    assert!(report.ok(), "unexpected failures (see above)");
}
