//! `/confirm/*`: payment intent, commit through the queue, order status, and the
//! payment provider's callback.
//!
//! Idempotency follows the IETF httpapi Idempotency-Key draft and Stripe: the key is
//! required, scoped to the user and the endpoint, stored with a fingerprint of the
//! request for `IDEMPOTENCY_TTL_MS`; the same key with the same request replays the
//! stored body byte for byte (`X-Idempotent-Replay: true`, `Idempotent-Replayed: true`),
//! with another request answers 422, while the first is in flight 409. Each request is
//! one script (`codec::store`), so 32 identical calls at once still make one intent.

pub mod callback;
pub mod commit;
pub mod intent;
pub mod status;

use std::{borrow::Cow, rc::Rc};

use codec::{
    error_code::ErrorCode,
    keys, rules,
    store::{recorded_fingerprint, Refusal, Seat},
};

use crate::{
    api::request::{for_event, now_ms, verify},
    core::Core,
    error::Error,
    events::Event,
    http::{Head, Reply},
    token::{self, RoomToken},
};

/// The `Idempotency-Key` header: required, [`rules::idempotency_key`].
fn idempotency_key<'h>(head: &Head<'h>) -> Result<&'h str, Error> {
    let key = head.idempotency_key.ok_or(Error::request(
        ErrorCode::IdempotencyKeyMissing,
        "Idempotency-Key header is required",
    ))?;
    rules::idempotency_key(key).map_err(|invalid| Error::Invalid {
        code: ErrorCode::IdempotencyKeyInvalid,
        invalid,
    })
}

/// A `/confirm/*` request's Idempotency-Key, its caller and the fingerprint of what it
/// asks. An Idempotency-Key used before with another request is refused as such
/// (422) whatever else is wrong with this one: the key is checked before the body.
struct KeyedRequest<'s, 'h> {
    key: &'h str,
    token: RoomToken<'s>,
    fingerprint: String,
}

/// The key, the room token and the request's `fingerprint` (of the body's fields as
/// sent), before anything in the body is checked.
async fn keyed<'s, 'h>(
    core: &Core,
    head: &Head<'h>,
    key: &'h str,
    fingerprint: String,
    scratch: &'s mut [u8; token::SCRATCH_BYTES],
) -> Result<KeyedRequest<'s, 'h>, Error> {
    let token = verify(core, head.room_token, now_ms(), scratch).await?;
    core.limits.buyer(token.user)?;
    Ok(KeyedRequest {
        key,
        token,
        fingerprint,
    })
}

impl KeyedRequest<'_, '_> {
    /// `refusal` of this request, unless the key was used with another request:
    /// then `IDEMPOTENCY_KEY_REUSED`.
    async fn refuse(&self, core: &Core, scope: &str, refusal: Error) -> Error {
        if !matches!(refusal, Error::Request { .. } | Error::Invalid { .. }) {
            return refusal;
        }
        let key = keys::idempotency(self.token.event, scope, self.token.user, self.key);
        match core.store.get(key.as_bytes()).await {
            Ok(Some(record))
                if recorded_fingerprint(&record)
                    .is_some_and(|fp| fp != self.fingerprint.as_bytes()) =>
            {
                refused(Refusal::KeyReused)
            }
            _ => refusal,
        }
    }

    /// The caller of a request about `event_id` as `user_id`, with the event.
    async fn caller(&self, core: &Core, user_id: &str, event_id: &str) -> Result<Rc<Event>, Error> {
        if user_id != self.token.user {
            return Err(Error::request(
                ErrorCode::UserMismatch,
                "userId is not the room token's user",
            ));
        }
        for_event(&self.token, event_id)?;
        core.events.get(&core.redis, event_id).await
    }
}

/// The requested seats, sorted (so the same set in any order is the same request),
/// distinct, at most `HOLD_LIMIT`, all in the catalog; and their price.
fn seats<'r>(
    event: &Event,
    ids: &'r [Cow<'_, str>],
    limit: u32,
) -> Result<(Vec<Seat<'r>>, u64), Error> {
    let invalid = |m| Error::request(ErrorCode::InvalidField, m);
    if ids.is_empty() || ids.len() > limit as usize {
        return Err(invalid("seatIds must list 1 to HOLD_LIMIT seats"));
    }
    // A seat id no rule allows is no seat of the event: 404 like one beyond its section.
    let mut seats = Vec::with_capacity(ids.len());
    let mut amount = 0u64;
    for id in ids {
        let not_found = || Error::request(ErrorCode::SeatNotFound, "no such seat");
        let rules::Seat { section, n } = rules::seat_id(id).map_err(|_| not_found())?;
        let sec = event
            .section(section)
            .filter(|s| n <= s.seats)
            .ok_or_else(not_found)?;
        amount = amount.saturating_add(sec.price);
        seats.push(Seat { id, section, n });
    }
    seats.sort_by(|a, b| (a.section, a.n).cmp(&(b.section, b.n)));
    if seats.windows(2).any(|w| w[0].id == w[1].id) {
        return Err(invalid("seatIds must not repeat"));
    }
    rules::amount(amount)?;
    Ok((seats, amount))
}

fn csv(seats: &[Seat<'_>]) -> String {
    seats.iter().map(|s| s.id).collect::<Vec<_>>().join(",")
}

/// A hex digest identifying a request's meaning (RFC draft: "fingerprint"): its
/// fields as sent, the seats in any order.
fn fingerprint(fields: &[&str], seat_ids: &[Cow<'_, str>]) -> String {
    let mut seats: Vec<&str> = seat_ids.iter().map(|s| s.as_ref()).collect();
    seats.sort_unstable();
    codec::contract::digest(fields.iter().copied().chain(seats))
}

/// What an idempotent script's refusal answers.
fn refused(refusal: Refusal) -> Error {
    match refusal {
        Refusal::NotHeld => Error::request(ErrorCode::HoldMismatch, "a seat is not held by you"),
        Refusal::IntentNotFound => Error::request(ErrorCode::IntentNotFound, "no such intent"),
        Refusal::IntentExpired => {
            Error::request(ErrorCode::IntentExpired, "the intent outlived its holds")
        }
        Refusal::IntentMismatch => Error::request(
            ErrorCode::IntentMismatch,
            "not this intent's user, seats or amount",
        ),
        Refusal::InFlight => Error::RetryLater {
            code: ErrorCode::IdempotencyInFlight,
            message: "the first request with this Idempotency-Key is still in flight",
            retry_after_secs: 1,
        },
        Refusal::KeyReused => Error::request(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used with another request",
        ),
        Refusal::PurchaseLimit => Error::request(
            ErrorCode::PurchaseLimit,
            "this order would pass the purchase limit per buyer of the event",
        ),
    }
}

fn answer(reply: &mut Reply, status: u16, replay: bool, body: &[u8]) {
    reply.reset(if replay && status == 201 { 200 } else { status });
    reply.header("cache-control", b"no-store");
    if replay {
        reply.header("x-idempotent-replay", b"true");
        reply.header("idempotent-replayed", b"true");
    }
    reply.json_body().extend_from_slice(body);
}
