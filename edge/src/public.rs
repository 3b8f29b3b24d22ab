//! `/public/*`: waiting room (`enter`, `room-status`), seat holds (`hold`, `release`),
//! and the cached reads (`summary`, `seats`); plus the operators' admission endpoint.
//!
//! Every handler that changes Redis does it in one round trip: one Lua script
//! (`scripts`), run by SHA on the core's pipelined connection.

mod scripts;

use std::{
    borrow::Cow,
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use codec::{
    error_code::ErrorCode,
    json::{write_str, write_u64},
    keys,
};
use serde::Deserialize;

use crate::{
    config::Config,
    error::Error,
    events::{Event, Events},
    http::{Head, Reply},
    redis::{BatchScript, Frame},
    server::Core,
    side::MirrorOp,
    token::{self, Keys, RoomToken},
};

/// Each core's state for these routes.
pub struct Public {
    pub events: Events,
    tokens: Keys,
    scripts: scripts::Scripts,
    /// Rendered `summary` and `seats` bodies, by route and ids ([`cache_key`]).
    cache: RefCell<HashMap<String, Rc<Cached>>>,
    /// Where a request's cache key is written to look it up: no allocation on a hit.
    key: RefCell<String>,
    /// `Cache-Control` of those: `PUBLIC_CACHE_MS` in whole seconds, for browsers and
    /// CloudFront alike.
    cache_control: Vec<u8>,
    /// The hold script, with `HOLD_TTL_MS` and `HOLD_LIMIT` as its shared arguments.
    hold: Rc<BatchScript>,
    enter: Rc<BatchScript>,
}

struct Cached {
    body: Vec<u8>,
    /// A strong validator of `body` (RFC 9110 section 8.8.3).
    etag: String,
    made: Instant,
    /// A request is rendering the next one; meanwhile this one is served.
    refreshing: Cell<bool>,
}

impl Public {
    pub fn new(config: &Config) -> Self {
        let previous = config
            .room_token_secret_previous
            .as_deref()
            .map(str::as_bytes);
        Self {
            events: Events::new(config.event_refresh),
            tokens: Keys::new(config.room_token_secret.as_bytes(), previous),
            scripts: scripts::Scripts::default(),
            cache: RefCell::default(),
            key: RefCell::default(),
            cache_control: {
                let seconds = config.public_cache.as_millis().div_ceil(1000).max(1);
                format!("public, max-age={seconds}, s-maxage={seconds}").into_bytes()
            },
            hold: Rc::new(scripts::hold(
                config.hold_ttl.as_millis(),
                config.hold_limit,
            )),
            enter: Rc::new(scripts::enter()),
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses a JSON body: not JSON -> `INVALID_JSON`, wrong shape -> `INVALID_FIELD`.
pub(crate) fn parse<'b, T: Deserialize<'b>>(body: &'b [u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::request(
            ErrorCode::InvalidField,
            "a field is missing or has the wrong type",
        ),
        _ => Error::request(ErrorCode::InvalidJson, "the body is not valid JSON"),
    })
}

/// A user id: 1..=64 visible ASCII characters.
fn valid_user(user: &str) -> Result<(), Error> {
    if (1..=64).contains(&user.len()) && user.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::request(
            ErrorCode::InvalidField,
            "userId must be 1 to 64 visible characters",
        ))
    }
}

pub(crate) fn valid_event(event: &str) -> Result<(), Error> {
    if keys::is_id(event) {
        Ok(())
    } else {
        Err(Error::request(
            ErrorCode::InvalidField,
            "eventId must be 1 to 64 of [A-Za-z0-9_-]",
        ))
    }
}

fn integer(frame: Option<&Frame>) -> Result<i64, Error> {
    match frame {
        Some(Frame::Integer(n)) => Ok(*n),
        _ => Err(Error::Internal {
            message: "unexpected reply from storage",
        }),
    }
}

