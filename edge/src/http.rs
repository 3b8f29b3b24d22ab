//! HTTP/1.1 framing (RFC 9112): request heads parsed in place into borrowed slices,
//! responses written head and body into the connection's one write buffer.
//!
//! Limits are named constants here (or config, for the body): a head larger than
//! [`MAX_HEAD_BYTES`] or with more than [`MAX_HEADERS`] fields is answered 431.

use std::{
    cell::RefCell,
    time::{SystemTime, UNIX_EPOCH},
};

use codec::{error_code::ErrorCode, json::write_u64};

/// A request HTTP/1.1 cannot frame, or over a limit: answered with `code`, then the
/// connection closes (the next request's first byte can no longer be found).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingError {
    pub code: ErrorCode,
    pub message: &'static str,
}

impl FramingError {
    pub const fn new(code: ErrorCode, message: &'static str) -> Self {
        Self { code, message }
    }
}

/// Largest request head (request line and fields) accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 64;
/// Longest `x-request-id` echoed back; longer or non-visible ones are replaced.
pub const MAX_REQUEST_ID_BYTES: usize = codec::rules::REQUEST_ID_MAX_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    /// A CORS preflight's method (answered by [`crate::cors`]), else 405.
    Options,
    Other,
}

/// The longest `X-Amzn-Trace-Id` logged (the ALB's is about 80 bytes with `Self=`).
const MAX_TRACE_ID: usize = 256;

/// A parsed request head. Every slice borrows the connection's read buffer.
#[derive(Debug)]
pub struct Head<'b> {
    pub method: Method,
    /// The path of the origin-form target, without the query.
    pub path: &'b str,
    /// What follows `?` in the target, or empty.
    pub query: &'b str,
    pub keep_alive: bool,
    pub content_length: usize,
    /// Bytes of the head, up to and including the empty line.
    pub len: usize,
    pub request_id: Option<&'b [u8]>,
    pub room_token: Option<&'b [u8]>,
    pub idempotency_key: Option<&'b [u8]>,
    pub if_none_match: Option<&'b [u8]>,
    pub authorization: Option<&'b [u8]>,
    /// ALB's `x-amzn-oidc-data` (`IDENTITY=alb-oidc`).
    pub oidc_data: Option<&'b [u8]>,
    /// The last `X-Forwarded-For` field (proxies append to it).
    pub forwarded_for: Option<&'b [u8]>,
    /// The socket's peer, set by the connection (`None` where there is no socket).
    pub peer: Option<std::net::IpAddr>,
    /// `Last-Event-ID` (the SSE reconnection header, WHATWG HTML 9.2.4).
    pub last_event_id: Option<&'b [u8]>,
    /// `Origin` (RFC 6454), for CORS.
    pub origin: Option<&'b [u8]>,
    /// `Access-Control-Request-Method` was sent: with `OPTIONS`, a CORS preflight.
    pub cors_request_method: bool,
    /// `Accept-Encoding` (RFC 9110 section 12.5.3), for the cached reads.
    pub accept_encoding: Option<&'b [u8]>,
    /// `X-Amzn-Trace-Id` (the ALB's), for the logs; visible ASCII only, else dropped.
    pub trace_id: Option<&'b [u8]>,
    /// `Payment-Signature` of the payment provider's callback (`codec::payment`).
    pub payment_signature: Option<&'b [u8]>,
}

