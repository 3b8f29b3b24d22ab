//! What the handlers share: request bodies parsed into codec's types (borrowed), the
//! rules every field is held to, the room token, the clock.

use codec::{error_code::ErrorCode, rules};
use serde::Deserialize;

use crate::{
    core::Core,
    error::Error,
    http::Head,
    limits,
    token::{self, RoomToken},
};

pub use codec::now_ms;

/// Parses a JSON body: not JSON -> `INVALID_JSON`, wrong shape -> `INVALID_FIELD`.
pub fn parse<'b, T: Deserialize<'b>>(body: &'b [u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::request(
            ErrorCode::InvalidField,
            "a field is missing or has the wrong type",
        ),
        _ => Error::request(ErrorCode::InvalidJson, "the body is not valid JSON"),
    })
}

/// A user id ([`rules::user_id`]), else 400 naming the field.
pub fn valid_user(user: &str) -> Result<(), Error> {
    Ok(rules::user_id(user)?)
}

/// An event id ([`rules::event_id`]), else 400 naming the field.
pub fn valid_event(event: &str) -> Result<(), Error> {
    Ok(rules::event_id(event)?)
}

/// The value of query parameter `name` as sent (not percent-decoded).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|kv| {
        kv.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// The room token, verified with no I/O, of a buyer no operator revoked (as of this
/// core's copy of the event, refreshed here when stale).
pub async fn verify<'s>(
    core: &Core,
    token: Option<&[u8]>,
    now: u64,
    scratch: &'s mut [u8; token::SCRATCH_BYTES],
) -> Result<RoomToken<'s>, Error> {
    let token = token.ok_or(Error::request(
        ErrorCode::TokenMissing,
        "x-room-token is required",
    ))?;
    let token = core.tokens.verify(token, now, scratch)?;
    // Only to refresh the copy: an unknown event or Redis trouble is the handler's to
    // answer, and the revocations read so far still hold.
    let _ = core.events.get(&core.redis, token.event).await;
    if core.events.is_revoked(token.event, token.user) {
        return Err(Error::request(
            ErrorCode::TokenRevoked,
            "room token revoked by an operator",
        ));
    }
    Ok(token)
}

/// Takes a request from the client address's bucket (`limits`): the right-most
/// untrusted `X-Forwarded-For` entry, else the socket's peer.
pub fn limit_address(core: &Core, head: &Head<'_>) -> Result<(), Error> {
    if core.config.rate_limits.is_none() {
        return Ok(());
    }
    let peer = head
        .peer
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let addr = limits::client_addr(head.forwarded_for, peer, core.config.trusted_proxy_hops);
    core.limits.address(addr)
}

/// A token for `event_id` (checked to be an event id first).
pub fn for_event(token: &RoomToken<'_>, event_id: &str) -> Result<(), Error> {
    valid_event(event_id)?;
    if token.event != event_id {
        return Err(Error::request(
            ErrorCode::TokenWrongEvent,
            "room token is for another event",
        ));
    }
    Ok(())
}
