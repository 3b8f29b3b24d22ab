//! `identity_cost CHECK N`: runs one identity or room-token check N times, for
//! `perf/identity-cost.sh`, which runs it under callgrind with N = 0 and N = 10,000 and
//! divides the difference: instructions per check, without the set-up (keys, signing).
//!
//! CHECK: `room` (the HMAC room token, `edge::token::Keys::verify`, the yardstick),
//! `hs256`, `es256`, `rs256` (`edge::identity::jwt::verify` with a realistic token).

use std::hint::black_box;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use edge::{
    identity::{
        jwt::{self, Rules},
        keys::{Key, KeySet},
    },
    token::{Keys, RoomToken, SCRATCH_BYTES},
};
use hmac::{Hmac, Mac};
use ring::{
    rand::SystemRandom,
    rsa::PublicKeyComponents,
    signature::{
        EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
    },
};
use sha2::Sha256;

const NOW_MS: u64 = 1_800_000_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(check), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: identity_cost room|hs256|es256|rs256 N [RSA_PKCS1_DER_FILE]");
        std::process::exit(64);
    };
    let header_claims = |alg: &str| {
        format!(
            "{}.{}",
            B64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#)),
            B64.encode(format!(
                r#"{{"sub":"u-000123","exp":{},"iat":{},"iss":"https://login.example","aud":"tickets","email":"buyer@example.com"}}"#,
                NOW_MS / 1000 + 600,
                NOW_MS / 1000
            ))
        )
    };
    let rules = Rules {
        issuer: Some("https://login.example"),
        audience: Some("tickets"),
        leeway_ms: 30_000,
        ..Rules::default()
    };
    let rng = SystemRandom::new();
    let mut keys = KeySet::with_secret(b"a-jwt-secret-of-at-least-32-bytes!!");
    let token = match check.as_str() {
        "room" => {
            let keys = Keys::new(b"room-token-secret", None);
            let token = keys.sign(&RoomToken {
                event: "demo",
                user: "u-000123",
                position: 1842,
                issued_ms: NOW_MS,
                expires_ms: NOW_MS + 7_200_000,
            });
            let mut ok = 0u64;
            for _ in 0..n {
                let mut scratch = [0u8; SCRATCH_BYTES];
                ok += u64::from(
                    keys.verify(black_box(token.as_bytes()), NOW_MS, &mut scratch)
                        .is_ok(),
                );
            }
            assert_eq!(ok, n);
            return;
        }
        "hs256" => {
            let signing = header_claims("HS256");
            let mut mac = Hmac::<Sha256>::new_from_slice(b"a-jwt-secret-of-at-least-32-bytes!!")
                .expect("key");
            mac.update(signing.as_bytes());
            format!("{signing}.{}", B64.encode(mac.finalize().into_bytes()))
        }
        "es256" => {
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("pair");
            let mut point = [0u8; 65];
            point.copy_from_slice(pair.public_key().as_ref());
            keys.insert("k1".into(), Key::Es256(point));
            let signing = header_claims("ES256");
            let sig = pair.sign(&rng, signing.as_bytes()).expect("sign");
            format!("{signing}.{}", B64.encode(sig.as_ref()))
        }
        "rs256" => {
            let der =
                std::fs::read(args.get(3).expect("rs256 needs an RSA key file")).expect("read key");
            let pair = RsaKeyPair::from_der(&der).expect("RSA key");
            let public = PublicKeyComponents::<Vec<u8>>::from(pair.public());
            keys.insert(
                "k1".into(),
                Key::Rs256 {
                    n: public.n,
                    e: public.e,
                },
            );
            let signing = header_claims("RS256");
            let mut sig = vec![0u8; pair.public().modulus_len()];
            pair.sign(&RSA_PKCS1_SHA256, &rng, signing.as_bytes(), &mut sig)
                .expect("sign");
            format!("{signing}.{}", B64.encode(sig))
        }
        other => {
            eprintln!("unknown check {other}");
            std::process::exit(64);
        }
    };
    let mut ok = 0u64;
    for _ in 0..n {
        ok += u64::from(jwt::verify(black_box(token.as_bytes()), &keys, &rules, NOW_MS).is_ok());
    }
    assert_eq!(ok, n);
}
