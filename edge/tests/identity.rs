//! `IDENTITY=jwt` and `alb-oidc` at `POST /public/enter`, through HTTP against the real
//! edge and Redis: who gets in, with which code each refusal comes, key rotation by
//! `kid` while the edge runs. Keys are made here (ring; RSA with the `openssl` CLI).

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64},
    Engine,
};
use edge::token::{Keys, SCRATCH_BYTES};
use hmac::{Hmac, Mac};
use ring::{
    rand::SystemRandom,
    rsa::PublicKeyComponents,
    signature::{
        EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
    },
};
use serde_json::{json, Value};
use sha2::Sha256;
use support::{now_ms, seed_event, unique_event, Client, Edge, Response};

const ROOM_SECRET: &str = "identity-test-room-secret";
const JWT_SECRET: &str = "identity-test-jwt-secret-of-32-bytes!";
const ARN: &str = "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:loadbalancer/app/t/1";

fn edge(extra: &[(&str, &str)]) -> Edge {
    let mut env = vec![("ROOM_TOKEN_SECRET", ROOM_SECRET)];
    env.extend_from_slice(extra);
    Edge::start(&env)
}

fn event() -> String {
    let event = unique_event("ident");
    seed_event(&event, &[("A", 10, 1_000)], 0, 1_000_000);
    event
}

/// A scratch directory of this test's own, removed when dropped (a failing test too).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("edge-identity-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces `path` in one step (write aside, rename), as a key sync job should.
fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn b64(v: &Value) -> String {
    B64.encode(v.to_string())
}

fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing = format!("{}.{}", b64(header), b64(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(signing.as_bytes());
    format!("{signing}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now_ms() / 1000 + 300, "iss": "https://login.example", "aud": "tickets"})
}

fn enter(c: &mut Client, headers: &str, body: &Value) -> Response {
    let body = body.to_string();
    c.request(
        format!(
            "POST /public/enter HTTP/1.1\r\nHost: t\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn bearer(token: &str) -> String {
    format!("authorization: Bearer {token}\r\n")
}

/// The user the room token of a 200 names.
fn room_user(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let token = r.json()["roomToken"]
        .as_str()
        .expect("roomToken")
        .to_owned();
    let mut scratch = [0u8; SCRATCH_BYTES];
    let keys = Keys::new(ROOM_SECRET.as_bytes(), None);
    let verified = keys
        .verify(token.as_bytes(), now_ms(), &mut scratch)
        .expect("room token verifies");
    verified.user.to_owned()
}

fn refused(r: &Response, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[test]
fn an_hs256_bearer_token_is_the_buyer_and_the_room_token_carries_it() {
    let edge = edge(&[
        ("IDENTITY", "jwt"),
        ("IDENTITY_JWT_SECRET", JWT_SECRET),
        ("IDENTITY_ISSUER", "https://login.example"),
        ("IDENTITY_AUDIENCE", "tickets"),
    ]);
    let event = event();
    let mut c = edge.connect();
    let token = hs256(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims("alice"),
        JWT_SECRET.as_bytes(),
    );
    let auth = bearer(&token);
    // No userId in the body: the token's subject.
    let r = enter(&mut c, &auth, &json!({"eventId": event}));
    assert_eq!(room_user(&r), "alice");
    let position = r.json()["position"].as_u64().expect("position");
    // The same userId is fine and the same place; another one is refused.
    let again = enter(&mut c, &auth, &json!({"eventId": event, "userId": "alice"}));
    assert_eq!(room_user(&again), "alice");
    assert_eq!(again.json()["position"].as_u64(), Some(position));
    let other = enter(&mut c, &auth, &json!({"eventId": event, "userId": "bob"}));
    refused(&other, 403, "USER_MISMATCH");
    // A userId of the wrong type is not an absent one.
    for wrong in [json!(null), json!(7)] {
        let r = enter(&mut c, &auth, &json!({"eventId": event, "userId": wrong}));
        refused(&r, 400, "INVALID_FIELD");
    }
    // The scheme is case-insensitive.
    let lower = enter(
        &mut c,
        &format!("authorization: bearer {token}\r\n"),
        &json!({"eventId": event}),
    );
    assert_eq!(room_user(&lower), "alice");
}

#[test]
fn missing_none_expired_and_wrong_audience_or_issuer_get_their_codes() {
    let edge = edge(&[
        ("IDENTITY", "jwt"),
        ("IDENTITY_JWT_SECRET", JWT_SECRET),
        ("IDENTITY_ISSUER", "https://login.example"),
        ("IDENTITY_AUDIENCE", "tickets"),
        ("IDENTITY_LEEWAY_MS", "5000"),
    ]);
    let event = event();
    let mut c = edge.connect();
    let body = json!({"eventId": event, "userId": "alice"});
    let secret = JWT_SECRET.as_bytes();
    let hs = json!({"alg": "HS256"});

    refused(&enter(&mut c, "", &body), 401, "IDENTITY_MISSING");
    refused(
        &enter(&mut c, "authorization: Basic YTpi\r\n", &body),
        401,
        "IDENTITY_INVALID",
    );
    refused(
        &enter(&mut c, &bearer("not.a.jwt"), &body),
        401,
        "IDENTITY_INVALID",
    );

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none"})),
        b64(&claims("alice"))
    );
    refused(
        &enter(&mut c, &bearer(&none), &body),
        401,
        "IDENTITY_INVALID",
    );

    let now_s = now_ms() / 1000;
    let mut expired = claims("alice");
    expired["exp"] = json!(now_s - 60);
    refused(
        &enter(&mut c, &bearer(&hs256(&hs, &expired, secret)), &body),
        401,
        "IDENTITY_EXPIRED",
    );
    // Within the leeway it still counts.
    let mut just = claims("alice");
    just["exp"] = json!(now_s - 1);
    assert_eq!(
        room_user(&enter(&mut c, &bearer(&hs256(&hs, &just, secret)), &body)),
        "alice"
    );

    for (field, value) in [
        ("aud", json!("other")),
        ("aud", json!(["x", "y"])),
        ("iss", json!("https://evil.example")),
    ] {
        let mut bad = claims("alice");
        bad[field] = value;
        let r = enter(&mut c, &bearer(&hs256(&hs, &bad, secret)), &body);
        refused(&r, 401, "IDENTITY_INVALID");
    }
    let mut listed = claims("alice");
    listed["aud"] = json!(["x", "tickets"]);
    assert_eq!(
        room_user(&enter(&mut c, &bearer(&hs256(&hs, &listed, secret)), &body)),
        "alice"
    );

    // Signed with another secret; a subject that is no user id.
    let forged = hs256(
        &hs,
        &claims("alice"),
        b"some-other-secret-also-32-bytes-long",
    );
    refused(
        &enter(&mut c, &bearer(&forged), &body),
        401,
        "IDENTITY_INVALID",
    );
    let spaced = hs256(&hs, &claims("has space"), secret);
    refused(
        &enter(&mut c, &bearer(&spaced), &body),
        401,
        "IDENTITY_INVALID",
    );
    // Longer than the cap: refused before any decoding.
    let long = format!("{}.{}.AA", "A".repeat(3000), "A".repeat(3000));
    refused(
        &enter(&mut c, &bearer(&long), &body),
        401,
        "IDENTITY_INVALID",
    );
}

/// A 2048-bit RSA key from the `openssl` CLI (ring cannot generate RSA keys), and
/// its public key as PEM.
fn rsa_key(dir: &Path) -> (RsaKeyPair, Vec<u8>) {
    let pem = dir.join("rsa.pem");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}");
        out.stdout
    };
    let pem = pem.to_str().expect("path");
    openssl(&["genrsa", "-out", pem, "2048"]);
    // PKCS#1 RSAPrivateKey DER, what ring's `from_der` reads.
    let der = openssl(&["rsa", "-in", pem, "-traditional", "-outform", "DER"]);
    let public_pem = openssl(&["rsa", "-in", pem, "-pubout"]);
    let pair = RsaKeyPair::from_der(&der).expect("RSA key");
    (pair, public_pem)
}

fn rs256(pair: &RsaKeyPair, header: &Value, claims: &Value) -> String {
    let signing = format!("{}.{}", b64(header), b64(claims));
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    format!("{signing}.{}", B64.encode(sig))
}

fn rsa_jwk(pair: &RsaKeyPair, kid: &str) -> Value {
    let public = PublicKeyComponents::<Vec<u8>>::from(pair.public());
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": B64.encode(&public.n), "e": B64.encode(&public.e)})
}

#[test]
fn rs256_from_jwks_works_and_hs256_signed_with_the_rsa_public_key_does_not() {
    let dir = Scratch::new("rsa");
    let (pair, public_pem) = rsa_key(&dir);
    let jwks = dir.join("jwks.json");
    write_atomic(
        &jwks,
        json!({"keys": [rsa_jwk(&pair, "rsa-1")]})
            .to_string()
            .as_bytes(),
    );
    let edge = edge(&[
        ("IDENTITY", "jwt"),
        ("IDENTITY_JWKS_FILE", jwks.to_str().expect("path")),
        ("IDENTITY_JWT_SECRET", JWT_SECRET),
    ]);
    let event = event();
    let mut c = edge.connect();
    let body = json!({"eventId": event});
    let good = rs256(
        &pair,
        &json!({"alg": "RS256", "kid": "rsa-1"}),
        &claims("carol"),
    );
    assert_eq!(room_user(&enter(&mut c, &bearer(&good), &body)), "carol");

    // The classic confusion: HS256 "signed" with the RSA public key as the secret,
    // naming the RSA key, or naming no key (then the HS secret is used, not the PEM).
    let der = pair.public().as_ref().to_vec();
    for secret in [public_pem.as_slice(), der.as_slice()] {
        for header in [
            json!({"alg": "HS256", "kid": "rsa-1"}),
            json!({"alg": "HS256"}),
        ] {
            let forged = hs256(&header, &claims("mallory"), secret);
            refused(
                &enter(&mut c, &bearer(&forged), &body),
                401,
                "IDENTITY_INVALID",
            );
        }
    }
    // RS256 claimed, but the kid names no key: the HS secret's algorithm decides.
    let unknown = rs256(
        &pair,
        &json!({"alg": "RS256", "kid": "rsa-9"}),
        &claims("carol"),
    );
    refused(
        &enter(&mut c, &bearer(&unknown), &body),
        401,
        "IDENTITY_INVALID",
    );
}

fn ec_pair() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("pair")
}

fn ec_jwk(pair: &EcdsaKeyPair, kid: &str) -> Value {
    let point = pair.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])})
}

