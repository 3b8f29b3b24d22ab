//! The operators' endpoints, behind the bearer `ADMIN_TOKEN` (absent: 404, as if the
//! route did not exist).

use codec::{
    contract::AdmissionRequest,
    error_code::ErrorCode,
    fairness,
    store::{AdmissionRefusal, SetAdmission},
};

use crate::{
    api::request::{parse, valid_event},
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
