//! `/confirm/*`: payment intent, commit through the queue, order status.
//!
//! Idempotency follows the IETF httpapi Idempotency-Key draft and Stripe: the key is
//! required, scoped to the user and the endpoint, stored with a fingerprint of the
//! request for `IDEMPOTENCY_TTL_MS`; the same key with the same request replays the
//! stored body byte for byte (`X-Idempotent-Replay: true`, `Idempotent-Replayed: true`),
//! with another request answers 422, while the first is in flight 409. Each request is
//! one script (`scripts`), so 32 identical calls at once still make one intent.
//!
//! The local queue is a Redis Stream per event shard, appended inside the commit
//! script: the order is accepted, recorded PENDING and enqueued atomically, or not at all.

mod scripts;

use std::{borrow::Cow, rc::Rc};

use bytes::Bytes;

use codec::{
    error_code::ErrorCode,
    json::{write_str, write_u64},
    keys,
    url::{percent_decode, percent_encode},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::{
    error::Error,
    events::Event,
    http::{Head, Reply},
    public::{fnv1a, now_ms, parse, valid_event, verify},
    redis::Frame,
    server::Core,
    side::{LookupError, SendError},
    token::{self, RoomToken},
};

/// Each core's state for these routes.
#[derive(Default)]
pub struct Confirm {
    scripts: scripts::Scripts,
}

const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The `Idempotency-Key` header: required, 1..=255 visible ASCII characters.
fn idempotency_key<'h>(head: &Head<'h>) -> Result<&'h str, Error> {
    let key = head.idempotency_key.ok_or(Error::request(
        ErrorCode::IdempotencyKeyMissing,
        "Idempotency-Key header is required",
    ))?;
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_BYTES
        || !key.iter().all(u8::is_ascii_graphic)
    {
        return Err(Error::request(
            ErrorCode::IdempotencyKeyInvalid,
            "Idempotency-Key must be 1 to 255 visible characters",
        ));
    }
    std::str::from_utf8(key)
        .map_err(|_| Error::request(ErrorCode::IdempotencyKeyInvalid, "not ASCII"))
}

/// The verified caller of a `/confirm/*` request about `event_id` as `user_id`.
struct Caller<'s> {
    token: RoomToken<'s>,
    event: Rc<Event>,
}

async fn caller<'s>(
    core: &Core,
    head: &Head<'_>,
    user_id: Option<&str>,
    event_id: &str,
    scratch: &'s mut [u8; token::SCRATCH_BYTES],
) -> Result<Caller<'s>, Error> {
    let token = verify(core, head.room_token, now_ms(), scratch)?;
    if user_id.is_some_and(|u| u != token.user) {
        return Err(Error::request(
            ErrorCode::UserMismatch,
            "userId is not the room token's user",
        ));
    }
    valid_event(event_id)?;
    if token.event != event_id {
        return Err(Error::request(
            ErrorCode::TokenWrongEvent,
            "room token is for another event",
        ));
    }
    let event = core.public.events.get(&core.redis, event_id).await?;
    Ok(Caller { token, event })
}

/// One requested seat, in the catalog.
struct Seat<'r> {
    id: &'r str,
    section: &'r str,
    n: u32,
    price: u64,
}

