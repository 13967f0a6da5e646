//! The conformance suite (`chatwire-conformance`) against our own server on the embedded
//! default, once per transport, with the signing key (so every case runs), and once with a
//! token command (`chatwire token`), as a third party without the key would run it.
//!
//! Each run's outcomes are diffed against the kept listing in `conformance/results/`
//! (`CHATWIRE_REGEN=1` rewrites it); a failure not listed in `conformance/expected/embedded.txt`
//! with a reason fails the test.

mod support;

use std::collections::BTreeMap;

use chatwire_conformance::report::Report;
use chatwire_conformance::suite::{JwtKey, Selection, Target, TokenSource};
use support::conformance_run::check_kept;
use support::server::TestServer;

/// A run on the embedded default.
async fn run(target: Target, tokens: TokenSource, selection: &Selection) -> Report {
    support::conformance_run::run("embedded", target, tokens, selection).await
}

async fn server() -> TestServer {
    TestServer::start_with(|config| {
        // The suite checks the send rate limit (LI-01): keep the production default for sends.
        config.limits.rate_sends = chatwire_server::config::Config::default().limits.rate_sends;
        // And the per-room send limit at its default too (issue 21: the suite passes under it).
        config.limits.rate_room_sends = chatwire_server::config::Config::default()
            .limits
            .rate_room_sends;
        // The contact request limit at its default too (CO-05 exhausts the advertised burst).
        config.limits.rate_contact_requests = chatwire_server::config::Config::default()
            .limits
            .rate_contact_requests;
    })
    .await
}

fn key(server: &TestServer) -> TokenSource {
    let secrets =
        chatwire_server::devdefaults::load_or_create(&server.config.data_dir).expect("dev secrets");
    TokenSource::Key(JwtKey {
        secret: secrets.jwt_secret,
        issuer: server.config.auth.issuer.clone(),
        audience: server.config.auth.audience.clone(),
        kid: server.config.auth.hs256_kid.clone(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suite_over_websocket() {
    let server = server().await;
    let report = run(
        Target::Ws(server.target()),
        key(&server),
        &Selection::default(),
    )
    .await;
    check_kept(&report, "embedded-websocket.txt");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suite_over_quic() {
    let server = server().await;
    let report = run(
        Target::Quic(server.quic_target()),
        key(&server),
        &Selection::default(),
    )
    .await;
    check_kept(&report, "embedded-quic.txt");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_command_without_key_skips_crafting_cases() {
    let server = server().await;
    let command = format!(
        "{} token --data-dir {} --user {{user}}",
        env!("CARGO_BIN_EXE_chatwire"),
        server.config.data_dir.display()
    );
    let selection = Selection {
        ids: Vec::new(),
        groups: vec!["auth".into(), "handshake".into()],
    };
    let report = run(
        Target::Ws(server.target()),
        TokenSource::Command(command),
        &selection,
    )
    .await;
    let outcomes: BTreeMap<&str, &str> = report
        .results
        .iter()
        .map(|r| (r.case.id, r.outcome.label()))
        .collect();
    for crafted in ["AU-02", "AU-03", "AU-04", "AU-05", "AU-10"] {
        assert_eq!(
            outcomes.get(crafted),
            Some(&"skip"),
            "{crafted} needs the key"
        );
    }
    for plain in ["AU-01", "AU-06", "AU-07", "HS-01"] {
        assert_eq!(
            outcomes.get(plain),
            Some(&"pass"),
            "{plain} with command tokens"
        );
    }
    assert!(report.ok());
    server.stop().await;
}
