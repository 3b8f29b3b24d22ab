//! Each core's cache of rendered `summary` and `seats` bodies, by route and ids: served
//! while younger than `PUBLIC_CACHE_MS`; while one request renders an expired entry,
//! the others get the expired one rather than each asking Redis (stale-while-
//! revalidate, as RFC 5861 has it for shared caches). Answers 304 when
//! `If-None-Match` matches (RFC 9110 section 13.1.2).
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
        let entry = match found {
            Some(entry) if entry.refreshing.get() || entry.made.elapsed() < self.max_age => entry,
            stale => {
                rendered = true;
                let _refreshing = stale.map(Refreshing::start);
                let body = render().await?;
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
        if !not_modified {
            reply.json_body().extend_from_slice(body);
        }
        Ok(rendered)
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
