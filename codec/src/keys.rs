//! The Redis data model, shared by the edge (reads, holds) and the worker (catalog,
//! sold seats, order statuses). Every key of an event carries the hash tag `{eventId}`
//! so that a Redis Cluster keeps an event on one slot (one script may touch them all).
//!
//! | key | type | written by | what |
//! |---|---|---|---|
//! | `ev:{E}:catalog` | string, JSON [`Catalog`] | worker | sections, sizes, prices |
//! | `ev:{E}:adm` | hash `openAtMs`, `rate` | worker seed, operators | admission: opening time, users/s |
//! | `ev:{E}:queue` | string counter | edge `enter` | last position handed out |
//! | `ev:{E}:pos` | hash user -> position | edge `enter` | a user's position |
//! | `ev:{E}:sold:{S}` | bitmap, bit n = seat n | worker | sold seats of section S |
//! | `ev:{E}:hold:{S}:{n}` | string `holdId user`, PX ttl | edge `hold` | one seat's hold |
//! | `ev:{E}:holds:{S}` | zset n -> expiry ms | edge `hold` | live holds of a section, for counting |
//! | `ev:{E}:uholds:{U}` | zset seatId -> expiry ms | edge `hold` | a user's live holds (limit) |
//! | `ev:{E}:idem:{scope}:{len}:{U}:{K}` | string `state\|fingerprint\|body`, PX 24 h | edge | an Idempotency-Key's outcome |
//! | `ev:{E}:intent:{id}` | hash user, seats, holds, amount, currency, expiresAt | edge | a payment intent |
//! | `ev:{E}:status:{len}:{U}:{K}` | string, JSON `StatusResponse` | edge (PENDING), worker | an order's status |
//! | `ev:{E}:commits:{shard}` | stream, field `msg` = `CommitMessage` JSON | edge | the local commit queue |
//! | `ev:{E}:commits:dlq` | stream, fields `msg`, `reason`, `stream`, `id`, `deliveries`, `at` | worker | commits that could not be processed |
//!
//! A user id is visible ASCII and may hold `:`; where other parts follow it, its length
//! comes first (`{len}:{U}`), so two users can never map to one key.

use serde::{Deserialize, Serialize};

use crate::rules;

/// An event's catalog as projected into Redis (`ev:{E}:catalog`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    pub event_id: String,
    pub currency: String,
    pub sections: Vec<CatalogSection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSection {
    /// Letters, digits and `_` (no `-`: seat ids are `{section}-{n}`).
    pub id: String,
    /// Seats are numbered 1..=seats.
    pub seats: u32,
    /// Minor units of the catalog's currency.
    pub price: u64,
}

pub fn catalog(event: &str) -> String {
    format!("ev:{{{event}}}:catalog")
}

pub fn admission(event: &str) -> String {
    format!("ev:{{{event}}}:adm")
}

pub fn queue(event: &str) -> String {
    format!("ev:{{{event}}}:queue")
}

pub fn positions(event: &str) -> String {
    format!("ev:{{{event}}}:pos")
}

pub fn sold(event: &str, section: &str) -> String {
    format!("ev:{{{event}}}:sold:{section}")
}

pub fn hold(event: &str, section: &str, n: u32) -> String {
    format!("ev:{{{event}}}:hold:{section}:{n}")
}

pub fn section_holds(event: &str, section: &str) -> String {
    format!("ev:{{{event}}}:holds:{section}")
}

pub fn user_holds(event: &str, user: &str) -> String {
    format!("ev:{{{event}}}:uholds:{user}")
}

/// The outcome of `key` for `scope` (`intent` or `commit`), per user.
pub fn idempotency(event: &str, scope: &str, user: &str, key: &str) -> String {
    format!("ev:{{{event}}}:idem:{scope}:{}:{user}:{key}", user.len())
}

pub fn intent(event: &str, intent_id: &str) -> String {
    format!("ev:{{{event}}}:intent:{intent_id}")
}

/// An order's status record, per user and Idempotency-Key.
pub fn order_status(event: &str, user: &str, idem: &str) -> String {
    format!("ev:{{{event}}}:status:{}:{user}:{idem}", user.len())
}

/// The local commit queue: one stream per shard of an event, so a hot event spreads
/// over several consumers.
pub fn commits(event: &str, shard: u32) -> String {
    format!("ev:{{{event}}}:commits:{shard}")
}

/// The local dead-letter queue of an event's commit streams: entries the worker could
/// not process (poison, or delivered too often), with the reason and the stream they
/// came from, until `worker dlq redrive` puts them back.
pub fn commits_dlq(event: &str) -> String {
    format!("ev:{{{event}}}:commits:dlq")
}

/// Splits a seat id `{section}-{n}` into its section and number: [`rules::seat_id`].
/// (Kept for the edge's callers; new code calls the rule, which says why it refused.)
pub fn parse_seat(seat_id: &str) -> Option<(&str, u32)> {
    rules::seat_id(seat_id).ok().map(|s| (s.section, s.n))
}

/// Ids that may appear inside keys (event and intent ids): [`rules::event_id`]. No
/// braces, spaces or colons, which would break the hash tag or the key layout.
pub fn is_id(s: &str) -> bool {
    rules::event_id(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_event_share_its_hash_tag() {
        for key in [
            catalog("demo"),
            sold("demo", "A"),
            hold("demo", "A", 7),
            user_holds("demo", "u1"),
            commits("demo", 3),
            commits_dlq("demo"),
        ] {
            assert!(key.contains("{demo}"), "{key}");
        }
        assert_eq!(hold("demo", "B", 12), "ev:{demo}:hold:B:12");
    }

    #[test]
    fn seat_ids_split_into_section_and_number() {
        assert_eq!(parse_seat("A-17"), Some(("A", 17)));
        assert_eq!(parse_seat("VIP_2-1"), Some(("VIP_2", 1)));
        for bad in [
            "A-0",
            "A-",
            "-3",
            "A17",
            "A-x",
            "A-B-3",
            "A:1-3",
            "A-99999999999",
            "A-1000000000",
            "A-01",
            "A-+1",
        ] {
            assert_eq!(parse_seat(bad), None, "{bad}");
        }
    }
}
