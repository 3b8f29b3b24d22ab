//! The Redis data model, shared by the edge (reads, holds) and the worker (catalog,
//! sold seats, order statuses). Every key of an event carries the hash tag `{eventId}`
//! so that a Redis Cluster keeps an event on one slot (one script may touch them all).
//!
//! | key | type | written by | what |
//! |---|---|---|---|
//! | `ev:{E}:catalog` | string, JSON [`Catalog`] | worker | sections, sizes, prices |
//! | `ev:{E}:adm` | hash `openAtMs`, `rate`, `baseMs`, `baseAdmitted`, `prequeueAtMs`, `queueing`, `activeLimit`, `frontier`, `seed`, `seedHash`, `drawn`, `listDigest`, `prequeued` | worker seed, operators, `advance.lua` | admission and the pre-queue's draw (README "Fair admission") |
//! | `ev:{E}:queue` | string counter | edge `enter` | last position handed out |
//! | `ev:{E}:pos` | hash user -> position | edge `enter`, the draw | a user's position |
//! | `ev:{E}:pre` | zset user -> 0 (so in byte order) | edge `enter` | who entered a `random` pre-queue, until the draw |
//! | `ev:{E}:seen` | zset user -> last seen ms | edge `enter`, `room-status` (with `activeLimit`) | presence, for abandonment |
//! | `ev:{E}:left` | zset position -> position | `advance.lua` (abandoned), worker (CONFIRMED) | places whose buyer is done or gone |
//! | `ev:{E}:sold:{S}` | bitmap, bit n = seat n | worker | sold seats of section S |
//! | `ev:{E}:hold:{S}:{n}` | string `holdId user` until its expiry, or `sold` for good | edge `hold`, worker | one seat's hold, or its sale |
//! | `ev:{E}:held:{S}` | zset seatId -> expiry ms | edge `hold` | live holds of a section, for counting |
//! | `ev:{E}:uholds:{U}` | zset seatId -> expiry ms | edge `hold` | a user's live holds (limit) |
//! | `ev:{E}:idem:{scope}:{len}:{U}:{K}` | string `state\|fingerprint\|body`, PX 24 h | edge | an Idempotency-Key's outcome |
//! | `ev:{E}:intent:{id}` | hash user, seats, holds, amount, currency, expiresAt | edge | a payment intent |
//! | `ev:{E}:status:{len}:{U}:{K}` | string, JSON `StatusResponse` | edge (PENDING), worker | an order's status |
//! | `ev:{E}:commits:{shard}` | stream, field `msg` = `CommitMessage` JSON | edge | the local commit queue |
//! | `ev:{E}:bought:{len}:{U}` | hash idem -> seats, PX 24 h | edge `commit`, worker (rejected: removed) | a buyer's seats in accepted orders (`PURCHASE_LIMIT`) |
//! | `ev:{E}:revoked` | zset user -> sequence 1, 2, .. | edge `revoke` (operators) | buyers whose room tokens no longer work |
//! | `ev:{E}:commits:dlq` | stream, fields `msg`, `reason`, `stream`, `id`, `deliveries`, `at` | worker | commits that could not be processed |
//!
//! A sold seat is told twice: by its bit in the section's bitmap (counting, seat map)
//! and by `sold` in its hold key, so that a hold's one `SET ... NX` refuses it. The
//! worker writes both when it projects a sale, and `worker rebuild-redis` both again.
//!
//! A user id is visible ASCII and may hold `:`; where other parts follow it, its length
//! comes first (`{len}:{U}`), so two users can never map to one key.

use serde::{Deserialize, Serialize};

use crate::json::write_u64;

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

/// `ev:{E}:` then `rest`: the prefix every key of an event starts with.
fn write_event(out: &mut Vec<u8>, event: &str, rest: &str) {
    out.extend_from_slice(b"ev:{");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"}:");
    out.extend_from_slice(rest.as_bytes());
}

/// `{len}:{U}`: a user id that other parts may follow (see the module doc).
fn write_user(out: &mut Vec<u8>, user: &str) {
    write_u64(out, user.len() as u64);
    out.push(b':');
    out.extend_from_slice(user.as_bytes());
}

/// A key built by one of the `write_*` functions, as a `String`.
fn string(write: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::with_capacity(48);
    write(&mut out);
    // Every part is a `&str` and every separator ASCII.
    String::from_utf8(out).unwrap_or_default()
}

pub fn write_catalog(out: &mut Vec<u8>, event: &str) {
    write_event(out, event, "catalog");
}

pub fn write_admission(out: &mut Vec<u8>, event: &str) {
    write_event(out, event, "adm");
}

pub fn write_queue(out: &mut Vec<u8>, event: &str) {
    write_event(out, event, "queue");
}

pub fn write_positions(out: &mut Vec<u8>, event: &str) {
    write_event(out, event, "pos");
}

pub fn write_prequeue(out: &mut Vec<u8>, event: &str) {
    write_event(out, event, "pre");
}

pub fn write_seen(out: &mut Vec<u8>, event: &str) {
    write_event(out, event, "seen");
}

