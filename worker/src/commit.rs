//! A commit message off the queue: decoded and checked with `codec::rules` and against
//! its event's catalog. Then it is one of three things:
//! - a commit to store, whose seats the database sells or refuses (`SEAT_SOLD`);
//! - a commit to store `REJECTED` at once, with a reason no retry changes
//!   ([`reason`]): a seat missing from the catalog, or seat ids that are not seat ids
//!   (from an edge older than the rules). The buyer, who had a 202, learns it from the
//!   status record instead of waiting for ever;
//! - [`Poison`], which goes to the dead-letter queue at once (STYLE.md, direction 6):
//!   what cannot be an order (not JSON, another version, no valid idem, user or event,
//!   so no order row or status record could be written) and what only a broken or
//!   foreign producer writes (intent id, hold ids, currency, amount: the edge makes
//!   those itself), for an operator to look at and redrive.

use std::collections::HashMap;

use codec::{
    contract::{reason, CommitMessage},
    rules,
};
use serde::Deserialize;

/// A commit that may be written: the message and its seats, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub msg: CommitMessage,
    /// `(section, n)` of each of `msg.seat_ids`, in the same order.
    pub seats: Vec<(String, u32)>,
    /// Why the order is to be stored `REJECTED` rather than sell its seats.
    pub rejected: Option<Rejected>,
}

/// A final refusal: the reason the buyer sees, and what was wrong, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// One of [`reason`].
    pub reason: &'static str,
    pub detail: String,
}

impl Commit {
    /// The order's identity: unique in `orders`, so a redelivery finds its order.
    pub fn key(&self) -> OrderKey<'_> {
        OrderKey {
            event_id: &self.msg.event_id,
            user_id: &self.msg.user_id,
            idem: &self.msg.idem,
        }
    }
}

/// `orders`' unique `(event_id, user_id, idem)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderKey<'a> {
    pub event_id: &'a str,
    pub user_id: &'a str,
    pub idem: &'a str,
}

/// Why a message can never be processed; recorded with it in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Poison(pub String);

/// Each event's sections and their sizes (event -> section -> seats), from PostgreSQL.
pub type Catalogs = HashMap<String, HashMap<String, u32>>;

/// What [`check`] makes of a message.
// Made once per message and unpacked at once: boxing the large variant saves nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// To store: to sell its seats, or `REJECTED` when [`Commit::rejected`] says why.
    Valid(Commit),
    Poison(Poison),
    /// Well formed, for an event this worker does not know (yet): worth one catalog
    /// refresh before it is called poison.
    UnknownEvent(String),
}

impl Checked {
    /// Whether a fresher catalog could change the verdict: an unknown event, or a
    /// seat the catalog lacks (seeded since the last refresh, maybe).
    pub fn wants_fresh_catalog(&self) -> bool {
        match self {
            Self::UnknownEvent(_) => true,
            Self::Valid(c) => c
                .rejected
                .as_ref()
                .is_some_and(|r| r.reason == reason::SEAT_NOT_FOUND),
            Self::Poison(_) => false,
        }
    }
}

/// Only the version, read first so that a message of another version is refused for
/// its version, not for whatever field it lacks.
#[derive(Deserialize)]
struct Versioned {
    v: Option<serde_json::Value>,
}

/// Decodes and validates a message body against `catalogs`.
pub fn check(body: &[u8], catalogs: &Catalogs) -> Checked {
    let mut commit = match decode(body) {
        Ok(commit) => commit,
        Err(poison) => return Checked::Poison(poison),
    };
    let Some(sections) = catalogs.get(&commit.msg.event_id) else {
        return Checked::UnknownEvent(commit.msg.event_id);
    };
    if commit.rejected.is_none() {
        let missing = commit
            .msg
            .seat_ids
            .iter()
            .zip(&commit.seats)
            .find(|(_, (section, n))| sections.get(section).is_none_or(|&size| *n > size));
        if let Some((seat_id, _)) = missing {
            commit.rejected = Some(Rejected {
                reason: reason::SEAT_NOT_FOUND,
                detail: format!("no seat {seat_id} in event {}", commit.msg.event_id),
            });
        }
    }
    Checked::Valid(commit)
}

/// A refused field as poison: the rule, and the value (quoted, so controls show).
fn poison(e: rules::Invalid, value: &impl std::fmt::Debug) -> Poison {
    Poison(format!("{e} (got {value:?})"))
}

