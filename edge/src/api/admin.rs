//! The operators' endpoints, behind the bearer `ADMIN_TOKEN` (absent: 404, as if the
//! route did not exist).

use codec::{
    contract::{AdmissionRequest, RevokeRequest},
    error_code::ErrorCode,
    fairness,
    json::{write_str, write_u64},
    keys, rules,
    store::{AdmissionRefusal, Revoke, SetAdmission},
};

use crate::{
    api::request::{parse, valid_event, valid_user},
    core::Core,
    error::Error,
    http::{Head, Reply},
};

/// `POST /admin/events/{eventId}/admission`: changes the opening time, the rate, the
/// pre-queue, the queueing and/or the active limit; those admitted so far stay
/// admitted. A fresh seed goes with every call; the script keeps it only for an event
/// that needs its first one (`codec::fairness`), so it is drawn before any entry.
pub async fn set_admission(
    core: &Core,
    head: &Head<'_>,
    event_id: &str,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    authorize(core, head)?;
    valid_event(event_id)?;
    let req: AdmissionRequest = parse(body)?;
    // `rate` 0 and out-of-range values are refused as the body parses
    // (`codec::rules::admission_rate`, `epoch_ms`, `active_limit`).
    core.events.get(&core.redis, event_id).await?;
    let mut bytes = [0u8; fairness::SEED_BYTES];
    getrandom::getrandom(&mut bytes).map_err(|e| Error::Internal {
        message: "no randomness for the seed",
        cause: e.to_string(),
    })?;
    let seed = fairness::seed_hex(&bytes);
    let state = core
        .store
        .set_admission(&SetAdmission {
            event: event_id,
            open_at_ms: req.open_at_ms,
            rate: req.rate,
            prequeue_at_ms: req.prequeue_at_ms,
            queueing: req.queueing,
            active_limit: req.active_limit,
            seed_hash: &fairness::commitment(&seed),
            seed: &seed,
        })
        .await?;
    let state =
        match state {
            Ok(state) => state,
            Err(AdmissionRefusal::PrequeueNotBeforeOpening) => {
                return Err(Error::request(
                    ErrorCode::InvalidField,
                    "prequeueAtMs must be before openAtMs",
                ))
            }
            Err(AdmissionRefusal::PrequeueOpen) => return Err(Error::request(
                ErrorCode::FairnessLocked,
                "the pre-queue is open: it cannot move, nor the queueing change, until the draw",
            )),
        };
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    serde_json::to_writer(reply.json_body(), &state).map_err(|e| Error::Internal {
        message: "cannot render the admission state",
        cause: e.to_string(),
    })
}

/// `POST /admin/events/{eventId}/revoke`: the buyer's room token stops working on every
/// core of every edge within `EVENT_REFRESH_MS` (401 `TOKEN_REVOKED`, `revoked`), and
/// the buyer's holds are released: at once, and again once every core has seen the
/// revocation, for a hold taken in between by a core that had not yet.
pub async fn revoke(
    core: &Core,
    head: &Head<'_>,
    event_id: &str,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    authorize(core, head)?;
    valid_event(event_id)?;
    let req: RevokeRequest<'_> = parse(body)?;
    valid_user(&req.user_id)?;
    core.events.get(&core.redis, event_id).await?;
    let mut released = release_holds(core, event_id, &req.user_id).await?;
    // A core refreshes at most every EVENT_REFRESH_MS; the margin covers its read.
    monoio::time::sleep(core.config.event_refresh + std::time::Duration::from_millis(100)).await;
    released += release_holds(core, event_id, &req.user_id).await?;
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    let out = reply.json_body();
    out.extend_from_slice(b"{\"userId\":");
    write_str(out, req.user_id.as_bytes());
    out.extend_from_slice(b",\"revoked\":true,\"holdsReleased\":");
    write_u64(out, released);
    out.push(b'}');
    Ok(())
}

/// Records the revocation (again: idempotent) and releases the buyer's holds.
async fn release_holds(core: &Core, event: &str, user: &str) -> Result<u64, Error> {
    let seats = core
        .store
        .members(keys::user_holds(event, user).as_bytes())
        .await?;
    let held: Vec<(&str, u32, &str)> = seats
        .iter()
        .filter_map(|seat| {
            let id = std::str::from_utf8(seat).ok()?;
            let rules::Seat { section, n } = rules::seat_id(id).ok()?;
            Some((section, n, id))
        })
        .collect();
    core.store
        .revoke(&Revoke {
            event,
            user,
            held: &held,
        })
        .await
}

fn authorize(core: &Core, head: &Head<'_>) -> Result<(), Error> {
    let Some(expected) = core.config.admin_token.as_deref() else {
        return Err(Error::request(ErrorCode::NotFound, "no such route"));
    };
    let given = head.authorization.and_then(|a| a.strip_prefix(b"Bearer "));
    if given.is_some_and(|g| constant_time_eq(g, expected.as_bytes())) {
        Ok(())
    } else {
        Err(Error::request(
            ErrorCode::TokenInvalid,
            "admin bearer token missing or wrong",
        ))
    }
}

/// Compares secrets in time that depends on their length only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}