/// Signs as a JWS (`pad`: with ALB's `=` padding on every part).
fn es256(pair: &EcdsaKeyPair, header: &Value, claims: &Value, pad: bool) -> String {
    let enc = |bytes: &[u8]| {
        let s = B64.encode(bytes);
        if pad {
            let n = (4 - s.len() % 4) % 4;
            s + &"=".repeat(n)
        } else {
            s
        }
    };
    let signing = format!(
        "{}.{}",
        enc(header.to_string().as_bytes()),
        enc(claims.to_string().as_bytes())
    );
    let sig = pair
        .sign(&SystemRandom::new(), signing.as_bytes())
        .expect("sign");
    format!("{signing}.{}", enc(sig.as_ref()))
}

/// Enters with `token`.
fn with_token(c: &mut Client, event: &str, token: &str) -> Response {
    enter(c, &bearer(token), &json!({"eventId": event}))
}

/// Replaces the key file and waits for the key thread to publish what it holds.
fn rotate(edge: &Edge, path: &Path, jwks: &Value) {
    write_atomic(path, jwks.to_string().as_bytes());
    support::wait_for_line(&edge.log, "identity keys reloaded");
}

#[test]
fn keys_rotate_by_kid_when_the_jwks_file_is_rewritten() {
    let dir = Scratch::new("rotate");
    let (old, new) = (ec_pair(), ec_pair());
    let jwks = dir.join("jwks.json");
    write_atomic(
        &jwks,
        json!({"keys": [ec_jwk(&old, "k1")]}).to_string().as_bytes(),
    );
    let edge = edge(&[
        ("IDENTITY", "jwt"),
        ("IDENTITY_JWKS_FILE", jwks.to_str().expect("path")),
        ("IDENTITY_KEYS_REFRESH_MS", "50"),
    ]);
    let event = event();
    let mut c = edge.connect();
    let by_old = es256(
        &old,
        &json!({"alg": "ES256", "kid": "k1"}),
        &claims("dave"),
        false,
    );
    let by_new = es256(
        &new,
        &json!({"alg": "ES256", "kid": "k2"}),
        &claims("erin"),
        false,
    );
    // A new key signing under the old key's kid is no good either.
    let new_as_old = es256(
        &new,
        &json!({"alg": "ES256", "kid": "k1"}),
        &claims("erin"),
        false,
    );
    assert_eq!(room_user(&with_token(&mut c, &event, &by_old)), "dave");
    refused(
        &with_token(&mut c, &event, &by_new),
        401,
        "IDENTITY_INVALID",
    );
    refused(
        &with_token(&mut c, &event, &new_as_old),
        401,
        "IDENTITY_INVALID",
    );

    // Both keys during the rotation.
    rotate(
        &edge,
        &jwks,
        &json!({"keys": [ec_jwk(&old, "k1"), ec_jwk(&new, "k2")]}),
    );
    assert_eq!(room_user(&with_token(&mut c, &event, &by_new)), "erin");
    assert_eq!(room_user(&with_token(&mut c, &event, &by_old)), "dave");

    // A broken file keeps the keys there are.
    write_atomic(&jwks, b"{not json");
    support::wait_for_line(&edge.log, "do not parse");
    assert_eq!(room_user(&with_token(&mut c, &event, &by_new)), "erin");

    // The old key retired.
    rotate(&edge, &jwks, &json!({"keys": [ec_jwk(&new, "k2")]}));
    refused(
        &with_token(&mut c, &event, &by_old),
        401,
        "IDENTITY_INVALID",
    );
    assert_eq!(room_user(&with_token(&mut c, &event, &by_new)), "erin");
}