/// Decodes and validates what needs no catalog.
pub fn decode(body: &[u8]) -> Result<Commit, Poison> {
    let versioned: Versioned =
        serde_json::from_slice(body).map_err(|e| Poison(format!("not a JSON object: {e}")))?;
    match versioned.v {
        None => return Err(Poison("no version field \"v\"".into())),
        Some(v) if v.as_u64() != Some(u64::from(CommitMessage::VERSION)) => {
            return Err(Poison(format!("unknown version {v}")))
        }
        Some(_) => {}
    }
    let mut msg: CommitMessage =
        serde_json::from_slice(body).map_err(|e| Poison(format!("bad version 1 message: {e}")))?;
    // The order's identity and the status record's key: without them, nothing to write.
    rules::idempotency_key(msg.idem.as_bytes()).map_err(|e| poison(e.named("idem"), &msg.idem))?;
    rules::event_id(&msg.event_id).map_err(|e| poison(e, &msg.event_id))?;
    rules::user_id(&msg.user_id).map_err(|e| poison(e, &msg.user_id))?;
    // What the edge makes itself.
    rules::intent_id(&msg.intent_id).map_err(|e| poison(e, &msg.intent_id))?;
    rules::currency(&msg.currency).map_err(|e| poison(e, &msg.currency))?;
    rules::amount(msg.amount).map_err(|e| poison(e, &msg.amount))?;
    for hold_id in &msg.hold_ids {
        rules::hold_id(hold_id).map_err(|e| poison(e.named("holdIds"), hold_id))?;
    }
    // What the buyer chose.
    let seats = match seats(&msg.seat_ids) {
        Ok(seats) => seats,
        Err(detail) => {
            // Stored and shown as no seats: PostgreSQL refuses these ids as the rules do.
            msg.seat_ids.clear();
            let rejected = Some(Rejected {
                reason: reason::INVALID_SEAT_ID,
                detail,
            });
            return Ok(Commit {
                msg,
                seats: Vec::new(),
                rejected,
            });
        }
    };
    if msg.hold_ids.len() != msg.seat_ids.len() {
        return Err(Poison(format!(
            "{} holdIds for {} seatIds",
            msg.hold_ids.len(),
            msg.seat_ids.len()
        )));
    }
    Ok(Commit {
        msg,
        seats,
        rejected: None,
    })
}

