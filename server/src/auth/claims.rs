//! The registered claims and their checks against the caller's clock.

use serde::Deserialize;
use serde_json::Value;

use super::jose::numeric_date_ms;
use super::{AuthError, VerifiedToken};
use crate::chat::ids::UserId;

/// The registered claims, kept as JSON values so that each wrong type maps to a precise
/// error. A claim present twice fails deserialization (serde refuses duplicate fields), so a
/// token cannot show one `sub` to one parser and another to the next.
#[derive(Debug, Deserialize)]
pub(super) struct RawClaims {
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    sub: Option<Value>,
}

/// What the claims must say.
#[derive(Debug, Clone)]
pub(super) struct Expectations {
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) leeway_ms: i64,
}

/// Checks the claims of a token whose signature verified. Presence first, then issuer and
/// audience, then time: `Expired` therefore means "one of our tokens, expired", which a client
/// answers by refreshing.
///
/// Time rules, with `leeway` added on the lenient side: valid while `now < exp + leeway`
/// (RFC 7519 §4.1.4) and from `nbf - leeway` on (§4.1.5).
pub(super) fn check(
    claims: RawClaims,
    expect: &Expectations,
    now_ms: i64,
) -> Result<VerifiedToken, AuthError> {
    let exp = claims.exp.ok_or(AuthError::MissingClaim("exp"))?;
    let iss = claims.iss.ok_or(AuthError::MissingClaim("iss"))?;
    let aud = claims.aud.ok_or(AuthError::MissingClaim("aud"))?;
    let sub = claims.sub.ok_or(AuthError::MissingClaim("sub"))?;

    match iss {
        Value::String(iss) if iss == expect.issuer => {}
        Value::String(_) => return Err(AuthError::WrongIssuer),
        _ => return Err(AuthError::Malformed),
    }
    check_audience(&aud, &expect.audience)?;

    let expires_at_ms = numeric_date_ms(&exp)?;
    let not_before_ms = claims.nbf.as_ref().map(numeric_date_ms).transpose()?;
    let issued_at_ms = claims.iat.as_ref().map(numeric_date_ms).transpose()?;
    if now_ms >= expires_at_ms.saturating_add(expect.leeway_ms) {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = not_before_ms
        && now_ms < nbf.saturating_sub(expect.leeway_ms)
    {
        return Err(AuthError::NotYetValid);
    }

    let Value::String(sub) = sub else {
        return Err(AuthError::BadSubject);
    };
    let user = UserId::parse(&sub).map_err(|_| AuthError::BadSubject)?;
    Ok(VerifiedToken {
        user,
        expires_at_ms,
        issued_at_ms,
    })
}

/// `aud` is one string or an array of strings (RFC 7519 §4.1.3); ours must be among them.
fn check_audience(aud: &Value, ours: &str) -> Result<(), AuthError> {
    match aud {
        Value::String(a) if a == ours => Ok(()),
        Value::String(_) => Err(AuthError::WrongAudience),
        Value::Array(items) => {
            let mut found = false;
            for item in items {
                match item {
                    Value::String(a) => found |= a == ours,
                    _ => return Err(AuthError::Malformed),
                }
            }
            if found {
                Ok(())
            } else {
                Err(AuthError::WrongAudience)
            }
        }
        _ => Err(AuthError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn expect() -> Expectations {
        Expectations {
            issuer: "iss".into(),
            audience: "aud".into(),
            leeway_ms: 30_000,
        }
    }

    fn run(claims: Value, now_ms: i64) -> Result<VerifiedToken, AuthError> {
        let claims: RawClaims = serde_json::from_value(claims).unwrap();
        check(claims, &expect(), now_ms)
    }

    fn base() -> Value {
        json!({ "iss": "iss", "aud": "aud", "sub": "alice", "exp": NOW / 1000 + 60 })
    }

    fn with(key: &str, value: Value) -> Value {
        let mut c = base();
        c[key] = value;
        c
    }

    fn without(key: &str) -> Value {
        let mut c = base();
        c.as_object_mut().unwrap().remove(key);
        c
    }

    #[test]
    fn valid_claims() {
        let t = run(with("iat", json!(NOW / 1000)), NOW).unwrap();
        assert_eq!(t.user.as_str(), "alice");
        assert_eq!(t.expires_at_ms, NOW + 60_000);
        assert_eq!(t.issued_at_ms, Some(NOW));
        assert_eq!(run(base(), NOW).unwrap().issued_at_ms, None);
    }

    #[test]
    fn missing_claims() {
        for claim in ["exp", "iss", "aud", "sub"] {
            assert_eq!(
                run(without(claim), NOW),
                Err(AuthError::MissingClaim(claim))
            );
        }
        // null counts as absent.
        assert_eq!(
            run(with("exp", Value::Null), NOW),
            Err(AuthError::MissingClaim("exp"))
        );
    }

    #[test]
    fn issuer_and_audience() {
        assert_eq!(
            run(with("iss", json!("other")), NOW),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            run(with("iss", json!(["iss"])), NOW),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            run(with("aud", json!("other")), NOW),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            run(with("aud", json!([])), NOW),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            run(with("aud", json!(["x", 1])), NOW),
            Err(AuthError::Malformed)
        );
        assert_eq!(run(with("aud", json!(7)), NOW), Err(AuthError::Malformed));
        assert!(run(with("aud", json!(["x", "aud"])), NOW).is_ok());
    }

    #[test]
    fn expiry_boundaries_with_leeway() {
        let exp_s = NOW / 1000;
        let c = with("exp", json!(exp_s));
        // Valid until exp + leeway, exclusive.
        assert!(run(c.clone(), NOW + 30_000 - 1).is_ok());
        assert_eq!(run(c.clone(), NOW + 30_000), Err(AuthError::Expired));
        assert_eq!(run(c, NOW + 3_600_000), Err(AuthError::Expired));
        // Fractional seconds count in ms.
        let c = with("exp", json!(exp_s as f64 + 0.5));
        assert!(run(c.clone(), NOW + 30_499).is_ok());
        assert_eq!(run(c, NOW + 30_500), Err(AuthError::Expired));
        assert_eq!(
            run(with("exp", json!("soon")), NOW),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn not_before_boundaries_with_leeway() {
        let c = with("nbf", json!(NOW / 1000));
        assert!(run(c.clone(), NOW - 30_000).is_ok());
        assert_eq!(run(c.clone(), NOW - 30_001), Err(AuthError::NotYetValid));
        assert!(run(c, NOW).is_ok());
        assert_eq!(
            run(with("nbf", json!(true)), NOW),
            Err(AuthError::Malformed)
        );
        assert_eq!(run(with("iat", json!("x")), NOW), Err(AuthError::Malformed));
    }

    #[test]
    fn subject_must_be_a_user_id() {
        for bad in [
            json!(""),
            json!("a b"),
            json!("a/b"),
            json!("x".repeat(200)),
            json!(42),
        ] {
            assert_eq!(run(with("sub", bad), NOW), Err(AuthError::BadSubject));
        }
    }

    #[test]
    fn duplicate_claims_do_not_deserialize() {
        let raw = r#"{"iss":"iss","aud":"aud","sub":"alice","sub":"mallory","exp":1}"#;
        assert!(serde_json::from_str::<RawClaims>(raw).is_err());
    }
}
