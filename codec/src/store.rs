//! The storage protocol: every Lua script the edge and the worker run in Redis (the
//! files under `codec/lua/`), with one typed call and one typed outcome each, so that
//! what a script takes and what its result codes mean is written down once.
//!
//! A script's keys and arguments are written by its call type into a [`Call`], one
//! buffer for all of them (no allocation a key); its reply is read by its outcome
//! type's `decode`. A reply of the wrong shape is [`Unexpected`]: a bug or a script of
//! another version, never the request's fault.
//!
//! Shared formats live in one place each:
//! - a hold key's value `holdId user` (or [`SOLD`]): built by [`write_hold_value`], read
//!   only by `lua/hold_value.lua`;
//! - the commit message: encoded by `lua/commit.lua` with `cjson` from the fields the
//!   edge passes ([`Commit`]), decoded by the worker as [`CommitMessage`];
//! - the order-status record: [`StatusResponse`] serialized by serde, by the edge
//!   (PENDING) and by the worker (CONFIRMED, REJECTED) alike.
//!
//! `cjson` writes numbers with 14 significant digits: amounts stay within
//! [`crate::rules::AMOUNT_MAX`] so that they reach the worker exact.
//!
//! [`CommitMessage`]: crate::contract::CommitMessage
//! [`StatusResponse`]: crate::contract::StatusResponse

pub use redis_protocol::resp2::types::BytesFrame as Frame;

use crate::{json::write_u64, keys};

/// A script's source: the fragments it uses, then its file. Fragments come in this
/// order: the server's time (`now`), the hold value (`hold_value.lua`), the
/// Idempotency-Key prelude (`idempotent.lua`).
macro_rules! script {
    ($($file:literal),+) => {
        concat!($(include_str!(concat!("../lua/", $file))),+)
    };
}

/// The scripts' sources, for `EVAL`/`EVALSHA`.
pub mod scripts {
    pub const ENTER: &str = script!("now.lua", "line.lua", "enter.lua");
    pub const POLL: &str = script!("now.lua", "line.lua", "poll.lua");
    pub const ADVANCE: &str = script!("now.lua", "line.lua", "advance.lua");
    pub const HOLD: &str = script!("now.lua", "hold_value.lua", "hold.lua");
    pub const RELEASE: &str = script!("hold_value.lua", "release.lua");
    pub const SUMMARY: &str = script!("now.lua", "summary.lua");
    pub const SEATS: &str = script!("now.lua", "seats.lua");
    pub const ADMISSION: &str = script!("now.lua", "admission.lua");
    pub const INTENT: &str = script!("now.lua", "hold_value.lua", "idempotent.lua", "intent.lua");
    pub const COMMIT: &str = script!("now.lua", "hold_value.lua", "idempotent.lua", "commit.lua");
    pub const COMMIT_FINISH: &str = script!("commit_finish.lua");
    pub const COMMIT_ABORT: &str = script!("commit_abort.lua");
    pub const PROJECT: &str = script!("hold_value.lua", "project.lua");
    pub const REVOKE: &str = script!("hold_value.lua", "revoke.lua");
    /// The worker's local queue (Redis Streams): claim, dead-letter, redrive.
    pub const RECLAIM: &str = script!("reclaim.lua");
    pub const DEAD_LETTER: &str = script!("dead_letter.lua");
    pub const REDRIVE: &str = script!("redrive.lua");
}

/// A sold seat's hold key holds this for good (`lua/hold_value.lua`'s `SOLD`): written
/// by the worker's projection of a sale and by `worker rebuild-redis`.
pub const SOLD: &[u8] = b"sold";

/// A hold key's value while held: `holdId user` (read by `lua/hold_value.lua`).
pub fn write_hold_value(out: &mut Vec<u8>, hold_id: &[u8], user: &str) {
    out.extend_from_slice(hold_id);
    out.push(b' ');
    out.extend_from_slice(user.as_bytes());
}

/// A script call's keys, then its arguments, end to end in one buffer.
#[derive(Debug, Default, Clone)]
pub struct Call {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    keys: usize,
}