fn array(frame: &Frame) -> Result<&[Frame], Error> {
    match frame {
        Frame::Array(items) => Ok(items),
        _ => Err(Error::Internal {
            message: "unexpected reply from storage",
        }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnterBody<'a> {
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
}

/// `POST /public/enter`: the same user gets the same position (one script call,
/// shared with the core's other entries of the moment).
pub(crate) async fn enter(core: &Core, body: &[u8], reply: &mut Reply) -> Result<(), Error> {
    let req: EnterBody<'_> = parse(body)?;
    valid_user(&req.user_id)?;
    valid_event(&req.event_id)?;
    let public = &core.public;
    let event = public.events.get(&core.redis, &req.event_id).await?;
    let (positions, queue) = (keys::positions(&req.event_id), keys::queue(&req.event_id));
    let position = core
        .redis
        .eval_batched(
            &public.enter,
            req.event_id.as_bytes(),
            &[positions.as_bytes(), queue.as_bytes()],
            &[req.user_id.as_bytes()],
        )
        .await?;
    let position = integer(Some(&position))? as u64;
    let now = now_ms();
    let token = public.tokens.sign(&RoomToken {
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

/// The `token` query parameter (base64url needs no percent-decoding).
fn query_token(query: &str) -> Option<&[u8]> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::as_bytes)
}

pub(crate) fn verify<'s>(
    core: &Core,
    token: Option<&[u8]>,
    now: u64,
    scratch: &'s mut [u8; token::SCRATCH_BYTES],
) -> Result<RoomToken<'s>, Error> {
    let token = token.ok_or(Error::request(
        ErrorCode::TokenMissing,
        "x-room-token is required",
    ))?;
    core.public.tokens.verify(token, now, scratch)
}

/// `GET /public/room-status`: verified with no I/O; the admission state comes from
/// this core's copy of the event.
pub(crate) async fn room_status(
    core: &Core,
    head: &Head<'_>,
    reply: &mut Reply,
) -> Result<(), Error> {
    let now = now_ms();
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let token = head.room_token.or_else(|| query_token(head.query));
    let token = verify(core, token, now, &mut scratch)?;
    let event = core.public.events.get(&core.redis, token.event).await?;
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeatBody<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    seat_id: Cow<'a, str>,
    #[serde(borrow, default)]
    hold_id: Option<Cow<'a, str>>,
}

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
    req: &'r SeatBody<'_>,
    scratch: &'r mut [u8; token::SCRATCH_BYTES],
) -> Result<SeatCall<'r>, Error> {
    let now = now_ms();
    let token = verify(core, head.room_token, now, scratch)?;
    valid_event(&req.event_id)?;
    if token.event != req.event_id {
        return Err(Error::request(
            ErrorCode::TokenWrongEvent,
            "room token is for another event",
        ));
    }
    let event = core.public.events.get(&core.redis, &req.event_id).await?;
    if event.admission.wait_ms(token.position, now) > 0 {
        return Err(Error::request(
            ErrorCode::NotAdmitted,
            "not admitted yet: keep waiting",
        ));
    }
    let not_found = || Error::request(ErrorCode::SeatNotFound, "no such seat");
    let (section, n) = keys::parse_seat(&req.seat_id).ok_or_else(not_found)?;
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
pub(crate) async fn hold(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let req: SeatBody<'_> = parse(body)?;
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let call = seat_call(core, head, &req, &mut scratch).await?;
    let event_id = call.event.catalog.event_id.as_str();
    // `holdId user`, what the hold key holds; the hold id is its first part.
    let mut value = Vec::with_capacity(17 + call.user.len());
    crate::ids::write_next(&mut value);
    let hold_id_len = value.len();
    value.push(b' ');
    value.extend_from_slice(call.user.as_bytes());
    let hold_id = &value[..hold_id_len];
    let keys = [
        keys::sold(event_id, call.section),
        keys::hold(event_id, call.section, call.n),
        keys::section_holds(event_id, call.section),
        keys::user_holds(event_id, call.user),
    ];
    let n = call.n.to_string();
    let result = core
        .redis
        .eval_batched(
            &core.public.hold,
            event_id.as_bytes(),
            &keys.each_ref().map(|k| k.as_bytes()),
            &[n.as_bytes(), &value, req.seat_id.as_bytes()],
        )
        .await?;
    let conflict = |code, message| Err(Error::request(code, message));
    let expires_at = match integer(Some(&result))? {
        -1 => return conflict(ErrorCode::SeatSold, "seat already sold"),
        -2 => return conflict(ErrorCode::SeatHeld, "seat is held"),
        -3 => return conflict(ErrorCode::HoldLimit, "too many seats held"),
        exp if exp > 0 => exp as u64,
        _ => {
            return Err(Error::Internal {
                message: "unexpected reply from storage",
            })
        }
    };
    if let Some(side) = &core.side {
        side.mirror(|| MirrorOp::Hold {
            pk: format!("{event_id}#{}", req.seat_id),
            holder: call.user.to_owned(),
            hold_id: String::from_utf8_lossy(hold_id).into_owned(),
            exp_secs: expires_at.div_ceil(1000),
        });
    }
    reply.reset(201);
    reply.header("cache-control", b"no-store");
    let out = reply.json_body();
    out.extend_from_slice(b"{\"holdId\":");
    write_str(out, hold_id);
    out.extend_from_slice(b",\"expiresAt\":");
    write_u64(out, expires_at);
    out.push(b'}');
    Ok(())
}

