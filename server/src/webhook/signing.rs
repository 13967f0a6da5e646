//! Webhook signatures: HMAC-SHA256 over `timestamp + "." + body`, sent as
//!
//! ```text
//! Chatwire-Signature: t=<unix ms>,kid=<key id>,v1=<lowercase hex of the MAC>
//! Chatwire-Event-Id: <event id>
//! ```
//!
//! Rotation: [`SigningKeys`] holds several keys, oldest first, and signs with the newest (the
//! last); a receiver keeps every key it was given and picks one by `kid`, so a new key can be
//! rolled out before it signs and an old one retired after. The timestamp lets a receiver
//! refuse replays older than its tolerance. Pure functions: no I/O, no clock.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Chatwire-Signature";

/// The header carrying the event id (consumers dedupe by it).
pub const EVENT_ID_HEADER: &str = "Chatwire-Event-Id";

type HmacSha256 = Hmac<Sha256>;

/// One signing key: an id and the HMAC keyed with its secret. Its `Debug` shows the id only.
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    keyed: HmacSha256,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key. The id is ASCII letters, digits, `-`, `_` and `.` (it travels in the header);
    /// the secret is not empty.
    pub fn new(id: impl Into<String>, secret: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let id = id.into();
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if id.is_empty() || !id.chars().all(valid) {
            return Err(KeyError::InvalidId(id));
        }
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(KeyError::EmptySecret(id));
        }
        // HMAC takes keys of any length, so this does not fail in practice.
        let keyed =
            HmacSha256::new_from_slice(secret).map_err(|_| KeyError::EmptySecret(id.clone()))?;
        Ok(Self { id, keyed })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The MAC of `body` sent at `timestamp_ms`.
    fn mac(&self, timestamp_ms: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(timestamp_ms.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// Why a key set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key at all.
    #[error("no signing key")]
    NoKeys,
    /// An id that is empty or has characters that do not fit in the header.
    #[error("invalid signing key id {0:?}")]
    InvalidId(String),
    /// A key with an empty secret.
    #[error("signing key {0:?} has an empty secret")]
    EmptySecret(String),
    /// Two keys with one id.
    #[error("duplicate signing key id {0:?}")]
    DuplicateId(String),
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=...,kid=...,v1=...`.
    #[error("malformed signature header")]
    Malformed,
    /// No key has this id.
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// The timestamp is further from now than the tolerance.
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// The MAC does not match the body (tampered, or signed with another secret).
    #[error("signature mismatch")]
    Mismatch,
}

/// The keys of one webhook, oldest first; the newest signs.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl SigningKeys {
    /// A key set; at least one key, ids unique.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(KeyError::DuplicateId(key.id.clone()));
            }
        }
        Ok(Self { keys })
    }

    /// The key that signs: the newest.
    pub fn current(&self) -> &SigningKey {
        // `new` refuses an empty set.
        &self.keys[self.keys.len() - 1]
    }

    /// The `Chatwire-Signature` value of `body` sent at `timestamp_ms`.
    pub fn sign(&self, body: &[u8], timestamp_ms: i64) -> String {
        let key = self.current();
        let tag = key.mac(timestamp_ms, body).finalize().into_bytes();
        format!("t={timestamp_ms},kid={},v1={}", key.id, hex(&tag))
    }

    /// Checks a `Chatwire-Signature` value against `body`, with any key of the set, refusing
    /// timestamps more than `tolerance_ms` away from `now_ms`. The MAC comparison is
    /// constant-time.
    pub fn verify(
        &self,
        header: &str,
        body: &[u8],
        now_ms: i64,
        tolerance_ms: i64,
    ) -> Result<(), SignatureError> {
        let parsed = ParsedSignature::parse(header)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == parsed.kid)
            .ok_or_else(|| SignatureError::UnknownKey(parsed.kid.to_owned()))?;
        if now_ms.abs_diff(parsed.timestamp_ms) > tolerance_ms.unsigned_abs() {
            return Err(SignatureError::Stale);
        }
        key.mac(parsed.timestamp_ms, body)
            .verify_slice(&parsed.mac)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// A parsed `Chatwire-Signature` value.
#[derive(Debug)]
struct ParsedSignature<'a> {
    timestamp_ms: i64,
    kid: &'a str,
    mac: Vec<u8>,
}

impl<'a> ParsedSignature<'a> {
    fn parse(header: &'a str) -> Result<Self, SignatureError> {
        let (mut timestamp_ms, mut kid, mut mac) = (None, None, None);
        for part in header.split(',') {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or(SignatureError::Malformed)?;
            match name {
                "t" => timestamp_ms = value.parse::<i64>().ok(),
                "kid" => kid = Some(value),
                "v1" => mac = unhex(value),
                // Later schemes (v2=...) may be added next to v1; ignore what we do not know.
                _ => {}
            }
        }
        match (timestamp_ms, kid, mac) {
            (Some(timestamp_ms), Some(kid), Some(mac)) => Ok(Self {
                timestamp_ms,
                kid,
                mac,
            }),
            _ => Err(SignatureError::Malformed),
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Bytes of a hex string (either case); `None` when it is not hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[(&str, &str)]) -> SigningKeys {
        SigningKeys::new(
            list.iter()
                .map(|(id, secret)| SigningKey::new(*id, secret).expect("key"))
                .collect(),
        )
        .expect("keys")
    }

    /// The expected MAC, computed here with the hmac crate directly, not through the signer.
    fn independent_mac(secret: &str, message: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(message.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    #[test]
    fn known_vector() {
        let body = br#"{"id":"g:x:1:message.created"}"#;
        let header = keys(&[("k1", "whsec_test")]).sign(body, 1_700_000_000_123);
        let expected = independent_mac(
            "whsec_test",
            r#"1700000000123.{"id":"g:x:1:message.created"}"#,
        );
        assert_eq!(header, format!("t=1700000000123,kid=k1,v1={expected}"));
        // RFC 4231 test case 2 pins the primitive itself.
        assert_eq!(
            independent_mac("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verifies_and_detects_tampering() {
        let keys = keys(&[("k1", "secret")]);
        let body = b"{\"a\":1}";
        let header = keys.sign(body, 1_000);
        assert_eq!(keys.verify(&header, body, 1_000, 300_000), Ok(()));
        assert_eq!(
            keys.verify(&header, b"{\"a\":2}", 1_000, 300_000),
            Err(SignatureError::Mismatch)
        );
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(
            keys.verify(&moved, body, 1_000, 300_000),
            Err(SignatureError::Mismatch),
            "the timestamp is signed too"
        );
        assert_eq!(
            keys.verify(&header, body, 400_000, 300_000),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            keys.verify("t=1,kid=k1", body, 1, 10),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            keys.verify("t=1,kid=k1,v1=zz", body, 1, 10),
            Err(SignatureError::Malformed)
        );
        let other = keys_with_secret("k1", "other");
        assert_eq!(
            other.verify(&header, body, 1_000, 300_000),
            Err(SignatureError::Mismatch)
        );
    }

    fn keys_with_secret(id: &str, secret: &str) -> SigningKeys {
        keys(&[(id, secret)])
    }

    #[test]
    fn rotation_signs_with_the_newest_and_verifies_with_any() {
        let old = keys(&[("2024-01", "old secret")]);
        let rotated = keys(&[("2024-01", "old secret"), ("2025-06", "new secret")]);
        assert_eq!(rotated.current().id(), "2025-06");
        let body = b"payload";
        let new_header = rotated.sign(body, 5);
        assert!(new_header.contains("kid=2025-06"));
        assert_eq!(rotated.verify(&new_header, body, 5, 0), Ok(()));
        // A receiver that has only the old key does not know the new one yet.
        assert_eq!(
            old.verify(&new_header, body, 5, 0),
            Err(SignatureError::UnknownKey("2025-06".to_owned()))
        );
        // Signatures made before the rotation still verify with the rotated set.
        let old_header = old.sign(body, 5);
        assert_eq!(rotated.verify(&old_header, body, 5, 0), Ok(()));
    }

    #[test]
    fn key_sets_are_checked() {
        assert!(matches!(SigningKeys::new(vec![]), Err(KeyError::NoKeys)));
        assert!(matches!(
            SigningKey::new("a,b", "s"),
            Err(KeyError::InvalidId(_))
        ));
        assert!(matches!(
            SigningKey::new("a", ""),
            Err(KeyError::EmptySecret(_))
        ));
        let a = SigningKey::new("a", "s").expect("key");
        assert!(matches!(
            SigningKeys::new(vec![a.clone(), a]),
            Err(KeyError::DuplicateId(id)) if id == "a"
        ));
        let debug = format!("{:?}", SigningKey::new("a", "hunter2").expect("key"));
        assert!(!debug.contains("hunter2"));
    }
}
