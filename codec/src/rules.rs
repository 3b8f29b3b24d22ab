//! What the system accepts: one rule per identifier and field, used by the edge at the
//! door, by the worker on every commit message and said again by PostgreSQL's `CHECK`s
//! (`worker/migrations/0002_rules.sql`; a worker test feeds generated values to both and
//! requires the same verdict). Where two places must agree, they call these.
//!
//! Every rule accepts exactly one spelling of a value (its canonical form), so two
//! accepted strings never name the same thing: `A-1` is a seat id, `A-01` and `A-+1`
//! are not (Rust's `u32::from_str` reads all three as seat 1, which let the edge accept
//! seats that PostgreSQL then refused, leaving orders `PENDING` for ever).
//!
//! | field | rule | PostgreSQL |
//! |---|---|---|
//! | event id | 1..=64 of `A-Z a-z 0-9 _ -` | `events.event_id` |
//! | section id | 1..=64 of `A-Z a-z 0-9 _` (no `-`: seat ids are `{section}-{n}`) | `sections.section_id` |
//! | seat id | `{section}-{n}`, n in 1..=[`SEAT_NUMBER_MAX`] in decimal, no sign, no leading 0 | `sold_seats.seat_id`, `orders.seat_ids` |
//! | seats of a section | 1..=[`SECTION_SEATS_MAX`] | `sections.seats` |
//! | seats of an order | 1..=[`ORDER_SEATS_MAX`], distinct | `orders.seat_ids` |
//! | user id | 1..=64 visible ASCII (`!`..=`~`) | `orders.user_id` |
//! | Idempotency-Key | 1..=255 visible ASCII | `orders.idem` |
//! | intent id | as an event id | `orders.intent_id`, `payments.intent_id` |
//! | hold id | 1..=64 visible ASCII | (Redis only) |
//! | request id | 1..=128 visible ASCII | (not stored) |
//! | currency | 3 of `A-Z` (ISO 4217 letters) | `events`, `orders`, `payments` `.currency` |
//! | amount, price | 0..=[`AMOUNT_MAX`] minor units (what cjson writes exactly) | `orders.amount`, `payments.amount`, `sections.price` (0004) |
//! | opening time | 0..=[`EPOCH_MS_MAX`] epoch milliseconds | `events.open_at` |
//! | admission rate | 1..=[`ADMISSION_RATE_MAX`] buyers a second | `events.admission_rate` |
//! | pre-queue time | as an opening time, and before it | (Redis only) |
//! | active limit | 0..=[`ACTIVE_LIMIT_MAX`] buyers, 0 = no limit | (Redis only) |
//! | queueing | `fifo`, `random`, `passthrough`, `reject` ([`crate::contract::Queueing`]) | (Redis only) |
//!
//! The checks are allocation-free single passes over the bytes: they run on the hot
//! path. Text rules take `&str` (JSON fields, decoded URLs); the two header fields
//! ([`idempotency_key`], [`request_id`]) take the raw header bytes and hand back the
//! text, since a visible ASCII value is UTF-8.

use std::fmt;

/// Longest event, section and intent id.
pub const ID_MAX_BYTES: usize = 64;
/// Longest user id.
pub const USER_ID_MAX_BYTES: usize = 64;
/// Longest Idempotency-Key.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;
/// Longest hold id (the edge makes 16 hex digits).
pub const HOLD_ID_MAX_BYTES: usize = 64;
/// Longest proof-of-work challenge `enter` takes (`GET /public/challenge` makes ~100 bytes).
pub const POW_CHALLENGE_MAX_BYTES: usize = 256;
/// Longest proof-of-work nonce.
pub const POW_NONCE_MAX_BYTES: usize = 64;
/// Longest `x-request-id` kept (a longer one is replaced, not refused).
pub const REQUEST_ID_MAX_BYTES: usize = 128;
/// A payment provider's ids (`providerEventId`, `paymentId` of the payment callback).
pub const PROVIDER_ID_MAX_BYTES: usize = 128;
/// Highest seat number a seat id may spell: nine digits, so that it fits PostgreSQL's
/// `integer` (`sold_seats.n`) and the `CHECK`'s `[1-9][0-9]{0,8}`.
pub const SEAT_NUMBER_MAX: u32 = 999_999_999;
/// Most seats in one section (seats are numbered 1..=seats; a section's seat map is one
/// byte a seat, so this bounds that answer at 10 MB).
pub const SECTION_SEATS_MAX: u32 = 10_000_000;
/// Most seats in one payment intent or commit: the edge's `HOLD_LIMIT` may not exceed it.
pub const ORDER_SEATS_MAX: usize = 100;
/// Largest amount or price, in minor units: fourteen digits, the most Redis's `cjson`
/// writes exactly (`%.14g`), which encodes the commit message and the intent's body;
/// a larger one would reach the worker as `1e+14`.
pub const AMOUNT_MAX: u64 = 99_999_999_999_999;
/// Latest time an epoch-milliseconds field may name: 9999-12-31T23:59:59.999Z. The
/// admission script computes in Lua's doubles and Redis writes them with 17 digits:
/// past 10^17 a time is stored as `1.8e+18`, which no reader takes for an integer
/// (an operator's `openAtMs` in nanoseconds answered 200 and opened the room to all).
pub const EPOCH_MS_MAX: u64 = 253_402_300_799_999;
/// Most buyers a waiting room may admit a second. Bounds what the admission script
/// computes from it: (now - opening) / 1000 * rate stays below 10^17 until 2200.
pub const ADMISSION_RATE_MAX: u64 = 10_000_000;
/// Most buyers admitted and not yet done an event may allow (`activeLimit`); the
/// admission script's frontier stays far below 2^53.
pub const ACTIVE_LIMIT_MAX: u64 = 100_000_000;

