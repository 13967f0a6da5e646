//! End-to-end tests of the verifier and the minter: real signatures, every refusal.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::config::{AuthConfig, PublicKeyConfig};

const NOW: i64 = 1_800_000_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &str = include_str!("../../tests/data/auth/rs256-test-private.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/data/auth/rs256-test-public.pem");

struct Ed25519 {
    private_pem: String,
    public_pem: String,
}

fn ed25519() -> Ed25519 {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    Ed25519 {
        private_pem: kp.serialize_pem(),
        public_pem: kp.public_key_pem(),
    }
}

fn hs_config() -> AuthConfig {
    AuthConfig {
        issuer: "iss".into(),
        audience: "aud".into(),
        ..AuthConfig::default()
    }
}

/// HS256 (kid "hs"), RS256 (kid "rsa") and EdDSA (kid "ed").
fn all_config(ed: &Ed25519) -> AuthConfig {
    AuthConfig {
        algorithms: vec![
            JwtAlgorithm::Hs256,
            JwtAlgorithm::Rs256,
            JwtAlgorithm::EdDsa,
        ],
        hs256_kid: Some("hs".into()),
        keys: vec![
            PublicKeyConfig {
                kid: "rsa".into(),
                alg: JwtAlgorithm::Rs256,
                pem: Some(RSA_PUBLIC.into()),
                pem_file: None,
            },
            PublicKeyConfig {
                kid: "ed".into(),
                alg: JwtAlgorithm::EdDsa,
                pem: Some(ed.public_pem.clone()),
                pem_file: None,
            },
        ],
        ..hs_config()
    }
}

fn verifier(cfg: &AuthConfig) -> TokenVerifier {
    TokenVerifier::from_config(cfg, Some(SECRET)).unwrap()
}

