//! The waiting room: `POST /public/enter` and `GET /public/room-status`.

use codec::{
    contract::EnterRequest,
    json::{write_str, write_u64},
    store::Enter,
};

use crate::{
    api::request::{now_ms, parse, query_param, valid_event, valid_user, verify},
    core::Core,
    error::Error,
    http::{Head, Reply},
    token::{self, RoomToken},
};

/// `POST /public/enter`: the same user gets the same position (one script call,
/// shared with the core's other entries of the moment).
pub async fn enter(core: &Core, body: &[u8], reply: &mut Reply) -> Result<(), Error> {
    let req: EnterRequest<'_> = parse(body)?;
    valid_user(&req.user_id)?;
    valid_event(&req.event_id)?;
    core.limits.buyer(&req.user_id)?;
    core.challenges.verify(
        req.challenge.as_deref(),
        req.nonce.as_deref(),
        &req.event_id,
        &req.user_id,
        now_ms(),
    )?;
    let event = core.events.get(&core.redis, &req.event_id).await?;
    let position = core
        .store
        .enter(&Enter {
            event: &req.event_id,
            user: &req.user_id,
        })
        .await?;
    let now = now_ms();
    let token = core.tokens.sign(&RoomToken {
        event: &req.event_id,
        user: &req.user_id,
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
