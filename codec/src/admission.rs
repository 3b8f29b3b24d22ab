//! Who is admitted into an event's waiting room, and when: the formula every edge core
//! applies to its copy of the event's admission state (and the worker's metrics to
//! Redis's), so both count alike.

use crate::{
    contract::Queueing,
    store::{LineState, Unreadable},
};

/// Admission into the waiting room: from `open_at_ms`, `rate` users a second. A rate
/// change at `base_ms` keeps those admitted by then (`base_admitted`) admitted, so
/// nobody is sent back to waiting. With an `active_limit`, no position past
/// `frontier` (the script's, as of the last refresh) is admitted. Position 0 (in a
/// pre-queue, not drawn yet) is never admitted; `passthrough` admits everyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub open_at_ms: u64,
    pub rate: u64,
    pub base_ms: u64,
    pub base_admitted: u64,
    pub queueing: Queueing,
    pub active_limit: u64,
    pub frontier: u64,
}

impl Admission {
    /// Nobody admitted, ever: what a core uses when it cannot read the admission state.
    pub const CLOSED: Self = Self {
        open_at_ms: u64::MAX,
        rate: 0,
        base_ms: u64::MAX,
        base_admitted: 0,
        queueing: Queueing::Fifo,
        active_limit: 0,
        frontier: 0,
    };

    /// How many positions are admitted at `now_ms`.
    pub fn admitted(&self, now_ms: u64) -> u64 {
        if self.queueing == Queueing::Passthrough {
            return u64::MAX;
        }
        if now_ms < self.open_at_ms {
            return 0;
        }
        let since = now_ms.saturating_sub(self.base_ms.max(self.open_at_ms));
        let by_rate = self
            .base_admitted
            .saturating_add(since.saturating_mul(self.rate) / 1000);
        if self.active_limit > 0 {
            by_rate.min(self.frontier)
        } else {
            by_rate
        }
    }

    /// Milliseconds until `position` is admitted (0 when it is). Past an active
    /// limit's frontier, the rate's estimate: a lower bound.
    pub fn wait_ms(&self, position: u64, now_ms: u64) -> u64 {
        let admitted = self.admitted(now_ms);
        if position <= admitted && position != 0 {
            return 0;
        }
        if position == 0 {
            return self.open_at_ms.saturating_sub(now_ms).max(1);
        }
        let until_open = self.open_at_ms.saturating_sub(now_ms);
        let ahead = position - admitted;
        until_open + (ahead * 1000).div_ceil(self.rate.max(1))
    }

    /// The admission state of `advance.lua`'s reply (or of the same hash fields read
    /// otherwise); a field absent takes its default.
    pub fn from_line(s: &LineState) -> Result<Self, Unreadable> {
        let open_at_ms = s.open_at_ms.unwrap_or(0);
        let queueing = match &s.queueing {
            None => Queueing::Fifo,
            Some(q) => Queueing::parse(q).ok_or(Unreadable("queueing"))?,
        };
        Ok(Self {
            open_at_ms,
            rate: s.rate.unwrap_or(0),
            base_ms: s.base_ms.unwrap_or(open_at_ms),
            base_admitted: s.base_admitted.unwrap_or(0),
            queueing,
            active_limit: s.active_limit.unwrap_or(0),
            frontier: s.frontier.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Admission;
    use crate::contract::Queueing;

    #[test]
    fn positions_are_admitted_at_the_rate_from_the_opening() {
        let a = Admission {
            open_at_ms: 10_000,
            rate: 100,
            base_ms: 10_000,
            base_admitted: 0,
            ..Admission::CLOSED
        };
        assert_eq!(a.admitted(9_999), 0);
        assert_eq!(a.admitted(10_000), 0);
        assert_eq!(a.admitted(11_000), 100);
        assert_eq!(a.wait_ms(1, 9_000), 1_000 + 10);
        assert_eq!(a.wait_ms(100, 11_000), 0);
        assert_eq!(a.wait_ms(150, 11_000), 500);
    }

    #[test]
    fn a_rate_change_keeps_the_admitted_admitted() {
        // 100/s from 0 until 10 s (1,000 admitted), then 10/s.
        let a = Admission {
            open_at_ms: 0,
            rate: 10,
            base_ms: 10_000,
            base_admitted: 1_000,
            ..Admission::CLOSED
        };
        assert_eq!(a.admitted(10_000), 1_000);
        assert_eq!(a.admitted(11_000), 1_010);
        assert_eq!(a.wait_ms(1_020, 11_000), 1_000);
        let paused = Admission { rate: 0, ..a };
        assert_eq!(paused.admitted(99_000), 1_000);
    }

    #[test]
    fn an_active_limit_stops_at_the_frontier_and_passthrough_admits_all() {
        let a = Admission {
            open_at_ms: 0,
            rate: 100,
            base_ms: 0,
            base_admitted: 0,
            active_limit: 10,
            frontier: 12,
            ..Admission::CLOSED
        };
        assert_eq!(a.admitted(1_000), 12);
        assert_eq!(a.admitted(100), 10);
        assert_eq!(a.wait_ms(12, 1_000), 0);
        assert!(a.wait_ms(13, 1_000) > 0);
        assert!(a.wait_ms(0, 1_000) > 0, "position 0 waits for the draw");
        let open = Admission {
            queueing: Queueing::Passthrough,
            ..a
        };
        assert_eq!(open.wait_ms(1_000_000, 0), 0);
        assert!(open.wait_ms(0, 0) > 0);
    }
}
