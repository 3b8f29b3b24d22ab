//! A commit message off the queue: decoded, checked against its event's catalog, or
//! refused as [`Poison`] with the reason. Poison never succeeds on a retry, so it goes
//! to the dead-letter queue at once (STYLE.md, direction 6).

use std::collections::HashMap;

use codec::{contract::CommitMessage, keys};
use serde::Deserialize;

/// Most seats one commit may carry (the edge allows `HOLD_LIMIT`, 4 by default).
pub const MAX_SEATS: usize = 64;
/// The edge's bound on an Idempotency-Key.
pub const MAX_IDEM_BYTES: usize = 255;
/// The edge's bound on a user id.
pub const MAX_USER_BYTES: usize = 64;

/// A commit that may be written: the message and its seats, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub msg: CommitMessage,
    /// `(section, n)` of each of `msg.seat_ids`, in the same order.
    pub seats: Vec<(String, u32)>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Valid(Commit),
    Poison(Poison),
    /// Well formed, for an event this worker does not know (yet): worth one catalog
    /// refresh before it is called poison.
    UnknownEvent(String),
}

/// Only the version, read first so that a message of another version is refused for
/// its version, not for whatever field it lacks.
#[derive(Deserialize)]
struct Versioned {
    v: Option<serde_json::Value>,
}

/// Decodes and validates a message body against `catalogs`.
pub fn check(body: &[u8], catalogs: &Catalogs) -> Checked {
    let commit = match decode(body) {
        Ok(commit) => commit,
        Err(poison) => return Checked::Poison(poison),
    };
    let Some(sections) = catalogs.get(&commit.msg.event_id) else {
        return Checked::UnknownEvent(commit.msg.event_id);
    };
    for (seat_id, (section, n)) in commit.msg.seat_ids.iter().zip(&commit.seats) {
        if sections.get(section).is_none_or(|&size| *n > size) {
            return Checked::Poison(Poison(format!(
                "no seat {seat_id} in event {}",
                commit.msg.event_id
            )));
        }
    }
    Checked::Valid(commit)
}

/// Decodes and validates what needs no catalog.
pub fn decode(body: &[u8]) -> Result<Commit, Poison> {
    let poison = |m: String| Err(Poison(m));
    let versioned: Versioned =
        serde_json::from_slice(body).map_err(|e| Poison(format!("not a JSON object: {e}")))?;
    match versioned.v {
        None => return poison("no version field \"v\"".into()),
        Some(v) if v.as_u64() != Some(u64::from(CommitMessage::VERSION)) => {
            return poison(format!("unknown version {v}"))
        }
        Some(_) => {}
    }
    let msg: CommitMessage =
        serde_json::from_slice(body).map_err(|e| Poison(format!("bad version 1 message: {e}")))?;
    let visible = |s: &str, max: usize| {
        (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
    };
    if !visible(&msg.idem, MAX_IDEM_BYTES) {
        return poison("idem: expected 1 to 255 visible ASCII characters".into());
    }
    if !keys::is_id(&msg.event_id) {
        return poison(format!("eventId {:?} is not an event id", msg.event_id));
    }
    if !visible(&msg.user_id, MAX_USER_BYTES) {
        return poison("userId: expected 1 to 64 visible ASCII characters".into());
    }
    if !keys::is_id(&msg.intent_id) {
        return poison(format!("intentId {:?} is not an id", msg.intent_id));
    }
    if msg.seat_ids.is_empty() || msg.seat_ids.len() > MAX_SEATS {
        return poison(format!(
            "{} seatIds: expected 1 to {MAX_SEATS}",
            msg.seat_ids.len()
        ));
    }
    if msg.hold_ids.len() != msg.seat_ids.len() {
        return poison(format!(
            "{} holdIds for {} seatIds",
            msg.hold_ids.len(),
            msg.seat_ids.len()
        ));
    }
    if let Some(bad) = msg.hold_ids.iter().find(|h| !visible(h, 64)) {
        return poison(format!(
            "holdId {bad:?}: expected 1 to 64 visible ASCII characters"
        ));
    }
    let mut seats = Vec::with_capacity(msg.seat_ids.len());
    for (i, seat_id) in msg.seat_ids.iter().enumerate() {
        let Some((section, n)) = keys::parse_seat(seat_id) else {
            return poison(format!("seatId {seat_id:?} is not {{section}}-{{n}}"));
        };
        if msg.seat_ids[..i].contains(seat_id) {
            return poison(format!("seatId {seat_id} appears twice"));
        }
        seats.push((section.to_owned(), n));
    }
    if msg.currency.len() != 3 || !msg.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return poison(format!(
            "currency {:?}: expected three capital letters",
            msg.currency
        ));
    }
    if i64::try_from(msg.amount).is_err() {
        return poison(format!("amount {} is too large", msg.amount));
    }
    Ok(Commit { msg, seats })
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
            ("idem", |m| m["idem"] = json!("has space")),
            ("eventId", |m| m["eventId"] = json!("{x}")),
            ("userId", |m| m["userId"] = json!("")),
            ("seatIds", |m| m["seatIds"] = json!([])),
            ("holdIds", |m| m["holdIds"] = json!(["h1"])),
            ("is not {section}-{n}", |m| {
                m["seatIds"] = json!(["A-1", "A1"])
            }),
            ("appears twice", |m| m["seatIds"] = json!(["A-1", "A-1"])),
            ("currency", |m| m["currency"] = json!("krw")),
            ("no seat A-11 in event demo", |m| {
                m["seatIds"] = json!(["A-11", "B-1"])
            }),
            ("no seat C-1", |m| m["seatIds"] = json!(["A-1", "C-1"])),
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
    fn an_unknown_event_is_not_poison_yet() {
        let mut m = message();
        m["eventId"] = json!("later");
        assert_eq!(checked(&m), Checked::UnknownEvent("later".into()));
    }
}