fn claims() -> Value {
    json!({ "iss": "iss", "aud": "aud", "sub": "alice", "iat": NOW / 1000, "exp": NOW / 1000 + 3600 })
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs(kid: Option<&str>, claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        kid,
        &EncodingKey::from_secret(SECRET),
        claims,
    )
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

fn ed_key(ed: &Ed25519) -> EncodingKey {
    EncodingKey::from_ed_pem(ed.private_pem.as_bytes()).unwrap()
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// A token assembled by hand: any header, any payload, any signature.
fn raw(header: &str, payload: &str, signature: &str) -> String {
    format!("{}.{}.{signature}", b64(header), b64(payload))
}

#[test]
fn hs256_token_verifies() {
    let v = verifier(&hs_config());
    let t = v.verify(&hs(None, &claims()), NOW).unwrap();
    assert_eq!(t.user.as_str(), "alice");
    assert_eq!(t.expires_at_ms, NOW + 3_600_000);
    assert_eq!(t.issued_at_ms, Some(NOW));
}

#[test]
fn rs256_and_ed25519_tokens_verify_by_kid() {
    let ed = ed25519();
    let v = verifier(&all_config(&ed));
    let rs = sign(Algorithm::RS256, Some("rsa"), &rsa_key(), &claims());
    assert_eq!(v.verify(&rs, NOW).unwrap().user.as_str(), "alice");
    let e = sign(Algorithm::EdDSA, Some("ed"), &ed_key(&ed), &claims());
    assert_eq!(v.verify(&e, NOW).unwrap().user.as_str(), "alice");
    assert_eq!(
        v.verify(&hs(Some("hs"), &claims()), NOW)
            .unwrap()
            .user
            .as_str(),
        "alice"
    );
    assert_eq!(
        v.verify(&hs(None, &claims()), NOW).unwrap().user.as_str(),
        "alice"
    );
}

#[test]
fn alg_none_is_refused() {
    let v = verifier(&hs_config());
    let payload = claims().to_string();
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
        r#"{"alg":""}"#,
    ] {
        assert_eq!(
            v.verify(&raw(header, &payload, ""), NOW),
            Err(AuthError::AlgorithmNotAllowed)
        );
        assert_eq!(
            v.verify(&raw(header, &payload, "c2ln"), NOW),
            Err(AuthError::AlgorithmNotAllowed)
        );
    }
}

#[test]
fn unpinned_algorithms_are_refused() {
    let ed = ed25519();
    let v = verifier(&hs_config());
    // Well-formed and correctly signed, but with algorithms this server was not told to accept.
    let hs512 = sign(
        Algorithm::HS512,
        None,
        &EncodingKey::from_secret(SECRET),
        &claims(),
    );
    assert_eq!(v.verify(&hs512, NOW), Err(AuthError::AlgorithmNotAllowed));
    let rs = sign(Algorithm::RS256, Some("rsa"), &rsa_key(), &claims());
    assert_eq!(v.verify(&rs, NOW), Err(AuthError::AlgorithmNotAllowed));
    let e = sign(Algorithm::EdDSA, Some("ed"), &ed_key(&ed), &claims());
    assert_eq!(v.verify(&e, NOW), Err(AuthError::AlgorithmNotAllowed));
    // HS256 not accepted at all.
    let mut cfg = all_config(&ed);
    cfg.algorithms = vec![JwtAlgorithm::Rs256, JwtAlgorithm::EdDsa];
    cfg.hs256_kid = None;
    let v = verifier(&cfg);
    assert_eq!(
        v.verify(&hs(None, &claims()), NOW),
        Err(AuthError::AlgorithmNotAllowed)
    );
    assert!(v.verify(&rs, NOW).is_ok());
}

#[test]
fn kid_selects_key_of_its_own_algorithm_only() {
    let ed = ed25519();
    let v = verifier(&all_config(&ed));
    // Unknown kid, and no kid where one is needed.
    let rs = sign(Algorithm::RS256, Some("other"), &rsa_key(), &claims());
    assert_eq!(v.verify(&rs, NOW), Err(AuthError::UnknownKey));
    let rs = sign(Algorithm::RS256, None, &rsa_key(), &claims());
    assert_eq!(v.verify(&rs, NOW), Err(AuthError::UnknownKey));
    assert_eq!(
        v.verify(&hs(Some("other"), &claims()), NOW),
        Err(AuthError::UnknownKey)
    );
    // A kid of another algorithm's key.
    let e = sign(Algorithm::EdDSA, Some("rsa"), &ed_key(&ed), &claims());
    assert_eq!(v.verify(&e, NOW), Err(AuthError::AlgorithmNotAllowed));
    let rs = sign(Algorithm::RS256, Some("ed"), &rsa_key(), &claims());
    assert_eq!(v.verify(&rs, NOW), Err(AuthError::AlgorithmNotAllowed));
    let rs = sign(Algorithm::RS256, Some("hs"), &rsa_key(), &claims());
    assert_eq!(v.verify(&rs, NOW), Err(AuthError::AlgorithmNotAllowed));
    // The classic confusion: HS256 keyed with the RSA public key, naming the RSA kid.
    let forged = sign(
        Algorithm::HS256,
        Some("rsa"),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        &claims(),
    );
    assert_eq!(v.verify(&forged, NOW), Err(AuthError::AlgorithmNotAllowed));
}

#[test]
fn bad_signatures() {
    let ed = ed25519();
    let v = verifier(&all_config(&ed));
    let other_secret = EncodingKey::from_secret(b"another secret, also 32 bytes lo");
    let t = sign(Algorithm::HS256, None, &other_secret, &claims());
    assert_eq!(v.verify(&t, NOW), Err(AuthError::BadSignature));
    // Another Ed25519 key under the configured kid.
    let t = sign(Algorithm::EdDSA, Some("ed"), &ed_key(&ed25519()), &claims());
    assert_eq!(v.verify(&t, NOW), Err(AuthError::BadSignature));
    // Claims swapped under a valid signature.
    let good = sign(Algorithm::RS256, Some("rsa"), &rsa_key(), &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged_claims = claims();
    forged_claims["sub"] = json!("mallory");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&forged_claims.to_string()),
        parts[2]
    );
    assert_eq!(v.verify(&forged, NOW), Err(AuthError::BadSignature));
    // Signature stripped, or of the wrong length.
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(v.verify(&stripped, NOW), Err(AuthError::BadSignature));
    let e = sign(Algorithm::EdDSA, Some("ed"), &ed_key(&ed), &claims());
    let (message, sig) = e.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let short = format!(
        "{message}.{}",
        URL_SAFE_NO_PAD.encode(&sig[..sig.len() - 1])
    );
    assert_eq!(v.verify(&short, NOW), Err(AuthError::BadSignature));
}

