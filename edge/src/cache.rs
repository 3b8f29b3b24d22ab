//! Each core's cache of rendered `summary` and `seats` bodies, by route and ids: served
//! while younger than `PUBLIC_CACHE_MS`; while one request renders an expired entry,
//! the others get the expired one rather than each asking Redis (stale-while-
//! revalidate, as RFC 5861 has it for shared caches). Answers 304 when
//! `If-None-Match` matches (RFC 9110 section 13.1.2).
//!
//! Degraded mode: when a rendering fails because Redis (or PostgreSQL) is unreachable,
//! the expired entry is served instead (RFC 5861's stale-if-error), for as long as the
//! outage lasts. A copy served past `PUBLIC_CACHE_MS` says how old it is, in whole
//! seconds, in `x-data-age`: not in `Age`, which CloudFront sets itself on what it
//! serves from its cache, and which an RFC 9111 cache counts against `s-maxage` (an
//! answer whose `Age` passed it is stale on arrival, so every viewer request would come
//! through to the edges just while they are degraded).
//!
//! Each rendering is also gzipped, once, when that makes it smaller; a request whose
//! `Accept-Encoding` takes gzip ([`encoding::choose`]) gets that copy, with its own
//! ETag (RFC 9110 section 8.8.3: a validator per representation), and every answer
//! says `Vary: Accept-Encoding`.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::Future,
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{
    encoding::{self, Coding},
    error::Error,
    http::{Head, Reply},
};

pub struct Responses {
    max_age: Duration,
    entries: RefCell<HashMap<String, Rc<Cached>>>,
    /// Where a request's cache key is written to look it up: no allocation on a hit.
    key: RefCell<String>,
    /// `Cache-Control` of those: `PUBLIC_CACHE_MS` in whole seconds, for browsers and
    /// CloudFront alike.
    cache_control: Vec<u8>,
}

struct Cached {
    body: Vec<u8>,
    /// A strong validator of `body` (RFC 9110 section 8.8.3).
    etag: String,
    /// `body` gzipped and its ETag, when smaller than `body`.
    gzip: Option<(Vec<u8>, String)>,
    made: Instant,
    /// A request is rendering the next one; meanwhile this one is served.
    refreshing: Cell<bool>,
}

impl Responses {
    pub fn new(max_age: Duration) -> Self {
        let seconds = max_age.as_millis().div_ceil(1000).max(1);
        Self {
            max_age,
            entries: RefCell::default(),
            key: RefCell::default(),
            cache_control: format!("public, max-age={seconds}, s-maxage={seconds}").into_bytes(),
        }
    }

    /// Serves the route and ids `parts` from the cache while fresh, else renders it
    /// anew with `render`; true when it rendered.
    pub async fn serve<F, Fut>(
        &self,
        head: &Head<'_>,
        parts: &[&str],
        reply: &mut Reply,
        render: F,
    ) -> Result<bool, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, Error>>,
    {
        let found = {
            let mut key = self.key.borrow_mut();
            cache_key(&mut key, parts);
            self.entries.borrow().get(key.as_str()).cloned()
        };
        let mut rendered = false;
        // Set when the copy served is past its age: how old it is.
        let mut past_age = None;
        let entry = match found {
            Some(entry) if entry.made.elapsed() < self.max_age => entry,
            Some(entry) if entry.refreshing.get() => {
                past_age = Some(entry.made.elapsed());
                entry
            }
            stale => {
                let _refreshing = stale.clone().map(Refreshing::start);
                let body = match (render().await, &stale) {
                    (Ok(body), _) => body,
                    // Degraded mode: Redis (or PostgreSQL) cannot answer now; the last
                    // good copy, with its age, beats a 503.
                    (Err(Error::Unavailable { .. }), Some(last)) => {
                        self.answer(head, last, Some(last.made.elapsed()), reply);
                        return Ok(false);
                    }
                    (Err(e), _) => return Err(e),
                };
                rendered = true;
                let hash = fnv1a(&body);
                let entry = Rc::new(Cached {
                    etag: format!("\"{hash:016x}\""),
                    gzip: encoding::gzip(&body).map(|gz| (gz, format!("\"{hash:016x}-gzip\""))),
                    body,
                    made: Instant::now(),
                    refreshing: Cell::new(false),
                });
                let mut key = String::new();
                cache_key(&mut key, parts);
                self.entries.borrow_mut().insert(key, entry.clone());
                entry
            }
        };
        self.answer(head, &entry, past_age, reply);
        Ok(rendered)
    }

    /// Fills `reply` with `entry`: 304 when the request's validator matches, else 200
    /// and the body in the coding the request takes. A copy served past its age says
    /// how old it is in `x-data-age` (README "Degraded mode").
    fn answer(
        &self,
        head: &Head<'_>,
        entry: &Cached,
        past_age: Option<Duration>,
        reply: &mut Reply,
    ) {
        let gzip = entry
            .gzip
            .as_ref()
            .filter(|_| encoding::choose(head.accept_encoding) == Coding::Gzip);
        let (body, etag) = gzip.map_or((&entry.body, &entry.etag), |(gz, etag)| (gz, etag));
        let not_modified = head.if_none_match.is_some_and(|tags| {
            tags.split(|&b| b == b',').any(|t| {
                let t = t.trim_ascii();
                t == b"*" || t.strip_prefix(b"W/").unwrap_or(t) == etag.as_bytes()
            })
        });
        reply.reset(if not_modified { 304 } else { 200 });
        reply.header("cache-control", &self.cache_control);
        reply.header("etag", etag.as_bytes());
        reply.header("vary", b"Accept-Encoding");
        if gzip.is_some() {
            reply.header("content-encoding", b"gzip");
        }
        if let Some(age) = past_age {
            let mut digits = Vec::with_capacity(8);
            codec::json::write_u64(&mut digits, age.as_secs());
            reply.header("x-data-age", &digits);
        }
        if !not_modified {
            reply.json_body().extend_from_slice(body);
        }
    }
}

/// Marks an entry as being rendered anew until dropped, also when the request that
/// renders it is cancelled half-way (its connection closed, its deadline passed).
struct Refreshing(Rc<Cached>);

impl Refreshing {
    fn start(entry: Rc<Cached>) -> Self {
        entry.refreshing.set(true);
        Self(entry)
    }
}

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.refreshing.set(false);
    }
}

/// The cache key of a route and its ids, `|`-separated (ids never hold a `|`).
fn cache_key(key: &mut String, parts: &[&str]) {
    key.clear();
    for part in parts {
        key.push_str(part);
        key.push('|');
    }
}

/// FNV-1a, 64 bits: cheap, and enough to tell two renderings apart (ETags).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
