//! Why a token was refused, and why the verifier or minter could not be built.

use std::path::PathBuf;

use crate::config::ConfigError;

/// Why a token was refused. Every case is the peer's fault; none is a server error. The
/// messages say what is wrong without echoing the token, so they can go back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not three base64url parts, a header or claims that are not JSON objects, a duplicate
    /// claim, a claim of the wrong type, an unsupported `crit` header, or too long.
    #[error("token is malformed")]
    Malformed,
    /// The signature does not verify with the selected key.
    #[error("token signature is invalid")]
    BadSignature,
    /// The `kid` names no configured key (or is missing where a key must be selected).
    #[error("token names an unknown key")]
    UnknownKey,
    /// The `alg` is not one the server accepts (`none` included), or does not match the
    /// algorithm of the key its `kid` names.
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// `exp` is past, leeway included.
    #[error("token has expired")]
    Expired,
    /// `nbf` is ahead, leeway included.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not name this server's audience.
    #[error("token audience does not include this server")]
    WrongAudience,
    /// A required claim (`exp`, `iss`, `aud` or `sub`) is absent.
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// `sub` is not a valid user id.
    #[error("token subject is not a valid user id")]
    BadSubject,
}

/// Why a [`TokenVerifier`](super::TokenVerifier) or [`TokenMinter`](super::TokenMinter) could
/// not be built from the configuration. Operator faults, reported at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// HS256 is accepted but no secret was given.
    #[error("HS256 is in auth.algorithms but no secret is available")]
    MissingHs256Secret,
    /// Token minting needs HS256 to be accepted.
    #[error("token minting signs with HS256, which is not in auth.algorithms")]
    MintingNeedsHs256,
    /// The HS256 secret is too short.
    #[error("the HS256 secret is {len} bytes; it must be at least {min} bytes")]
    WeakSecret {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// A key or secret file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A public key is not a usable key of its algorithm.
    #[error("auth key {kid:?}: {reason}")]
    BadKey {
        /// The key's kid.
        kid: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The lifetime is not positive, or the expiry does not fit a timestamp.
    #[error("token lifetime must be positive and end before the year 292 million")]
    BadLifetime,
    /// The signing library failed.
    #[error("token signing failed: {0}")]
    Signing(String),
}