impl Call {
    pub fn with_capacity(bytes: usize, strings: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(strings),
            keys: 0,
        }
    }

    /// Adds a key, written by `write` (one of `keys::write_*`). Keys come first.
    pub fn key(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        debug_assert_eq!(self.keys, self.ends.len(), "keys before arguments");
        write(&mut self.bytes);
        self.ends.push(self.bytes.len());
        self.keys += 1;
    }

    pub fn arg(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.ends.push(self.bytes.len());
    }

    /// Adds an argument written by `write`.
    pub fn arg_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        self.ends.push(self.bytes.len());
    }

    pub fn arg_u64(&mut self, n: u64) {
        write_u64(&mut self.bytes, n);
        self.ends.push(self.bytes.len());
    }

    pub fn key_count(&self) -> usize {
        self.keys
    }

    pub fn arg_count(&self) -> usize {
        self.ends.len() - self.keys
    }

    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.strings(0..self.keys)
    }

    pub fn args(&self) -> impl Iterator<Item = &[u8]> {
        self.strings(self.keys..self.ends.len())
    }

    fn strings(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &[u8]> {
        range.map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.bytes[start..self.ends[i]]
        })
    }
}

/// A reply that is not what the script returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from the {0} script")]
pub struct Unexpected(pub &'static str);

fn integer(frame: Option<&Frame>) -> Option<i64> {
    match frame {
        Some(Frame::Integer(n)) => Some(*n),
        _ => None,
    }
}

fn bulk(frame: Option<&Frame>) -> Option<&[u8]> {
    match frame {
        Some(Frame::BulkString(b)) => Some(b),
        _ => None,
    }
}

/// A bulk string that is a decimal number; `None` when absent (nil).
fn number(frame: Option<&Frame>) -> Result<Option<u64>, ()> {
    match frame {
        Some(Frame::BulkString(b)) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or(()),
        Some(Frame::Integer(n)) => u64::try_from(*n).map(Some).map_err(|_| ()),
        Some(Frame::Null) | None => Ok(None),
        _ => Err(()),
    }
}

fn text(frame: Option<&Frame>) -> Option<String> {
    bulk(frame).and_then(|b| std::str::from_utf8(b).ok().map(str::to_owned))
}

fn items(frame: &Frame) -> &[Frame] {
    match frame {
        Frame::Array(items) => items,
        _ => &[],
    }
}

/// `summary.lua`'s and `seats.lua`'s answer when the event's catalog is missing.
fn no_copy(reply: &Frame) -> bool {
    matches!(reply, Frame::Array(items) if items.is_empty())
}

/// The keys of an event's line, in the order `lua/line.lua`'s `line_keys` reads them.
fn line_keys(call: &mut Call, event: &str) {
    call.key(|o| keys::write_admission(o, event));
    call.key(|o| keys::write_prequeue(o, event));
    call.key(|o| keys::write_positions(o, event));
    call.key(|o| keys::write_queue(o, event));
    call.key(|o| keys::write_left(o, event));
    call.key(|o| keys::write_seen(o, event));
}

/// `enter.lua`, batched: one buyer's place in an event's line.
#[derive(Debug, Clone, Copy)]
pub struct Enter<'a> {
    pub event: &'a str,
    pub user: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnterOutcome {
    /// The position (>= 1), the same on every call while the place lasts.
    Placed(u64),
    /// In a `random` pre-queue: the draw at the opening decides the place.
    Prequeued,
    /// The event's queueing is `reject`.
    Rejected,
    /// Its pre-queue has not opened yet.
    NotOpen,
}

impl Enter<'_> {
    pub fn call(&self, call: &mut Call) {
        line_keys(call, self.event);
        call.arg(self.user.as_bytes());
    }

    pub fn decode(reply: &Frame) -> Result<EnterOutcome, Unexpected> {
        match integer(Some(reply)) {
            Some(0) => Ok(EnterOutcome::Prequeued),
            Some(-1) => Ok(EnterOutcome::Rejected),
            Some(-2) => Ok(EnterOutcome::NotOpen),
            Some(p) if p > 0 => Ok(EnterOutcome::Placed(p as u64)),
            _ => Err(Unexpected("enter")),
        }
    }
}

/// `poll.lua`, batched: a waiting or admitted buyer is still there; their live place.
#[derive(Debug, Clone, Copy)]
pub struct Poll<'a> {
    pub event: &'a str,
    pub user: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    At(u64),
    Prequeued,
    /// Never entered, or the place was left (done, or abandoned and skipped).
    Gone,
}

impl Poll<'_> {
    pub fn call(&self, call: &mut Call) {
        line_keys(call, self.event);
        call.arg(self.user.as_bytes());
    }

    pub fn decode(reply: &Frame) -> Result<Place, Unexpected> {
        match integer(Some(reply)) {
            Some(0) => Ok(Place::Prequeued),
            Some(-1) => Ok(Place::Gone),
            Some(p) if p > 0 => Ok(Place::At(p as u64)),
            _ => Err(Unexpected("poll")),
        }
    }
}

