//! [`TokenVerifier`]: from a token string and the caller's clock to a user, or a refusal.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode};

use super::claims::{Expectations, RawClaims, check};
use super::jose::read_header;
use super::keys::{KeyRing, jwt_algorithm};
use super::{AuthError, AuthSetupError, VerifiedToken};
use crate::config::{AuthConfig, JwtAlgorithm};

/// Verifies session tokens (docs/protocol.md §4.2). Cheap to share behind an `Arc`; holds no clock.
#[derive(Debug)]
pub struct TokenVerifier {
    algorithms: Vec<JwtAlgorithm>,
    keys: KeyRing,
    expect: Expectations,
}

impl TokenVerifier {
    /// Builds a verifier from `cfg`. `dev_secret` is the data folder's generated HS256 secret,
    /// used when HS256 is accepted and `auth.hs256_secret_file` is not set (see
    /// [`hs256_secret`](super::hs256_secret)).
    pub fn from_config(
        cfg: &AuthConfig,
        dev_secret: Option<&[u8]>,
    ) -> Result<Self, AuthSetupError> {
        cfg.validate()?;
        let secret = super::hs256_secret(cfg, dev_secret)?;
        let keys = KeyRing::load(cfg, secret.as_deref())?;
        let leeway_ms = i64::try_from(cfg.leeway_ms).unwrap_or(i64::MAX);
        Ok(Self {
            algorithms: cfg.algorithms.clone(),
            keys,
            expect: Expectations {
                issuer: cfg.issuer.clone(),
                audience: cfg.audience.clone(),
                leeway_ms,
            },
        })
    }

    /// Checks `token` at `now_ms` (Unix ms, from the caller's clock): shape and header, then
    /// algorithm pinning and key selection, then the signature, then the claims. Nothing about
    /// the claims is looked at before the signature verifies.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<VerifiedToken, AuthError> {
        let header = read_header(token)?;
        let alg = JwtAlgorithm::from_header_name(&header.alg)
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or(AuthError::AlgorithmNotAllowed)?;
        let key = self.keys.select(alg, header.kid.as_deref())?;
        let data = decode::<RawClaims>(token, key, &signature_only(alg)).map_err(map_error)?;
        check(data.claims, &self.expect, now_ms)
    }

    /// The clock-skew leeway on `exp` and `nbf`, in ms (`auth.leeway_ms`).
    pub fn leeway_ms(&self) -> i64 {
        self.expect.leeway_ms
    }

    /// The accepted algorithms.
    pub fn algorithms(&self) -> &[JwtAlgorithm] {
        &self.algorithms
    }

    /// The configured keys as (kid, algorithm), the HS256 secret first with an empty kid when
    /// it has none. For start-up logs; no key material.
    pub fn key_ids(&self) -> Vec<(String, JwtAlgorithm)> {
        self.keys.describe()
    }
}

/// A jsonwebtoken validation that checks only the signature with `alg`: the claims, times
/// included, are checked by [`check`] against the caller's clock (jsonwebtoken would read the
/// system clock).
fn signature_only(alg: JwtAlgorithm) -> Validation {
    let mut v = Validation::new(jwt_algorithm(alg));
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

fn map_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AuthError::AlgorithmNotAllowed,
        _ => AuthError::Malformed,
    }
}
