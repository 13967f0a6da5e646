//! Expected-failure files: one line per entry, `ID reason`, `#` comments and blank lines
//! ignored. An ID is a case id (the case is expected to fail on this server) or a requirement
//! tag (no case checks it; the reason says why). Every line needs a reason.

use std::collections::BTreeMap;

/// Why an expected-failures file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpectedError {
    /// A line has an id but no reason.
    #[error("line {line}: {id} has no reason")]
    NoReason {
        /// 1-based line number.
        line: usize,
        /// The id.
        id: String,
    },
    /// An id is listed twice.
    #[error("line {line}: {id} is listed twice")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// The id.
        id: String,
    },
}

/// Parses an expected-failures file: id to reason.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, ExpectedError> {
    let mut entries = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (id, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ExpectedError::NoReason {
                line: n + 1,
                id: id.to_owned(),
            });
        }
        if entries.insert(id.to_owned(), reason.to_owned()).is_some() {
            return Err(ExpectedError::Duplicate {
                line: n + 1,
                id: id.to_owned(),
            });
        }
    }
    Ok(entries)
}