/// `advance.lua`: a core's refresh of an event's admission state (draw, abandonment,
/// active-limit frontier).
#[derive(Debug, Clone, Copy)]
pub struct Advance<'a> {
    pub event: &'a str,
    pub abandon_after_ms: u64,
}

/// The admission state as `advance.lua` returns it; `None` where the hash has no such
/// field (the reader picks the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineState {
    pub open_at_ms: Option<u64>,
    pub rate: Option<u64>,
    pub base_ms: Option<u64>,
    pub base_admitted: Option<u64>,
    pub prequeue_at_ms: Option<u64>,
    /// The stored spelling, `None` when absent.
    pub queueing: Option<Vec<u8>>,
    pub active_limit: Option<u64>,
    pub frontier: Option<u64>,
    pub seed_hash: Option<String>,
    /// Only once drawn.
    pub seed: Option<String>,
    pub list_digest: Option<String>,
    pub prequeued: Option<u64>,
}

/// A field of the admission hash that is present and not what it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("admission field {0} does not parse")]
pub struct Unreadable(pub &'static str);

impl Advance<'_> {
    pub fn call(&self, call: &mut Call) {
        line_keys(call, self.event);
        call.arg_u64(self.abandon_after_ms);
    }

    /// `Err(Unexpected)`: not the script's shape; `Ok(Err(Unreadable))`: a field
    /// present in Redis that is not a number.
    pub fn decode(reply: &Frame) -> Result<Result<LineState, Unreadable>, Unexpected> {
        let items = items(reply);
        if items.len() != LINE_FIELDS.len() {
            return Err(Unexpected("advance"));
        }
        Ok(LineState::read(items))
    }
}

/// The admission hash's fields in [`Advance`]'s reply, in its order; the first
/// [`LINE_ONLY`] are the line itself ([`LineState::decode_line`]).
pub const LINE_FIELDS: [&str; 12] = [
    "openAtMs",
    "rate",
    "baseMs",
    "baseAdmitted",
    "prequeueAtMs",
    "queueing",
    "activeLimit",
    "frontier",
    "seedHash",
    "seed",
    "listDigest",
    "prequeued",
];

/// How many of [`LINE_FIELDS`] are the line without its fairness fields.
pub const LINE_ONLY: usize = 8;

impl LineState {
    /// The reply of `HMGET ev:{E}:adm` with the first [`LINE_ONLY`] [`LINE_FIELDS`]: the line as
    /// it stands, read without moving it (the worker's metrics); the fairness fields
    /// stay `None`.
    pub fn decode_line(reply: &Frame) -> Result<Result<LineState, Unreadable>, Unexpected> {
        let items = items(reply);
        if items.len() != LINE_ONLY {
            return Err(Unexpected("HMGET of the line"));
        }
        Ok(Self::read(items))
    }

    fn read(items: &[Frame]) -> Result<LineState, Unreadable> {
        let n = |i: usize| number(items.get(i)).map_err(|()| Unreadable(LINE_FIELDS[i]));
        Ok(LineState {
            open_at_ms: n(0)?,
            rate: n(1)?,
            base_ms: n(2)?,
            base_admitted: n(3)?,
            prequeue_at_ms: n(4)?,
            queueing: bulk(items.get(5)).map(<[u8]>::to_vec),
            active_limit: n(6)?,
            frontier: n(7)?,
            seed_hash: text(items.get(8)),
            seed: text(items.get(9)),
            list_digest: text(items.get(10)),
            prequeued: n(11)?,
        })
    }
}

/// `hold.lua`, batched; its shared arguments are the hold TTL and the per-buyer limit
/// ([`Hold::shared`]).
#[derive(Debug, Clone, Copy)]
pub struct Hold<'a> {
    pub event: &'a str,
    pub section: &'a str,
    pub n: u32,
    pub hold_id: &'a [u8],
    pub user: &'a str,
    pub seat_id: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    Held { expires_at_ms: u64 },
    Sold,
    Taken,
    OverLimit,
}

