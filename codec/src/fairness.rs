//! The pre-queue's draw: how the places of those who entered a `random` pre-queue are
//! decided at the opening, written so that anyone holding the published data can
//! recompute it (`worker verify-shuffle`). `lua/line.lua` runs the same function
//! inside Redis; a test over a real Redis compares the two.
//!
//! 1. **Commitment.** When an operator first sets a pre-queue (the admin endpoint or
//!    `worker seed`), 32 bytes are drawn from the operating system's generator and
//!    written as 64 lowercase hex digits: the seed. Redis stores it with
//!    `seedHash` = SHA-256 of those 64 characters, in hex ([`commitment`]).
//!    `GET /public/fairness/{eventId}` publishes `seedHash` from then on, before anyone
//!    can enter; the admission script never replaces a stored seed, and refuses to move
//!    the pre-queue or change the queueing once the pre-queue has opened.
//! 2. **The list.** At the opening, the ids that entered the pre-queue, in byte order,
//!    each followed by `\n`, hashed with SHA-1: `listDigest` ([`list_digest`]).
//! 3. **The order.** Each id's key is SHA-1 of `seed \n listDigest \n id` (hex); places
//!    go in ascending order of key, ties (a SHA-1 collision) by id ([`draw`]). The seed
//!    and `listDigest` are published with the count once the draw is done.
//!
//! Nobody can pick the seed after seeing the list: it exists, committed, before the
//! first entry. Someone who reads the seed early (whoever can read Redis) still cannot
//! choose a good id, since every key depends on `listDigest`, that is on every id that
//! enters up to the opening. SHA-1 because the draw runs atomically in Redis, whose
//! Lua has `redis.sha1hex` and no SHA-256; ranking needs no collision resistance.

use sha2::{Digest, Sha256};

/// The draw's name in `GET /public/fairness/{eventId}`.
pub const DRAW: &str = "sha1(seed \\n listDigest \\n id) ascending, ids in byte order";

/// Seed bytes drawn from the operating system.
pub const SEED_BYTES: usize = 32;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A seed as stored and published: 64 lowercase hex digits.
pub fn seed_hex(bytes: &[u8; SEED_BYTES]) -> String {
    hex(bytes)
}

/// `seedHash`: SHA-256 of the seed's 64 characters, in hex.
pub fn commitment(seed: &str) -> String {
    hex(&Sha256::digest(seed.as_bytes()))
}

/// `listDigest`: SHA-1 of the ids (already in byte order), each followed by `\n`.
pub fn list_digest(sorted: &[&str]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    for id in sorted {
        sha.update(id.as_bytes());
        sha.update(b"\n");
    }
    sha.digest().to_string()
}

/// The pre-queued ids in the order of their places (first place first), and the
/// list's digest.
pub fn draw<'a>(seed: &str, ids: &[&'a str]) -> (Vec<&'a str>, String) {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let digest = list_digest(&sorted);
    let mut keyed: Vec<(String, &str)> = sorted
        .into_iter()
        .map(|id| {
            let mut sha = sha1_smol::Sha1::new();
            sha.update(seed.as_bytes());
            sha.update(b"\n");
            sha.update(digest.as_bytes());
            sha.update(b"\n");
            sha.update(id.as_bytes());
            (sha.digest().to_string(), id)
        })
        .collect();
    keyed.sort_unstable();
    (keyed.into_iter().map(|(_, id)| id).collect(), digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commitment_is_sha256_of_the_hex_seed() {
        // printf %s "$seed" | sha256sum
        assert_eq!(
            commitment("00"),
            "f1534392279bddbf9d43dde8701cb5be14b82f76ec6607bf8d6ad557f60f304e"
        );
        assert_eq!(seed_hex(&[0xab; SEED_BYTES]).len(), 64);
    }

    #[test]
    fn the_list_digest_is_sha1_of_the_sorted_lines() {
        // printf 'a\nb\n' | sha1sum
        assert_eq!(
            list_digest(&["a", "b"]),
            "05dec960e24d918b8a73a1c53bcbbaac2ee5c2e0"
        );
    }

    #[test]
    fn the_draw_depends_on_the_seed_and_the_set_not_on_arrival() {
        let ids: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (a, digest) = draw("seed-1", &ids);
        let mut reversed = ids.clone();
        reversed.reverse();
        assert_eq!(draw("seed-1", &reversed), (a.clone(), digest));
        assert_ne!(draw("seed-2", &ids).0, a);
        assert_ne!(a, ids, "a draw of 50 that keeps arrival order");
        let mut back = a.clone();
        back.sort_unstable();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(back, sorted, "everyone gets exactly one place");
    }
}
