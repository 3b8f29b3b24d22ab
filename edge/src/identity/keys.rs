//! The keys tokens are checked with, and the thread that keeps them current.
//!
//! - HS256: `IDENTITY_JWT_SECRET` (for tokens with no `kid`, or a `kid` no file names).
//! - ES256 and RS256: a JWKS file (RFC 7517, `IDENTITY_JWKS_FILE`), keys by `kid`.
//! - ALB: a directory of PEM public keys (`IDENTITY_ALB_KEY_DIR`), one file a `kid`,
//!   named `{kid}` or `{kid}.pem`, as ALB's key endpoint serves them.
//!
//! Files are read at start-up and then only by the key thread ([`start`]), every
//! `IDENTITY_KEYS_REFRESH_MS`; when their bytes change it parses them and publishes a
//! new immutable [`KeySet`] in the [`KeyStore`]. A core notices the new generation with
//! one atomic load and takes the set under a lock only then ([`CoreKeys`]). A file that
//! no longer parses keeps the previous keys (and is logged).

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use hmac::{Hmac, Mac};
use ring::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
};
use serde::Deserialize;
use sha2::Sha256;
use tracing::{info, warn};

use super::{IdentityConfig, Mode};

/// Largest key file read, and most files in the ALB key directory.
const MAX_FILE_BYTES: u64 = 1 << 20;
const MAX_DIR_FILES: usize = 256;

/// A verification key; its algorithm is part of it.
pub enum Key {
    Hs256(Hmac<Sha256>),
    /// P-256 public point, uncompressed (`04 || x || y`).
    Es256([u8; 65]),
    /// Modulus and exponent, big-endian without leading zeros.
    Rs256 {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl Key {
    /// The JWS `alg` this key verifies (RFC 7518 section 3.1).
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Hs256(_) => "HS256",
            Self::Es256(_) => "ES256",
            Self::Rs256 { .. } => "RS256",
        }
    }

    /// Checks `signature` over `message`; HMAC compared in constant time.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Hs256(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.verify_slice(signature).is_ok()
            }
            // JWS ES256 signatures are R || S, 64 bytes (RFC 7518 section 3.4).
            Self::Es256(point) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok(),
            Self::Rs256 { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
        }
    }

    pub fn hs256(secret: &[u8]) -> Self {
        Self::Hs256(Hmac::new_from_slice(secret).expect("HMAC takes any key length"))
    }
}

/// The keys of one moment; never changed once published.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Key>,
    /// The HS256 secret: for tokens without a `kid` or with one no file names.
    secret: Option<Key>,
}

impl KeySet {
    /// The key for a token's `kid`: the named one; else the secret; else, for a token
    /// without `kid`, the only key there is.
    pub fn find(&self, kid: Option<&str>) -> Option<&Key> {
        kid.and_then(|kid| self.by_kid.get(kid))
            .or(self.secret.as_ref())
            .or_else(|| match (kid, self.by_kid.len()) {
                (None, 1) => self.by_kid.values().next(),
                _ => None,
            })
    }

    pub fn insert(&mut self, kid: String, key: Key) {
        self.by_kid.insert(kid, key);
    }

    pub fn with_secret(secret: &[u8]) -> Self {
        Self {
            secret: Some(Key::hs256(secret)),
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + usize::from(self.secret.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The published key set, shared by every core and the key thread.
#[derive(Default)]
pub struct KeyStore {
    generation: AtomicU64,
    current: Mutex<Arc<KeySet>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyStore(..)")
    }
}

impl KeyStore {
    pub fn publish(&self, keys: KeySet) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// One core's view of the [`KeyStore`]: the set it last took and its generation.
pub struct CoreKeys {
    store: Arc<KeyStore>,
    seen: Cell<u64>,
    keys: RefCell<Arc<KeySet>>,
}

impl CoreKeys {
    pub fn new(store: Arc<KeyStore>) -> Self {
        Self {
            store,
            seen: Cell::new(u64::MAX),
            keys: RefCell::default(),
        }
    }

    /// Runs `f` with the current keys: one atomic load; the lock only after a change.
    pub fn with<R>(&self, f: impl FnOnce(&KeySet) -> R) -> R {
        let generation = self.store.generation.load(Ordering::Acquire);
        if generation != self.seen.get() {
            let current = self.store.current.lock().unwrap_or_else(|e| e.into_inner());
            *self.keys.borrow_mut() = current.clone();
            self.seen.set(generation);
        }
        f(&self.keys.borrow())
    }
}

/// What the key thread reads: the JWKS file or the ALB key directory.
#[derive(Debug, Clone)]
enum Source {
    Jwks(PathBuf),
    AlbDir(PathBuf),
}

fn source(config: &IdentityConfig) -> Option<Source> {
    match config.mode {
        Mode::None => None,
        Mode::Jwt => config.jwks_file.clone().map(Source::Jwks),
        Mode::AlbOidc => config.alb_key_dir.clone().map(Source::AlbDir),
    }
}

/// Reads and parses the configured keys once: at start-up, and to validate config.
pub fn load(config: &IdentityConfig) -> Result<KeySet, String> {
    let raw = match source(config) {
        Some(source) => read(&source)?,
        None => Vec::new(),
    };
    build(config, &raw)
}

/// The bytes of every key file, with their names.
fn read(source: &Source) -> Result<Vec<(String, Vec<u8>)>, String> {
    let file = |path: &Path| -> Result<Vec<u8>, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{}: larger than {MAX_FILE_BYTES} bytes",
                path.display()
            ));
        }
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    match source {
        Source::Jwks(path) => Ok(vec![(String::new(), file(path)?)]),
        Source::AlbDir(dir) => {
            let mut out = Vec::new();
            let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                if out.len() == MAX_DIR_FILES {
                    return Err(format!(
                        "{}: more than {MAX_DIR_FILES} files",
                        dir.display()
                    ));
                }
                out.push((name, file(&entry.path())?));
            }
            out.sort();
            Ok(out)
        }
    }
}

