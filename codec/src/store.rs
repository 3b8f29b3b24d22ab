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
    pub const ENTER: &str = script!("enter.lua");
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

fn items(frame: &Frame) -> &[Frame] {
    match frame {
        Frame::Array(items) => items,
        _ => &[],
    }
}

/// `enter.lua`, batched: one buyer's place in an event's line.
#[derive(Debug, Clone, Copy)]
pub struct Enter<'a> {
    pub event: &'a str,
    pub user: &'a str,
}

impl Enter<'_> {
    pub fn call(&self, call: &mut Call) {
        call.key(|o| keys::write_positions(o, self.event));
        call.key(|o| keys::write_queue(o, self.event));
        call.arg(self.user.as_bytes());
    }

    /// The buyer's position (>= 1), the same on every call.
    pub fn decode(reply: &Frame) -> Result<u64, Unexpected> {
        integer(Some(reply))
            .and_then(|p| u64::try_from(p).ok())
            .filter(|&p| p >= 1)
            .ok_or(Unexpected("enter"))
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
    pub fn call(&self, call: &mut Call) {
        call.key(|o| keys::write_sold(o, self.event, self.section));
        call.key(|o| keys::write_section_holds(o, self.event, self.section));
    }

    /// `summary.lua`: (sold, held) seats.
    pub fn decode_counts(reply: &Frame) -> Result<(u64, u64), Unexpected> {
        let items = items(reply);
        let count = |i| integer(items.get(i)).and_then(|n| u64::try_from(n).ok());
        count(0).zip(count(1)).ok_or(Unexpected("summary"))
    }

    /// `seats.lua`: the sold bitmap and the held seats.
    pub fn decode_states(reply: &Frame) -> Result<SeatStates<'_>, Unexpected> {
        let unexpected = Unexpected("seats");
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
        Ok(SeatStates { sold, held })
    }
}

/// `admission.lua`: an operator changes the opening time and/or the rate.
#[derive(Debug, Clone, Copy)]
pub struct SetAdmission<'a> {
    pub event: &'a str,
    pub open_at_ms: Option<u64>,
    pub rate: Option<u64>,
}

impl SetAdmission<'_> {
    pub fn call(&self, call: &mut Call) {
        call.key(|o| keys::write_admission(o, self.event));
        for value in [self.open_at_ms, self.rate] {
            match value {
                Some(v) => call.arg_u64(v),
                None => call.arg(b""),
            }
        }
    }

    pub fn decode(reply: &Frame) -> Result<crate::contract::AdmissionState, Unexpected> {
        let items = items(reply);
        let field = |i| integer(items.get(i)).and_then(|n| u64::try_from(n).ok());
        match (field(0), field(1), field(2), field(3)) {
            (Some(open_at_ms), Some(rate), Some(base_ms), Some(base_admitted)) => {
                Ok(crate::contract::AdmissionState {
                    open_at_ms,
                    rate,
                    base_ms,
                    base_admitted,
                })
            }
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
}

impl Commit<'_> {
    pub fn call(&self, call: &mut Call) {
        let (e, u) = (self.event, self.user);
        call.key(|o| keys::write_idempotency(o, e, "commit", u, self.idem));
        call.key(|o| keys::write_intent(o, e, self.intent_id));
        call.key(|o| keys::write_order_status(o, e, u, self.idem));
        call.key(|o| keys::write_commits(o, e, self.shard));
        call.key(|o| keys::write_user_holds(o, e, u));
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

    /// `commit_abort.lua` after SQS refused the message: frees the key.
    pub fn abort(&self, call: &mut Call) {
        call.key(|o| keys::write_idempotency(o, self.event, "commit", self.user, self.idem));
        call.arg(self.fingerprint.as_bytes());
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
            ("summary", SUMMARY, false),
        ] {
            let count = |s| body.matches(s).count();
            assert_eq!(count("local function hold_of"), usize::from(holds), "{name}");
            // The hold value is built in Rust ([`write_hold_value`]), never in Lua.
            assert_eq!(count("' ' .."), 0, "{name}");
        }
        let marker = format!("local SOLD = '{}'", std::str::from_utf8(SOLD).unwrap_or(""));
        assert_eq!(HOLD.matches(marker.as_str()).count(), 1);
    }
}