/// Parses one request head from the start of `buf`: `Ok(None)` means not all of it has
/// arrived yet (a normal outcome, not an error). Every error closes the connection.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head<'_>>, FramingError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(_) => {
            return Err(FramingError::new(
                ErrorCode::HeadersTooLarge,
                "request head too large",
            ))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(FramingError::new(
                ErrorCode::HeadersTooLarge,
                "too many header fields",
            ))
        }
        Err(_) => {
            return Err(FramingError::new(
                ErrorCode::BadRequest,
                "malformed request head",
            ))
        }
    };
    let bad = |message| Err(FramingError::new(ErrorCode::BadRequest, message));
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        Some("OPTIONS") => Method::Options,
        _ => Method::Other,
    };
    let http11 = req.version == Some(1);
    let Some(target) = req.path.and_then(origin_form) else {
        return bad("request target must be origin-form or absolute-form");
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let mut head = Head {
        method,
        path,
        query,
        keep_alive: http11,
        content_length: 0,
        len,
        request_id: None,
        room_token: None,
        idempotency_key: None,
        if_none_match: None,
        authorization: None,
        oidc_data: None,
        forwarded_for: None,
        peer: None,
        last_event_id: None,
        origin: None,
        cors_request_method: false,
        accept_encoding: None,
        trace_id: None,
        payment_signature: None,
    };
    let (mut content_length, mut transfer_encoding, mut hosts, mut close) = (None, false, 0, false);
    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        let value = field.value.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9110 section 8.6: 1*DIGIT; differing repeats are unrecoverable framing.
            let Some(n) = parse_decimal(value) else {
                return bad("invalid Content-Length");
            };
            if content_length.is_some_and(|prev| prev != n) {
                return bad("conflicting Content-Length fields");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= option.eq_ignore_ascii_case(b"close");
                head.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"x-request-id") {
            head.request_id = Some(value).filter(|v| is_request_id(v));
        } else if name.eq_ignore_ascii_case(b"x-room-token") {
            head.room_token = Some(value);
        } else if name.eq_ignore_ascii_case(b"idempotency-key") {
            head.idempotency_key = Some(value);
        } else if name.eq_ignore_ascii_case(b"if-none-match") {
            head.if_none_match = Some(value);
        } else if name.eq_ignore_ascii_case(b"authorization") {
            head.authorization = Some(value);
        } else if name.eq_ignore_ascii_case(b"x-amzn-oidc-data") {
            head.oidc_data = Some(value);
        } else if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            head.forwarded_for = Some(value);
        } else if name.eq_ignore_ascii_case(b"last-event-id") {
            head.last_event_id = Some(value);
        } else if name.eq_ignore_ascii_case(b"accept-encoding") {
            head.accept_encoding = Some(value);
        } else if name.eq_ignore_ascii_case(b"origin") {
            head.origin = Some(value);
        } else if name.eq_ignore_ascii_case(b"access-control-request-method") {
            head.cors_request_method = true;
        } else if name.eq_ignore_ascii_case(b"x-amzn-trace-id") {
            head.trace_id = Some(value)
                .filter(|v| v.len() <= MAX_TRACE_ID && v.iter().all(|b| b.is_ascii_graphic()));
        } else if name.eq_ignore_ascii_case(codec::payment::SIGNATURE_HEADER.as_bytes()) {
            head.payment_signature = Some(value);
        } else if framing_lookalike(name) {
            // `Content_Length`, `Transfer---Encoding`: a proxy in front may read it as
            // the real field while this server does not, so the two would disagree
            // on where the body ends (ALB calls it ambiguous). Refuse and close.
            return bad("a header field name that imitates Content-Length or Transfer-Encoding");
        }
    }
    if transfer_encoding {
        // RFC 9112 section 6.1: both is a smuggling vector; refuse and close. Section
        // 6.3: a server may refuse a body without Content-Length with 411.
        if content_length.is_some() {
            return bad("both Transfer-Encoding and Content-Length");
        }
        return Err(FramingError::new(
            ErrorCode::LengthRequired,
            "chunked request bodies are not supported: send Content-Length",
        ));
    }
    // RFC 9112 section 3.2: an HTTP/1.1 request needs exactly one Host; any request
    // with more than one is refused.
    if hosts > 1 || (http11 && hosts == 0) {
        return bad("exactly one Host header field is required");
    }
    head.content_length = content_length.unwrap_or(0);
    // A GET or HEAD body has no defined meaning (RFC 9110 section 9.3.1): this server
    // reads it by its Content-Length, a proxy may not. Answer, then close, so nothing
    // after it is read as a request.
    let get_with_body =
        matches!(head.method, Method::Get | Method::Head) && head.content_length > 0;
    head.keep_alive &= !(close || get_with_body);
    Ok(Some(head))
}

/// A field name spelled like Content-Length or Transfer-Encoding apart from its
/// punctuation, and not that name.
fn framing_lookalike(name: &[u8]) -> bool {
    let mut letters = [0u8; 16];
    let mut n = 0;
    for &b in name.iter().filter(|b| b.is_ascii_alphanumeric()) {
        if n == letters.len() {
            return false;
        }
        letters[n] = b.to_ascii_lowercase();
        n += 1;
    }
    matches!(&letters[..n], b"contentlength" | b"transferencoding")
}