fn build(config: &IdentityConfig, raw: &[(String, Vec<u8>)]) -> Result<KeySet, String> {
    let mut keys = match (&config.mode, &config.jwt_secret) {
        (Mode::Jwt, Some(secret)) => KeySet::with_secret(secret.as_bytes()),
        _ => KeySet::default(),
    };
    match source(config) {
        Some(Source::Jwks(_)) => {
            for (kid, key) in parse_jwks(&raw[0].1)? {
                keys.insert(kid, key);
            }
        }
        Some(Source::AlbDir(_)) => {
            for (name, bytes) in raw {
                let kid = name.strip_suffix(".pem").unwrap_or(name);
                let point = parse_p256_pem(bytes).map_err(|e| format!("{name}: {e}"))?;
                keys.insert(kid.to_owned(), Key::Es256(point));
            }
        }
        None => {}
    }
    if config.mode != Mode::None && keys.is_empty() {
        return Err("no keys".into());
    }
    Ok(keys)
}

/// Publishes the configured keys in `store` (at start-up, before any core runs), then
/// re-reads the key files every `IDENTITY_KEYS_REFRESH_MS` on a thread of its own and
/// publishes a new set when their bytes change. Nothing to watch: no thread.
pub fn start(config: IdentityConfig, store: Arc<KeyStore>) -> Result<(), String> {
    let source = source(&config);
    // The bytes published are the bytes compared: no change can slip in between.
    let raw = match &source {
        Some(source) => read(source)?,
        None => Vec::new(),
    };
    store.publish(build(&config, &raw)?);
    let Some(source) = source else {
        return Ok(());
    };
    let mut last = Some(raw);
    std::thread::Builder::new()
        .name("edge-keys".into())
        .spawn(move || loop {
            std::thread::sleep(config.keys_refresh);
            match read(&source) {
                Ok(raw) if last.as_ref() != Some(&raw) => {
                    match build(&config, &raw) {
                        Ok(keys) => {
                            let count = keys.len();
                            store.publish(keys);
                            info!(keys = count, "identity keys reloaded");
                        }
                        Err(e) => {
                            warn!(error = %e, "identity keys unchanged: the new files do not parse")
                        }
                    }
                    last = Some(raw);
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "identity keys unchanged: cannot read"),
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the key thread: {e}"))
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

/// The signing keys of a JWKS document by `kid`: EC P-256 (ES256) and RSA of at least
/// 2048 bits (RS256). Encryption keys (`use: enc`) and other key types are skipped; a
/// malformed key of a kind used here, a duplicate or missing `kid`, or an `alg` that
/// contradicts the key refuses the whole file.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<(String, Key)>, String> {
    let jwks: Jwks = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut out: Vec<(String, Key)> = Vec::new();
    for jwk in jwks.keys {
        if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let b64 = |field: &Option<String>, name: &str| {
            field
                .as_deref()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                .ok_or_else(|| format!("{name} missing or not base64url"))
        };
        let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let (x, y) = (b64(&jwk.x, "x")?, b64(&jwk.y, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("EC key: x and y must be 32 bytes".into());
                }
                let mut point = [4u8; 65];
                point[1..33].copy_from_slice(&x);
                point[33..].copy_from_slice(&y);
                Key::Es256(point)
            }
            ("RSA", _) => {
                let trim = |v: Vec<u8>| {
                    let zeros = v.iter().take_while(|&&b| b == 0).count();
                    v[zeros..].to_vec()
                };
                let (n, e) = (trim(b64(&jwk.n, "n")?), trim(b64(&jwk.e, "e")?));
                if !(256..=1024).contains(&n.len()) || e.is_empty() || e.len() > 4 {
                    return Err("RSA key: 2048 to 8192 bits and a small exponent".into());
                }
                Key::Rs256 { n, e }
            }
            _ => continue,
        };
        if jwk.alg.as_deref().is_some_and(|alg| alg != key.alg()) {
            return Err(format!("key alg {:?} does not match its type", jwk.alg));
        }
        let kid = jwk.kid.ok_or("a signing key without kid")?;
        if out.iter().any(|(k, _)| *k == kid) {
            return Err(format!("kid {kid:?} twice"));
        }
        out.push((kid, key));
    }
    Ok(out)
}

/// DER `SubjectPublicKeyInfo` of a P-256 key up to its point: `SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING 04 || x || y }` (RFC 5480 section 2).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A `-----BEGIN PUBLIC KEY-----` PEM (RFC 7468 section 13) of a P-256 key: its point.
pub fn parse_p256_pem(pem: &[u8]) -> Result<[u8; 65], String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not text")?;
    let body = text
        .split_once("-----BEGIN PUBLIC KEY-----")
        .and_then(|(_, rest)| rest.split_once("-----END PUBLIC KEY-----"))
        .map(|(body, _)| body)
        .ok_or("no PUBLIC KEY block")?;
    let b64: String = body.split_ascii_whitespace().collect();
    let der = STANDARD.decode(b64).map_err(|_| "PEM body is not base64")?;
    match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == 65 && point[0] == 4 => {
            let mut out = [0u8; 65];
            out.copy_from_slice(point);
            Ok(out)
        }
        _ => Err("not an uncompressed P-256 public key".into()),
    }
}
