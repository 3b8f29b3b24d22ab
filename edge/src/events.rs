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

pub use codec::admission::Admission;
use codec::{
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
    let admission = Admission::from_line(&s)?;
    let fairness = Fairness {
        prequeue_at_ms: s.prequeue_at_ms.unwrap_or(0),
        seed_hash: s.seed_hash,
        seed: s.seed,
        list_digest: s.list_digest,
        prequeued: s.prequeued,
    };
    Ok((admission, fairness))
}
