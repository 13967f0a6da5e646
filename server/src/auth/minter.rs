//! [`TokenMinter`]: HS256 tokens for development and the admin API's token minting.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

use super::keys::check_secret;
use super::{AuthSetupError, MintError};
use crate::chat::ids::UserId;
use crate::config::{AuthConfig, JwtAlgorithm};

/// Signs HS256 tokens with the configured issuer, audience and kid.
pub struct TokenMinter {
    key: EncodingKey,
    issuer: String,
    audience: String,
    kid: Option<String>,
}

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMinter")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: i64,
    exp: i64,
}

impl TokenMinter {
    /// A minter signing with `secret` (at least 32 bytes).
    pub fn new(
        secret: &[u8],
        issuer: impl Into<String>,
        audience: impl Into<String>,
        kid: Option<String>,
    ) -> Result<Self, AuthSetupError> {
        check_secret(secret)?;
        Ok(Self {
            key: EncodingKey::from_secret(secret),
            issuer: issuer.into(),
            audience: audience.into(),
            kid,
        })
    }

    /// A minter whose tokens the verifier built from the same `cfg` and `dev_secret` accepts.
    /// Fails when HS256 is not accepted.
    pub fn from_config(
        cfg: &AuthConfig,
        dev_secret: Option<&[u8]>,
    ) -> Result<Self, AuthSetupError> {
        cfg.validate()?;
        if !cfg.algorithms.contains(&JwtAlgorithm::Hs256) {
            return Err(AuthSetupError::MintingNeedsHs256);
        }
        let secret =
            super::hs256_secret(cfg, dev_secret)?.ok_or(AuthSetupError::MissingHs256Secret)?;
        Self::new(
            &secret,
            cfg.issuer.clone(),
            cfg.audience.clone(),
            cfg.hs256_kid.clone(),
        )
    }

    /// A token for `user`, issued at `now_ms` and valid for `ttl_ms`. JWT times are whole
    /// seconds: `iat` is `now_ms` rounded down, `exp` is `now_ms + ttl_ms` rounded down.
    pub fn mint(&self, user: &UserId, ttl_ms: i64, now_ms: i64) -> Result<String, MintError> {
        if ttl_ms <= 0 {
            return Err(MintError::BadLifetime);
        }
        let exp_ms = now_ms.checked_add(ttl_ms).ok_or(MintError::BadLifetime)?;
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: user.as_str(),
            iat: now_ms.div_euclid(1000),
            exp: exp_ms.div_euclid(1000),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid.clone_from(&self.kid);
        encode(&header, &claims, &self.key).map_err(|e| MintError::Signing(e.to_string()))
    }
}
