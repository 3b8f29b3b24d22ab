//! The waiting room: `POST /public/enter`, `GET /public/room-status` and
//! `GET /public/room-events` (the stream itself is `crate::sse`).
//!
//! Both follow the event's line (README "Fair admission"): its queueing, its pre-queue
//! (position 0 until the draw at the opening), and, with an `activeLimit`, presence:
//! every status records that the buyer is still there, and a buyer whose place was
//! left (done, or abandoned and skipped) gets 410 `POSITION_EXPIRED` and may enter
//! again, at the back.

use std::borrow::Cow;

use codec::{
    contract::EnterRequest,
    error_code::ErrorCode,
    json::{write_str, write_u64},
    rules,
    store::{Enter, EnterOutcome, Place, Poll},
};

use crate::{
    api::request::{now_ms, parse, query_param, valid_event, valid_user, verify},
    core::Core,
    error::Error,
    events::Event,
    http::{Head, Reply, Subscription},
    identity,
    token::{self, RoomToken},
};

/// `POST /public/enter`: the same user gets the same position while the place lasts
/// (one script call, shared with the core's other entries of the moment).
pub async fn enter(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let req: EnterRequest<'_> = parse(body)?;
    let now = now_ms();
    let user = buyer(core, head, req.user_id.as_deref(), now)?;
    valid_event(&req.event_id)?;
    if let Some(challenge) = &req.challenge {
        rules::pow_challenge(challenge)?;
    }
    if let Some(nonce) = &req.nonce {
        rules::pow_nonce(nonce)?;
    }
    core.limits.buyer(&user)?;
    core.challenges.verify(
        req.challenge.as_deref(),
        req.nonce.as_deref(),
        &req.event_id,
        &user,
        now,
    )?;
    let event = core.events.get(&core.redis, &req.event_id).await?;
    let outcome = core
        .store
        .enter(&Enter {
            event: &req.event_id,
            user: &user,
        })
        .await?;
    let position = match outcome {
        EnterOutcome::Placed(p) => p,
        EnterOutcome::Prequeued => 0,
        EnterOutcome::Rejected => {
            return Err(Error::request(
                ErrorCode::RoomClosed,
                "this event takes no new entries",
            ))
        }
        EnterOutcome::NotOpen => {
            return Err(Error::request(
                ErrorCode::RoomClosed,
                "the pre-queue has not opened yet: see /public/fairness/{eventId}",
            ))
        }
    };
    let token = core.tokens.sign(&RoomToken {
        event: &req.event_id,
        user: &user,
        position,
        issued_ms: now,
        expires_ms: now + core.config.room_token_ttl.as_millis() as u64,
    });
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    let out = reply.json_body();
    out.extend_from_slice(b"{\"roomToken\":");
    write_str(out, token.as_bytes());
    out.extend_from_slice(b",\"position\":");
    write_u64(out, position);
    out.extend_from_slice(b",\"etaSec\":");
    write_u64(out, event.admission.wait_ms(position, now).div_ceil(1000));
    out.push(b'}');
    Ok(())
}

/// The buyer: the verified identity (a body `userId` must then equal it), or with
/// `IDENTITY=none` the body's `userId`.
fn buyer<'b>(
    core: &Core,
    head: &Head<'_>,
    body_user: Option<&'b str>,
    now: u64,
) -> Result<Cow<'b, str>, Error> {
    match identity::verify(&core.config.identity, &core.identity_keys, head, now)? {
        Some(verified) => match body_user {
            Some(sent) if sent != verified => Err(Error::request(
                ErrorCode::UserMismatch,
                "userId is not the signed-in user",
            )),
            _ => Ok(Cow::Owned(verified)),
        },
        None => {
            // With IDENTITY=none the body's userId is the identity.
            let user = body_user.ok_or(Error::request(
                ErrorCode::IdentityMissing,
                "userId is required (IDENTITY=none)",
            ))?;
            valid_user(user)?;
            Ok(Cow::Borrowed(user))
        }
    }
}

