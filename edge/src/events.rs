//! Each core's copy of the events it serves: catalog and admission state, read from
//! Redis (`codec::keys`) and refreshed at most every `event_refresh` (so an operator's
//! change reaches every core within that time), with no I/O on a fresh hit.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    rc::Rc,
    time::{Duration, Instant},
};

use codec::{error_code::ErrorCode, keys, keys::Catalog};
use tracing::warn;

use crate::{
    error::Error,
    redis::{Client, Frame},
    revoked::Revoked,
};

/// Admission into the waiting room: from `open_at_ms`, `rate` users a second. A rate
/// change at `base_ms` keeps those admitted by then (`base_admitted`) admitted, so
/// nobody is sent back to waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub open_at_ms: u64,
    pub rate: u64,
    pub base_ms: u64,
    pub base_admitted: u64,
}

impl Admission {
    /// Nobody admitted, ever: what a core uses when it cannot read the admission state.
    pub const CLOSED: Self = Self {
        open_at_ms: u64::MAX,
        rate: 0,
        base_ms: u64::MAX,
        base_admitted: 0,
    };

    /// How many positions are admitted at `now_ms`.
    pub fn admitted(&self, now_ms: u64) -> u64 {
        if now_ms < self.open_at_ms {
            return 0;
        }
        let since = now_ms.saturating_sub(self.base_ms.max(self.open_at_ms));
        self.base_admitted
            .saturating_add(since.saturating_mul(self.rate) / 1000)
    }

    /// Milliseconds until `position` is admitted (0 when it is).
    pub fn wait_ms(&self, position: u64, now_ms: u64) -> u64 {
        let admitted = self.admitted(now_ms);
        if position <= admitted {
            return 0;
        }
        let until_open = self.open_at_ms.saturating_sub(now_ms);
        let ahead = position - admitted;
        until_open + (ahead * 1000).div_ceil(self.rate.max(1))
    }
}

#[derive(Debug)]
pub struct Event {
    pub catalog: Catalog,
    pub admission: Admission,
    fetched: Instant,
}

impl Event {
    /// The section's index in the catalog, its size and price.
    pub fn section(&self, id: &str) -> Option<&keys::CatalogSection> {
        self.catalog.sections.iter().find(|s| s.id == id)
    }
}

#[derive(Debug)]
pub struct Events {
    refresh: Duration,
    map: RefCell<HashMap<String, Rc<Event>>>,
    loading: RefCell<HashSet<String>>,
    /// Each event's revoked buyers, read with its refreshes.
    revoked: RefCell<HashMap<String, Revoked>>,
}

impl Events {
    pub fn new(refresh: Duration) -> Self {
        Self {
            refresh,
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
        let loaded = load(redis, id, &after).await;
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

/// One round trip: the catalog, the admission hash and the revocations after those
/// read before (`revoked`), pipelined.
async fn load(
    redis: &Client,
    id: &str,
    revoked_after: &[String; 6],
) -> Result<Option<(Event, Frame)>, Error> {
    let (catalog_key, admission_key) = (keys::catalog(id), keys::admission(id));
    let revoked_key = keys::revoked(id);
    let catalog = redis.query(&[b"GET", catalog_key.as_bytes()]);
    let admission = redis.query(&[
        b"HMGET",
        admission_key.as_bytes(),
        b"openAtMs",
        b"rate",
        b"baseMs",
        b"baseAdmitted",
    ]);
    let [a, b, c, d, e, f] = revoked_after.each_ref().map(String::as_bytes);
    let revoked = redis.query(&[b"ZRANGEBYSCORE", revoked_key.as_bytes(), a, b, c, d, e, f]);
    let (catalog, admission, revoked) = (catalog.await?, admission.await?, revoked.await?);
    let Frame::BulkString(json) = catalog else {
        return Ok(None);
    };
    let catalog: Catalog = serde_json::from_slice(&json).map_err(|e| Error::Internal {
        message: "catalog unreadable",
        cause: format!("the catalog of event {id} in Redis does not parse: {e}"),
    })?;
    // A field that is absent takes its default; one that is present and not a number
    // closes the room (and is logged): opening it to everyone is the wrong way to fail.
    let mut unreadable = false;
    let mut field = |i: usize| match &admission {
        Frame::Array(fields) => match fields.get(i) {
            Some(Frame::BulkString(v)) => {
                let n = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
                unreadable |= n.is_none();
                n
            }
            _ => None,
        },
        _ => None,
    };
    let open_at_ms = field(0).unwrap_or(0);
    let (rate, base_ms, base_admitted) = (field(1), field(2), field(3));
    if unreadable {
        warn!(
            event = id,
            "admission state in Redis does not parse: the room stays closed"
        );
        return Ok(Some((
            Event {
                catalog,
                admission: Admission::CLOSED,
                fetched: Instant::now(),
            },
            revoked,
        )));
    }
    let admission = Admission {
        open_at_ms,
        rate: rate.unwrap_or(0),
        base_ms: base_ms.unwrap_or(open_at_ms),
        base_admitted: base_admitted.unwrap_or(0),
    };
    Ok(Some((
        Event {
            catalog,
            admission,
            fetched: Instant::now(),
        },
        revoked,
    )))
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
        };
        assert_eq!(a.admitted(10_000), 1_000);
        assert_eq!(a.admitted(11_000), 1_010);
        assert_eq!(a.wait_ms(1_020, 11_000), 1_000);
        let paused = Admission { rate: 0, ..a };
        assert_eq!(paused.admitted(99_000), 1_000);
    }
}
