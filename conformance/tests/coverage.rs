//! Coverage of docs/protocol.md by the server suite: every MUST has a case or a line with a
//! reason in `conformance/coverage-gaps.txt`, no gap line names a requirement a case cites, every
//! cited tag exists, case ids are unique, and every rpc of `ChatwireService` has a case.

use std::collections::{BTreeMap, BTreeSet};

use chatwire_conformance::cli::COVERAGE_GAPS;
use chatwire_conformance::report::expected;
use chatwire_conformance::suite;
use chatwire_protocol::FILE_DESCRIPTOR_SET;

/// Requirement tag to its text, parsed from the spec's `- **R-x.y.z** text` items.
fn requirements() -> BTreeMap<String, String> {
    let spec = include_str!("../../docs/protocol.md");
    let mut reqs = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in spec.lines() {
        if let Some(rest) = line.strip_prefix("- **R-") {
            if let Some((tag, text)) = current.take() {
                reqs.insert(tag, text);
            }
            let (tag, text) = rest.split_once("**").expect("a closing ** after the tag");
            current = Some((format!("R-{tag}"), text.to_owned()));
        } else if line.starts_with("  ") && current.is_some() {
            if let Some((_, text)) = current.as_mut() {
                text.push(' ');
                text.push_str(line.trim());
            }
        } else if let Some((tag, text)) = current.take() {
            reqs.insert(tag, text);
        }
    }
    reqs
}

fn cited() -> BTreeSet<String> {
    suite::all()
        .iter()
        .flat_map(|c| c.reqs.iter().map(|r| (*r).to_owned()))
        .collect()
}

#[test]
fn the_spec_has_its_requirements() {
    let reqs = requirements();
    assert!(reqs.len() > 250, "parsed only {} requirements", reqs.len());
}

#[test]
fn every_must_has_a_case_or_a_reason() {
    let reqs = requirements();
    let cited = cited();
    let gaps = expected::parse(COVERAGE_GAPS).expect("every gap line has a reason");
    let missing: Vec<&String> = reqs
        .iter()
        .filter(|(tag, text)| {
            text.contains("MUST") && !cited.contains(*tag) && !gaps.contains_key(*tag)
        })
        .map(|(tag, _)| tag)
        .collect();
    assert!(
        missing.is_empty(),
        "MUSTs with neither a case nor a line in coverage-gaps.txt: {missing:?}"
    );
    let stale: Vec<&String> = gaps.keys().filter(|tag| cited.contains(*tag)).collect();
    assert!(
        stale.is_empty(),
        "coverage-gaps.txt lists requirements a case now cites: {stale:?}"
    );
    let unknown: Vec<&String> = gaps.keys().filter(|tag| !reqs.contains_key(*tag)).collect();
    assert!(
        unknown.is_empty(),
        "coverage-gaps.txt lists tags the spec lacks: {unknown:?}"
    );
}

#[test]
fn cases_cite_real_requirements_and_ids_are_unique() {
    let reqs = requirements();
    let unknown: Vec<String> = cited()
        .into_iter()
        .filter(|tag| !reqs.contains_key(tag))
        .collect();
    assert!(
        unknown.is_empty(),
        "cases cite tags the spec lacks: {unknown:?}"
    );
    let all = suite::all();
    let ids: BTreeSet<&str> = all.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), all.len(), "case ids are unique");
    for case in &all {
        assert!(!case.reqs.is_empty(), "{} cites no requirement", case.id);
        assert!(
            case.id.starts_with(&case.id[..2]) && case.id.len() == 5,
            "{}: id form XX-NN",
            case.id
        );
    }
}

#[test]
fn every_rpc_of_the_service_has_a_case() {
    let pool = prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("descriptors");
    let service = pool
        .get_service_by_name("chatwire.v1.ChatwireService")
        .expect("the service");
    let covered: BTreeSet<&str> = suite::all()
        .iter()
        .flat_map(|c| c.rpcs.iter().copied())
        .collect();
    let missing: Vec<String> = service
        .methods()
        .map(|m| m.name().to_owned())
        .filter(|name| !covered.contains(name.as_str()))
        .collect();
    assert!(missing.is_empty(), "rpcs without a case: {missing:?}");
}

#[test]
fn expected_failure_files_need_reasons() {
    assert!(expected::parse("HS-01\n").is_err());
    assert!(expected::parse("HS-01 a reason\nHS-01 again\n").is_err());
    let ok = expected::parse("# comment\n\nHS-01 a reason here\n").expect("parses");
    assert_eq!(ok.get("HS-01").map(String::as_str), Some("a reason here"));
    let ours = include_str!("../expected/embedded.txt");
    let ours = expected::parse(ours).expect("our expected failures parse");
    let ids: BTreeSet<&str> = suite::all().iter().map(|c| c.id).collect();
    for id in ours.keys() {
        assert!(
            ids.contains(id.as_str()),
            "expected failure for unknown case {id}"
        );
    }
}
