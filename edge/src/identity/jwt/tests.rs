use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use serde_json::{json, Value};
use sha2::Sha256;

use super::*;
use crate::identity::keys::{Key, KeySet};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW_MS: u64 = 1_800_000_000_000;

fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(signing.as_bytes());
    format!("{signing}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": NOW_MS / 1000 + 60, "iss": "site", "aud": ["x", "tickets"]})
}

fn check(token: &str, keys: &KeySet, rules: &Rules<'_>) -> Result<String, Refusal> {
    verify(token.as_bytes(), keys, rules, NOW_MS)
}

#[test]
fn an_hs256_token_gives_its_subject() {
    let keys = KeySet::with_secret(SECRET);
    let token = hs256(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims("u-1"),
        SECRET,
    );
    let rules = Rules {
        issuer: Some("site"),
        audience: Some("tickets"),
        ..Rules::default()
    };
    assert_eq!(check(&token, &keys, &rules), Ok("u-1".into()));
}

#[test]
fn the_algorithm_is_the_keys_never_the_tokens() {
    let keys = KeySet::with_secret(SECRET);
    let rules = Rules::default();
    // alg none, with and without a signature.
    let body = format!(
        "{}.{}",
        B64.encode(r#"{"alg":"none"}"#),
        B64.encode(claims("u").to_string())
    );
    for token in [format!("{body}."), format!("{body}.AAAA")] {
        assert!(matches!(
            check(&token, &keys, &rules),
            Err(Refusal::Invalid(_))
        ));
    }
    // Right MAC, wrong name for it.
    for alg in ["HS512", "hs256", "RS256", "ES256"] {
        let token = hs256(&json!({"alg": alg}), &claims("u"), SECRET);
        assert_eq!(
            check(&token, &keys, &rules),
            Err(Refusal::Invalid("algorithm does not match the key"))
        );
    }
}

#[test]
fn expiry_and_not_before_allow_the_leeway_only() {
    let keys = KeySet::with_secret(SECRET);
    let now_s = NOW_MS / 1000;
    let token = |c: Value| hs256(&json!({"alg": "HS256"}), &c, SECRET);
    let strict = Rules::default();
    let lenient = Rules {
        leeway_ms: 30_000,
        ..Rules::default()
    };
    let expired = token(json!({"sub": "u", "exp": now_s - 10}));
    assert_eq!(check(&expired, &keys, &strict), Err(Refusal::Expired));
    assert_eq!(check(&expired, &keys, &lenient), Ok("u".into()));
    let long_expired = token(json!({"sub": "u", "exp": now_s - 31}));
    assert_eq!(check(&long_expired, &keys, &lenient), Err(Refusal::Expired));
    let early = token(json!({"sub": "u", "exp": now_s + 60, "nbf": now_s + 10}));
    assert!(matches!(
        check(&early, &keys, &strict),
        Err(Refusal::Invalid(_))
    ));
    assert_eq!(check(&early, &keys, &lenient), Ok("u".into()));
    let no_exp = token(json!({"sub": "u"}));
    assert_eq!(
        check(&no_exp, &keys, &lenient),
        Err(Refusal::Invalid("no exp"))
    );
}

#[test]
fn issuer_audience_and_subject_are_required_when_configured() {
    let keys = KeySet::with_secret(SECRET);
    let rules = Rules {
        issuer: Some("site"),
        audience: Some("tickets"),
        ..Rules::default()
    };
    let exp = NOW_MS / 1000 + 60;
    for (c, why) in [
        (
            json!({"sub": "u", "exp": exp, "iss": "other", "aud": "tickets"}),
            "wrong issuer",
        ),
        (
            json!({"sub": "u", "exp": exp, "aud": "tickets"}),
            "wrong issuer",
        ),
        (
            json!({"sub": "u", "exp": exp, "iss": "site", "aud": "other"}),
            "wrong audience",
        ),
        (
            json!({"sub": "u", "exp": exp, "iss": "site", "aud": ["a", "b"]}),
            "wrong audience",
        ),
        (
            json!({"exp": exp, "iss": "site", "aud": "tickets"}),
            "no sub",
        ),
    ] {
        let token = hs256(&json!({"alg": "HS256"}), &c, SECRET);
        assert_eq!(
            check(&token, &keys, &rules),
            Err(Refusal::Invalid(why)),
            "{c}"
        );
    }
}

#[test]
fn tampering_padding_and_garbage_are_refused() {
    let keys = KeySet::with_secret(SECRET);
    let rules = Rules::default();
    let token = hs256(&json!({"alg": "HS256"}), &claims("u"), SECRET);
    let other = hs256(
        &json!({"alg": "HS256"}),
        &claims("u"),
        b"another secret of 32 bytes......",
    );
    assert!(check(&other, &keys, &rules).is_err());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims("admin").to_string()),
        parts[2]
    );
    assert_eq!(
        check(&forged, &keys, &rules),
        Err(Refusal::Invalid("bad signature"))
    );
    let padded = format!("{token}=");
    assert!(check(&padded, &keys, &rules).is_err());
    for garbage in ["", ".", "..", "a.b", "a.b.c.d", "e30.e30.", "!!!.e30.AA"] {
        assert!(check(garbage, &keys, &rules).is_err(), "{garbage}");
    }
    let huge = format!("{}.{}.{}", "A".repeat(3000), "A".repeat(3000), "A");
    assert_eq!(
        check(&huge, &keys, &rules),
        Err(Refusal::Invalid("token too long"))
    );
    let crit = hs256(
        &json!({"alg": "HS256", "crit": ["x"], "x": 1}),
        &claims("u"),
        SECRET,
    );
    assert!(check(&crit, &keys, &rules).is_err());
    let twice = hs256(&json!({"alg": "HS256"}), &json!({}), SECRET);
    let dup = format!(
        "{}.{}.{}",
        B64.encode(r#"{"alg":"HS256","alg":"none"}"#),
        twice.split('.').nth(1).expect("claims"),
        "AA"
    );
    assert!(check(&dup, &keys, &rules).is_err());
}