/// `POST /public/release`: compare-and-delete, so only the holder releases.
pub(crate) async fn release(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let req: SeatBody<'_> = parse(body)?;
    let hold_id = req
        .hold_id
        .as_deref()
        .filter(|h| (1..=128).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_graphic()));
    let Some(hold_id) = hold_id else {
        return Err(Error::request(
            ErrorCode::InvalidField,
            "holdId is required: 1 to 128 visible characters",
        ));
    };
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let call = seat_call(core, head, &req, &mut scratch).await?;
    let event_id = call.event.catalog.event_id.as_str();
    let value = format!("{hold_id} {}", call.user);
    let keys = [
        keys::hold(event_id, call.section, call.n),
        keys::section_holds(event_id, call.section),
        keys::user_holds(event_id, call.user),
    ];
    let n = call.n.to_string();
    let released = core
        .redis
        .eval(
            &core.public.scripts.release,
            &keys.each_ref().map(|k| k.as_bytes()),
            &[value.as_bytes(), n.as_bytes(), req.seat_id.as_bytes()],
        )
        .await?;
    let released = integer(Some(&released))? == 1;
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

/// Serves the route and ids `parts` from this core's cache while younger than
/// `PUBLIC_CACHE_MS`, else renders it anew with `render`; answers 304 when
/// `If-None-Match` matches. While one
/// request renders an expired entry, the others get the expired one rather than each
/// asking Redis (stale-while-revalidate, as RFC 5861 has it for shared caches).
async fn cached<F, Fut>(
    core: &Core,
    head: &Head<'_>,
    parts: &[&str],
    reply: &mut Reply,
    render: F,
) -> Result<(), Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, Error>>,
{
    let public = &core.public;
    let found = {
        let mut key = public.key.borrow_mut();
        cache_key(&mut key, parts);
        public.cache.borrow().get(key.as_str()).cloned()
    };
    let entry = match found {
        Some(entry)
            if entry.refreshing.get() || entry.made.elapsed() < core.config.public_cache =>
        {
            entry
        }
        stale => {
            let _refreshing = stale.map(Refreshing::start);
            let body = render().await?;
            let entry = Rc::new(Cached {
                etag: format!("\"{:016x}\"", fnv1a(&body)),
                body,
                made: Instant::now(),
                refreshing: Cell::new(false),
            });
            let mut key = String::new();
            cache_key(&mut key, parts);
            public.cache.borrow_mut().insert(key, entry.clone());
            entry
        }
    };
    let not_modified = head.if_none_match.is_some_and(|tags| {
        tags.split(|&b| b == b',').any(|t| {
            let t = t.trim_ascii();
            t == b"*" || t.strip_prefix(b"W/").unwrap_or(t) == entry.etag.as_bytes()
        })
    });
    reply.reset(if not_modified { 304 } else { 200 });
    reply.header("cache-control", &public.cache_control);
    reply.header("etag", entry.etag.as_bytes());
    if !not_modified {
        reply.json_body().extend_from_slice(&entry.body);
    }
    Ok(())
}

/// Marks an entry as being rendered anew until dropped, also when the request that
/// renders it is cancelled half-way (its connection closed, its deadline passed).
struct Refreshing(Rc<Cached>);

impl Refreshing {
    fn start(entry: Rc<Cached>) -> Self {
        entry.refreshing.set(true);
        Self(entry)
    }
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.refreshing.set(false);
    }
}

/// The cache key of a route and its ids, `|`-separated (ids never hold a `|`).
fn cache_key(key: &mut String, parts: &[&str]) {
    key.clear();
    for part in parts {
        key.push_str(part);
        key.push('|');
    }
}

/// FNV-1a, 64 bits: cheap, and enough to tell two renderings apart.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `GET /public/summary/{eventId}/{section}`.
pub(crate) async fn summary(
    core: &Core,
    head: &Head<'_>,
    event_id: &str,
    section: &str,
    reply: &mut Reply,
) -> Result<(), Error> {
    valid_event(event_id)?;
    let event = core.public.events.get(&core.redis, event_id).await?;
    let Some(sec) = event.section(section) else {
        return Err(Error::request(ErrorCode::EventNotFound, "no such section"));
    };
    cached(
        core,
        head,
        &["summary", event_id, section],
        reply,
        || async {
            let keys = [
                keys::sold(event_id, section),
                keys::section_holds(event_id, section),
            ];
            let counts = core
                .redis
                .eval(
                    &core.public.scripts.summary,
                    &keys.each_ref().map(|k| k.as_bytes()),
                    &[],
                )
                .await?;
            let counts = array(&counts)?;
            let (sold, held) = (
                integer(counts.first())? as u64,
                integer(counts.get(1))? as u64,
            );
            let total = u64::from(sec.seats);
            let mut out = Vec::with_capacity(160);
            out.extend_from_slice(b"{\"eventId\":");
            write_str(&mut out, event_id.as_bytes());
            out.extend_from_slice(b",\"section\":");
            write_str(&mut out, section.as_bytes());
            for (name, value) in [
                (&b",\"total\":"[..], total),
                (b",\"available\":", total.saturating_sub(sold + held)),
                (b",\"held\":", held),
                (b",\"sold\":", sold),
                (b",\"price\":", sec.price),
            ] {
                out.extend_from_slice(name);
                write_u64(&mut out, value);
            }
            out.extend_from_slice(b",\"currency\":");
            write_str(&mut out, event.catalog.currency.as_bytes());
            out.push(b'}');
            Ok(out)
        },
    )
    .await
}

