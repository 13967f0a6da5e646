//! Log output (docs/operations.md, "Logs"): text or JSON lines on stderr, filtered by
//! `RUST_LOG` (default `info`), coloured only when stderr is a terminal.
//!
//! What is logged at INFO, for operators: start-up, one line per authenticated connection
//! opening (`connection opened`: user, transport, session) and one per connection closing
//! (`connection closed`: user or `-`, transport, close code, duration), refused
//! authentications with the reason (never the token), drains. WARN: a misspelled `CHATWIRE_*`
//! variable, failed requests the server is to blame for.

use std::io::IsTerminal;

use crate::config::LogFormat;

/// The filter used when `RUST_LOG` is unset or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the process's log subscriber (once; a second call does nothing).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(false)
            .try_init(),
    };
}
