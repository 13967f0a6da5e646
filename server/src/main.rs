//! `chatwire`: the server binary.
//!
//! Run: `cargo run -p chatwire-server -- serve`

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") => {
            println!("chatwire {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "chatwire {}: the server lands with issue 3 (see README.md)",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::FAILURE
        }
    }
}
