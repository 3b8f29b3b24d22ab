//! The payment provider's approval callback, `POST /confirm/payment-callback`: its
//! signature header and its body, as the provider writes them and the edge checks them.
//!
//! The signature follows Stripe's webhook scheme, which providers broadly copy:
//! `Payment-Signature: t=<epoch ms>,v1=<hex HMAC-SHA256>[,v1=...]`, the HMAC keyed with
//! the shared secret (`PAYMENT_WEBHOOK_SECRET`) over `"{t}." + body`. Signing the
//! timestamp with the body lets the receiver refuse an old callback replayed by whoever
//! saw it (outside the tolerance); several `v1` entries let the provider sign with the
//! new and the old secret while a secret rotates. The algorithm is fixed here, never
//! taken from the request. Comparison is constant time (`Mac::verify_slice`).

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::rules::{self, Invalid};

type HmacSha256 = Hmac<Sha256>;

/// The signature header's name (lower case, as the edge's parser stores names).
pub const SIGNATURE_HEADER: &str = "payment-signature";
/// A longer signature header is refused unread: `t=` and a few `v1=` entries fit.
pub const SIGNATURE_MAX_BYTES: usize = 512;
/// Most `v1` entries read from one header (a rotation needs two).
pub const SIGNATURES_MAX: usize = 4;
/// A callback body past this is refused (413) before anything else is looked at: the
/// body below is a few hundred bytes.
pub const CALLBACK_MAX_BYTES: usize = 4096;

/// Why a callback's signature was refused. `Expired` is only said of a signature that
/// held: a forger learns nothing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Payment-Signature header")]
    Missing,
    #[error("the Payment-Signature does not verify")]
    Invalid,
    #[error("the Payment-Signature's timestamp is outside the tolerance")]
    Expired,
}

/// The header value that signs `body` at `t_ms` with each of `secrets` (the provider's
/// side; tests and tools use it).
pub fn sign(secrets: &[&[u8]], t_ms: u64, body: &[u8]) -> String {
    let mut header = format!("t={t_ms}");
    for secret in secrets {
        let tag = mac(secret, t_ms, body).finalize().into_bytes();
        header.push_str(",v1=");
        for b in tag {
            header.push_str(&format!("{b:02x}"));
        }
    }
    header
}

fn mac(secret: &[u8], t_ms: u64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks `header` over `body`: some `v1` entry must be the HMAC under one of `secrets`
/// (the current secret, then the previous one during a rotation), and `t` within
/// `tolerance_ms` of `now_ms` either way.
pub fn verify(
    header: Option<&[u8]>,
    body: &[u8],
    secrets: &[&[u8]],
    now_ms: u64,
    tolerance_ms: u64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if header.len() > SIGNATURE_MAX_BYTES {
        return Err(SignatureError::Invalid);
    }
    let mut t_ms = None;
    let mut tags: Vec<[u8; 32]> = Vec::with_capacity(2);
    for part in header.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if let Some(t) = part.strip_prefix(b"t=") {
            let t = std::str::from_utf8(t)
                .ok()
                .and_then(|t| t.parse::<u64>().ok());
            if t.is_none() || t_ms.is_some() {
                return Err(SignatureError::Invalid);
            }
            t_ms = t;
        } else if let Some(hex) = part.strip_prefix(b"v1=") {
            if tags.len() == SIGNATURES_MAX {
                return Err(SignatureError::Invalid);
            }
            tags.push(unhex(hex).ok_or(SignatureError::Invalid)?);
        }
        // Other schemes (`v0=`, a future `v2=`) are not ours: skipped, as Stripe does.
    }
    let t_ms = t_ms.ok_or(SignatureError::Invalid)?;
    let verified = secrets.iter().any(|secret| {
        let mac = mac(secret, t_ms, body);
        // Every tag against every secret: the time taken does not say which matched.
        tags.iter()
            .fold(false, |ok, tag| mac.clone().verify_slice(tag).is_ok() | ok)
    });
    if !verified {
        return Err(SignatureError::Invalid);
    }
    if now_ms.abs_diff(t_ms) > tolerance_ms {
        return Err(SignatureError::Expired);
    }
    Ok(())
}

fn unhex(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// What the provider says happened to a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallbackStatus {
    /// The money is reserved on the buyer's card; not yet taken.
    Authorized,
    /// The money is taken: the order can be confirmed.
    Captured,
    /// The payment was declined or abandoned: the order is rejected, its seats freed.
    Failed,
}

impl CallbackStatus {
    /// The spelling stored in `payment_callbacks.status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "AUTHORIZED",
            Self::Captured => "CAPTURED",
            Self::Failed => "FAILED",
        }
    }

    pub fn stored(s: &str) -> Option<Self> {
        [Self::Authorized, Self::Captured, Self::Failed]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// `POST /confirm/payment-callback`'s body. The payment is named by the event and the
/// payment intent the buyer paid for (`intentId` of `payment-intent`, which the buyer's
/// page hands to the provider as its reference); `providerEventId` names this callback,
/// so a provider's retry of it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCallback<'a> {
    #[serde(borrow)]
    pub provider_event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub intent_id: Cow<'a, str>,
    #[serde(borrow)]
    pub payment_id: Cow<'a, str>,
    pub status: CallbackStatus,
}