impl Hold<'_> {
    pub fn shared(ttl_ms: u64, limit: u32) -> Vec<Vec<u8>> {
        vec![
            ttl_ms.to_string().into_bytes(),
            limit.to_string().into_bytes(),
        ]
    }

    /// Three keys and two arguments a hold: every string costs Redis ~1.3k
    /// instructions to parse, free and turn into Lua (callgrind).
    pub fn call(&self, call: &mut Call) {
        call.key(|o| keys::write_hold(o, self.event, self.section, self.n));
        call.key(|o| keys::write_section_holds(o, self.event, self.section));
        call.key(|o| keys::write_user_holds(o, self.event, self.user));
        call.arg_with(|o| write_hold_value(o, self.hold_id, self.user));
        call.arg(self.seat_id.as_bytes());
    }

    pub fn decode(reply: &Frame) -> Result<HoldOutcome, Unexpected> {
        match integer(Some(reply)) {
            Some(-1) => Ok(HoldOutcome::Sold),
            Some(-2) => Ok(HoldOutcome::Taken),
            Some(-3) => Ok(HoldOutcome::OverLimit),
            Some(exp) if exp > 0 => Ok(HoldOutcome::Held {
                expires_at_ms: exp as u64,
            }),
            _ => Err(Unexpected("hold")),
        }
    }
}

/// `release.lua`: compare-and-delete of the holder's own hold.
#[derive(Debug, Clone, Copy)]
pub struct Release<'a> {
    pub event: &'a str,
    pub section: &'a str,
    pub n: u32,
    pub hold_id: &'a str,
    pub user: &'a str,
    pub seat_id: &'a str,
}

impl Release<'_> {
    pub fn call(&self, call: &mut Call) {
        call.key(|o| keys::write_hold(o, self.event, self.section, self.n));
        call.key(|o| keys::write_section_holds(o, self.event, self.section));
        call.key(|o| keys::write_user_holds(o, self.event, self.user));
        call.arg(self.hold_id.as_bytes());
        call.arg(self.user.as_bytes());
        call.arg(self.seat_id.as_bytes());
    }

    /// Whether the hold was this buyer's and is gone.
    pub fn decode(reply: &Frame) -> Result<bool, Unexpected> {
        match integer(Some(reply)) {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(Unexpected("release")),
        }
    }
}

/// `summary.lua` and `seats.lua`: one section's sold bitmap and live holds.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    pub event: &'a str,
    pub section: &'a str,
}

/// A section's seats as `seats.lua` sees them.
#[derive(Debug, Clone, Copy)]
pub struct SeatStates<'r> {
    /// Bit n (`SETBIT n 1`) is byte n / 8, bit 7 - n % 8; empty when none is sold.
    pub sold: &'r [u8],
    pub held: &'r [Frame],
}

impl SeatStates<'_> {
    /// The seat numbers held (the script lists seat ids, `{section}-{n}`).
    pub fn held(&self) -> impl Iterator<Item = u32> + '_ {
        self.held.iter().filter_map(|id| {
            let id = bulk(Some(id))?;
            let dash = id.iter().rposition(|&b| b == b'-')?;
            std::str::from_utf8(&id[dash + 1..]).ok()?.parse().ok()
        })
    }

    pub fn is_sold(&self, n: usize) -> bool {
        self.sold
            .get(n / 8)
            .is_some_and(|byte| byte & (0x80 >> (n % 8)) != 0)
    }
}

impl Section<'_> {
    /// The section's keys, then the event's catalog: the scripts say when it is missing,
    /// for then Redis has no copy of the event (`crate::projection`) and its bitmap
    /// cannot be believed.
    pub fn call(&self, call: &mut Call) {
        call.key(|o| keys::write_sold(o, self.event, self.section));
        call.key(|o| keys::write_section_holds(o, self.event, self.section));
        call.key(|o| keys::write_catalog(o, self.event));
    }

    /// `summary.lua`: (sold, held) seats; `None` when Redis has no copy of the event.
    pub fn decode_counts(reply: &Frame) -> Result<Option<(u64, u64)>, Unexpected> {
        if no_copy(reply) {
            return Ok(None);
        }
        let items = items(reply);
        let count = |i| integer(items.get(i)).and_then(|n| u64::try_from(n).ok());
        count(0)
            .zip(count(1))
            .map(Some)
            .ok_or(Unexpected("summary"))
    }

    /// `seats.lua`: the sold bitmap and the held seats; `None` when Redis has no copy of
    /// the event.
    pub fn decode_states(reply: &Frame) -> Result<Option<SeatStates<'_>>, Unexpected> {
        let unexpected = Unexpected("seats");
        if no_copy(reply) {
            return Ok(None);
        }
        let [sold, held] = items(reply) else {
            return Err(unexpected);
        };
        let sold = match sold {
            Frame::BulkString(bits) => &bits[..],
            Frame::Null => &[],
            _ => return Err(unexpected),
        };
        let Frame::Array(held) = held else {
            return Err(unexpected);
        };
        Ok(Some(SeatStates { sold, held }))
    }
}