/// `GET /public/seats/{eventId}`: one character a seat, `A`vailable, `H`eld, `S`old.
pub(crate) async fn seats(
    core: &Core,
    head: &Head<'_>,
    event_id: &str,
    reply: &mut Reply,
) -> Result<(), Error> {
    valid_event(event_id)?;
    let event = core.public.events.get(&core.redis, event_id).await?;
    cached(core, head, &["seats", event_id], reply, || async {
        // Every section's script is sent before the first reply is awaited: one write.
        let sections = &event.catalog.sections;
        let names: Vec<[String; 2]> = sections
            .iter()
            .map(|s| {
                [
                    keys::sold(event_id, &s.id),
                    keys::section_holds(event_id, &s.id),
                ]
            })
            .collect();
        let names: Vec<[&[u8]; 2]> = names
            .iter()
            .map(|k| k.each_ref().map(|k| k.as_bytes()))
            .collect();
        let replies: Vec<_> = names
            .iter()
            .map(|k| core.redis.eval(&core.public.scripts.seats, k, &[]))
            .collect();
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"eventId\":");
        write_str(&mut out, event_id.as_bytes());
        out.extend_from_slice(b",\"sections\":[");
        for (i, (section, states)) in event.catalog.sections.iter().zip(replies).enumerate() {
            let states = states.await?;
            let states = array(&states)?;
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"section\":");
            write_str(&mut out, section.id.as_bytes());
            out.extend_from_slice(b",\"seats\":\"");
            let start = out.len();
            out.resize(start + section.seats as usize, b'A');
            let map = &mut out[start..];
            for held in array(states.get(1).unwrap_or(&Frame::Null)).unwrap_or(&[]) {
                if let Frame::BulkString(n) = held {
                    let n: usize = std::str::from_utf8(n)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    if (1..=map.len()).contains(&n) {
                        map[n - 1] = b'H';
                    }
                }
            }
            if let Some(Frame::BulkString(bits)) = states.first() {
                // Bit n (SETBIT n 1) is byte n / 8, bit 7 - n % 8 (big-endian bit order).
                for (n, seat) in map.iter_mut().enumerate().map(|(i, s)| (i + 1, s)) {
                    if bits
                        .get(n / 8)
                        .is_some_and(|byte| byte & (0x80 >> (n % 8)) != 0)
                    {
                        *seat = b'S';
                    }
                }
            }
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    })
    .await
}

/// `POST /admin/events/{eventId}/admission` (bearer `ADMIN_TOKEN`): changes the
/// opening time and/or the rate; those admitted so far stay admitted.
pub(crate) async fn set_admission(
    core: &Core,
    head: &Head<'_>,
    event_id: &str,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let Some(expected) = core.config.admin_token.as_deref() else {
        return Err(Error::request(ErrorCode::NotFound, "no such route"));
    };
    let given = head.authorization.and_then(|a| a.strip_prefix(b"Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g, expected.as_bytes())) {
        return Err(Error::request(
            ErrorCode::TokenInvalid,
            "admin bearer token missing or wrong",
        ));
    }
    valid_event(event_id)?;
    let req: codec::contract::AdmissionRequest = parse(body)?;
    if req.rate == Some(0) {
        return Err(Error::request(
            ErrorCode::InvalidField,
            "rate must be at least 1 user a second",
        ));
    }
    core.public.events.get(&core.redis, event_id).await?;
    let key = keys::admission(event_id);
    let (open, rate) = (
        req.open_at_ms.map(|v| v.to_string()).unwrap_or_default(),
        req.rate.map(|v| v.to_string()).unwrap_or_default(),
    );
    let state = core
        .redis
        .eval(
            &core.public.scripts.admission,
            &[key.as_bytes()],
            &[open.as_bytes(), rate.as_bytes()],
        )
        .await?;
    let state = array(&state)?;
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    let out = reply.json_body();
    for (i, name) in [
        &b"{\"openAtMs\":"[..],
        b",\"rate\":",
        b",\"baseMs\":",
        b",\"baseAdmitted\":",
    ]
    .into_iter()
    .enumerate()
    {
        out.extend_from_slice(name);
        write_u64(out, integer(state.get(i))? as u64);
    }
    out.push(b'}');
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}