#[test]
fn malformed_tokens() {
    let v = verifier(&hs_config());
    for bad in ["", "abc", "a.b", "a.b.c.d", "....", "not a token at all"] {
        assert_eq!(v.verify(bad, NOW), Err(AuthError::Malformed), "{bad:?}");
    }
    // Signed properly, but the payload is not a claims object.
    let key = EncodingKey::from_secret(SECRET);
    let t = sign(Algorithm::HS256, None, &key, &json!([1, 2, 3]));
    assert_eq!(v.verify(&t, NOW), Err(AuthError::Malformed));
    // Invalid base64 in the signature.
    let t = hs(None, &claims());
    assert_eq!(v.verify(&format!("{t}!"), NOW), Err(AuthError::Malformed));
    // A duplicated claim under a valid signature.
    let header = b64(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload =
        b64(r#"{"iss":"iss","aud":"aud","sub":"alice","sub":"mallory","exp":1900000000}"#);
    let message = format!("{header}.{payload}");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    assert_eq!(
        v.verify(&format!("{message}.{sig}"), NOW),
        Err(AuthError::Malformed)
    );
    // Over the length cap.
    let long = raw(r#"{"alg":"HS256"}"#, &"x".repeat(MAX_TOKEN_BYTES), "sig");
    assert_eq!(v.verify(&long, NOW), Err(AuthError::Malformed));
}

#[test]
fn wrong_audience_and_issuer_with_the_right_secret() {
    let v = verifier(&hs_config());
    let mut c = claims();
    c["aud"] = json!("another-service");
    assert_eq!(v.verify(&hs(None, &c), NOW), Err(AuthError::WrongAudience));
    c["aud"] = json!(["another-service", "aud"]);
    assert!(v.verify(&hs(None, &c), NOW).is_ok());
    let mut c = claims();
    c["iss"] = json!("someone-else");
    assert_eq!(v.verify(&hs(None, &c), NOW), Err(AuthError::WrongIssuer));
}

#[test]
fn missing_claims_and_bad_subject() {
    let v = verifier(&hs_config());
    for claim in ["exp", "iss", "aud", "sub"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        assert_eq!(
            v.verify(&hs(None, &c), NOW),
            Err(AuthError::MissingClaim(claim))
        );
    }
    let mut c = claims();
    c["sub"] = json!("alice bob");
    assert_eq!(v.verify(&hs(None, &c), NOW), Err(AuthError::BadSubject));
}

#[test]
fn expiry_and_not_before_at_exact_boundaries() {
    let cfg = AuthConfig {
        leeway_ms: 30_000,
        ..hs_config()
    };
    let v = verifier(&cfg);
    let mut c = claims();
    c["exp"] = json!(NOW / 1000);
    c["nbf"] = json!(NOW / 1000 - 60);
    let t = hs(None, &c);
    assert!(v.verify(&t, NOW + 29_999).is_ok());
    assert_eq!(v.verify(&t, NOW + 30_000), Err(AuthError::Expired));
    assert!(v.verify(&t, NOW - 60_000 - 30_000).is_ok());
    assert_eq!(
        v.verify(&t, NOW - 60_000 - 30_001),
        Err(AuthError::NotYetValid)
    );
    // No leeway.
    let v = verifier(&AuthConfig {
        leeway_ms: 0,
        ..cfg
    });
    assert!(v.verify(&t, NOW - 1).is_ok());
    assert_eq!(v.verify(&t, NOW), Err(AuthError::Expired));
    assert_eq!(v.verify(&t, NOW - 60_001), Err(AuthError::NotYetValid));
}

#[test]
fn only_the_injected_clock_counts() {
    // Expired long ago by the system clock, valid at the injected time: no clock is read.
    let v = verifier(&hs_config());
    let mut c = claims();
    c["exp"] = json!(1_000_000_100);
    c["nbf"] = json!(1_000_000_000);
    assert!(v.verify(&hs(None, &c), 1_000_000_050_000).is_ok());
    // Valid by the system clock, expired at the injected time.
    let mut c = claims();
    c["exp"] = json!(4_000_000_000_i64);
    assert_eq!(
        v.verify(&hs(None, &c), 4_000_000_030_000),
        Err(AuthError::Expired)
    );
}

#[test]
fn minted_tokens_verify_with_configured_kid() {
    let cfg = AuthConfig {
        hs256_kid: Some("dev-1".into()),
        ..hs_config()
    };
    let minter = TokenMinter::from_config(&cfg, Some(SECRET)).unwrap();
    let v = verifier(&cfg);
    let alice = crate::chat::ids::UserId::parse("alice").unwrap();
    let t = minter.mint(&alice, 60_000, NOW + 999).unwrap();
    let header = jsonwebtoken::decode_header(&t).unwrap();
    assert_eq!(header.kid.as_deref(), Some("dev-1"));
    assert_eq!(header.alg, Algorithm::HS256);
    let verified = v.verify(&t, NOW).unwrap();
    assert_eq!(verified.user, alice);
    assert_eq!(verified.expires_at_ms, NOW + 60_000);
    assert_eq!(verified.issued_at_ms, Some(NOW));
    assert_eq!(v.verify(&t, NOW + 90_000), Err(AuthError::Expired));
    // A verifier with another kid configured refuses it.
    let other = verifier(&AuthConfig {
        hs256_kid: Some("dev-2".into()),
        ..hs_config()
    });
    assert_eq!(other.verify(&t, NOW), Err(AuthError::UnknownKey));
    // And one with another audience.
    let other = verifier(&AuthConfig {
        audience: "elsewhere".into(),
        ..cfg
    });
    assert_eq!(other.verify(&t, NOW), Err(AuthError::WrongAudience));
}

#[test]
fn minting_refuses_bad_lifetimes_and_configs() {
    let minter = TokenMinter::from_config(&hs_config(), Some(SECRET)).unwrap();
    let alice = crate::chat::ids::UserId::parse("alice").unwrap();
    assert_eq!(minter.mint(&alice, 0, NOW), Err(MintError::BadLifetime));
    assert_eq!(minter.mint(&alice, -5, NOW), Err(MintError::BadLifetime));
    assert_eq!(
        minter.mint(&alice, i64::MAX, NOW),
        Err(MintError::BadLifetime)
    );
    let ed = ed25519();
    let mut cfg = all_config(&ed);
    cfg.algorithms.retain(|a| *a != JwtAlgorithm::Hs256);
    cfg.hs256_kid = None;
    assert!(matches!(
        TokenMinter::from_config(&cfg, Some(SECRET)),
        Err(AuthSetupError::MintingNeedsHs256)
    ));
    assert!(matches!(
        TokenMinter::new(b"short", "iss", "aud", None),
        Err(AuthSetupError::WeakSecret { len: 5, .. })
    ));
}

#[test]
fn setup_errors_are_reported() {
    let ed = ed25519();
    assert!(matches!(
        TokenVerifier::from_config(&hs_config(), None),
        Err(AuthSetupError::MissingHs256Secret)
    ));
    assert!(matches!(
        TokenVerifier::from_config(&hs_config(), Some(b"too short")),
        Err(AuthSetupError::WeakSecret { len: 9, min: 32 })
    ));
    let cfg = AuthConfig {
        hs256_secret_file: Some("/nonexistent/secret".into()),
        ..hs_config()
    };
    assert!(matches!(
        TokenVerifier::from_config(&cfg, Some(SECRET)),
        Err(AuthSetupError::Read { .. })
    ));
    // An RSA key configured as EdDSA, garbage PEM, a private key where a public one belongs.
    for (kid_alg, pem) in [
        (JwtAlgorithm::EdDsa, RSA_PUBLIC.to_owned()),
        (JwtAlgorithm::Rs256, ed.public_pem.clone()),
        (
            JwtAlgorithm::Rs256,
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into(),
        ),
        (JwtAlgorithm::Rs256, RSA_PRIVATE.to_owned()),
        (JwtAlgorithm::EdDsa, ed.private_pem.clone()),
    ] {
        let cfg = AuthConfig {
            algorithms: vec![JwtAlgorithm::Hs256, kid_alg],
            keys: vec![PublicKeyConfig {
                kid: "k".into(),
                alg: kid_alg,
                pem: Some(pem),
                pem_file: None,
            }],
            ..hs_config()
        };
        let Err(err) = TokenVerifier::from_config(&cfg, Some(SECRET)) else {
            panic!(
                "{kid_alg} key accepted: {}",
                cfg.keys[0].pem.as_deref().unwrap_or_default()
            );
        };
        assert!(
            matches!(err, AuthSetupError::BadKey { .. }),
            "{kid_alg}: {err}"
        );
    }
    // Inconsistent configuration surfaces as a config error.
    let cfg = AuthConfig {
        algorithms: vec![],
        ..hs_config()
    };
    assert!(matches!(
        TokenVerifier::from_config(&cfg, Some(SECRET)),
        Err(AuthSetupError::Config(_))
    ));
}

#[test]
fn pem_files_load_and_secret_file_overrides_dev_secret() {
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("rsa.pem");
    std::fs::write(&pem_path, RSA_PUBLIC).unwrap();
    let secret_path = dir.path().join("secret");
    let file_secret = b"a secret from a file, 32+ bytes long";
    std::fs::write(&secret_path, file_secret).unwrap();
    let cfg = AuthConfig {
        algorithms: vec![JwtAlgorithm::Hs256, JwtAlgorithm::Rs256],
        hs256_secret_file: Some(secret_path),
        keys: vec![PublicKeyConfig {
            kid: "rsa".into(),
            alg: JwtAlgorithm::Rs256,
            pem: None,
            pem_file: Some(pem_path),
        }],
        ..hs_config()
    };
    let v = verifier(&cfg);
    assert!(
        v.verify(
            &sign(Algorithm::RS256, Some("rsa"), &rsa_key(), &claims()),
            NOW
        )
        .is_ok()
    );
    assert_eq!(
        v.verify(&hs(None, &claims()), NOW),
        Err(AuthError::BadSignature)
    );
    let t = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(file_secret),
        &claims(),
    );
    assert!(v.verify(&t, NOW).is_ok());
    assert_eq!(
        v.key_ids(),
        vec![
            (String::new(), JwtAlgorithm::Hs256),
            ("rsa".into(), JwtAlgorithm::Rs256)
        ]
    );
}

#[test]
fn debug_output_holds_no_secret() {
    let v = verifier(&hs_config());
    let m = TokenMinter::from_config(&hs_config(), Some(SECRET)).unwrap();
    let text = format!("{v:?} {m:?}");
    assert!(!text.contains("0123456789abcdef"), "{text}");
    let bytes: Vec<String> = SECRET.iter().map(u8::to_string).collect();
    assert!(!text.contains(&bytes.join(", ")), "{text}");
}

/// docs/protocol.md R-4.2.7: the secret file's bytes are the secret, a trailing newline
/// included; nothing is decoded or trimmed.
#[test]
fn the_hs256_secret_file_is_its_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    let mut with_newline = SECRET.to_vec();
    with_newline.push(b'\n');
    std::fs::write(&path, &with_newline).unwrap();
    let cfg = AuthConfig {
        hs256_secret_file: Some(path),
        ..hs_config()
    };
    assert_eq!(
        hs256_secret(&cfg, None).unwrap(),
        Some(with_newline.clone())
    );
    let v = TokenVerifier::from_config(&cfg, None).unwrap();
    let signed = |secret: &[u8]| {
        sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(secret),
            &claims(),
        )
    };
    assert!(v.verify(&signed(&with_newline), NOW).is_ok());
    assert!(v.verify(&signed(SECRET), NOW).is_err());
}