impl PaymentCallback<'_> {
    /// Each field's rule ([`rules`]); the first refused.
    pub fn check(&self) -> Result<(), Invalid> {
        rules::provider_id("providerEventId", &self.provider_event_id)?;
        rules::event_id(&self.event_id)?;
        rules::intent_id(&self.intent_id)?;
        rules::provider_id("paymentId", &self.payment_id)
    }
}

/// The answer to a callback: recorded now, or `replay` (this `providerEventId` was
/// recorded before; nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCallbackResponse {
    pub received: bool,
    pub replay: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_790_000_000;
    const SECRET: &[u8] = b"whsec-current-0123456789abcdef0123";
    const OLD: &[u8] = b"whsec-previous-0123456789abcdef012";
    const BODY: &[u8] = br#"{"providerEventId":"evt_1"}"#;

    fn check(header: Option<&str>, secrets: &[&[u8]]) -> Result<(), SignatureError> {
        verify(header.map(str::as_bytes), BODY, secrets, NOW, 300_000)
    }

    #[test]
    fn a_signature_by_the_current_or_the_previous_secret_verifies() {
        let header = sign(&[SECRET], NOW - 1_000, BODY);
        assert_eq!(check(Some(&header), &[SECRET]), Ok(()));
        assert_eq!(check(Some(&header), &[OLD, SECRET]), Ok(()));
        // The provider still signs with the old secret only, the edge has rotated.
        let old = sign(&[OLD], NOW, BODY);
        assert_eq!(check(Some(&old), &[SECRET, OLD]), Ok(()));
        assert_eq!(check(Some(&old), &[SECRET]), Err(SignatureError::Invalid));
        // The provider signs with both during its rotation.
        let both = sign(&[SECRET, OLD], NOW, BODY);
        assert_eq!(check(Some(&both), &[SECRET]), Ok(()));
        assert_eq!(check(Some(&both), &[OLD]), Ok(()));
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        assert_eq!(check(None, &[SECRET]), Err(SignatureError::Missing));
        let good = sign(&[SECRET], NOW, BODY);
        let tag = good.split_once(",v1=").expect("v1").1.to_owned();
        let mut flipped = tag.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("hex");
        for bad in [
            String::new(),
            format!("v1={tag}"),
            format!("t={NOW}"),
            format!("t={NOW},v1={flipped}"),
            format!("t={},v1={tag}", NOW + 1),
            format!("t={NOW},t={NOW},v1={tag}"),
            format!("t=-{NOW},v1={tag}"),
            format!("t={NOW},v1={}", &tag[..62]),
            format!("t={NOW},v1={}zz", &tag[..62]),
            format!("t={NOW},v1={tag}{}", " ".repeat(SIGNATURE_MAX_BYTES)),
            format!("t={NOW}{}", format!(",v1={flipped}").repeat(4)) + &format!(",v1={tag}"),
        ] {
            assert_eq!(
                check(Some(&bad), &[SECRET]),
                Err(SignatureError::Invalid),
                "{bad:?}"
            );
        }
        // Another body under the same header.
        assert_eq!(
            verify(Some(good.as_bytes()), b"{}", &[SECRET], NOW, 300_000),
            Err(SignatureError::Invalid)
        );
        // Unknown schemes are skipped, whitespace around entries allowed.
        assert_eq!(
            check(Some(&format!("v0=abc, t={NOW} , v1={tag}")), &[SECRET]),
            Ok(())
        );
    }

    #[test]
    fn a_valid_signature_outside_the_tolerance_is_expired_either_way() {
        for t in [NOW - 300_001, NOW + 300_001] {
            let header = sign(&[SECRET], t, BODY);
            assert_eq!(
                check(Some(&header), &[SECRET]),
                Err(SignatureError::Expired)
            );
        }
        for t in [NOW - 300_000, NOW + 300_000] {
            assert_eq!(check(Some(&sign(&[SECRET], t, BODY)), &[SECRET]), Ok(()));
        }
    }

    #[test]
    fn the_body_and_its_states_read_as_the_contract_says() {
        let body = br#"{"providerEventId":"evt_1","eventId":"demo","intentId":"pi_1","paymentId":"pay_9","status":"CAPTURED"}"#;
        let cb: PaymentCallback<'_> = serde_json::from_slice(body).expect("parses");
        assert_eq!(cb.status, CallbackStatus::Captured);
        assert_eq!(cb.check(), Ok(()));
        for s in [
            CallbackStatus::Authorized,
            CallbackStatus::Captured,
            CallbackStatus::Failed,
        ] {
            assert_eq!(CallbackStatus::stored(s.as_str()), Some(s));
        }
        let bad = br#"{"providerEventId":"evt 1","eventId":"demo","intentId":"pi_1","paymentId":"p","status":"FAILED"}"#;
        let cb: PaymentCallback<'_> = serde_json::from_slice(bad).expect("parses");
        assert_eq!(cb.check().map_err(|e| e.field), Err("providerEventId"));
        let status = br#"{"providerEventId":"e","eventId":"d","intentId":"i","paymentId":"p","status":"REFUNDED"}"#;
        assert!(serde_json::from_slice::<PaymentCallback<'_>>(status).is_err());
    }
}
