//! Identity credentials (`edge::identity::jwt::verify`: the bearer JWT of `IDENTITY=jwt`
//! and ALB's `x-amzn-oidc-data`), plus the key-file parsers (`parse_jwks`,
//! `parse_p256_pem`): any bytes, never a panic, and no token is ever accepted (the
//! fuzzer cannot forge HMAC-SHA256 or ECDSA).
#![no_main]

use edge::identity::{
    jwt::{verify, Rules},
    keys::{parse_jwks, parse_p256_pem, Key, KeySet},
};
use libfuzzer_sys::fuzz_target;

/// A valid P-256 point (the generator), so ES256 verification runs to the end.
const POINT: [u8; 65] = [
    0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40,
    0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2,
    0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e,
    0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51,
    0xf5,
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 | 1 => {
            let mut keys = KeySet::with_secret(b"fuzz-secret-of-at-least-32-bytes!");
            keys.insert("k1".into(), Key::Es256(POINT));
            let rules = Rules {
                issuer: Some("https://login.example"),
                audience: Some("tickets"),
                signer: (mode % 4 == 1).then_some("arn:aws:elasticloadbalancing:x"),
                leeway_ms: 30_000,
                padded: mode % 4 == 1,
            };
            assert!(verify(rest, &keys, &rules, 1_800_000_000_000).is_err());
        }
        2 => {
            let _ = parse_jwks(rest);
        }
        _ => {
            let _ = parse_p256_pem(rest);
        }
    }
});