/// `admission.lua`: an operator changes the opening time, the rate, the pre-queue,
/// the queueing and/or the active limit. `seed`/`seed_hash` are a fresh seed and its
/// commitment ([`crate::fairness`]); the script keeps them only when the event has
/// none yet and a pre-queue or `random` queueing is being set.
#[derive(Debug, Clone, Copy)]
pub struct SetAdmission<'a> {
    pub event: &'a str,
    pub open_at_ms: Option<u64>,
    pub rate: Option<u64>,
    pub prequeue_at_ms: Option<u64>,
    pub queueing: Option<crate::contract::Queueing>,
    pub active_limit: Option<u64>,
    pub seed: &'a str,
    pub seed_hash: &'a str,
}

/// Why `admission.lua` changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionRefusal {
    /// The pre-queue would not open before the opening.
    PrequeueNotBeforeOpening,
    /// The pre-queue is open and not drawn: it may not move, nor the queueing change.
    PrequeueOpen,
}

impl SetAdmission<'_> {
    pub fn call(&self, call: &mut Call) {
        call.key(|o| keys::write_admission(o, self.event));
        call.key(|o| keys::write_queue(o, self.event));
        for value in [self.open_at_ms, self.rate, self.prequeue_at_ms] {
            match value {
                Some(v) => call.arg_u64(v),
                None => call.arg(b""),
            }
        }
        call.arg(self.queueing.map_or("", |q| q.as_str()).as_bytes());
        match self.active_limit {
            Some(v) => call.arg_u64(v),
            None => call.arg(b""),
        }
        call.arg(self.seed.as_bytes());
        call.arg(self.seed_hash.as_bytes());
    }

    pub fn decode(
        reply: &Frame,
    ) -> Result<Result<crate::contract::AdmissionState, AdmissionRefusal>, Unexpected> {
        match integer(Some(reply)) {
            Some(-1) => return Ok(Err(AdmissionRefusal::PrequeueNotBeforeOpening)),
            Some(-2) => return Ok(Err(AdmissionRefusal::PrequeueOpen)),
            Some(_) => return Err(Unexpected("admission")),
            None => {}
        }
        let items = items(reply);
        let field = |i| integer(items.get(i)).and_then(|n| u64::try_from(n).ok());
        let queueing = bulk(items.get(5)).and_then(crate::contract::Queueing::parse);
        match (
            field(0),
            field(1),
            field(2),
            field(3),
            field(4),
            queueing,
            field(6),
        ) {
            (
                Some(open_at_ms),
                Some(rate),
                Some(base_ms),
                Some(base_admitted),
                Some(prequeue_at_ms),
                Some(queueing),
                Some(active_limit),
            ) => Ok(Ok(crate::contract::AdmissionState {
                open_at_ms,
                rate,
                base_ms,
                base_admitted,
                prequeue_at_ms,
                queueing,
                active_limit,
                seed_hash: text(items.get(7)),
            })),
            _ => Err(Unexpected("admission")),
        }
    }
}

/// The seats of an intent or a commit, sorted and distinct.
#[derive(Debug, Clone, Copy)]
pub struct Seat<'a> {
    pub id: &'a str,
    pub section: &'a str,
    pub n: u32,
}

/// What an idempotent script (`intent.lua`, `commit.lua`) did with an
/// Idempotency-Key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotent<'r> {
    /// Done now; the body to answer.
    Done(&'r [u8]),
    /// Done before with the same request: the stored body.
    Replay(&'r [u8]),
    /// `commit.lua` in `begin` mode: the key is in flight; the message to send.
    Begun(&'r [u8]),
    Refused(Refusal),
}

/// Why an idempotent script refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A seat is not held by this buyer (the holds the intent recorded).
    NotHeld,
    IntentNotFound,
    IntentExpired,
    /// The intent is another buyer's, or for other seats or another amount.
    IntentMismatch,
    /// The first request with this key is still being processed.
    InFlight,
    /// This key was used with another request.
    KeyReused,
    /// The buyer's seats in accepted orders would pass the purchase limit.
    PurchaseLimit,
}

fn decode_idempotent<'r>(
    reply: &'r Frame,
    script: &'static str,
) -> Result<Idempotent<'r>, Unexpected> {
    let items = items(reply);
    let body = || bulk(items.get(1)).ok_or(Unexpected(script));
    Ok(match integer(items.first()).ok_or(Unexpected(script))? {
        1 => Idempotent::Done(body()?),
        0 => Idempotent::Replay(body()?),
        2 if script == "commit" => Idempotent::Begun(body()?),
        -1 => Idempotent::Refused(Refusal::NotHeld),
        -404 => Idempotent::Refused(Refusal::IntentNotFound),
        -410 => Idempotent::Refused(Refusal::IntentExpired),
        -4090 => Idempotent::Refused(Refusal::IntentMismatch),
        -4091 if script == "commit" => Idempotent::Refused(Refusal::PurchaseLimit),
        -409 => Idempotent::Refused(Refusal::InFlight),
        -422 => Idempotent::Refused(Refusal::KeyReused),
        _ => return Err(Unexpected(script)),
    })
}

