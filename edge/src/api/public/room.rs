//! The waiting room: `POST /public/enter` and `GET /public/room-status`.

use std::borrow::Cow;

use codec::{
    contract::EnterRequest,
    error_code::ErrorCode,
    json::{write_str, write_u64},
    store::Enter,
};

use crate::{
    api::request::{now_ms, parse, query_param, valid_event, valid_user, verify},
    core::Core,
    error::Error,
    http::{Head, Reply},
    identity,
    token::{self, RoomToken},
};

/// `POST /public/enter`: the same user gets the same position (one script call,
/// shared with the core's other entries of the moment).
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
    core.limits.buyer(&user)?;
    core.challenges.verify(
        req.challenge.as_deref(),
        req.nonce.as_deref(),
        &req.event_id,
        &user,
        now,
    )?;
    let event = core.events.get(&core.redis, &req.event_id).await?;
    let position = core
        .store
        .enter(&Enter {
            event: &req.event_id,
            user: &user,
        })
        .await?;
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

/// `GET /public/room-status`: verified with no I/O; the admission state comes from
/// this core's copy of the event. The token comes in `x-room-token` or the `token`
/// query parameter (base64url needs no percent-decoding).
pub async fn room_status(core: &Core, head: &Head<'_>, reply: &mut Reply) -> Result<(), Error> {
    let now = now_ms();
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let token = head
        .room_token
        .or_else(|| query_param(head.query, "token").map(str::as_bytes));
    let token = verify(core, token, now, &mut scratch).await?;
    let event = core.events.get(&core.redis, token.event).await?;
    let wait_ms = event.admission.wait_ms(token.position, now);
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
    write_u64(out, token.position);
    out.push(b'}');
    Ok(())
}
