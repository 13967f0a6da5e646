//! The `chatwire-conformance` command line: `server` runs the suite against a server and
//! writes the reports; `cases` lists the cases.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::{QuicTarget, WsTarget};
use crate::harness::{Harness, Scenario};
use crate::report::{self, Report, expected};
use crate::suite::{self, Ctx, JwtKey, Selection, Target, TokenSource};

/// The requirements no server case checks, with the reason for each (shipped with the tool).
pub const COVERAGE_GAPS: &str = include_str!("../coverage-gaps.txt");

/// Checks a Chatwire server against docs/protocol.md.
#[derive(Debug, Parser)]
#[command(name = "chatwire-conformance", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server suite against a server.
    Server(Box<ServerArgs>),
    /// List the cases with their requirements.
    Cases,
    /// Play a scripted server for an SDK test and judge the client (docs/conformance.md).
    ClientHarness(HarnessArgs),
}

/// Flags of `client-harness`.
#[derive(Debug, Clone, Args)]
pub struct HarnessArgs {
    /// The scenario to play.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// The address to listen on (port 0 picks a free one; the first stdout line says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Write the JSON verdict here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Seconds the whole scenario may take.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Flags of `server`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// `ws://host:port/v1/ws` or `quic://host:port`.
    #[arg(long)]
    pub url: String,
    /// The server's certificate (DER) to trust for QUIC.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The TLS server name for QUIC (default: the URL's host).
    #[arg(long)]
    pub server_name: Option<String>,
    /// The HS256 secret (text) the server verifies tokens with.
    #[arg(long, conflicts_with_all = ["jwt_secret_file", "token_command"])]
    pub jwt_secret: Option<String>,
    /// A file holding the HS256 secret (raw bytes).
    #[arg(long, conflicts_with = "token_command")]
    pub jwt_secret_file: Option<PathBuf>,
    /// The `iss` the server requires.
    #[arg(long, default_value = "chatwire-dev")]
    pub jwt_issuer: String,
    /// The `aud` the server answers to.
    #[arg(long, default_value = "chatwire")]
    pub jwt_audience: String,
    /// The `kid` to put in token headers.
    #[arg(long)]
    pub jwt_kid: Option<String>,
    /// A shell command printing a valid token; `{user}` is replaced by the user id. Cases that
    /// craft tokens are then skipped ("no key").
    #[arg(long)]
    pub token_command: Option<String>,
    /// Run only these groups (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub group: Vec<String>,
    /// Run only these case ids (repeatable or comma-separated).
    #[arg(long = "case", value_delimiter = ',')]
    pub cases: Vec<String>,
    /// The expected-failures file: `CASE-ID reason` per line.
    #[arg(long)]
    pub expected_failures: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write the static HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Compare with this kept results listing (`CASE-ID outcome` lines); a difference fails.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Seconds one case may run before it fails as hung.
    #[arg(long, default_value_t = 120)]
    pub case_timeout: u64,
}

/// Why the command could not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad flag value.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The expected-failures or gaps file is malformed.
    #[error(transparent)]
    Expected(#[from] expected::ExpectedError),
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Io {
        path: path.clone(),
        source,
    })
}

fn write(path: &PathBuf, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|source| CliError::Io {
        path: path.clone(),
        source,
    })
}

/// Builds the target from `--url` (and `--cert` for QUIC).
pub async fn target(args: &ServerArgs) -> Result<Target, CliError> {
    if args.url.starts_with("ws://") {
        return Ok(Target::Ws(WsTarget::from_url(args.url.clone())));
    }
    let rest = args.url.strip_prefix("quic://").ok_or_else(|| {
        CliError::Usage(format!(
            "--url {}: use ws://… or quic://host:port",
            args.url
        ))
    })?;
    let host_port = rest.trim_end_matches('/');
    let addr = tokio::net::lookup_host(host_port)
        .await
        .map_err(|err| CliError::Usage(format!("{host_port}: {err}")))?
        .next()
        .ok_or_else(|| CliError::Usage(format!("{host_port}: no address")))?;
    let cert = args.cert.as_ref().ok_or_else(|| {
        CliError::Usage("quic:// needs --cert (the server's DER certificate)".into())
    })?;
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    let name = args
        .server_name
        .clone()
        .unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned());
    let quic =
        QuicTarget::new(addr, name, read(cert)?).map_err(|err| CliError::Usage(err.to_string()))?;
    Ok(Target::Quic(quic))
}