/// The fingerprint in a stored Idempotency-Key record (`state|fingerprint|body`,
/// written by `intent.lua` and `commit.lua`, read by `lua/idempotent.lua`).
pub fn recorded_fingerprint(record: &[u8]) -> Option<&[u8]> {
    let mut parts = record.splitn(3, |&b| b == b'|');
    let (_state, fingerprint) = (parts.next()?, parts.next()?);
    parts.next().map(|_| fingerprint)
}

/// `intent.lua`: every seat held by this buyer; the intent stored for the holds'
/// remaining lifetime. The body is `PaymentIntentResponse`, encoded by the script.
#[derive(Debug, Clone, Copy)]
pub struct Intent<'a> {
    pub event: &'a str,
    pub user: &'a str,
    pub idem: &'a str,
    pub fingerprint: &'a str,
    pub intent_id: &'a str,
    pub amount: u64,
    pub currency: &'a str,
    pub ttl_ms: u64,
    pub seat_csv: &'a str,
    pub seats: &'a [Seat<'a>],
}

impl Intent<'_> {
    pub fn call(&self, call: &mut Call) {
        call.key(|o| keys::write_idempotency(o, self.event, "intent", self.user, self.idem));
        call.key(|o| keys::write_intent(o, self.event, self.intent_id));
        for s in self.seats {
            call.key(|o| keys::write_hold(o, self.event, s.section, s.n));
        }
        call.arg(self.fingerprint.as_bytes());
        call.arg(self.user.as_bytes());
        call.arg(self.intent_id.as_bytes());
        call.arg_u64(self.amount);
        call.arg(self.currency.as_bytes());
        call.arg_u64(self.ttl_ms);
        call.arg_u64(self.ttl_ms);
        call.arg(self.seat_csv.as_bytes());
        for s in self.seats {
            call.arg(s.id.as_bytes());
        }
    }

    pub fn decode(reply: &Frame) -> Result<Idempotent<'_>, Unexpected> {
        decode_idempotent(reply, "intent")
    }
}

/// `commit.lua`: accepts a commit, atomically: checks the intent and its holds, extends
/// the holds, and either enqueues the commit message on the local stream and records
/// the order PENDING (`begin` false), or marks the key in flight for the edge to send
/// the message to SQS (`begin` true), then `commit_finish.lua` / `commit_abort.lua`.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    pub event: &'a str,
    pub user: &'a str,
    pub idem: &'a str,
    pub fingerprint: &'a str,
    pub intent_id: &'a str,
    pub shard: u32,
    pub amount: u64,
    pub currency: &'a str,
    pub seat_csv: &'a str,
    pub seats: &'a [Seat<'a>],
    pub extend_ms: u64,
    pub ttl_ms: u64,
    pub in_flight_ttl_ms: u64,
    /// The PENDING status record (`StatusResponse`).
    pub status: &'a [u8],
    /// The body to answer (`CommitResponse`).
    pub response: &'a [u8],
    pub begin: bool,
    /// Most seats the buyer may have in accepted orders of the event; 0: no limit.
    pub purchase_limit: u32,
}

