//! `GET /confirm/status?idem=KEY`: this user's order, from the status record the edge
//! (PENDING) and the worker (CONFIRMED, REJECTED) keep in Redis, else from PostgreSQL
//! through the side thread (`DATABASE_URL`).

use bytes::Bytes;
use codec::{error_code::ErrorCode, keys, rules, url::percent_decode};

use crate::{
    api::request::{now_ms, query_param, verify},
    cache::fnv1a,
    core::Core,
    error::Error,
    http::{Head, Reply},
    side::LookupError,
    token,
};

pub async fn status(core: &Core, head: &Head<'_>, reply: &mut Reply) -> Result<(), Error> {
    let idem = query_param(head.query, "idem")
        .and_then(|k| percent_decode(k, true))
        .filter(|k| !k.is_empty())
        .ok_or(Error::request(
            ErrorCode::InvalidField,
            "idem query parameter is required",
        ))?;
    // An Idempotency-Key's rule: a key no commit can have is refused here, not looked
    // up (PostgreSQL refuses control characters: that was a 503 for a request at fault).
    rules::idempotency_key(idem.as_bytes()).map_err(|e| e.named("idem"))?;
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let token = verify(core, head.room_token, now_ms(), &mut scratch).await?;
    let key = keys::order_status(token.event, token.user, &idem);
    let body = match core.store.get(key.as_bytes()).await? {
        Some(body) => body,
        None => stored_status(core, token.event, token.user, &idem)
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
        Err(error) => Err(Error::unavailable("order status unavailable, retry", error)),
    }
}
