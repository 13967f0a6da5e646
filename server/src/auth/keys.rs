//! The configured verification keys, and which one a token's header selects.

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::{AuthError, AuthSetupError};
use crate::config::{AuthConfig, JwtAlgorithm, PublicKeyConfig};

/// Shortest HS256 secret accepted: the output size of SHA-256 (RFC 7518 §3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The jsonwebtoken name of an algorithm.
pub(super) fn jwt_algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::EdDsa => Algorithm::EdDSA,
    }
}

/// The HS256 secret the configuration points at: `auth.hs256_secret_file` when set (its raw
/// bytes, not trimmed), else `dev_secret` (the data folder's generated `jwt-secret`). `None`
/// when HS256 is not accepted.
pub fn hs256_secret(
    cfg: &AuthConfig,
    dev_secret: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, AuthSetupError> {
    if !cfg.algorithms.contains(&JwtAlgorithm::Hs256) {
        return Ok(None);
    }
    let secret = match &cfg.hs256_secret_file {
        Some(path) => read(path)?,
        None => dev_secret
            .ok_or(AuthSetupError::MissingHs256Secret)?
            .to_vec(),
    };
    check_secret(&secret)?;
    Ok(Some(secret))
}

pub(super) fn check_secret(secret: &[u8]) -> Result<(), AuthSetupError> {
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(AuthSetupError::WeakSecret {
            len: secret.len(),
            min: MIN_HS256_SECRET_BYTES,
        });
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    std::fs::read(path).map_err(|source| AuthSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every key a token may be verified with. Secrets stay out of `Debug`.
#[derive(Debug)]
pub(super) struct KeyRing {
    hs256: Option<HmacKey>,
    public: HashMap<String, (JwtAlgorithm, DecodingKey)>,
}

#[derive(Debug)]
struct HmacKey {
    kid: Option<String>,
    key: DecodingKey,
}

impl KeyRing {
    /// Loads the keys of a validated configuration. `hs256` is the secret from
    /// [`hs256_secret`], present exactly when HS256 is accepted.
    pub(super) fn load(cfg: &AuthConfig, hs256: Option<&[u8]>) -> Result<Self, AuthSetupError> {
        let hs256 = match hs256 {
            Some(secret) => {
                check_secret(secret)?;
                Some(HmacKey {
                    kid: cfg.hs256_kid.clone(),
                    key: DecodingKey::from_secret(secret),
                })
            }
            None if cfg.algorithms.contains(&JwtAlgorithm::Hs256) => {
                return Err(AuthSetupError::MissingHs256Secret);
            }
            None => None,
        };
        let mut public = HashMap::with_capacity(cfg.keys.len());
        for key in &cfg.keys {
            public.insert(key.kid.clone(), (key.alg, load_public(key)?));
        }
        Ok(Self { hs256, public })
    }

    /// The key a token with header `alg` (already known to be accepted) and `kid` is checked
    /// with. RS256 and EdDSA tokens must name their key; an HS256 token may name the
    /// configured HS256 kid or none. A kid of a key of another algorithm is refused as
    /// `AlgorithmNotAllowed`: that is the shape of the HS256-signed-with-a-public-key attack.
    pub(super) fn select(
        &self,
        alg: JwtAlgorithm,
        kid: Option<&str>,
    ) -> Result<&DecodingKey, AuthError> {
        let hs_kid = self.hs256.as_ref().and_then(|h| h.kid.as_deref());
        if alg == JwtAlgorithm::Hs256 {
            let hs = self.hs256.as_ref().ok_or(AuthError::AlgorithmNotAllowed)?;
            return match kid {
                None => Ok(&hs.key),
                Some(kid) if Some(kid) == hs_kid => Ok(&hs.key),
                Some(kid) if self.public.contains_key(kid) => Err(AuthError::AlgorithmNotAllowed),
                Some(_) => Err(AuthError::UnknownKey),
            };
        }
        let kid = kid.ok_or(AuthError::UnknownKey)?;
        match self.public.get(kid) {
            Some((key_alg, key)) if *key_alg == alg => Ok(key),
            Some(_) => Err(AuthError::AlgorithmNotAllowed),
            None if Some(kid) == hs_kid => Err(AuthError::AlgorithmNotAllowed),
            None => Err(AuthError::UnknownKey),
        }
    }

    /// The configured kids with their algorithms, for logs.
    pub(super) fn describe(&self) -> Vec<(String, JwtAlgorithm)> {
        let mut out: Vec<(String, JwtAlgorithm)> = self
            .public
            .iter()
            .map(|(kid, (alg, _))| (kid.clone(), *alg))
            .collect();
        out.sort();
        if let Some(hs) = &self.hs256 {
            out.insert(0, (hs.kid.clone().unwrap_or_default(), JwtAlgorithm::Hs256));
        }
        out
    }
}

fn load_public(cfg: &PublicKeyConfig) -> Result<DecodingKey, AuthSetupError> {
    let bad = |reason: String| AuthSetupError::BadKey {
        kid: cfg.kid.clone(),
        reason,
    };
    let pem = match (&cfg.pem, &cfg.pem_file) {
        (Some(pem), _) => pem.as_bytes().to_vec(),
        (None, Some(path)) => read(path)?,
        (None, None) => return Err(bad("neither pem nor pem_file is set".into())),
    };
    match pem_label(&pem) {
        Some("PUBLIC KEY") => {}
        Some("RSA PUBLIC KEY") if cfg.alg == JwtAlgorithm::Rs256 => {}
        Some(label) if label.contains("PRIVATE") => {
            return Err(bad(format!(
                "this is a private key ({label}); configure the public key only"
            )));
        }
        Some(label) => return Err(bad(format!("expected a PUBLIC KEY PEM, found {label}"))),
        None => return Err(bad("not PEM: no -----BEGIN line".into())),
    }
    let key = match cfg.alg {
        JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(&pem),
        JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(&pem),
        JwtAlgorithm::Hs256 => return Err(bad("HS256 takes a secret, not a public key".into())),
    }
    .map_err(|e| bad(format!("not a PEM {} public key ({e})", cfg.alg)))?;
    if cfg.alg == JwtAlgorithm::EdDsa {
        // jsonwebtoken slices the first 32 bytes of an Ed25519 key without a length check.
        let len = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or_default();
        if len != 32 {
            return Err(bad(format!(
                "an Ed25519 public key is 32 bytes, this one is {len}"
            )));
        }
    }
    // A verification with a dummy signature fails; an unusable key fails differently.
    jsonwebtoken::crypto::verify("AA", b"probe", &key, jwt_algorithm(cfg.alg))
        .map_err(|e| bad(format!("unusable {} key ({e})", cfg.alg)))?;
    Ok(key)
}

/// The label of the first PEM block (`PUBLIC KEY` in `-----BEGIN PUBLIC KEY-----`).
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = text.get(start..)?;
    rest.get(..rest.find("-----")?)
}