impl Commit<'_> {
    pub fn call(&self, call: &mut Call) {
        let (e, u) = (self.event, self.user);
        call.key(|o| keys::write_idempotency(o, e, "commit", u, self.idem));
        call.key(|o| keys::write_intent(o, e, self.intent_id));
        call.key(|o| keys::write_order_status(o, e, u, self.idem));
        call.key(|o| keys::write_commits(o, e, self.shard));
        call.key(|o| keys::write_user_holds(o, e, u));
        call.key(|o| keys::write_bought(o, e, u));
        for s in self.seats {
            call.key(|o| keys::write_hold(o, e, s.section, s.n));
            call.key(|o| keys::write_section_holds(o, e, s.section));
        }
        call.arg(self.fingerprint.as_bytes());
        call.arg(u.as_bytes());
        call.arg(self.seat_csv.as_bytes());
        call.arg_u64(self.extend_ms);
        call.arg_u64(self.ttl_ms);
        call.arg_u64(self.amount);
        call.arg(self.currency.as_bytes());
        call.arg(self.status);
        call.arg(self.response);
        call.arg(if self.begin { b"begin" } else { b"stream" });
        call.arg_u64(self.in_flight_ttl_ms);
        call.arg_u64(u64::from(crate::contract::CommitMessage::VERSION));
        call.arg(self.idem.as_bytes());
        call.arg(self.intent_id.as_bytes());
        call.arg(e.as_bytes());
        call.arg_u64(u64::from(self.purchase_limit));
        for s in self.seats {
            call.arg_u64(u64::from(s.n));
            call.arg(s.id.as_bytes());
        }
    }

    pub fn decode(reply: &Frame) -> Result<Idempotent<'_>, Unexpected> {
        decode_idempotent(reply, "commit")
    }

    /// `commit_finish.lua` after SQS took the message: records the order PENDING
    /// (unless the worker was faster) and the key done.
    pub fn finish(&self, call: &mut Call) {
        call.key(|o| keys::write_idempotency(o, self.event, "commit", self.user, self.idem));
        call.key(|o| keys::write_order_status(o, self.event, self.user, self.idem));
        call.arg(self.fingerprint.as_bytes());
        call.arg(self.response);
        call.arg(self.status);
        call.arg_u64(self.ttl_ms);
    }

    /// `commit_abort.lua` after SQS refused the message: frees the key and the
    /// order's seats in the purchase limit.
    pub fn abort(&self, call: &mut Call) {
        call.key(|o| keys::write_idempotency(o, self.event, "commit", self.user, self.idem));
        call.key(|o| keys::write_bought(o, self.event, self.user));
        call.arg(self.fingerprint.as_bytes());
        call.arg(self.idem.as_bytes());
    }
}

/// `revoke.lua`: an operator revokes a buyer: recorded for every edge to refuse the
/// buyer's room token, and the buyer's holds (`held`, as the seats zset lists them)
/// released.
#[derive(Debug, Clone, Copy)]
pub struct Revoke<'a> {
    pub event: &'a str,
    pub user: &'a str,
    /// The buyer's held seats, `(section, n, seat id)`.
    pub held: &'a [(&'a str, u32, &'a str)],
}