/// An ES256 token as ALB makes it: `signer`, `kid`, padded base64url.
fn alb_token(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    let pad = |s: String| {
        let n = (4 - s.len() % 4) % 4;
        s + &"=".repeat(n)
    };
    let signing = format!(
        "{}.{}",
        pad(B64.encode(header.to_string())),
        pad(B64.encode(claims.to_string()))
    );
    let sig = pair
        .sign(&SystemRandom::new(), signing.as_bytes())
        .expect("sign");
    format!("{signing}.{}", pad(B64.encode(sig.as_ref())))
}

#[test]
fn an_alb_header_is_checked_with_the_key_of_its_kid_and_its_signer() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("pair");
    let mut point = [0u8; 65];
    point.copy_from_slice(pair.public_key().as_ref());
    let mut keys = KeySet::default();
    keys.insert("kid-1".into(), Key::Es256(point));
    let arn = "arn:aws:elasticloadbalancing:ap-northeast-2:123:loadbalancer/app/x/1";
    let rules = Rules {
        signer: Some(arn),
        padded: true,
        ..Rules::default()
    };
    let exp = NOW_MS / 1000 + 60;
    let header = json!({"alg": "ES256", "kid": "kid-1", "signer": arn, "exp": exp, "typ": "JWT"});
    // A sub of 31 bytes: its claims' base64 needs padding.
    let token = alb_token(
        &pair,
        &header,
        &json!({"sub": "s", "exp": exp, "email": "a@b.c"}),
    );
    assert!(token.contains('='), "{token}");
    assert_eq!(check(&token, &keys, &rules), Ok("s".into()));
    let strict = Rules {
        padded: false,
        ..rules
    };
    assert!(check(&token, &keys, &strict).is_err());
    let other_signer =
        json!({"alg": "ES256", "kid": "kid-1", "signer": "arn:aws:other", "exp": exp});
    let token = alb_token(&pair, &other_signer, &json!({"sub": "s", "exp": exp}));
    assert_eq!(
        check(&token, &keys, &rules),
        Err(Refusal::Invalid(
            "not signed by the configured load balancer"
        ))
    );
    let unknown = json!({"alg": "ES256", "kid": "kid-2", "signer": arn, "exp": exp});
    let token = alb_token(&pair, &unknown, &json!({"sub": "s", "exp": exp}));
    assert_eq!(
        check(&token, &keys, &rules),
        Err(Refusal::Invalid("unknown key"))
    );
    let header_expired = json!({"alg": "ES256", "kid": "kid-1", "signer": arn, "exp": exp - 120});
    let token = alb_token(&pair, &header_expired, &json!({"sub": "s", "exp": exp}));
    assert_eq!(check(&token, &keys, &rules), Err(Refusal::Expired));
}

/// The fuzz target's seeds (`edge/fuzz/seeds/identity`, first byte the mode) run as the
/// target runs them: tokens refused, key files parsed or refused without a panic.
#[test]
fn the_fuzz_seeds_are_refused_as_the_fuzz_target_expects() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/identity");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("seeds") {
        let data = std::fs::read(entry.expect("entry").path()).expect("seed");
        let (&mode, rest) = data.split_first().expect("mode byte");
        let mut keys = KeySet::with_secret(b"fuzz-secret-of-at-least-32-bytes!");
        keys.insert("k1".into(), Key::Es256([4; 65]));
        let rules = Rules {
            issuer: Some("https://login.example"),
            audience: Some("tickets"),
            signer: (mode % 4 == 1).then_some("arn:aws:elasticloadbalancing:x"),
            leeway_ms: 30_000,
            padded: mode % 4 == 1,
        };
        match mode % 4 {
            0 => assert_eq!(
                verify(rest, &keys, &rules, NOW_MS),
                Err(Refusal::Invalid("bad signature"))
            ),
            1 => assert_eq!(
                verify(rest, &keys, &rules, NOW_MS),
                Err(Refusal::Invalid("bad signature"))
            ),
            2 => assert_eq!(
                crate::identity::keys::parse_jwks(rest)
                    .map(|k| k.len())
                    .ok(),
                Some(2)
            ),
            _ => assert!(crate::identity::keys::parse_p256_pem(rest).is_ok()),
        }
        seen += 1;
    }
    assert_eq!(seen, 4);
}
