//! `POST /confirm/payment-callback` (`PAYMENT_MODE=provider`): the payment provider
//! says what happened to a payment. Called by the provider, not the buyer: no room
//! token; the `Payment-Signature` header (`codec::payment`) proves the sender, checked
//! with no I/O before the body is read. An accepted callback is recorded in PostgreSQL
//! (`payment_callbacks`, through the side thread) before the `200`, so neither a Redis
//! crash nor an edge crash after the answer loses it; the worker applies it. A
//! provider's retry of the same `providerEventId` answers `200` with `replay: true` and
//! changes nothing; a failure to record answers `503`, and the provider retries.

use codec::{
    error_code::ErrorCode,
    payment::{self, PaymentCallback, PaymentCallbackResponse, SignatureError},
};

use crate::{
    api::request::{now_ms, parse},
    core::Core,
    error::Error,
    http::{Head, Reply},
};

pub async fn payment_callback(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let (Some(config), Some(side)) = (&core.config.payment, &core.side) else {
        // PAYMENT_MODE=instant: there is no provider to call back.
        return Err(Error::request(ErrorCode::NotFound, "no such route"));
    };
    if body.len() > payment::CALLBACK_MAX_BYTES {
        return Err(Error::request(
            ErrorCode::PayloadTooLarge,
            "a payment callback body is at most 4096 bytes",
        ));
    }
    let current = config.secret.as_bytes();
    let verified = match &config.secret_previous {
        Some(previous) => payment::verify(
            head.payment_signature,
            body,
            &[current, previous.as_bytes()],
            now_ms(),
            config.tolerance.as_millis() as u64,
        ),
        None => payment::verify(
            head.payment_signature,
            body,
            &[current],
            now_ms(),
            config.tolerance.as_millis() as u64,
        ),
    };
    verified.map_err(|e| match e {
        SignatureError::Missing => Error::request(
            ErrorCode::SignatureMissing,
            "the Payment-Signature header is required",
        ),
        SignatureError::Invalid => Error::request(
            ErrorCode::SignatureInvalid,
            "the Payment-Signature does not verify",
        ),
        SignatureError::Expired => Error::request(
            ErrorCode::SignatureExpired,
            "the Payment-Signature's timestamp is outside the tolerance",
        ),
    })?;
    let callback: PaymentCallback<'_> = parse(body)?;
    callback.check()?;
    let new = side
        .record_callback(&callback)
        .await
        .map_err(|e| Error::unavailable("cannot record the callback now, retry", e))?;
    let answer = PaymentCallbackResponse {
        received: true,
        replay: !new,
    };
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    if !new {
        reply.header("x-idempotent-replay", b"true");
    }
    // Two booleans: serializing cannot fail.
    let json = serde_json::to_vec(&answer).unwrap_or_default();
    reply.json_body().extend_from_slice(&json);
    Ok(())
}
