//! CORS (the Fetch standard's CORS protocol), so a buyer's page on the ticket site's
//! own origin can call `/public/*` and `/confirm/*`. Off unless
//! `CORS_ALLOWED_ORIGINS` lists origins; each is matched exactly, byte for byte, as a
//! browser serializes it (`https://tickets.example.com`, `http://localhost:3000`).
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from a
//!   listed origin is answered here, 204, with no Redis call.
//! - Every other answer on those paths gets `Vary: Origin` (a cache must not hand one
//!   origin's answer to another), and, for a listed origin,
//!   `Access-Control-Allow-Origin` and `Access-Control-Expose-Headers`.
//! - Any other origin gets no CORS header and the answer it got before, as browsers
//!   expect: the browser, not the server, withholds it from the page.
//!
//! No `Access-Control-Allow-Credentials`: the API's credentials are the room token
//! and `Authorization`, sent as headers by the page's code, never cookies.

use crate::http::{Head, Method, Reply};

/// The methods the API answers (RFC 9110 section 9).
const ALLOW_METHODS: &[u8] = b"GET, HEAD, POST";
/// The request headers the API reads; `content-type` because `application/json` is
/// not a CORS-safelisted value.
const ALLOW_HEADERS: &[u8] =
    b"content-type, x-room-token, idempotency-key, authorization, x-request-id";
/// The response headers a page may read beyond the safelisted ones.
const EXPOSE_HEADERS: &[u8] = b"location, etag, retry-after, x-idempotent-replay, x-request-id";
/// How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours).
const MAX_AGE_SECS: &[u8] = b"600";
/// Longest origin accepted in `CORS_ALLOWED_ORIGINS`.
const MAX_ORIGIN_BYTES: usize = 253 + 16;

/// The allowed origins; empty: CORS is off and answers carry no CORS header at all.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// Parses `CORS_ALLOWED_ORIGINS`: comma-separated origins, each
    /// `http(s)://host[:port]` in lower case with no path; empty: off.
    pub fn parse(list: &str) -> Result<Self, &'static str> {
        let mut origins = Vec::new();
        for origin in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            valid_origin(origin)?;
            origins.push(origin.to_owned());
        }
        Ok(Self { origins })
    }

    pub fn enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    /// Answers a preflight from an allowed origin into `reply`; false (and `reply`
    /// untouched) for any other request, which is then routed as usual.
    pub fn preflight(&self, head: &Head<'_>, reply: &mut Reply) -> bool {
        if head.method != Method::Options || !head.cors_request_method {
            return false;
        }
        let Some(origin) = self.allowed(head) else {
            return false;
        };
        reply.reset(204);
        reply.header("access-control-allow-origin", origin);
        reply.header("access-control-allow-methods", ALLOW_METHODS);
        reply.header("access-control-allow-headers", ALLOW_HEADERS);
        reply.header("access-control-max-age", MAX_AGE_SECS);
        reply.header("vary", b"Origin");
        true
    }

    /// Adds the CORS headers of an actual (not preflight) answer.
    pub fn annotate(&self, head: &Head<'_>, reply: &mut Reply) {
        if !self.enabled() || !cors_path(head.path) {
            return;
        }
        reply.header("vary", b"Origin");
        if let Some(origin) = self.allowed(head) {
            reply.header("access-control-allow-origin", origin);
            reply.header("access-control-expose-headers", EXPOSE_HEADERS);
        }
    }

    /// The request's `Origin` when it is listed (and the path is the API's).
    fn allowed<'b>(&self, head: &Head<'b>) -> Option<&'b [u8]> {
        let origin = head.origin?;
        (cors_path(head.path) && self.origins.iter().any(|o| o.as_bytes() == origin))
            .then_some(origin)
    }
}

/// The buyers' API; the operators' `/admin/*` is never offered to pages.
fn cors_path(path: &str) -> bool {
    path.starts_with("/public/") || path.starts_with("/confirm/")
}

/// An origin as a browser serializes it (RFC 6454 section 6.1): scheme, host, an
/// optional port; lower case; no path, query, user or trailing slash.
fn valid_origin(origin: &str) -> Result<(), &'static str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("each origin must start with http:// or https:// (no wildcard)")?;
    if rest.is_empty() || origin.len() > MAX_ORIGIN_BYTES {
        return Err("an origin needs a host, of at most 253 bytes");
    }
    let host_chars = |b: u8| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
    };
    if !rest.bytes().all(host_chars) {
        return Err(
            "an origin is scheme://host[:port] in lower case, with no path or trailing slash",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_origins_and_refuses_the_rest() {
        let cors =
            Cors::parse(" https://tickets.example.com, http://localhost:3000 ,").expect("valid");
        assert_eq!(
            cors.origins,
            ["https://tickets.example.com", "http://localhost:3000"]
        );
        assert!(!Cors::parse("").expect("empty is off").enabled());
        for bad in [
            "*",
            "tickets.example.com",
            "https://tickets.example.com/",
            "https://Tickets.example.com",
            "https://tickets.example.com/buy",
            "ftp://tickets.example.com",
            "https://",
            "https://a b",
        ] {
            assert!(Cors::parse(bad).is_err(), "{bad}");
        }
    }
}