/// `GET /public/challenge?eventId=`: a proof-of-work challenge for `enter`
/// (`crate::pow`); `bits` 0 when none is asked.
pub async fn challenge(core: &Core, head: &Head<'_>, reply: &mut Reply) -> Result<(), Error> {
    let event_id = query_param(head.query, "eventId").unwrap_or_default();
    valid_event(event_id)?;
    let event = core.events.get(&core.redis, event_id).await?;
    let (challenge, expires_at) = core.challenges.issue(&event.catalog.event_id, now_ms());
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    let out = reply.json_body();
    out.extend_from_slice(b"{\"challenge\":");
    write_str(out, challenge.as_bytes());
    out.extend_from_slice(b",\"bits\":");
    write_u64(out, u64::from(core.challenges.bits));
    out.extend_from_slice(b",\"expiresAt\":");
    write_u64(out, expires_at);
    out.push(b'}');
    Ok(())
}

/// The token's live place: where the line needs it (an active limit, a pre-queued
/// token) one batched script call records the buyer as present and reads the place;
/// a token whose place was drawn gets a new one that carries it.
async fn live_place(
    core: &Core,
    token: &RoomToken<'_>,
    event: &Event,
) -> Result<(u64, Option<String>), Error> {
    let mut position = token.position;
    let mut reissued = None;
    if position == 0 || event.admission.active_limit > 0 {
        let place = core
            .store
            .poll(&Poll {
                event: token.event,
                user: token.user,
            })
            .await?;
        match (position, place) {
            (_, Place::Gone) => return Err(expired()),
            (0, Place::Prequeued) => {}
            (0, Place::At(drawn)) => {
                position = drawn;
                reissued = Some(core.tokens.sign(&RoomToken {
                    position,
                    ..token.clone()
                }));
            }
            // A token from before the buyer left and entered again.
            (p, Place::At(live)) if p != live => return Err(expired()),
            (_, Place::At(_)) => {}
            (_, Place::Prequeued) => return Err(expired()),
        }
    }
    Ok((position, reissued))
}

/// The room token of `room-status` and `room-events`: `x-room-token` or the `token`
/// query parameter (base64url needs no percent-decoding).
fn room_token<'h>(head: &Head<'h>) -> Option<&'h [u8]> {
    head.room_token
        .or_else(|| query_param(head.query, "token").map(str::as_bytes))
}

/// `GET /public/room-status`: the token verified with no I/O, the admission state from
/// this core's copy of the event; one batched script call only where the line needs
/// it ([`live_place`]).
pub async fn room_status(core: &Core, head: &Head<'_>, reply: &mut Reply) -> Result<(), Error> {
    let now = now_ms();
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let token = verify(core, room_token(head), now, &mut scratch).await?;
    let event = core.events.get(&core.redis, token.event).await?;
    let (position, reissued) = live_place(core, &token, &event).await?;
    let wait_ms = event.admission.wait_ms(position, now);
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    let out = reply.json_body();
    out.extend_from_slice(if wait_ms == 0 {
        b"{\"ready\":true"
    } else {
        b"{\"ready\":false"
    });
    out.extend_from_slice(b",\"leftSec\":");
    write_u64(out, wait_ms.div_ceil(1000));
    out.extend_from_slice(b",\"position\":");
    write_u64(out, position);
    if let Some(token) = reissued {
        out.extend_from_slice(b",\"roomToken\":");
        write_str(out, token.as_bytes());
    }
    out.push(b'}');
    Ok(())
}

/// `GET /public/room-events`: checked as `room-status`, then the connection becomes
/// the buyer's event stream (`crate::sse`).
pub async fn room_events(core: &Core, head: &Head<'_>, reply: &mut Reply) -> Result<(), Error> {
    let now = now_ms();
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let token = verify(core, room_token(head), now, &mut scratch).await?;
    let event = core.events.get(&core.redis, token.event).await?;
    let (position, reissued) = live_place(core, &token, &event).await?;
    let last_id = head
        .last_event_id
        .and_then(|id| std::str::from_utf8(id).ok()?.parse().ok())
        .unwrap_or(0);
    reply.reset(200);
    reply.stream = Some(Box::new(Subscription {
        event: token.event.to_owned(),
        user: token.user.to_owned(),
        position,
        issued_ms: token.issued_ms,
        expires_ms: token.expires_ms,
        last_id,
        reissued,
    }));
    Ok(())
}

pub(crate) fn expired() -> Error {
    Error::request(
        ErrorCode::PositionExpired,
        "this place in line was given up (done, or not seen for too long): enter again",
    )
}