/// The requested seats, sorted (so the same set in any order is the same request),
/// distinct, at most `HOLD_LIMIT`, all in the catalog.
fn seats<'r>(event: &Event, ids: &'r [Cow<'_, str>], limit: u32) -> Result<Vec<Seat<'r>>, Error> {
    let invalid = |m| Error::request(ErrorCode::InvalidField, m);
    if ids.is_empty() || ids.len() > limit as usize {
        return Err(invalid("seatIds must list 1 to HOLD_LIMIT seats"));
    }
    let mut seats = Vec::with_capacity(ids.len());
    for id in ids {
        let not_found = || Error::request(ErrorCode::SeatNotFound, "no such seat");
        let (section, n) = keys::parse_seat(id).ok_or_else(not_found)?;
        let sec = event
            .section(section)
            .filter(|s| n <= s.seats)
            .ok_or_else(not_found)?;
        seats.push(Seat {
            id,
            section,
            n,
            price: sec.price,
        });
    }
    seats.sort_by(|a, b| (a.section, a.n).cmp(&(b.section, b.n)));
    if seats.windows(2).any(|w| w[0].id == w[1].id) {
        return Err(invalid("seatIds must not repeat"));
    }
    Ok(seats)
}

fn csv(seats: &[Seat<'_>]) -> String {
    seats.iter().map(|s| s.id).collect::<Vec<_>>().join(",")
}

/// A hex digest identifying a request's meaning (RFC draft: "fingerprint").
fn fingerprint(parts: &[&str]) -> String {
    let mut sha = Sha256::new();
    for part in parts {
        sha.update(part.as_bytes());
        sha.update([0]);
    }
    sha.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn integer(frame: Option<&Frame>) -> Option<i64> {
    match frame {
        Some(Frame::Integer(n)) => Some(*n),
        _ => None,
    }
}

/// Maps a script's outcome: `{1, body}` first time, `{0, body}` replay, negative codes.
fn outcome(result: &Frame) -> Result<(bool, &[u8]), Error> {
    let unexpected = || Error::Internal {
        message: "unexpected reply from storage",
    };
    let Frame::Array(items) = result else {
        return Err(unexpected());
    };
    let body = || match items.get(1) {
        Some(Frame::BulkString(b)) => Ok(&b[..]),
        _ => Err(unexpected()),
    };
    match integer(items.first()).ok_or_else(unexpected)? {
        1 => Ok((false, body()?)),
        0 => Ok((true, body()?)),
        -1 => Err(Error::request(
            ErrorCode::HoldMismatch,
            "a seat is not held by you",
        )),
        -404 => Err(Error::request(ErrorCode::IntentNotFound, "no such intent")),
        -410 => Err(Error::request(
            ErrorCode::IntentExpired,
            "the intent outlived its holds",
        )),
        -4090 => Err(Error::request(
            ErrorCode::IntentMismatch,
            "not this intent's user or seats",
        )),
        -409 => Err(Error::RetryLater {
            code: ErrorCode::IdempotencyInFlight,
            message: "the first request with this Idempotency-Key is still in flight",
            retry_after_secs: 1,
        }),
        -422 => Err(Error::request(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used with another request",
        )),
        _ => Err(unexpected()),
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntentBody<'a> {
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    seat_ids: Vec<Cow<'a, str>>,
}

/// `POST /confirm/payment-intent`: every seat held by this user (one script), priced
/// from the catalog, stored for the holds' remaining lifetime.
pub(crate) async fn payment_intent(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let key = idempotency_key(head)?;
    let req: IntentBody<'_> = parse(body)?;
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let Caller { token, event } =
        caller(core, head, Some(&req.user_id), &req.event_id, &mut scratch).await?;
    let seats = seats(&event, &req.seat_ids, core.config.hold_limit)?;
    let seat_csv = csv(&seats);
    let event_id = event.catalog.event_id.as_str();
    let fp = fingerprint(&[event_id, &seat_csv]);
    let mut intent_id = Vec::with_capacity(16);
    crate::ids::write_next(&mut intent_id);
    let intent_id = String::from_utf8(intent_id).unwrap_or_default();
    let amount: u64 = seats.iter().map(|s| s.price).sum();

    let mut names = vec![
        keys::idempotency(event_id, "intent", token.user, key),
        keys::intent(event_id, &intent_id),
    ];
    names.extend(seats.iter().map(|s| keys::hold(event_id, s.section, s.n)));
    let names: Vec<&[u8]> = names.iter().map(|k| k.as_bytes()).collect();
    let (amount, ttl) = (
        amount.to_string(),
        core.config.idempotency_ttl.as_millis().to_string(),
    );
    let mut args: Vec<&[u8]> = vec![
        fp.as_bytes(),
        token.user.as_bytes(),
        intent_id.as_bytes(),
        amount.as_bytes(),
        event.catalog.currency.as_bytes(),
        ttl.as_bytes(),
        ttl.as_bytes(),
        seat_csv.as_bytes(),
    ];
    args.extend(seats.iter().map(|s| s.id.as_bytes()));
    let result = core
        .redis
        .eval(&core.confirm.scripts.intent, &names, &args)
        .await?;
    let (replay, body) = outcome(&result)?;
    answer(reply, 201, replay, body);
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommitBody<'a> {
    #[serde(borrow)]
    intent_id: Cow<'a, str>,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    seat_ids: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
}

/// `POST /confirm/commit`: checks the intent and the holds, extends the holds to cover
/// processing, enqueues the commit message and records the order PENDING, in one
/// script. 202 with `Location: /confirm/status?idem=KEY`.
pub(crate) async fn commit(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let key = idempotency_key(head)?;
    let req: CommitBody<'_> = parse(body)?;
    if !keys::is_id(&req.intent_id) {
        // Not an id this system hands out, so there is no such intent.
        return Err(Error::request(ErrorCode::IntentNotFound, "no such intent"));
    }
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let Caller { token, event } =
        caller(core, head, Some(&req.user_id), &req.event_id, &mut scratch).await?;
    let seats = seats(&event, &req.seat_ids, core.config.hold_limit)?;
    let seat_csv = csv(&seats);
    let event_id = event.catalog.event_id.as_str();
    let fp = fingerprint(&[event_id, &req.intent_id, &seat_csv]);
    let shard = (fnv1a(key.as_bytes()) % u64::from(core.config.commit_shards)) as u32;

    // What the script completes with the intent's holds, amount and the server's time.
    let mut seat_array = Vec::with_capacity(16 * seats.len());
    seat_array.push(b'[');
    for (i, s) in seats.iter().enumerate() {
        if i > 0 {
            seat_array.push(b',');
        }
        write_str(&mut seat_array, s.id.as_bytes());
    }
    seat_array.push(b']');
    let mut message = Vec::with_capacity(256);
    message.extend_from_slice(b"{\"v\":");
    write_u64(
        &mut message,
        u64::from(codec::contract::CommitMessage::VERSION),
    );
    for (name, value) in [
        (&b",\"idem\":"[..], key.as_bytes()),
        (b",\"intentId\":", req.intent_id.as_bytes()),
        (b",\"eventId\":", event_id.as_bytes()),
        (b",\"userId\":", token.user.as_bytes()),
    ] {
        message.extend_from_slice(name);
        write_str(&mut message, value);
    }
    message.extend_from_slice(b",\"seatIds\":");
    message.extend_from_slice(&seat_array);
    let mut status = Vec::with_capacity(256);
    status.extend_from_slice(b"{\"order\":{\"idem\":");
    write_str(&mut status, key.as_bytes());
    status.extend_from_slice(b",\"status\":\"PENDING\",\"eventId\":");
    write_str(&mut status, event_id.as_bytes());
    status.extend_from_slice(b",\"seatIds\":");
    status.extend_from_slice(&seat_array);
    let mut response = Vec::with_capacity(64);
    response.extend_from_slice(b"{\"idem\":");
    write_str(&mut response, key.as_bytes());
    response.extend_from_slice(b",\"status\":\"PENDING\"}");

    let mut names = vec![
        keys::idempotency(event_id, "commit", token.user, key),
        keys::intent(event_id, &req.intent_id),
        keys::order_status(event_id, token.user, key),
        keys::commits(event_id, shard),
        keys::user_holds(event_id, token.user),
    ];
    for s in &seats {
        names.push(keys::hold(event_id, s.section, s.n));
        names.push(keys::section_holds(event_id, s.section));
    }
    let names: Vec<&[u8]> = names.iter().map(|k| k.as_bytes()).collect();
    let extend = core.config.commit_hold_extend.as_millis().to_string();
    let ttl = core.config.idempotency_ttl.as_millis().to_string();
    let numbers: Vec<String> = seats.iter().map(|s| s.n.to_string()).collect();
    let sqs = core.side.as_ref().filter(|side| side.queues());
    let mode: &[u8] = if sqs.is_some() { b"begin" } else { b"stream" };
    let mut args: Vec<&[u8]> = vec![
        fp.as_bytes(),
        token.user.as_bytes(),
        seat_csv.as_bytes(),
        extend.as_bytes(),
        ttl.as_bytes(),
        &message,
        &status,
        &response,
        mode,
        IN_FLIGHT_TTL_MS.as_bytes(),
    ];
    for (s, n) in seats.iter().zip(&numbers) {
        args.push(n.as_bytes());
        args.push(s.id.as_bytes());
    }
    let result = core
        .redis
        .eval(&core.confirm.scripts.commit, &names, &args)
        .await?;
    let body = match (sqs, &result) {
        (Some(side), Frame::Array(items)) if integer(items.first()) == Some(2) => {
            let (Some(Frame::BulkString(message)), Some(Frame::BulkString(status))) =
                (items.get(1), items.get(2))
            else {
                return Err(Error::Internal {
                    message: "unexpected reply from storage",
                });
            };
            let group = format!(
                "{event_id}#{}",
                fnv1a(key.as_bytes()) % u64::from(core.config.sqs_groups)
            );
            let message = String::from_utf8_lossy(message).into_owned();
            let sent = side
                .send(group, deduplication_id(event_id, token.user, key), message)
                .await;
            if let Err(error) = sent.unwrap_or_else(|_| Err(SendError("side thread gone".into()))) {
                warn!(%error, "commit not enqueued");
                let abort = [names[0]];
                core.redis
                    .eval(&core.confirm.scripts.commit_abort, &abort, &[fp.as_bytes()])
                    .await?;
                return Err(Error::RetryLater {
                    code: ErrorCode::Unavailable,
                    message: "the commit queue is unavailable, retry",
                    retry_after_secs: 1,
                });
            }
            let finish = [names[0], names[2]];
            let args: [&[u8]; 4] = [fp.as_bytes(), &response, status, ttl.as_bytes()];
            core.redis
                .eval(&core.confirm.scripts.commit_finish, &finish, &args)
                .await?;
            (false, &response[..])
        }
        _ => outcome(&result)?,
    };
    answer(reply, 202, body.0, body.1);
    let mut location = b"/confirm/status?idem=".to_vec();
    percent_encode(&mut location, key.as_bytes());
    reply.header("location", &location);
    Ok(())
}

/// How long a commit stays "in flight" (409 to a second attempt) while SQS is asked;
/// after a crash in between, the key frees itself after this.
const IN_FLIGHT_TTL_MS: &str = "30000";

/// SQS deduplicates queue-wide with ids of at most 128 characters, while an
/// Idempotency-Key is per event and user and up to 255: the id is a digest of all three.
fn deduplication_id(event: &str, user: &str, key: &str) -> String {
    fingerprint(&[event, user, key])
}

/// `GET /confirm/status?idem=KEY`: this user's order, from the status record the edge
/// (PENDING) and the worker (CONFIRMED, REJECTED) keep in Redis, else from PostgreSQL
/// through the side thread (`DATABASE_URL`).
pub(crate) async fn status(core: &Core, head: &Head<'_>, reply: &mut Reply) -> Result<(), Error> {
    let idem = head
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("idem="))
        .and_then(|k| percent_decode(k, true))
        .filter(|k| !k.is_empty())
        .ok_or(Error::request(
            ErrorCode::InvalidField,
            "idem query parameter is required",
        ))?;
    let now = now_ms();
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let token = verify(core, head.room_token, now, &mut scratch)?;
    let key = keys::order_status(token.event, token.user, &idem);
    let body = match core.redis.query(&[b"GET", key.as_bytes()]).await? {
        Frame::BulkString(body) => body,
        _ => stored_status(core, token.event, token.user, &idem)
            .await?
            .ok_or(Error::request(
                ErrorCode::OrderNotFound,
                "no order with this key",
            ))?,
    };
    let etag = format!("\"{:016x}\"", fnv1a(&body));
    let not_modified = head
        .if_none_match
        .is_some_and(|t| t.trim_ascii() == etag.as_bytes());
    reply.reset(if not_modified { 304 } else { 200 });
    reply.header("cache-control", b"no-cache");
    reply.header("etag", etag.as_bytes());
    if !not_modified {
        reply.json_body().extend_from_slice(&body);
    }
    Ok(())
}

/// The order from PostgreSQL; `None` without `DATABASE_URL` (Redis alone answers then).
/// No answer from PostgreSQL is no telling whether the order exists: 503, not 404.
async fn stored_status(
    core: &Core,
    event: &str,
    user: &str,
    idem: &str,
) -> Result<Option<Bytes>, Error> {
    let Some(side) = &core.side else {
        return Ok(None);
    };
    match side.order_status(event, user, idem).await {
        Ok(found) => Ok(found.map(Bytes::from)),
        Err(LookupError::Unconfigured) => Ok(None),
        Err(error) => {
            warn!(%error, "order look-up failed");
            Err(Error::RetryLater {
                code: ErrorCode::Unavailable,
                message: "order status unavailable, retry",
                retry_after_secs: 1,
            })
        }
    }
}