/// The path-and-query of an origin-form (`/p?q`) or absolute-form (`http://h/p?q`)
/// target (RFC 9112 section 3.2.1 and 3.2.2).
fn origin_form(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return Some(target);
    }
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    Some(rest.find('/').map_or("/", |i| &rest[i..]))
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |n, &d| n * 10 + usize::from(d - b'0')),
    )
}

fn is_request_id(v: &[u8]) -> bool {
    codec::rules::request_id(v).is_ok()
}

/// A checked room token that becomes an event stream (`room-events`; `crate::sse`
/// serves it).
#[derive(Debug)]
pub struct Subscription {
    pub event: String,
    pub user: String,
    pub position: u64,
    pub issued_ms: u64,
    pub expires_ms: u64,
    /// The client's `Last-Event-ID`: ids go on from it.
    pub last_id: u64,
    /// A token with the drawn place, sent with the first event.
    pub reissued: Option<String>,
}

/// What a handler answers, built into buffers the connection reuses for every request.
#[derive(Debug)]
pub struct Reply {
    /// Set by `room-events`: after the head, the connection becomes this event stream.
    pub stream: Option<Box<Subscription>>,
    status: u16,
    /// Extra header lines, already formatted as `name: value\r\n`.
    headers: Vec<u8>,
    body: Vec<u8>,
    /// The request id given to a request that came without one, when it had to be
    /// known before the response was written (to log an error with it).
    request_id: Vec<u8>,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            stream: None,
            status: 200,
            headers: Vec::with_capacity(256),
            body: Vec::with_capacity(1024),
            request_id: Vec::new(),
        }
    }
}

impl Reply {
    /// Starts a new answer with `status` and nothing else.
    pub fn reset(&mut self, status: u16) {
        self.status = status;
        self.headers.clear();
        self.body.clear();
        self.request_id.clear();
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The request id the response will carry: `echoed` (the request's), else one made
    /// now.
    pub fn request_id<'a>(&'a mut self, echoed: Option<&'a [u8]>) -> &'a [u8] {
        if let Some(id) = echoed {
            return id;
        }
        if self.request_id.is_empty() {
            crate::ids::write_next(&mut self.request_id);
        }
        &self.request_id
    }

    /// Adds a header line; `value` comes from this program, never raw from a client.
    /// The extra header lines added so far, as written (`name: value\r\n` each).
    pub fn headers(&self) -> &[u8] {
        &self.headers
    }

    pub fn header(&mut self, name: &str, value: &[u8]) {
        debug_assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n'));
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
    }

    /// The JSON body to write into.
    pub fn json_body(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Appends the whole response (status line, fields, body) to `out`. A `HEAD` request
/// gets the fields of the `GET` answer and no body (RFC 9110 section 9.3.2).
pub fn write_response(
    out: &mut Vec<u8>,
    reply: &Reply,
    request_id: Option<&[u8]>,
    keep_alive: bool,
    head_only: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_u64(out, u64::from(reply.status));
    out.push(b' ');
    out.extend_from_slice(reason(reply.status).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    write_date(out);
    out.extend_from_slice(b"\r\nx-request-id: ");
    match request_id {
        Some(id) => out.extend_from_slice(id),
        None if !reply.request_id.is_empty() => out.extend_from_slice(&reply.request_id),
        None => crate::ids::write_next(out),
    }
    // RFC 9110 section 8.6 and 15.3.5: neither a 204 nor a 304 carries a content length.
    if reply.status != 304 && reply.status != 204 {
        out.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        write_u64(out, reply.body.len() as u64);
    }
    out.extend_from_slice(if keep_alive {
        b"\r\n"
    } else {
        b"\r\nconnection: close\r\n"
    });
    out.extend_from_slice(&reply.headers);
    out.extend_from_slice(b"\r\n");
    if !head_only && reply.status != 304 && reply.status != 204 {
        out.extend_from_slice(&reply.body);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

thread_local! {
    /// IMF-fixdate of the current second (RFC 9110 section 5.6.7), formatted once a
    /// second per core.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

fn write_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached_secs, text)| {
        if *cached_secs != secs {
            *cached_secs = secs;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

#[cfg(test)]
mod tests;
