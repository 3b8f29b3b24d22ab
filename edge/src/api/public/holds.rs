//! Seat holds: `POST /public/hold` and `POST /public/release`.

use std::rc::Rc;

use codec::{
    contract::{HoldRequest, ReleaseRequest},
    error_code::ErrorCode,
    json::{write_str, write_u64},
    rules,
    store::{Hold, HoldOutcome, Release},
};

use crate::{
    api::request::{for_event, now_ms, parse, verify},
    core::Core,
    error::Error,
    events::Event,
    http::{Head, Reply},
    side::MirrorOp,
    token,
};

/// What `hold` and `release` share: the token's user, admitted, for a seat that exists.
struct SeatCall<'r> {
    user: &'r str,
    event: Rc<Event>,
    section: &'r str,
    n: u32,
}

async fn seat_call<'r>(
    core: &Core,
    head: &Head<'_>,
    event_id: &str,
    seat_id: &'r str,
    scratch: &'r mut [u8; token::SCRATCH_BYTES],
) -> Result<SeatCall<'r>, Error> {
    let now = now_ms();
    let token = verify(core, head.room_token, now, scratch).await?;
    for_event(&token, event_id)?;
    let event = core.events.get(&core.redis, event_id).await?;
    if event.admission.wait_ms(token.position, now) > 0 {
        return Err(Error::request(
            ErrorCode::NotAdmitted,
            "not admitted yet: keep waiting",
        ));
    }
    let not_found = || Error::request(ErrorCode::SeatNotFound, "no such seat");
    let rules::Seat { section, n } = rules::seat_id(seat_id).map_err(|_| not_found())?;
    event
        .section(section)
        .filter(|s| n <= s.seats)
        .ok_or_else(not_found)?;
    Ok(SeatCall {
        user: token.user,
        event,
        section,
        n,
    })
}

/// `POST /public/hold`: one script refuses a sold or held seat and a buyer over the
/// limit, else sets the hold with its TTL and records it for counting.
pub async fn hold(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let req: HoldRequest<'_> = parse(body)?;
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let call = seat_call(core, head, &req.event_id, &req.seat_id, &mut scratch).await?;
    core.limits.buyer(call.user)?;
    let event_id = call.event.catalog.event_id.as_str();
    let mut hold_id = [0u8; crate::ids::ID_BYTES];
    crate::ids::write_next_into(&mut hold_id);
    let outcome = core
        .store
        .hold(&Hold {
            event: event_id,
            section: call.section,
            n: call.n,
            hold_id: &hold_id,
            user: call.user,
            seat_id: &req.seat_id,
        })
        .await?;
    let conflict = |code, message| Err(Error::request(code, message));
    let expires_at = match outcome {
        HoldOutcome::Held { expires_at_ms } => expires_at_ms,
        HoldOutcome::Sold => return conflict(ErrorCode::SeatSold, "seat already sold"),
        HoldOutcome::Taken => return conflict(ErrorCode::SeatHeld, "seat is held"),
        HoldOutcome::OverLimit => return conflict(ErrorCode::HoldLimit, "too many seats held"),
    };
    if let Some(side) = &core.side {
        side.mirror(|| MirrorOp::Hold {
            pk: format!("{event_id}#{}", req.seat_id),
            holder: call.user.to_owned(),
            hold_id: String::from_utf8_lossy(&hold_id).into_owned(),
            exp_secs: expires_at.div_ceil(1000),
        });
    }
    reply.reset(201);
    reply.header("cache-control", b"no-store");
    let out = reply.json_body();
    out.extend_from_slice(b"{\"holdId\":");
    write_str(out, &hold_id);
    out.extend_from_slice(b",\"expiresAt\":");
    write_u64(out, expires_at);
    out.push(b'}');
    Ok(())
}

/// `POST /public/release`: compare-and-delete, so only the holder releases.
pub async fn release(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let req: ReleaseRequest<'_> = parse(body)?;
    let hold_id = &req.hold_id;
    rules::hold_id(hold_id)?;
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let call = seat_call(core, head, &req.event_id, &req.seat_id, &mut scratch).await?;
    let event_id = call.event.catalog.event_id.as_str();
    let released = core
        .store
        .release(&Release {
            event: event_id,
            section: call.section,
            n: call.n,
            hold_id,
            user: call.user,
            seat_id: &req.seat_id,
        })
        .await?;
    if let (true, Some(side)) = (released, &core.side) {
        side.mirror(|| MirrorOp::Release {
            pk: format!("{event_id}#{}", req.seat_id),
        });
    }
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    let body: &[u8] = if released {
        b"{\"released\":true}"
    } else {
        b"{\"released\":false}"
    };
    reply.json_body().extend_from_slice(body);
    Ok(())
}
