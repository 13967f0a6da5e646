//! `chatwire-conformance client-harness`: a scripted Chatwire server that an SDK test connects
//! to. Each [`Scenario`] plays one misbehaviour a real server or network can show (a dropped
//! connection, a duplicated reply, a seq gap, a duplicate event, an expiring token, a draining
//! server, slow reads) and judges what the client did in response, requirement by requirement.
//!
//! ```text
//! SDK test ──ws──▶ Harness (listener, port 0) ──▶ scenario script ──▶ Verdict (checks) ──▶ JSON
//! ```
//!
//! The harness accepts any token and serves one user, [`peer::HARNESS_USER`]. What the SDK test
//! must do in each scenario (its "script") is in [`Scenario::client_script`] and in
//! docs/conformance.md. It does not judge anything it cannot see on the wire, except through
//! the report message some scenarios ask for (the seqs the client applied).

mod peer;
mod scenarios;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpListener;

pub use peer::HARNESS_USER;

/// The room the scenarios use.
pub const ROOM: &str = "harness-room";
/// The room the client sends its report to (`applied:1,2,3`).
pub const REPORT_ROOM: &str = "harness-report";

/// Why a scenario could not be judged to the end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HarnessError {
    /// The client did not do the expected thing in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The client broke the protocol in a way that ends the scenario.
    #[error("client error: {0}")]
    Client(String),
    /// A socket failed.
    #[error("i/o: {0}")]
    Io(String),
}

/// The scripted scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The connection drops after a `Send` arrives, before its reply.
    DropMidRequest,
    /// A `Send` reply is withheld a while, then sent twice.
    AckDuplicated,
    /// A live room event skips a seq.
    SeqGap,
    /// Live room events repeat seqs already delivered.
    DuplicateEvent,
    /// `TokenExpiring` arrives.
    TokenExpiring,
    /// The server drains: `Disconnect` SERVER_DRAINING with a reconnect delay.
    ServerDraining,
    /// The server reads slowly and advertises a small in-flight limit.
    SlowReads,
}

impl Scenario {
    /// Every scenario, in order.
    pub const ALL: [Scenario; 7] = [
        Scenario::DropMidRequest,
        Scenario::AckDuplicated,
        Scenario::SeqGap,
        Scenario::DuplicateEvent,
        Scenario::TokenExpiring,
        Scenario::ServerDraining,
        Scenario::SlowReads,
    ];

    /// The kebab-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::DropMidRequest => "drop-mid-request",
            Scenario::AckDuplicated => "ack-duplicated",
            Scenario::SeqGap => "seq-gap",
            Scenario::DuplicateEvent => "duplicate-event",
            Scenario::TokenExpiring => "token-expiring",
            Scenario::ServerDraining => "server-draining",
            Scenario::SlowReads => "slow-reads",
        }
    }

    /// What the SDK test must do while the scenario plays.
    pub fn client_script(self) -> &'static str {
        match self {
            Scenario::DropMidRequest => {
                "connect; send one message (text \"hello\") to harness-room and await its result"
            }
            Scenario::AckDuplicated => {
                "connect; send \"one\" to harness-room and await it; then send \"two\" and await it"
            }
            Scenario::SeqGap => {
                "connect; subscribe to harness-room (after_seq 0); once seq 6 is applied, send \
                 \"applied:<seqs applied, comma-separated>\" to harness-report"
            }
            Scenario::DuplicateEvent => {
                "connect; subscribe to harness-room (after_seq 0); once seq 4 is applied, send \
                 \"applied:<seqs applied, comma-separated>\" to harness-report"
            }
            Scenario::TokenExpiring => {
                "connect, with a way to get a new token, and stay connected until the harness exits"
            }
            Scenario::ServerDraining => {
                "connect; subscribe to harness-room (after_seq 0); stay connected (reconnecting \
                 as the client does) until the harness exits"
            }
            Scenario::SlowReads => {
                "connect; send 8 messages (\"m1\"..\"m8\") to harness-room without awaiting \
                 each, then await all"
            }
        }
    }
}

/// MUST or SHOULD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// A MUST of docs/protocol.md.
    Must,
    /// A SHOULD.
    Should,
}

/// One judged behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What the client should have done.
    pub what: String,
    /// The requirement.
    pub requirement: &'static str,
    /// MUST or SHOULD.
    pub level: Level,
    /// Whether it did.
    pub passed: bool,
    /// What the harness saw.
    pub actual: String,
}

/// The outcome of one scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The scenario.
    pub scenario: Scenario,
    /// The checks, in the order they were judged.
    pub checks: Vec<Check>,
    /// Why the scenario stopped early, if it did.
    pub error: Option<String>,
}

impl Verdict {
    fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            checks: Vec::new(),
            error: None,
        }
    }

    /// Records a check.
    fn check(
        &mut self,
        requirement: &'static str,
        level: Level,
        what: &str,
        passed: bool,
        actual: impl Into<String>,
    ) {
        self.checks.push(Check {
            what: what.to_owned(),
            requirement,
            level,
            passed,
            actual: actual.into(),
        });
    }

    /// True when the scenario ran to its end and every MUST check passed (a failed SHOULD is
    /// reported but does not fail the client).
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self
                .checks
                .iter()
                .all(|c| c.passed || c.level == Level::Should)
    }

    /// The JSON report.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("passed".into(), self.passed().into());
        }
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    /// The terminal summary.
    pub fn terminal(&self) -> String {
        let mut out = format!("client-harness scenario {}\n", self.scenario.name());
        for c in &self.checks {
            let status = match (c.passed, c.level) {
                (true, _) => "PASS",
                (false, Level::Must) => "FAIL",
                (false, Level::Should) => "WARN",
            };
            let level = match c.level {
                Level::Must => "MUST",
                Level::Should => "SHOULD",
            };
            out.push_str(&format!(
                "  {status:4} {level:6} {} ({})\n",
                c.what, c.requirement
            ));
            if !c.passed {
                out.push_str(&format!("         actual: {}\n", c.actual));
            }
        }
        if let Some(error) = &self.error {
            out.push_str(&format!("  ERROR  {error}\n"));
        }
        let verdict = if self.passed() { "passed" } else { "failed" };
        out.push_str(&format!("verdict: {verdict}\n"));
        out
    }
}

/// A bound harness, ready for the SDK test to connect.
#[derive(Debug)]
pub struct Harness {
    listener: TcpListener,
    scenario: Scenario,
}

impl Harness {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, scenario: Scenario) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| HarnessError::Io(e.to_string()))?;
        Ok(Self { listener, scenario })
    }

    /// The WebSocket URL the client connects to.
    pub fn url(&self) -> String {
        match self.listener.local_addr() {
            Ok(addr) => format!("ws://{addr}/v1/ws"),
            Err(_) => String::new(),
        }
    }

    /// The line the CLI prints first, for the SDK test to read: where to connect and what to do.
    pub fn ready_line(&self) -> String {
        serde_json::json!({
            "ready": true,
            "url": self.url(),
            "scenario": self.scenario.name(),
            "room_id": ROOM,
            "report_room_id": REPORT_ROOM,
            "user_id": HARNESS_USER,
            "client_script": self.scenario.client_script(),
        })
        .to_string()
    }

    /// Plays the scenario and judges the client; the whole run is bounded by `timeout`.
    pub async fn run(self, timeout: Duration) -> Verdict {
        let deadline = Instant::now() + timeout;
        let mut verdict = Verdict::new(self.scenario);
        if let Err(err) =
            scenarios::play(&self.listener, self.scenario, deadline, &mut verdict).await
        {
            verdict.error = Some(err.to_string());
        }
        verdict
    }
}
