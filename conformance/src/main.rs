//! `chatwire-conformance`: checks a Chatwire server against docs/protocol.md.
//!
//! ```sh
//! cargo run -p chatwire-conformance -- server --url ws://127.0.0.1:8080/v1/ws \
//!     --jwt-secret-file chatwire-data/jwt-secret --html report.html
//! ```

use clap::Parser as _;

#[tokio::main]
async fn main() {
    // quinn and the test client use ring only; install it once, as NOTES.md advises.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = chatwire_conformance::cli::Cli::parse();
    std::process::exit(chatwire_conformance::cli::main(cli).await);
}