pub fn write_left(out: &mut Vec<u8>, event: &str) {
    write_event(out, event, "left");
}

pub fn write_sold(out: &mut Vec<u8>, event: &str, section: &str) {
    write_event(out, event, "sold:");
    out.extend_from_slice(section.as_bytes());
}

pub fn write_hold(out: &mut Vec<u8>, event: &str, section: &str, n: u32) {
    write_event(out, event, "hold:");
    out.extend_from_slice(section.as_bytes());
    out.push(b':');
    write_u64(out, u64::from(n));
}

pub fn write_section_holds(out: &mut Vec<u8>, event: &str, section: &str) {
    write_event(out, event, "held:");
    out.extend_from_slice(section.as_bytes());
}

pub fn write_user_holds(out: &mut Vec<u8>, event: &str, user: &str) {
    write_event(out, event, "uholds:");
    out.extend_from_slice(user.as_bytes());
}

/// The outcome of `key` for `scope` (`intent` or `commit`), per user.
pub fn write_idempotency(out: &mut Vec<u8>, event: &str, scope: &str, user: &str, key: &str) {
    write_event(out, event, "idem:");
    out.extend_from_slice(scope.as_bytes());
    out.push(b':');
    write_user(out, user);
    out.push(b':');
    out.extend_from_slice(key.as_bytes());
}

/// A buyer's seats in the orders Redis accepted, per Idempotency-Key.
pub fn write_bought(out: &mut Vec<u8>, event: &str, user: &str) {
    write_event(out, event, "bought:");
    write_user(out, user);
}

pub fn write_revoked(out: &mut Vec<u8>, event: &str) {
    write_event(out, event, "revoked");
}

pub fn write_intent(out: &mut Vec<u8>, event: &str, intent_id: &str) {
    write_event(out, event, "intent:");
    out.extend_from_slice(intent_id.as_bytes());
}

/// An order's status record, per user and Idempotency-Key.
pub fn write_order_status(out: &mut Vec<u8>, event: &str, user: &str, idem: &str) {
    write_event(out, event, "status:");
    write_user(out, user);
    out.push(b':');
    out.extend_from_slice(idem.as_bytes());
}

/// The local commit queue: one stream per shard of an event, so a hot event spreads
/// over several consumers.
pub fn write_commits(out: &mut Vec<u8>, event: &str, shard: u32) {
    write_event(out, event, "commits:");
    write_u64(out, u64::from(shard));
}

pub fn catalog(event: &str) -> String {
    string(|o| write_catalog(o, event))
}

pub fn admission(event: &str) -> String {
    string(|o| write_admission(o, event))
}

pub fn queue(event: &str) -> String {
    string(|o| write_queue(o, event))
}

pub fn positions(event: &str) -> String {
    string(|o| write_positions(o, event))
}

pub fn prequeue(event: &str) -> String {
    string(|o| write_prequeue(o, event))
}

pub fn seen(event: &str) -> String {
    string(|o| write_seen(o, event))
}

pub fn left(event: &str) -> String {
    string(|o| write_left(o, event))
}

pub fn sold(event: &str, section: &str) -> String {
    string(|o| write_sold(o, event, section))
}

pub fn hold(event: &str, section: &str, n: u32) -> String {
    string(|o| write_hold(o, event, section, n))
}

pub fn section_holds(event: &str, section: &str) -> String {
    string(|o| write_section_holds(o, event, section))
}

pub fn user_holds(event: &str, user: &str) -> String {
    string(|o| write_user_holds(o, event, user))
}

pub fn idempotency(event: &str, scope: &str, user: &str, key: &str) -> String {
    string(|o| write_idempotency(o, event, scope, user, key))
}

pub fn bought(event: &str, user: &str) -> String {
    string(|o| write_bought(o, event, user))
}

pub fn revoked(event: &str) -> String {
    string(|o| write_revoked(o, event))
}

pub fn intent(event: &str, intent_id: &str) -> String {
    string(|o| write_intent(o, event, intent_id))
}

pub fn order_status(event: &str, user: &str, idem: &str) -> String {
    string(|o| write_order_status(o, event, user, idem))
}

pub fn commits(event: &str, shard: u32) -> String {
    string(|o| write_commits(o, event, shard))
}

/// The local dead-letter queue of an event's commit streams: entries the worker could
/// not process (poison, or delivered too often), with the reason and the stream they
/// came from, until `worker dlq redrive` puts them back.
pub fn commits_dlq(event: &str) -> String {
    string(|o| write_event(o, event, "commits:dlq"))
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
        assert_eq!(
            idempotency("demo", "commit", "u:1", "k"),
            "ev:{demo}:idem:commit:3:u:1:k"
        );
        assert_eq!(order_status("demo", "u:1", "k"), "ev:{demo}:status:3:u:1:k");
        assert_eq!(commits("demo", 3), "ev:{demo}:commits:3");
        assert_eq!(bought("demo", "u:1"), "ev:{demo}:bought:3:u:1");
        assert_eq!(revoked("demo"), "ev:{demo}:revoked");
        assert_eq!(commits_dlq("demo"), "ev:{demo}:commits:dlq");
    }
}
