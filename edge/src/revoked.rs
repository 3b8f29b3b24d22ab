//! Each core's copy of an event's revoked buyers (`POST /admin/events/{E}/revoke`),
//! read with the event's other state at every refresh (`events`), so a revocation
//! reaches every core of every edge within `EVENT_REFRESH_MS`.
//!
//! Redis keeps them in `ev:{E}:revoked`, a zset whose scores number the revocations
//! 1, 2, .. (`codec/lua/revoke.lua`); a core asks only for those after the last it has
//! (`ZRANGEBYSCORE key (last +inf`), so a refresh costs one short command however
//! many were revoked before.

use std::collections::HashSet;

use crate::redis::Frame;

/// Most revocations read in one refresh; more arrive with the next ones.
pub const PAGE: usize = 10_000;

#[derive(Debug, Default)]
pub struct Revoked {
    /// The number of the last revocation read.
    last: u64,
    users: HashSet<Box<str>>,
}

impl Revoked {
    /// The `ZRANGEBYSCORE` arguments after the key: revocations after the last read.
    pub fn after(&self) -> [String; 6] {
        [
            format!("({}", self.last),
            "+inf".into(),
            "WITHSCORES".into(),
            "LIMIT".into(),
            "0".into(),
            PAGE.to_string(),
        ]
    }

    /// Adds the revocations of a `ZRANGEBYSCORE .. WITHSCORES` reply; false when the
    /// reply is not one.
    pub fn merge(&mut self, reply: &Frame) -> bool {
        let Frame::Array(items) = reply else {
            return false;
        };
        for pair in items.chunks_exact(2) {
            let (Frame::BulkString(user), Frame::BulkString(score)) = (&pair[0], &pair[1]) else {
                return false;
            };
            let (Ok(user), Some(n)) = (
                std::str::from_utf8(user),
                std::str::from_utf8(score)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok()),
            ) else {
                return false;
            };
            self.users.insert(user.into());
            self.last = self.last.max(n);
        }
        true
    }

    pub fn contains(&self, user: &str) -> bool {
        !self.users.is_empty() && self.users.contains(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(pairs: &[(&'static str, &'static str)]) -> Frame {
        Frame::Array(
            pairs
                .iter()
                .flat_map(|(u, s)| {
                    [
                        Frame::BulkString(u.as_bytes().into()),
                        Frame::BulkString(s.as_bytes().into()),
                    ]
                })
                .collect(),
        )
    }

    #[test]
    fn revocations_accumulate_and_the_next_read_starts_after_the_last() {
        let mut r = Revoked::default();
        assert_eq!(r.after()[0], "(0");
        assert!(r.merge(&reply(&[("ann", "1"), ("bob", "2")])));
        assert!(r.merge(&reply(&[("cy", "3")])));
        assert!(r.contains("ann") && r.contains("cy") && !r.contains("dan"));
        assert_eq!(r.after()[0], "(3");
        assert!(!r.merge(&Frame::Null));
        assert!(!r.merge(&reply(&[("eve", "x")])));
    }
}
