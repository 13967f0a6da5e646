//! `chatwire-codegen`: regenerates the SDK surfaces of every back end.
//!
//! Run: `cargo run -p chatwire-codegen` (writes), `cargo run -p chatwire-codegen -- --check`
//! (exit 1 when a checked-in file is stale).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let protocol = match chatwire_codegen::chatwire_v1() {
        Ok(p) => p,
        Err(err) => {
            eprintln!("chatwire-codegen: {err}");
            return ExitCode::FAILURE;
        }
    };
    let files = chatwire_codegen::render_all(&protocol);
    if check {
        let stale = chatwire_codegen::check_all(&root, &files);
        for path in &stale {
            eprintln!("chatwire-codegen: stale: {path}");
        }
        return if stale.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match chatwire_codegen::write_all(&root, &files) {
        Ok(()) => {
            for f in &files {
                println!("wrote {}", f.path);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("chatwire-codegen: {err}");
            ExitCode::FAILURE
        }
    }
}
