//! Where the suite's tokens come from: a signing key (HS256 secret plus `iss` and `aud`), with
//! which it can also craft bad tokens (`alg: none`, expired, wrong audience), or a command that
//! prints a valid token for a user id. Bad signatures need no key: a valid token with its
//! signature changed is one.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a token could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token command could not run or failed.
    #[error("token command failed: {0}")]
    Command(String),
    /// The command printed nothing.
    #[error("token command printed no token")]
    Empty,
    /// The secret is unusable.
    #[error("bad HS256 secret: {0}")]
    Key(String),
}

/// An HS256 signing key and the claims a server checks.
#[derive(Clone)]
pub struct JwtKey {
    /// The shared secret (raw bytes).
    pub secret: Vec<u8>,
    /// The `iss` the server requires.
    pub issuer: String,
    /// The `aud` the server answers to.
    pub audience: String,
    /// The `kid` to put in headers, if the server selects secrets by it.
    pub kid: Option<String>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("secret", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .finish()
    }
}

/// The claims of a crafted token.
#[derive(Debug, Clone)]
pub struct Claims {
    /// `sub`.
    pub sub: String,
    /// `iss`.
    pub iss: String,
    /// `aud`.
    pub aud: String,
    /// `exp`, Unix seconds.
    pub exp: i64,
    /// `iat`, Unix seconds.
    pub iat: i64,
}

impl JwtKey {
    /// Valid claims for `user`, expiring `ttl_s` seconds from now (negative: in the past).
    pub fn claims(&self, user: &str, ttl_s: i64) -> Claims {
        let now = now_s();
        Claims {
            sub: user.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + ttl_s,
            iat: now.min(now + ttl_s - 1),
        }
    }

    /// Signs the claims with HS256.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let input = format!("{}.{}", b64_json(&header), b64_json(&claims_json(claims)));
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret)
            .map_err(|err| TokenError::Key(err.to_string()))?;
        mac.update(input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(format!("{input}.{signature}"))
    }

    /// An unsigned token (`alg: none`, empty signature) with valid claims.
    pub fn alg_none(&self, user: &str) -> String {
        let header = serde_json::json!({"alg": "none", "typ": "JWT"});
        let claims = claims_json(&self.claims(user, 3600));
        format!("{}.{}.", b64_json(&header), b64_json(&claims))
    }
}

fn claims_json(claims: &Claims) -> serde_json::Value {
    serde_json::json!({
        "sub": claims.sub, "iss": claims.iss, "aud": claims.aud,
        "exp": claims.exp, "iat": claims.iat,
    })
}

fn b64_json(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Unix seconds now.
pub(super) fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How the suite gets valid tokens.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// Mint them with the key (and craft bad ones).
    Key(JwtKey),
    /// Run this shell command with `{user}` replaced by the user id; it prints the token.
    Command(String),
}

impl TokenSource {
    /// A valid token for `user`, good for an hour or as long as the command makes it.
    pub async fn token(&self, user: &str) -> Result<String, TokenError> {
        match self {
            Self::Key(key) => key.sign(&key.claims(user, 3600)),
            Self::Command(template) => run_command(template, user).await,
        }
    }

    /// The key, when the source has one.
    pub fn key(&self) -> Option<&JwtKey> {
        match self {
            Self::Key(key) => Some(key),
            Self::Command(_) => None,
        }
    }
}

async fn run_command(template: &str, user: &str) -> Result<String, TokenError> {
    // User ids of the suite are [a-z0-9-] only, so substituting them into a shell line is safe.
    let line = template.replace("{user}", user);
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .output()
        .await
        .map_err(|err| TokenError::Command(err.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(TokenError::Command(format!(
            "{}: {}",
            output.status,
            stderr.trim()
        )));
    }
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    Ok(token)
}

/// The same token with its signature changed (a bad signature, no key needed).
pub(super) fn tamper_signature(token: &str) -> String {
    let Some((head, signature)) = token.rsplit_once('.') else {
        return format!("{token}x");
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
    match bytes.first_mut() {
        Some(first) => *first ^= 0x5a,
        None => bytes.push(0x5a),
    }
    format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The `exp` claim of a token, read without verifying it.
pub(super) fn expiry_s(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    json.get("exp")?.as_i64()
}
