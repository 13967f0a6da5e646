//! The parts of a compact JWS read before any key is chosen: shape and protected header.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::AuthError;

/// Longest token accepted, in bytes. A token with a few claims and an RS256 signature is well
/// under 2 KiB; the cap bounds the work a peer can cause before its signature is checked.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The protected header fields the verifier looks at. Unknown fields are ignored, as RFC 7515
/// asks, except `crit`, which names extensions that must be understood: none are.
#[derive(Debug, Deserialize)]
pub(super) struct JoseHeader {
    pub(super) alg: String,
    #[serde(default)]
    pub(super) kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Checks the compact shape (three base64url parts, bounded length) and decodes the header.
pub(super) fn read_header(token: &str) -> Result<JoseHeader, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_claims), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let header: JoseHeader = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    if header.crit.is_some() {
        return Err(AuthError::Malformed);
    }
    Ok(header)
}

/// A JWT NumericDate (seconds since the epoch, integer or fraction) as milliseconds.
pub(super) fn numeric_date_ms(value: &serde_json::Value) -> Result<i64, AuthError> {
    let serde_json::Value::Number(n) = value else {
        return Err(AuthError::Malformed);
    };
    if let Some(secs) = n.as_i64() {
        return secs.checked_mul(1000).ok_or(AuthError::Malformed);
    }
    match n.as_f64() {
        // Within ±2^53 ms, where an f64 still counts whole milliseconds.
        Some(secs) if secs.is_finite() && secs.abs() < 9.0e12 => Ok((secs * 1000.0).floor() as i64),
        _ => Err(AuthError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn header_shape() {
        let h = read_header(&format!("{}.e30.sig", b64(r#"{"alg":"HS256","kid":"k"}"#))).unwrap();
        assert_eq!((h.alg.as_str(), h.kid.as_deref()), ("HS256", Some("k")));
        for bad in [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{}.e30.sig", b64("not json")),
            format!("{}.e30.sig", b64(r#"{"kid":"k"}"#)),
            format!("{}.e30.sig", b64(r#"{"alg":"HS256","crit":["exp"]}"#)),
            format!("{}.e30.sig", b64(r#"{"alg":"HS256","kid":7}"#)),
            format!("{}=.e30.sig", b64(r#"{"alg":"HS256"}"#)),
            format!(
                "{}.e30.{}",
                b64(r#"{"alg":"HS256"}"#),
                "A".repeat(MAX_TOKEN_BYTES)
            ),
        ] {
            assert_eq!(
                read_header(&bad).unwrap_err(),
                AuthError::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn numeric_dates() {
        assert_eq!(
            numeric_date_ms(&json!(1_700_000_000)),
            Ok(1_700_000_000_000)
        );
        assert_eq!(numeric_date_ms(&json!(1.5)), Ok(1500));
        assert_eq!(numeric_date_ms(&json!(-1)), Ok(-1000));
        for bad in [
            json!("1700000000"),
            json!(null),
            json!(i64::MAX),
            json!(1e300),
            json!([1]),
        ] {
            assert_eq!(numeric_date_ms(&bad), Err(AuthError::Malformed), "{bad}");
        }
    }
}