/// A value a rule refused: which field, and what it must be. The edge answers 400
/// `INVALID_FIELD` with it; the worker records it as the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    /// The field's name on the wire (`seatIds`, `Idempotency-Key`).
    pub field: &'static str,
    /// What the field must be, completing "`field` must be ...".
    pub rule: &'static str,
}

impl Invalid {
    /// The same refusal for a field that carries this value under another name (the
    /// `idem` query parameter is an Idempotency-Key, `price` an amount).
    pub const fn named(self, field: &'static str) -> Self {
        Self { field, ..self }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be {}", self.field, self.rule)
    }
}

impl std::error::Error for Invalid {}

/// A seat id split into its section and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seat<'a> {
    pub section: &'a str,
    pub n: u32,
}

fn id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn section_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `!` (0x21) to `~` (0x7e): no space, no control character, nothing beyond ASCII.
fn visible(b: u8) -> bool {
    b.is_ascii_graphic()
}

fn check(s: &[u8], max: usize, byte: fn(u8) -> bool, err: Invalid) -> Result<(), Invalid> {
    if (1..=max).contains(&s.len()) && s.iter().all(|&b| byte(b)) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Text made of visible ASCII only is UTF-8; the conversion cannot fail after [`check`],
/// but is done without `unsafe`.
fn text(s: &[u8], err: Invalid) -> Result<&str, Invalid> {
    std::str::from_utf8(s).map_err(|_| err)
}

pub fn event_id(s: &str) -> Result<(), Invalid> {
    const ERR: Invalid = Invalid {
        field: "eventId",
        rule: "1 to 64 of A-Z a-z 0-9 _ -",
    };
    check(s.as_bytes(), ID_MAX_BYTES, id_byte, ERR)
}

pub fn section_id(s: &str) -> Result<(), Invalid> {
    const ERR: Invalid = Invalid {
        field: "section",
        rule: "1 to 64 of A-Z a-z 0-9 _",
    };
    check(s.as_bytes(), ID_MAX_BYTES, section_byte, ERR)
}

/// `{section}-{n}`: the section's rule, `-`, then n in 1..=[`SEAT_NUMBER_MAX`] written
/// in decimal with no sign and no leading zero.
pub fn seat_id(s: &str) -> Result<Seat<'_>, Invalid> {
    const ERR: Invalid = Invalid {
        field: "seatId",
        rule: "{section}-{n}: a section of 1 to 64 of A-Z a-z 0-9 _, then n from 1 to 999999999 without sign or leading zero",
    };
    let (section, digits) = s.split_once('-').ok_or(ERR)?;
    section_id(section).map_err(|_| ERR)?;
    let digits = digits.as_bytes();
    // Nine digits at most: the number then fits u32 and SEAT_NUMBER_MAX is all nines.
    let canonical = (1..=9).contains(&digits.len())
        && digits[0] != b'0'
        && digits.iter().all(u8::is_ascii_digit);
    if !canonical {
        return Err(ERR);
    }
    let n = digits
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    Ok(Seat { section, n })
}

/// How many seats one payment intent or commit may list: 1..=[`ORDER_SEATS_MAX`].
pub fn order_seats(count: usize) -> Result<(), Invalid> {
    if (1..=ORDER_SEATS_MAX).contains(&count) {
        Ok(())
    } else {
        Err(Invalid {
            field: "seatIds",
            rule: "a list of 1 to 100 seat ids",
        })
    }
}

/// How many seats a section of the catalog may have: 1..=[`SECTION_SEATS_MAX`].
pub fn section_seats(seats: u32) -> Result<(), Invalid> {
    if (1..=SECTION_SEATS_MAX).contains(&seats) {
        Ok(())
    } else {
        Err(Invalid {
            field: "seats",
            rule: "1 to 10000000",
        })
    }
}

pub fn user_id(s: &str) -> Result<(), Invalid> {
    const ERR: Invalid = Invalid {
        field: "userId",
        rule: "1 to 64 visible ASCII characters",
    };
    check(s.as_bytes(), USER_ID_MAX_BYTES, visible, ERR)
}