/// The seats of a seat list that keeps the rules: 1..=100 distinct seat ids.
fn seats(seat_ids: &[String]) -> Result<Vec<(String, u32)>, String> {
    rules::order_seats(seat_ids.len()).map_err(|e| format!("{e} (got {})", seat_ids.len()))?;
    let mut seats = Vec::with_capacity(seat_ids.len());
    for (i, seat_id) in seat_ids.iter().enumerate() {
        let seat = rules::seat_id(seat_id)
            .map_err(|e| format!("{} (got {seat_id:?})", e.named("seatIds")))?;
        // Canonical ids: the same seat is the same string.
        if seat_ids[..i].contains(seat_id) {
            return Err(format!("seatIds must not repeat (got {seat_id} twice)"));
        }
        seats.push((seat.section.to_owned(), seat.n));
    }
    Ok(seats)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn message() -> Value {
        json!({"v": 1, "idem": "k-1", "intentId": "pi1", "eventId": "demo", "userId": "u:1",
               "seatIds": ["A-1", "B-10"], "holdIds": ["h1", "h2"], "amount": 270000,
               "currency": "KRW", "acceptedAt": 1_700_000_000_000u64})
    }

    fn catalogs() -> Catalogs {
        let sections = HashMap::from([("A".to_owned(), 10), ("B".to_owned(), 10)]);
        HashMap::from([("demo".to_owned(), sections)])
    }

    fn checked(body: &Value) -> Checked {
        check(body.to_string().as_bytes(), &catalogs())
    }

    #[test]
    fn a_good_message_splits_its_seats() {
        let Checked::Valid(commit) = checked(&message()) else {
            panic!("valid")
        };
        assert_eq!(commit.seats, [("A".to_owned(), 1), ("B".to_owned(), 10)]);
        assert_eq!(commit.key().user_id, "u:1");
        assert_eq!(commit.rejected, None);
    }

    #[test]
    fn poison_says_why() {
        type Break = fn(&mut Value);
        let cases: [(&str, Break); 14] = [
            ("unknown version 2", |m| m["v"] = json!(2)),
            ("unknown version \"1\"", |m| m["v"] = json!("1")),
            ("no version", |m| {
                m.as_object_mut().expect("object").remove("v");
            }),
            ("missing field `idem`", |m| {
                m.as_object_mut().expect("object").remove("idem");
            }),
            (
                "idem must be 1 to 255 visible ASCII characters (got \"has space\")",
                |m| m["idem"] = json!("has space"),
            ),
            ("eventId must be", |m| m["eventId"] = json!("{x}")),
            (
                "userId must be 1 to 64 visible ASCII characters (got \"\")",
                |m| m["userId"] = json!(""),
            ),
            ("userId must be", |m| m["userId"] = json!("u\u{7}")),
            ("intentId must be", |m| m["intentId"] = json!("pi 1")),
            ("holdIds must be", |m| m["holdIds"] = json!(["h1", "h\n2"])),
            ("1 holdIds for 2 seatIds", |m| m["holdIds"] = json!(["h1"])),
            (
                "currency must be three capital letters A-Z (got \"krw\")",
                |m| m["currency"] = json!("krw"),
            ),
            ("amount must be", |m| m["amount"] = json!(u64::MAX)),
            ("bad version 1 message", |m| m["amount"] = json!(-1)),
        ];
        for (why, break_it) in cases {
            let mut m = message();
            break_it(&mut m);
            match checked(&m) {
                Checked::Poison(Poison(reason)) => assert!(reason.contains(why), "{why}: {reason}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        for garbage in [&b""[..], b"[]", b"{\"v\":1", b"\xff"] {
            assert!(matches!(check(garbage, &catalogs()), Checked::Poison(_)));
        }
    }

    #[test]
    fn seats_no_retry_can_sell_are_rejected_with_the_reason() {
        type Break = fn(&mut Value);
        let cases: [(&str, &str, Break); 8] = [
            (
                reason::INVALID_SEAT_ID,
                "seatIds must be {section}-{n}",
                |m| m["seatIds"] = json!(["A-1", "A-01"]),
            ),
            (reason::INVALID_SEAT_ID, "(got \"A-+1\")", |m| {
                m["seatIds"] = json!(["A-+1", "B-1"])
            }),
            (reason::INVALID_SEAT_ID, "(got \"A-1000000000\")", |m| {
                m["seatIds"] = json!(["A-1000000000", "B-1"])
            }),
            (reason::INVALID_SEAT_ID, "(got \"A1\")", |m| {
                m["seatIds"] = json!(["A-1", "A1"])
            }),
            (
                reason::INVALID_SEAT_ID,
                "seatIds must not repeat (got A-1 twice)",
                |m| m["seatIds"] = json!(["A-1", "A-1"]),
            ),
            (
                reason::INVALID_SEAT_ID,
                "seatIds must be a list of 1 to 100 seat ids (got 0)",
                |m| m["seatIds"] = json!([]),
            ),
            (reason::SEAT_NOT_FOUND, "no seat A-11 in event demo", |m| {
                m["seatIds"] = json!(["A-11", "B-1"])
            }),
            (reason::SEAT_NOT_FOUND, "no seat C-1 in event demo", |m| {
                m["seatIds"] = json!(["A-1", "C-1"])
            }),
        ];
        for (reason, detail, break_it) in cases {
            let mut m = message();
            break_it(&mut m);
            let checked = checked(&m);
            assert_eq!(
                checked.wants_fresh_catalog(),
                reason == reason::SEAT_NOT_FOUND
            );
            let Checked::Valid(commit) = checked else {
                panic!("{detail}: {checked:?}")
            };
            let rejected = commit.rejected.expect("rejected");
            assert_eq!(rejected.reason, reason, "{detail}");
            assert!(
                rejected.detail.contains(detail),
                "{detail}: {}",
                rejected.detail
            );
            if reason == reason::INVALID_SEAT_ID {
                // What PostgreSQL stores and the buyer sees: no seats.
                assert!(commit.msg.seat_ids.is_empty() && commit.seats.is_empty());
            } else {
                assert_eq!(commit.seats.len(), 2);
            }
        }
        // 101 seats: one more than any order may have.
        let mut m = message();
        m["seatIds"] = json!((1..=101).map(|n| format!("A-{n}")).collect::<Vec<_>>());
        m["holdIds"] = json!((1..=101).map(|n| format!("h{n}")).collect::<Vec<_>>());
        let Checked::Valid(commit) = checked(&m) else {
            panic!("valid")
        };
        assert_eq!(
            commit.rejected.map(|r| r.reason),
            Some(reason::INVALID_SEAT_ID)
        );
    }

    #[test]
    fn an_unknown_event_is_not_poison_yet() {
        let mut m = message();
        m["eventId"] = json!("later");
        assert_eq!(checked(&m), Checked::UnknownEvent("later".into()));
    }
}
