//! The operators' endpoints, behind the bearer `ADMIN_TOKEN` (absent: 404, as if the
//! route did not exist).

use codec::{
    contract::AdmissionRequest, error_code::ErrorCode, json::write_u64, store::SetAdmission,
};

use crate::{
    api::request::{parse, valid_event},
    core::Core,
    error::Error,
    http::{Head, Reply},
};

/// `POST /admin/events/{eventId}/admission`: changes the opening time and/or the
/// rate; those admitted so far stay admitted.
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
    // (`codec::rules::admission_rate`, `epoch_ms`).
    core.events.get(&core.redis, event_id).await?;
    let state = core
        .store
        .set_admission(&SetAdmission {
            event: event_id,
            open_at_ms: req.open_at_ms,
            rate: req.rate,
        })
        .await?;
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    let out = reply.json_body();
    for (name, value) in [
        (&b"{\"openAtMs\":"[..], state.open_at_ms),
        (b",\"rate\":", state.rate),
        (b",\"baseMs\":", state.base_ms),
        (b",\"baseAdmitted\":", state.base_admitted),
    ] {
        out.extend_from_slice(name);
        write_u64(out, value);
    }
    out.push(b'}');
    Ok(())
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
