//! Compact JWS (RFC 7515) carrying JWT claims (RFC 7519), checked with no I/O: the
//! `Authorization: Bearer` token of `IDENTITY=jwt` and ALB's `x-amzn-oidc-data`.
//!
//! The algorithm is the key's, never the token's (RFC 8725 section 3.1): the header's
//! `alg` must name the algorithm of the key found by `kid`, so `none`, HS256 against an
//! RSA key (the "HS/RS confusion") and anything unknown are refused. Every part is
//! bounded before it is decoded, base64url is strict (no padding, no stray bits, RFC
//! 7515 section 2) except ALB's padded form, and header and claims are parsed into
//! borrowed structs that refuse duplicate fields.

use std::borrow::Cow;

use base64::{
    alphabet::URL_SAFE,
    engine::{
        general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD},
        DecodePaddingMode,
    },
    Engine,
};
use serde::Deserialize;

use super::keys::KeySet;

/// Longest token accepted (the whole header value after `Bearer `).
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Longest decoded JOSE header.
const MAX_HEADER_BYTES: usize = 512;
/// Longest decoded claims set.
const MAX_CLAIMS_BYTES: usize = 3072;
/// Longest decoded signature: RSA-4096 (512 bytes); ES256 is 64, HS256 32.
const MAX_SIGNATURE_BYTES: usize = 512;

/// ALB pads its base64url with `=` (its documentation says so; RFC 7515 forbids it);
/// the signature covers the padded text as sent, so only decoding needs to allow it.
const PADDED: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// `iss` must equal this when set.
    pub issuer: Option<&'a str>,
    /// `aud` (a string, or an array of them) must hold this when set.
    pub audience: Option<&'a str>,
    /// ALB: the header's `signer` must equal this ARN.
    pub signer: Option<&'a str>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_ms: u64,
    /// Accept `=` padding (ALB's header).
    pub padded: bool,
}

/// Why a token was refused: `Expired` only for a token whose signature held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Invalid(&'static str),
    Expired,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// ALB: the load balancer's ARN.
    #[serde(borrow, default)]
    signer: Option<Cow<'a, str>>,
    /// ALB repeats `exp` in the header.
    #[serde(default)]
    exp: Option<f64>,
    /// RFC 7515 section 4.1.11: extensions this verifier does not know must be refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow, default)]
    sub: Option<Cow<'a, str>>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(borrow, default)]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    aud: Option<Audience<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

/// Checks `token` and returns its subject (`sub`), not yet held to the user-id rule.
pub fn verify(
    token: &[u8],
    keys: &KeySet,
    rules: &Rules<'_>,
    now_ms: u64,
) -> Result<String, Refusal> {
    let invalid = Refusal::Invalid;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid("token too long"));
    }
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a compact JWS"));
    };
    let signed = &token[..header_b64.len() + 1 + claims_b64.len()];

    let mut header_buf = [0u8; MAX_HEADER_BYTES];
    let header = decode(header_b64, &mut header_buf, rules.padded).ok_or(invalid("bad header"))?;
    let header: Header<'_> = serde_json::from_slice(header).map_err(|_| invalid("bad header"))?;
    if header.crit.is_some() {
        return Err(invalid("unknown critical header"));
    }
    if let Some(signer) = rules.signer {
        if header.signer.as_deref() != Some(signer) {
            return Err(invalid("not signed by the configured load balancer"));
        }
    }
    let key = keys
        .find(header.kid.as_deref())
        .ok_or(invalid("unknown key"))?;
    // The key decides the algorithm; the header only has to agree.
    if header.alg != key.alg() {
        return Err(invalid("algorithm does not match the key"));
    }
    let mut signature_buf = [0u8; MAX_SIGNATURE_BYTES];
    let signature =
        decode(signature_b64, &mut signature_buf, rules.padded).ok_or(invalid("bad signature"))?;
    if !key.verify(signed, signature) {
        return Err(invalid("bad signature"));
    }

    let mut claims_buf = [0u8; MAX_CLAIMS_BYTES];
    let claims = decode(claims_b64, &mut claims_buf, rules.padded).ok_or(invalid("bad claims"))?;
    let claims: Claims<'_> = serde_json::from_slice(claims).map_err(|_| invalid("bad claims"))?;
    // RFC 7519 section 4.1.4 and 4.1.5, with leeway for clock skew. A token without
    // `exp` would be good for ever: refused.
    let now = now_ms as f64;
    let leeway = rules.leeway_ms as f64;
    let exp = claims.exp.ok_or(invalid("no exp"))?;
    for exp in [Some(exp), header.exp].into_iter().flatten() {
        if now >= exp * 1000.0 + leeway {
            return Err(Refusal::Expired);
        }
    }
    if claims.nbf.is_some_and(|nbf| now + leeway < nbf * 1000.0) {
        return Err(invalid("not valid yet (nbf)"));
    }
    if let Some(issuer) = rules.issuer {
        if claims.iss.as_deref() != Some(issuer) {
            return Err(invalid("wrong issuer"));
        }
    }
    if let Some(audience) = rules.audience {
        let ok = match &claims.aud {
            Some(Audience::One(aud)) => aud == audience,
            Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == audience),
            None => false,
        };
        if !ok {
            return Err(invalid("wrong audience"));
        }
    }
    claims.sub.map(Cow::into_owned).ok_or(invalid("no sub"))
}

/// Decodes one part into `buf`; `None` if it is not base64url or does not fit.
fn decode<'b>(part: &[u8], buf: &'b mut [u8], padded: bool) -> Option<&'b [u8]> {
    // The decoder needs room for whole 3-byte groups: refuse by length first.
    if part.len().div_ceil(4) * 3 > buf.len() {
        return None;
    }
    let engine = if padded { &PADDED } else { &URL_SAFE_NO_PAD };
    let n = engine.decode_slice(part, buf).ok()?;
    Some(&buf[..n])
}

#[cfg(test)]
mod tests;