/// The `Idempotency-Key` header's bytes, as text.
pub fn idempotency_key(s: &[u8]) -> Result<&str, Invalid> {
    const ERR: Invalid = Invalid {
        field: "Idempotency-Key",
        rule: "1 to 255 visible ASCII characters",
    };
    check(s, IDEMPOTENCY_KEY_MAX_BYTES, visible, ERR)?;
    text(s, ERR)
}

pub fn intent_id(s: &str) -> Result<(), Invalid> {
    const ERR: Invalid = Invalid {
        field: "intentId",
        rule: "1 to 64 of A-Z a-z 0-9 _ -",
    };
    check(s.as_bytes(), ID_MAX_BYTES, id_byte, ERR)
}

pub fn hold_id(s: &str) -> Result<(), Invalid> {
    const ERR: Invalid = Invalid {
        field: "holdId",
        rule: "1 to 64 visible ASCII characters",
    };
    check(s.as_bytes(), HOLD_ID_MAX_BYTES, visible, ERR)
}

/// `enter`'s proof-of-work `challenge`, checked whether or not a proof is asked: the
/// contract bounds it either way.
pub fn pow_challenge(s: &str) -> Result<(), Invalid> {
    const ERR: Invalid = Invalid {
        field: "challenge",
        rule: "1 to 256 visible ASCII characters",
    };
    check(s.as_bytes(), POW_CHALLENGE_MAX_BYTES, visible, ERR)
}

/// `enter`'s proof-of-work `nonce`, likewise.
pub fn pow_nonce(s: &str) -> Result<(), Invalid> {
    const ERR: Invalid = Invalid {
        field: "nonce",
        rule: "1 to 64 visible ASCII characters",
    };
    check(s.as_bytes(), POW_NONCE_MAX_BYTES, visible, ERR)
}

/// A payment provider's id of its callback's event (`providerEventId`) or of the
/// payment (`paymentId`): opaque to us, bounded.
pub fn provider_id(field: &'static str, s: &str) -> Result<(), Invalid> {
    let err = Invalid {
        field,
        rule: "1 to 128 visible ASCII characters",
    };
    check(s.as_bytes(), PROVIDER_ID_MAX_BYTES, visible, err)
}

/// The `x-request-id` header's bytes, as text (the edge replaces a refused one).
pub fn request_id(s: &[u8]) -> Result<&str, Invalid> {
    const ERR: Invalid = Invalid {
        field: "x-request-id",
        rule: "1 to 128 visible ASCII characters",
    };
    check(s, REQUEST_ID_MAX_BYTES, visible, ERR)?;
    text(s, ERR)
}

pub fn currency(s: &str) -> Result<(), Invalid> {
    const ERR: Invalid = Invalid {
        field: "currency",
        rule: "three capital letters A-Z",
    };
    check(s.as_bytes(), 3, |b| b.is_ascii_uppercase(), ERR)?;
    if s.len() == 3 {
        Ok(())
    } else {
        Err(ERR)
    }
}

/// An amount or price in minor units, as PostgreSQL's `bigint` stores it.
pub fn amount(n: u64) -> Result<i64, Invalid> {
    if n <= AMOUNT_MAX {
        Ok(n as i64)
    } else {
        Err(Invalid {
            field: "amount",
            rule: "0 to 99999999999999 minor units",
        })
    }
}

/// A time in epoch milliseconds an operator sets (`openAtMs`): 0..=[`EPOCH_MS_MAX`].
pub fn epoch_ms(ms: u64) -> Result<(), Invalid> {
    if ms <= EPOCH_MS_MAX {
        Ok(())
    } else {
        Err(Invalid {
            field: "openAtMs",
            rule: "epoch milliseconds from 0 to 253402300799999 (year 9999)",
        })
    }
}

/// An event's admission rate, buyers a second: 1..=[`ADMISSION_RATE_MAX`].
pub fn admission_rate(rate: u64) -> Result<(), Invalid> {
    if (1..=ADMISSION_RATE_MAX).contains(&rate) {
        Ok(())
    } else {
        Err(Invalid {
            field: "rate",
            rule: "1 to 10000000 buyers a second",
        })
    }
}

/// When an event's pre-queue opens (`prequeueAtMs`), epoch milliseconds; 0 = no
/// pre-queue. That it comes before `openAtMs` is checked by the admission script,
/// which knows both.
pub fn prequeue_at_ms(ms: u64) -> Result<(), Invalid> {
    epoch_ms(ms).map_err(|e| e.named("prequeueAtMs"))
}

/// Most buyers admitted and not yet done (`activeLimit`): 0..=[`ACTIVE_LIMIT_MAX`], 0
/// for no limit.
pub fn active_limit(n: u64) -> Result<(), Invalid> {
    if n <= ACTIVE_LIMIT_MAX {
        Ok(())
    } else {
        Err(Invalid {
            field: "activeLimit",
            rule: "0 (no limit) to 100000000 buyers",
        })
    }
}

#[cfg(test)]
mod tests;