impl Revoke<'_> {
    pub fn call(&self, call: &mut Call) {
        call.key(|o| keys::write_revoked(o, self.event));
        call.key(|o| keys::write_user_holds(o, self.event, self.user));
        for (section, n, _) in self.held {
            call.key(|o| keys::write_hold(o, self.event, section, *n));
            call.key(|o| keys::write_section_holds(o, self.event, section));
        }
        call.arg(self.user.as_bytes());
        for (_, n, id) in self.held {
            call.arg_u64(u64::from(*n));
            call.arg(id.as_bytes());
        }
    }

    /// How many holds were released.
    pub fn decode(reply: &Frame) -> Result<u64, Unexpected> {
        integer(Some(reply))
            .and_then(|n| u64::try_from(n).ok())
            .ok_or(Unexpected("revoke"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_keeps_its_keys_before_its_arguments() {
        let mut call = Call::default();
        Hold {
            event: "demo",
            section: "A",
            n: 7,
            hold_id: b"h1",
            user: "u:1",
            seat_id: "A-7",
        }
        .call(&mut call);
        let keys: Vec<&[u8]> = call.keys().collect();
        let args: Vec<&[u8]> = call.args().collect();
        assert_eq!(
            keys,
            [
                &b"ev:{demo}:hold:A:7"[..],
                b"ev:{demo}:held:A",
                b"ev:{demo}:uholds:u:1"
            ]
        );
        assert_eq!(args, [&b"h1 u:1"[..], b"A-7"]);
        assert_eq!((call.key_count(), call.arg_count()), (3, 2));
    }

    #[test]
    fn a_record_gives_its_fingerprint() {
        assert_eq!(
            recorded_fingerprint(b"done|ab12|{\"a\":1}"),
            Some(&b"ab12"[..])
        );
        assert_eq!(recorded_fingerprint(b"inflight|ab12|"), Some(&b"ab12"[..]));
        assert_eq!(recorded_fingerprint(b"done|ab12"), None);
    }

    #[test]
    fn hold_codes_map_to_outcomes() {
        let decode = |n| Hold::decode(&Frame::Integer(n));
        assert_eq!(decode(-1), Ok(HoldOutcome::Sold));
        assert_eq!(decode(-2), Ok(HoldOutcome::Taken));
        assert_eq!(decode(-3), Ok(HoldOutcome::OverLimit));
        assert_eq!(decode(5), Ok(HoldOutcome::Held { expires_at_ms: 5 }));
        assert_eq!(decode(0), Err(Unexpected("hold")));
        assert_eq!(Hold::decode(&Frame::Null), Err(Unexpected("hold")));
    }

    #[test]
    fn line_codes_map_to_outcomes() {
        let enter = |n| Enter::decode(&Frame::Integer(n));
        assert_eq!(enter(7), Ok(EnterOutcome::Placed(7)));
        assert_eq!(enter(0), Ok(EnterOutcome::Prequeued));
        assert_eq!(enter(-1), Ok(EnterOutcome::Rejected));
        assert_eq!(enter(-2), Ok(EnterOutcome::NotOpen));
        assert_eq!(enter(-3), Err(Unexpected("enter")));
        let poll = |n| Poll::decode(&Frame::Integer(n));
        assert_eq!(poll(3), Ok(Place::At(3)));
        assert_eq!(poll(0), Ok(Place::Prequeued));
        assert_eq!(poll(-1), Ok(Place::Gone));
        let mut fields: Vec<Frame> = vec![Frame::Null; 12];
        fields[0] = Frame::BulkString("1000".into());
        fields[5] = Frame::BulkString("random".into());
        fields[8] = Frame::BulkString("ab".into());
        let state = Advance::decode(&Frame::Array(fields.clone())).expect("shape");
        let state = state.expect("readable");
        assert_eq!(state.open_at_ms, Some(1000));
        assert_eq!(state.queueing.as_deref(), Some(&b"random"[..]));
        assert_eq!((state.seed_hash.as_deref(), state.seed), (Some("ab"), None));
        fields[1] = Frame::BulkString("1.5e+18".into());
        let refused = Advance::decode(&Frame::Array(fields)).expect("shape");
        assert_eq!(refused, Err(Unreadable("rate")));
        assert_eq!(
            Advance::decode(&Frame::Array(vec![])),
            Err(Unexpected("advance"))
        );
    }

    #[test]
    fn idempotent_codes_map_to_outcomes() {
        let reply = |code, body: Option<&'static str>| {
            let mut items = vec![Frame::Integer(code)];
            items.extend(body.map(|b| Frame::BulkString(b.into())));
            Frame::Array(items)
        };
        let r = reply(1, Some("{}"));
        assert_eq!(Commit::decode(&r), Ok(Idempotent::Done(b"{}")));
        let r = reply(0, Some("x"));
        assert_eq!(Intent::decode(&r), Ok(Idempotent::Replay(b"x")));
        let r = reply(2, Some("m"));
        assert_eq!(Commit::decode(&r), Ok(Idempotent::Begun(b"m")));
        assert_eq!(Intent::decode(&r), Err(Unexpected("intent")));
        for (code, refusal) in [
            (-1, Refusal::NotHeld),
            (-404, Refusal::IntentNotFound),
            (-410, Refusal::IntentExpired),
            (-4090, Refusal::IntentMismatch),
            (-409, Refusal::InFlight),
            (-422, Refusal::KeyReused),
            (-4091, Refusal::PurchaseLimit),
        ] {
            let r = reply(code, None);
            assert_eq!(Commit::decode(&r), Ok(Idempotent::Refused(refusal)));
        }
        let r = reply(1, None);
        assert_eq!(Commit::decode(&r), Err(Unexpected("commit")));
    }

    #[test]
    fn every_script_has_its_fragments_once() {
        use scripts::*;
        for (name, body, holds) in [
            ("hold", HOLD, true),
            ("release", RELEASE, true),
            ("intent", INTENT, true),
            ("commit", COMMIT, true),
            ("project", PROJECT, true),
            ("revoke", REVOKE, true),
            ("summary", SUMMARY, false),
            ("enter", ENTER, false),
            ("admission", ADMISSION, false),
        ] {
            let count = |s| body.matches(s).count();
            assert_eq!(
                count("local function hold_of"),
                usize::from(holds),
                "{name}"
            );
            // The hold value is built in Rust ([`write_hold_value`]), never in Lua.
            assert_eq!(count("' ' .."), 0, "{name}");
        }
        let marker = format!("local SOLD = '{}'", std::str::from_utf8(SOLD).unwrap_or(""));
        assert_eq!(HOLD.matches(marker.as_str()).count(), 1);
    }
}
