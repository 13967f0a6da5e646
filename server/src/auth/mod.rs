//! Session tokens (docs/protocol.md §4.2): JWTs checked with algorithms pinned by configuration.
//!
//! - [`TokenVerifier`] accepts HS256 (a shared secret) and/or RS256 and EdDSA (public keys in
//!   PEM, selected by the header's `kid`). A token with `alg` `none` or any algorithm not
//!   configured, an unknown `kid`, or a `kid` of a key of another algorithm is refused before
//!   any signature work. `exp`, `iss`, `aud` and `sub` are required, `nbf` is honoured when
//!   present, with a configurable leeway; times are checked against the caller's `now_ms`, so
//!   tests drive them with an injected clock.
//! - [`TokenMinter`] signs HS256 tokens for development (`chatwire token`) and the admin API.
//!
//! Files: `jose` reads the token's shape and header, `keys` loads keys and selects one,
//! `claims` checks the claims, `verifier` and `minter` put them together, `error` holds the
//! error types.
//!
//! Built on jsonwebtoken 11 with its `rust_crypto` provider only (enabling `aws_lc_rs` as well
//! makes it panic at run time: the tests here would catch it). jsonwebtoken checks the
//! signature; every claim, time included, is checked here, since its time checks read the
//! system clock.

mod claims;
mod error;
mod jose;
mod keys;
mod minter;
mod verifier;

#[cfg(test)]
mod tests;

pub use error::{AuthError, AuthSetupError, MintError};
pub use jose::MAX_TOKEN_BYTES;
pub use keys::{MIN_HS256_SECRET_BYTES, hs256_secret};
pub use minter::TokenMinter;
pub use verifier::TokenVerifier;

use crate::chat::ids::UserId;
pub use crate::config::JwtAlgorithm;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The user (`sub`).
    pub user: UserId,
    /// When the token expires (`exp`), Unix ms, leeway not included. A session must be
    /// refreshed before `expires_at_ms` plus the configured leeway.
    pub expires_at_ms: i64,
    /// When it was issued (`iat`), Unix ms, if the token says. Revocation of "tokens issued
    /// before T" compares against it; a token without `iat` cannot be told apart by issue time.
    pub issued_at_ms: Option<i64>,
}
