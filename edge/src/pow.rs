//! Optional proof-of-work on `enter` (`ENTER_POW_BITS` > 0): a made-up buyer costs the
//! client `2^bits` SHA-256 computations on average, a real one a moment of its browser.
//!
//! `GET /public/challenge?eventId=` hands out a stateless challenge,
//! `base64url("1|expiresMs|eventId|random") "." base64url(HMAC-SHA256)`, signed with a
//! key derived from `ROOM_TOKEN_SECRET` (so every edge verifies any edge's challenges,
//! and a challenge can never pass for a room token). The client finds a `nonce` such
//! that `SHA-256(challenge ":" userId ":" nonce)` starts with `bits` zero bits and sends
//! both with `enter`. Verification is one HMAC and one SHA-256, no I/O.
//!
//! Each challenge is usable once per buyer without any state: the work is bound to the
//! user id (hashed in), so a solution proves nothing for another buyer, and `enter` is
//! idempotent per buyer (the same place in line however often), so using it again for
//! the same buyer gains nothing. A challenge expires after `ENTER_POW_TTL_MS`.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use codec::error_code::ErrorCode;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

/// Longest challenge accepted (an event id is at most 64 characters).
const MAX_CHALLENGE_BYTES: usize = codec::rules::POW_CHALLENGE_MAX_BYTES;

#[derive(Clone)]
pub struct Challenges {
    key: HmacSha256,
    pub bits: u8,
    pub ttl_ms: u64,
}

impl std::fmt::Debug for Challenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Challenges(bits={})", self.bits)
    }
}

impl Challenges {
    /// `secret` is the room-token secret; the challenge key is derived from it.
    pub fn new(secret: &[u8], bits: u8, ttl_ms: u64) -> Self {
        let mut derive = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        derive.update(b"max-tps-ecs enter proof-of-work v1");
        let key = HmacSha256::new_from_slice(&derive.finalize().into_bytes())
            .expect("HMAC takes any key length");
        Self { key, bits, ttl_ms }
    }

    /// A new challenge for `event`, valid until `now_ms + ttl_ms`.
    pub fn issue(&self, event: &str, now_ms: u64) -> (String, u64) {
        let expires_ms = now_ms + self.ttl_ms;
        let mut random = [0u8; crate::ids::ID_BYTES];
        crate::ids::write_next_into(&mut random);
        let payload = format!(
            "1|{expires_ms}|{event}|{}",
            String::from_utf8_lossy(&random)
        );
        let mut mac = self.key.clone();
        mac.update(payload.as_bytes());
        let mut challenge = B64.encode(payload);
        challenge.push('.');
        B64.encode_string(mac.finalize().into_bytes(), &mut challenge);
        (challenge, expires_ms)
    }

    /// Checks `enter`'s challenge and nonce for `event` and `user`.
    pub fn verify(
        &self,
        challenge: Option<&str>,
        nonce: Option<&str>,
        event: &str,
        user: &str,
        now_ms: u64,
    ) -> Result<(), Error> {
        if self.bits == 0 {
            return Ok(());
        }
        let (Some(challenge), Some(nonce)) = (challenge, nonce) else {
            return Err(Error::request(
                ErrorCode::PowRequired,
                "a solved challenge of GET /public/challenge is required",
            ));
        };
        let invalid = |message| Error::request(ErrorCode::PowInvalid, message);
        // The same rules the door applies to the body (`codec::rules`), for callers
        // that come here without it (the fuzz target, the tests).
        if codec::rules::pow_challenge(challenge).is_err()
            || codec::rules::pow_nonce(nonce).is_err()
        {
            return Err(invalid("challenge or nonce malformed"));
        }
        let (payload, mac) = challenge
            .split_once('.')
            .ok_or_else(|| invalid("challenge malformed"))?;
        let mut scratch = [0u8; MAX_CHALLENGE_BYTES];
        let len = B64
            .decode_slice(payload, &mut scratch)
            .map_err(|_| invalid("challenge malformed"))?;
        let mut given = [0u8; 32];
        if B64.decode_slice(mac, &mut given).ok() != Some(32) {
            return Err(invalid("challenge malformed"));
        }
        let mut check = self.key.clone();
        check.update(&scratch[..len]);
        // Constant time.
        check
            .verify_slice(&given)
            .map_err(|_| invalid("challenge not signed by this service"))?;
        let text =
            std::str::from_utf8(&scratch[..len]).map_err(|_| invalid("challenge malformed"))?;
        let mut fields = text.splitn(4, '|');
        let (version, expires, for_event) = (fields.next(), fields.next(), fields.next());
        let expires_ms: u64 = expires
            .and_then(|e| e.parse().ok())
            .filter(|_| version == Some("1"))
            .ok_or_else(|| invalid("challenge malformed"))?;
        if for_event != Some(event) {
            return Err(invalid("challenge is for another event"));
        }
        if now_ms >= expires_ms {
            return Err(invalid("challenge expired: get a new one"));
        }
        if leading_zero_bits(&solution(challenge, user, nonce)) < u32::from(self.bits) {
            return Err(invalid("nonce does not solve the challenge"));
        }
        Ok(())
    }
}