/// ALB's key endpoint serves PEM `SubjectPublicKeyInfo`.
fn p256_pem(pair: &EcdsaKeyPair) -> String {
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(pair.public_key().as_ref());
    let b64 = STANDARD.encode(der);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
        &b64[..64],
        &b64[64..]
    )
}

#[test]
fn the_alb_oidc_header_is_checked_against_the_signer_and_the_key_directory() {
    let dir = Scratch::new("alb");
    let pair = ec_pair();
    let kid = "5fa7b0e4-1b2c-4d5e-8f90-a1b2c3d4e5f6";
    std::fs::write(dir.join(format!("{kid}.pem")), p256_pem(&pair)).expect("pem");
    let edge = edge(&[
        ("IDENTITY", "alb-oidc"),
        ("IDENTITY_ALB_ARN", ARN),
        ("IDENTITY_ALB_KEY_DIR", dir.to_str().expect("path")),
        ("IDENTITY_ISSUER", "https://login.example"),
    ]);
    let event = event();
    let mut c = edge.connect();
    let exp = now_ms() / 1000 + 120;
    let header = |signer: &str, kid: &str| json!({"typ": "JWT", "kid": kid, "alg": "ES256", "iss": "https://login.example", "client": "c", "signer": signer, "exp": exp});
    let user_claims = json!({"sub": "1234567890abc", "email": "f@example.com", "exp": exp, "iss": "https://login.example"});
    let alb = |token: &str| format!("x-amzn-oidc-data: {token}\r\n");
    let body = json!({"eventId": event});

    let token = es256(&pair, &header(ARN, kid), &user_claims, true);
    assert_eq!(
        room_user(&enter(&mut c, &alb(&token), &body)),
        "1234567890abc"
    );
    // A bearer token is not what this mode reads.
    refused(
        &enter(&mut c, &bearer(&token), &body),
        401,
        "IDENTITY_MISSING",
    );
    let mismatch = json!({"eventId": event, "userId": "someone-else"});
    refused(
        &enter(&mut c, &alb(&token), &mismatch),
        403,
        "USER_MISMATCH",
    );

    let other_lb = es256(
        &pair,
        &header(
            "arn:aws:elasticloadbalancing:ap-northeast-2:999:loadbalancer/app/x/2",
            kid,
        ),
        &user_claims,
        true,
    );
    refused(
        &enter(&mut c, &alb(&other_lb), &body),
        401,
        "IDENTITY_INVALID",
    );
    let unknown_kid = es256(&pair, &header(ARN, "no-such-kid"), &user_claims, true);
    refused(
        &enter(&mut c, &alb(&unknown_kid), &body),
        401,
        "IDENTITY_INVALID",
    );
    let stranger = es256(&ec_pair(), &header(ARN, kid), &user_claims, true);
    refused(
        &enter(&mut c, &alb(&stranger), &body),
        401,
        "IDENTITY_INVALID",
    );
    let mut old = user_claims.clone();
    old["exp"] = json!(now_ms() / 1000 - 600);
    let expired = es256(&pair, &header(ARN, kid), &old, true);
    refused(
        &enter(&mut c, &alb(&expired), &body),
        401,
        "IDENTITY_EXPIRED",
    );
}

#[test]
fn without_identity_the_body_user_is_required_and_believed() {
    let edge = edge(&[]);
    let event = event();
    let mut c = edge.connect();
    let r = enter(&mut c, "", &json!({"eventId": event, "userId": "zoe"}));
    assert_eq!(room_user(&r), "zoe");
    let r = enter(&mut c, "", &json!({"eventId": event}));
    refused(&r, 401, "IDENTITY_MISSING");
    let r = enter(&mut c, "", &json!({"eventId": event, "userId": null}));
    refused(&r, 400, "INVALID_FIELD");
    // A bearer token changes nothing.
    let token = hs256(
        &json!({"alg": "HS256"}),
        &claims("alice"),
        JWT_SECRET.as_bytes(),
    );
    let r = enter(
        &mut c,
        &bearer(&token),
        &json!({"eventId": event, "userId": "zoe"}),
    );
    assert_eq!(room_user(&r), "zoe");
}
