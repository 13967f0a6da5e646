//! Back ends: one per SDK language, each a pure function of the [`Protocol`] model.
//!
//! Adding a language is one more module here and one more entry in [`all`]; the walker and the
//! model stay as they are.

/// `writeln!` into a `String` cannot fail; this keeps the renderers free of `Result`. Shared by
/// every back end (defined before their modules, so it is in scope in each; the caller imports
/// `std::fmt::Write`).
macro_rules! w {
    ($out:expr) => { $out.push('\n') };
    ($out:expr, $($arg:tt)*) => {{ let _ = writeln!($out, $($arg)*); }};
}

pub mod kotlin;
pub mod swift;
pub mod typescript;

use crate::model::Protocol;

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Where it goes, relative to the back end's output root (`src/generated/api.ts`).
    pub path: String,
    /// Its full text.
    pub contents: String,
}

/// A language back end.
pub trait Backend: std::fmt::Debug {
    /// A short name (`typescript`), used by the command line and the golden test folders.
    fn name(&self) -> &'static str;
    /// Where its files go in the repository (`clients/typescript`).
    fn root(&self) -> &'static str;
    /// Renders the protocol.
    fn render(&self, protocol: &Protocol) -> Vec<OutputFile>;
}

/// Every back end, in a fixed order.
pub fn all() -> Vec<Box<dyn Backend>> {
    vec![
        Box::new(typescript::TypeScript),
        Box::new(kotlin::Kotlin),
        Box::new(swift::Swift),
    ]
}