/// `SHA-256(challenge ":" user ":" nonce)`: what the client makes start with zeros.
pub fn solution(challenge: &str, user: &str, nonce: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [challenge, ":", user, ":", nonce] {
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for &b in digest {
        bits += b.leading_zeros();
        if b != 0 {
            break;
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solve(challenge: &str, user: &str, bits: u32) -> String {
        (0u64..)
            .map(|n| n.to_string())
            .find(|n| leading_zero_bits(&solution(challenge, user, n)) >= bits)
            .expect("a nonce")
    }

    fn code(r: Result<(), Error>) -> ErrorCode {
        r.expect_err("refused").code()
    }

    #[test]
    fn a_solved_challenge_passes_for_its_buyer_and_event_only() {
        let c = Challenges::new(b"secret", 8, 60_000);
        let (challenge, expires) = c.issue("demo", 1_000);
        assert_eq!(expires, 61_000);
        let nonce = solve(&challenge, "ann", 8);
        let ok = |ch, n, e, u, now| c.verify(Some(ch), Some(n), e, u, now);
        assert!(ok(&challenge, &nonce, "demo", "ann", 2_000).is_ok());
        // Again for the same buyer: fine (enter is idempotent per buyer).
        assert!(ok(&challenge, &nonce, "demo", "ann", 2_000).is_ok());
        // The nonce proves nothing for another buyer (1 in 256 would pass by luck).
        let other = (0..100)
            .map(|i| format!("bob{i}"))
            .find(|u| leading_zero_bits(&solution(&challenge, u, &nonce)) < 8)
            .expect("a user the nonce does not solve");
        assert_eq!(
            code(ok(&challenge, &nonce, "demo", &other, 2_000)),
            ErrorCode::PowInvalid
        );
        assert_eq!(
            code(ok(&challenge, &nonce, "other", "ann", 2_000)),
            ErrorCode::PowInvalid
        );
        assert_eq!(
            code(ok(&challenge, &nonce, "demo", "ann", 61_000)),
            ErrorCode::PowInvalid
        );
        assert_eq!(
            code(c.verify(None, Some(&nonce), "demo", "ann", 2_000)),
            ErrorCode::PowRequired
        );
        // Another secret's challenge, and a tampered one.
        let stranger = Challenges::new(b"other", 8, 60_000);
        assert_eq!(
            code(stranger.verify(Some(&challenge), Some(&nonce), "demo", "ann", 2_000)),
            ErrorCode::PowInvalid
        );
        let mut tampered = challenge.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(
            code(ok(&tampered, &nonce, "demo", "ann", 2_000)),
            ErrorCode::PowInvalid
        );
        for (ch, n) in [
            ("", "1"),
            (".", "1"),
            ("a.b", "1"),
            (&challenge[..], ""),
            (&challenge[..], "a b"),
        ] {
            assert_eq!(code(ok(ch, n, "demo", "ann", 2_000)), ErrorCode::PowInvalid);
        }
    }

    #[test]
    fn zero_bits_is_off() {
        let c = Challenges::new(b"secret", 0, 60_000);
        assert!(c.verify(None, None, "demo", "ann", 0).is_ok());
    }

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0x01]), 7);
        assert_eq!(leading_zero_bits(&[0, 0, 0x10, 0]), 19);
        assert_eq!(leading_zero_bits(&[0; 4]), 32);
    }
}