/// Builds the token source from the flags.
pub fn tokens(args: &ServerArgs) -> Result<TokenSource, CliError> {
    let secret = match (&args.jwt_secret, &args.jwt_secret_file) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        (None, Some(path)) => Some(read(path)?),
        (None, None) => None,
    };
    match (secret, &args.token_command) {
        (Some(secret), _) => Ok(TokenSource::Key(JwtKey {
            secret,
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
            kid: args.jwt_kid.clone(),
        })),
        (None, Some(command)) => Ok(TokenSource::Command(command.clone())),
        (None, None) => Err(CliError::Usage(
            "give --jwt-secret, --jwt-secret-file or --token-command".into(),
        )),
    }
}

/// Runs the suite as the flags say and writes the reports; the report.
pub async fn run_server(args: &ServerArgs) -> Result<Report, CliError> {
    let ctx = Ctx::new(target(args).await?, tokens(args)?);
    let selection = Selection {
        ids: args.cases.clone(),
        groups: args.group.clone(),
    };
    let expected_failures = match &args.expected_failures {
        Some(path) => expected::parse(&String::from_utf8_lossy(&read(path)?))?,
        None => BTreeMap::new(),
    };
    let gaps = expected::parse(COVERAGE_GAPS)?;
    let results = suite::run(&ctx, &selection, Duration::from_secs(args.case_timeout)).await;
    let report = Report::new(
        args.url.clone(),
        ctx.kind().as_str().to_owned(),
        results,
        &expected_failures,
        gaps,
    );
    for (path, text) in [
        (&args.json, report::json(&report)),
        (&args.junit, report::junit(&report)),
        (&args.html, report::html(&report)),
    ] {
        if let Some(path) = path {
            write(path, &text)?;
        }
    }
    Ok(report)
}

/// Lines that differ between a kept results listing and this run (`-` kept, `+` now).
pub fn compare(kept: &str, report: &Report) -> Vec<String> {
    let lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    let (kept, now) = (lines(kept), lines(&report::results_listing(report)));
    let mut diff: Vec<String> = kept
        .iter()
        .filter(|l| !now.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    diff.extend(
        now.iter()
            .filter(|l| !kept.contains(l))
            .map(|l| format!("+ {l}")),
    );
    diff
}

/// The `cases` listing.
pub fn list_cases() -> String {
    suite::all()
        .iter()
        .map(|c| {
            format!(
                "{:<6} {:<10} {:<6} {} ({})\n",
                c.id,
                c.group,
                c.level.as_str(),
                c.title,
                c.reqs.join(", ")
            )
        })
        .collect()
}

/// Runs `client-harness`: prints the ready line (JSON, one line), plays the scenario, prints
/// the summary and writes the JSON verdict; 0 when the client passed, 1 when not.
pub async fn run_harness(args: &HarnessArgs) -> Result<i32, CliError> {
    let harness = Harness::bind(args.listen, args.scenario)
        .await
        .map_err(|err| CliError::Usage(format!("--listen {}: {err}", args.listen)))?;
    println!("{}", harness.ready_line());
    let verdict = harness.run(Duration::from_secs(args.timeout)).await;
    print!("{}", verdict.terminal());
    if let Some(path) = &args.json {
        write(path, &verdict.to_json())?;
    }
    Ok(i32::from(!verdict.passed()))
}

/// Runs the command line; the process exit status.
pub async fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Cases => {
            print!("{}", list_cases());
            0
        }
        Command::ClientHarness(args) => run_harness(&args).await.unwrap_or_else(|err| {
            eprintln!("chatwire-conformance: {err}");
            2
        }),
        Command::Server(args) => match run_server(&args).await {
            Ok(report) => {
                print!("{}", report::terminal(&report));
                let mut status = i32::from(!report.ok());
                if let Some(path) = &args.compare {
                    match read(path) {
                        Ok(kept) => {
                            let diff = compare(&String::from_utf8_lossy(&kept), &report);
                            if !diff.is_empty() {
                                println!(
                                    "results differ from {}:\n{}",
                                    path.display(),
                                    diff.join("\n")
                                );
                                status = 1;
                            }
                        }
                        Err(err) => {
                            eprintln!("{err}");
                            status = 2;
                        }
                    }
                }
                status
            }
            Err(err) => {
                eprintln!("chatwire-conformance: {err}");
                2
            }
        },
    }
}
