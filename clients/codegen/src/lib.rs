//! `chatwire-codegen`: builds the typed SDK surfaces (one method per request, one typed event
//! stream, typed errors) from the protocol's descriptors. Message types themselves come from
//! each language's established protobuf generator (protobuf-es for TypeScript); this crate
//! writes only the layer above them. It does no I/O except in [`write_all`] / [`check_all`].
//!
//! ```text
//! chatwire.v1.fds.binpb ──walker──▶ model::Protocol ──backend::typescript──▶ clients/typescript/src/generated/*.ts
//!                                                   └─(kotlin, swift: further back ends)
//! ```
//!
//! `cargo run -p chatwire-codegen` regenerates every back end's files (what `scripts/regen`
//! does); `tests/golden.rs` fails when the checked-in files differ from a fresh run.

pub mod backend;
pub mod model;
pub mod names;
pub mod walker;

use std::path::{Path, PathBuf};

pub use backend::{Backend, OutputFile};
pub use model::Protocol;
pub use walker::{Conventions, WalkError, walk, walk_descriptor_set};

/// Why generation or the check failed.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// The descriptors do not describe a protocol the back ends can render.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// The protocol model of the checked-in `chatwire.v1` descriptor set.
pub fn chatwire_v1() -> Result<Protocol, WalkError> {
    walk_descriptor_set(
        chatwire_protocol::FILE_DESCRIPTOR_SET,
        &Conventions::chatwire_v1(),
    )
}

/// Every file of every back end, with its path relative to the repository root.
pub fn render_all(protocol: &Protocol) -> Vec<OutputFile> {
    backend::all()
        .iter()
        .flat_map(|b| {
            b.render(protocol).into_iter().map(|f| OutputFile {
                path: format!("{}/{}", b.root(), f.path),
                contents: f.contents,
            })
        })
        .collect()
}

/// Writes every generated file under `repo_root`.
pub fn write_all(repo_root: &Path, files: &[OutputFile]) -> Result<(), CodegenError> {
    for file in files {
        let path = repo_root.join(&file.path);
        let io = |source| CodegenError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(&path, &file.contents).map_err(io)?;
    }
    Ok(())
}

/// The generated files whose checked-in copy under `repo_root` differs (or is missing).
pub fn check_all(repo_root: &Path, files: &[OutputFile]) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(repo_root.join(&f.path))
                .ok()
                .as_deref()
                != Some(f.contents.as_str())
        })
        .map(|f| f.path.clone())
        .collect()
}
