//! Each core's copy of the events it serves: catalog and admission state, read from
//! Redis (`codec::keys`) and refreshed at most every `event_refresh` (so an operator's
//! change reaches every core within that time), with no I/O on a fresh hit.
//!
//! The refresh runs `advance.lua` (README "Fair admission"): the pre-queue's draw when
//! it is due, abandonment (buyers not seen for `ABANDON_AFTER_MS` leave their place),
//! and the frontier of an active-limited line; so the line moves on as long as anyone
//! asks about the event, on any core of any edge.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    rc::Rc,
    time::{Duration, Instant},
};

use codec::{
    contract::Queueing,
    error_code::ErrorCode,
    keys,
    keys::Catalog,
    store::{Advance, Call, LineState, Unreadable},
};
use tracing::warn;

use crate::{
    error::Error,
    redis::{Client, Frame, Script},
    revoked::Revoked,
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
}

/// What `GET /public/fairness/{eventId}` publishes (codec::fairness).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fairness {
    pub prequeue_at_ms: u64,
    pub seed_hash: Option<String>,
    /// Once drawn.
    pub seed: Option<String>,
    pub list_digest: Option<String>,
    pub prequeued: Option<u64>,
}

#[derive(Debug)]
pub struct Event {
    pub catalog: Catalog,
    pub admission: Admission,
    pub fairness: Fairness,
    fetched: Instant,
}

impl Event {
    /// The section's index in the catalog, its size and price.
    pub fn section(&self, id: &str) -> Option<&keys::CatalogSection> {
        self.catalog.sections.iter().find(|s| s.id == id)
    }
}

pub struct Events {
    refresh: Duration,
    abandon_after_ms: u64,
    advance: Script,
    map: RefCell<HashMap<String, Rc<Event>>>,
    loading: RefCell<HashSet<String>>,
    /// Each event's revoked buyers, read with its refreshes.
    revoked: RefCell<HashMap<String, Revoked>>,
}

impl Events {
    pub fn new(refresh: Duration, abandon_after: Duration) -> Self {
        Self {
            refresh,
            abandon_after_ms: abandon_after.as_millis() as u64,
            advance: Script::new(codec::store::scripts::ADVANCE),
            map: RefCell::default(),
            loading: RefCell::default(),
            revoked: RefCell::default(),
        }
    }

    /// Whether an operator revoked `user` in `event`, as of this core's last refresh
    /// of the event.
    pub fn is_revoked(&self, event: &str, user: &str) -> bool {
        self.revoked
            .borrow()
            .get(event)
            .is_some_and(|r| r.contains(user))
    }

    /// This core's copy of the event as it is, with no I/O (the event streams read it;
    /// their room's watcher refreshes it).
    pub fn cached(&self, id: &str) -> Option<Rc<Event>> {
        self.map.borrow().get(id).cloned()
    }

    /// The event, from this core's copy while fresh; a stale copy is served while one
    /// request reloads it. Unknown event: `EVENT_NOT_FOUND`.
    pub async fn get(&self, redis: &Client, id: &str) -> Result<Rc<Event>, Error> {
        let cached = self.map.borrow().get(id).cloned();
        if let Some(event) = &cached {
            if event.fetched.elapsed() < self.refresh || self.loading.borrow().contains(id) {
                return Ok(event.clone());
            }
        }
        if codec::rules::event_id(id).is_err() {
            return Err(not_found());
        }
        self.loading.borrow_mut().insert(id.to_owned());
        let after = self.revoked.borrow().get(id).map(Revoked::after);
        let after = after.unwrap_or_else(|| Revoked::default().after());
        let loaded = self.load(redis, id, &after).await;
        self.loading.borrow_mut().remove(id);
        match loaded {
            Ok(Some((event, revoked))) => {
                let mut all = self.revoked.borrow_mut();
                if !all.entry(id.to_owned()).or_default().merge(&revoked) {
                    warn!(event = id, "revoked buyers in Redis do not parse");
                }
                drop(all);
                let event = Rc::new(event);
                self.map.borrow_mut().insert(id.to_owned(), event.clone());
                Ok(event)
            }
            Ok(None) => {
                self.map.borrow_mut().remove(id);
                Err(not_found())
            }
            // Redis trouble: a stale copy is better than no answer.
            Err(e) => cached.ok_or(e),
        }
    }
}

fn not_found() -> Error {
    Error::request(ErrorCode::EventNotFound, "no such event")
}

impl Events {
    /// One round trip: the catalog, `advance.lua` and the revocations after those read
    /// before (`revoked_after`), pipelined.
    async fn load(
        &self,
        redis: &Client,
        id: &str,
        revoked_after: &[String; 6],
    ) -> Result<Option<(Event, Frame)>, Error> {
        let (catalog_key, revoked_key) = (keys::catalog(id), keys::revoked(id));
        let mut call = Call::with_capacity(128, 7);
        Advance {
            event: id,
            abandon_after_ms: self.abandon_after_ms,
        }
        .call(&mut call);
        let catalog = redis.query(&[b"GET", catalog_key.as_bytes()]);
        let line = redis.run(&self.advance, &call);
        let [a, b, c, d, e, f] = revoked_after.each_ref().map(String::as_bytes);
        let revoked = redis.query(&[b"ZRANGEBYSCORE", revoked_key.as_bytes(), a, b, c, d, e, f]);
        let (catalog, line, revoked) = (catalog.await?, line.await?, revoked.await?);
        let Frame::BulkString(json) = catalog else {
            return Ok(None);
        };
        let catalog: Catalog = serde_json::from_slice(&json).map_err(|e| Error::Internal {
            message: "catalog unreadable",
            cause: format!("the catalog of event {id} in Redis does not parse: {e}"),
        })?;
        // A field that is absent takes its default; one that is present and not a
        // number closes the room (and is logged): opening it to everyone is the wrong
        // way to fail.
        let closed = |Unreadable(field)| {
            warn!(
                event = id,
                field, "admission state in Redis does not parse: the room stays closed"
            );
            (Admission::CLOSED, Fairness::default())
        };
        let (admission, fairness) = match Advance::decode(&line)? {
            Ok(state) => read_line(state).unwrap_or_else(closed),
            Err(e) => closed(e),
        };
        let event = Event {
            catalog,
            admission,
            fairness,
            fetched: Instant::now(),
        };
        Ok(Some((event, revoked)))
    }
}

fn read_line(s: LineState) -> Result<(Admission, Fairness), Unreadable> {
    let open_at_ms = s.open_at_ms.unwrap_or(0);
    let queueing = match &s.queueing {
        None => Queueing::Fifo,
        Some(q) => Queueing::parse(q).ok_or(Unreadable("queueing"))?,
    };
    let admission = Admission {
        open_at_ms,
        rate: s.rate.unwrap_or(0),
        base_ms: s.base_ms.unwrap_or(open_at_ms),
        base_admitted: s.base_admitted.unwrap_or(0),
        queueing,
        active_limit: s.active_limit.unwrap_or(0),
        frontier: s.frontier.unwrap_or(0),
    };
    let fairness = Fairness {
        prequeue_at_ms: s.prequeue_at_ms.unwrap_or(0),
        seed_hash: s.seed_hash,
        seed: s.seed,
        list_digest: s.list_digest,
        prequeued: s.prequeued,
    };
    Ok((admission, fairness))
}

#[cfg(test)]
mod tests {
    use super::Admission;

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
            queueing: codec::contract::Queueing::Passthrough,
            ..a
        };
        assert_eq!(open.wait_ms(1_000_000, 0), 0);
        assert!(open.wait_ms(0, 0) > 0);
    }
}
