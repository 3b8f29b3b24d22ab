//! Room tokens: self-contained, signed with HMAC-SHA256, verified with no I/O.
//!
//! `base64url(payload) "." base64url(mac)`, payload `1|position|issuedMs|expiresMs|event|user`
//! (the user last, so it may hold any visible character). Verification accepts the
//! current key and the previous one, so keys rotate without logging anyone out.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use codec::error_code::ErrorCode;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted, so that decoding work is bounded.
const MAX_TOKEN_BYTES: usize = 512;
/// Room for the decoded payload of the longest token.
pub const SCRATCH_BYTES: usize = MAX_TOKEN_BYTES * 3 / 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomToken<'a> {
    pub event: &'a str,
    pub user: &'a str,
    pub position: u64,
    pub issued_ms: u64,
    pub expires_ms: u64,
}

#[derive(Clone)]
pub struct Keys {
    current: HmacSha256,
    previous: Option<HmacSha256>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Self {
        let key = |k: &[u8]| HmacSha256::new_from_slice(k).expect("HMAC takes any key length");
        Self {
            current: key(current),
            previous: previous.map(key),
        }
    }

    pub fn sign(&self, t: &RoomToken<'_>) -> String {
        let payload = format!(
            "1|{}|{}|{}|{}|{}",
            t.position, t.issued_ms, t.expires_ms, t.event, t.user
        );
        let mut mac = self.current.clone();
        mac.update(payload.as_bytes());
        let mut token = B64.encode(payload);
        token.push('.');
        B64.encode_string(mac.finalize().into_bytes(), &mut token);
        token
    }

    /// Checks the signature and expiry; the payload is decoded into `scratch` (on the
    /// caller's stack), which the returned token borrows.
    pub fn verify<'s>(
        &self,
        token: &[u8],
        now_ms: u64,
        scratch: &'s mut [u8; SCRATCH_BYTES],
    ) -> Result<RoomToken<'s>, Error> {
        let invalid = || Error::request(ErrorCode::TokenInvalid, "room token invalid");
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid());
        }
        let dot = token.iter().position(|&b| b == b'.').ok_or_else(invalid)?;
        let (payload, mac) = (&token[..dot], &token[dot + 1..]);
        let len = B64.decode_slice(payload, scratch).map_err(|_| invalid())?;
        let scratch = &scratch[..len];
        let mut given = [0u8; 32];
        if B64.decode_slice(mac, &mut given).ok() != Some(32) {
            return Err(invalid());
        }
        let signed_by = |key: &HmacSha256| {
            let mut mac = key.clone();
            mac.update(scratch);
            mac.verify_slice(&given).is_ok() // constant time
        };
        if !signed_by(&self.current) && !self.previous.as_ref().is_some_and(signed_by) {
            return Err(invalid());
        }
        let text = std::str::from_utf8(scratch).map_err(|_| invalid())?;
        if text.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(invalid());
        }
        let mut fields = text.splitn(6, '|');
        let mut next = || fields.next().ok_or_else(invalid);
        if next()? != "1" {
            return Err(invalid());
        }
        let number = |s: &str| s.parse::<u64>().map_err(|_| invalid());
        let position = number(next()?)?;
        let issued_ms = number(next()?)?;
        let expires_ms = number(next()?)?;
        let (event, user) = (next()?, next()?);
        if now_ms >= expires_ms {
            return Err(Error::request(
                ErrorCode::TokenExpired,
                "room token expired",
            ));
        }
        Ok(RoomToken {
            event,
            user,
            position,
            issued_ms,
            expires_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(event: &'static str, user: &'static str) -> RoomToken<'static> {
        RoomToken {
            event,
            user,
            position: 42,
            issued_ms: 1_000,
            expires_ms: 10_000,
        }
    }

    fn code(r: Result<RoomToken<'_>, Error>) -> ErrorCode {
        r.expect_err("refused").code()
    }

    #[test]
    fn a_signed_token_verifies_to_its_fields() {
        let keys = Keys::new(b"k1", None);
        let t = token("demo", "user|with|bars");
        let signed = keys.sign(&t);
        let mut scratch = [0u8; SCRATCH_BYTES];
        assert_eq!(
            keys.verify(signed.as_bytes(), 5_000, &mut scratch)
                .expect("valid"),
            t
        );
    }

    #[test]
    fn the_previous_key_still_verifies_and_others_do_not() {
        let old = Keys::new(b"old", None).sign(&token("demo", "u"));
        let rotated = Keys::new(b"new", Some(b"old"));
        let mut scratch = [0u8; SCRATCH_BYTES];
        assert!(rotated.verify(old.as_bytes(), 5_000, &mut scratch).is_ok());
        let stranger = Keys::new(b"new", Some(b"other"));
        assert_eq!(
            code(stranger.verify(old.as_bytes(), 5_000, &mut scratch)),
            ErrorCode::TokenInvalid
        );
    }

    #[test]
    fn expired_tampered_and_garbage_tokens_are_refused() {
        let keys = Keys::new(b"k", None);
        let signed = keys.sign(&token("demo", "u"));
        let mut scratch = [0u8; SCRATCH_BYTES];
        assert_eq!(
            code(keys.verify(signed.as_bytes(), 10_000, &mut scratch)),
            ErrorCode::TokenExpired
        );
        // Flip one character of the payload, then of the MAC.
        for i in [2, signed.len() - 2] {
            let mut bytes = signed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(
                code(keys.verify(&bytes, 5_000, &mut scratch)),
                ErrorCode::TokenInvalid
            );
        }
        // A payload re-signed for a later expiry by someone without the key.
        let forged = format!(
            "{}.{}",
            B64.encode("1|1|1|99999|demo|u"),
            signed.split('.').nth(1).expect("mac")
        );
        assert_eq!(
            code(keys.verify(forged.as_bytes(), 5_000, &mut scratch)),
            ErrorCode::TokenInvalid
        );
        for garbage in [&b""[..], b".", b"abc", b"a.b.c", &[b'x'; 600]] {
            assert_eq!(
                code(keys.verify(garbage, 5_000, &mut scratch)),
                ErrorCode::TokenInvalid
            );
        }
    }
}
