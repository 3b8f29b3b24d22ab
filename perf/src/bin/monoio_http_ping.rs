//! `monoio_http_ping`: a minimal one-thread server on monoio-http's h1 server codec that
//! answers `GET /public/ping` like the edge does. It is a yardstick only, for the
//! README's choice between monoio-http and the edge's hand-written `httparse` loop;
//! `perf/bench-ping.sh` runs it next to the edge and nginx.
//!
//! # Layout
//! - `main`: configuration from the environment, one runtime on the chosen driver.
//! - `serve` / `serve_conn`: accept loop; one task per connection, keep-alive, requests
//!   answered in order (pipelined requests included, one flush per response: the codec
//!   offers no "more input buffered?" hint to coalesce them).
//! - `respond`: the route table (`/public/ping`, else 404; non-GET 405).
//!
//! Environment: `MONOIO_HTTP_ADDR` (default `127.0.0.1:8081`), `MONOIO_HTTP_DRIVER`
//! (`uring`, the default, or `epoll`), `MONOIO_HTTP_URING_SETUP` (io_uring setup flags:
//! `none`, the default and monoio's; `coop` = `COOP_TASKRUN | TASKRUN_FLAG`, no
//! interrupting IPI when a completion arrives for a running task; `defer` =
//! `SINGLE_ISSUER | DEFER_TASKRUN`, completions run only when the thread waits).

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    process::ExitCode,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode, Version};
use monoio::{
    io::{sink::SinkExt, stream::Stream},
    net::{TcpListener, TcpStream},
    IoUringDriver, LegacyDriver, RuntimeBuilder,
};
use monoio_http::{
    common::{request::Request, response::Response},
    h1::{
        codec::ServerCodec,
        payload::{FixedPayload, Payload},
    },
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The edge's ping body, byte for byte.
const PING_BODY: &[u8] = br#"{"status":"ok"}"#;
const NOT_FOUND_BODY: &[u8] = br#"{"error":{"code":"NOT_FOUND","message":"no such route"}}"#;
const BAD_REQUEST_BODY: &[u8] = br#"{"error":{"code":"BAD_REQUEST","message":"bad request"}}"#;
/// `EX_USAGE` from sysexits.h, as the edge uses for bad configuration.
const EXIT_CONFIG: u8 = 64;
/// io_uring submission queue size, as the edge's default `EDGE_URING_ENTRIES`.
const URING_ENTRIES: u32 = 1024;

fn main() -> ExitCode {
    let addr_text =
        std::env::var("MONOIO_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8081".to_owned());
    let Ok(addr) = addr_text.parse::<SocketAddr>() else {
        eprintln!("monoio_http_ping: MONOIO_HTTP_ADDR={addr_text:?}: expected ip:port");
        return ExitCode::from(EXIT_CONFIG);
    };
    let driver = std::env::var("MONOIO_HTTP_DRIVER").unwrap_or_else(|_| "uring".to_owned());
    let setup = std::env::var("MONOIO_HTTP_URING_SETUP").unwrap_or_else(|_| "none".to_owned());
    let mut uring = io_uring::IoUring::builder();
    match setup.as_str() {
        "none" => {}
        "coop" => {
            uring.setup_coop_taskrun().setup_taskrun_flag();
        }
        "defer" => {
            uring.setup_single_issuer().setup_defer_taskrun();
        }
        other => {
            eprintln!(
                "monoio_http_ping: MONOIO_HTTP_URING_SETUP={other:?}: expected none, coop or defer"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let result = match driver.as_str() {
        "uring" => RuntimeBuilder::<IoUringDriver>::new()
            .uring_builder(uring)
            .with_entries(URING_ENTRIES)
            .enable_timer()
            .build()
            .and_then(|mut rt| rt.block_on(serve(addr, &format!("uring, setup {setup}")))),
        "epoll" => RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .and_then(|mut rt| rt.block_on(serve(addr, "epoll"))),
        other => {
            eprintln!("monoio_http_ping: MONOIO_HTTP_DRIVER={other:?}: expected uring or epoll");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monoio_http_ping: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr, driver: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    eprintln!(
        "monoio_http_ping: listening on {} (driver {driver})",
        listener.local_addr()?
    );
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                monoio::spawn(serve_conn(stream));
            }
            // EMFILE and friends: keep serving the connections we have.
            Err(e) => eprintln!("monoio_http_ping: accept: {e}"),
        }
    }
}

/// One connection: decode, answer, flush, until the peer closes, asks to close, or
/// sends something the codec refuses (then a 400 and close, as RFC 9112 section 9.6
/// lets a server do).
async fn serve_conn(stream: TcpStream) {
    // Small responses: never wait for Nagle.
    let _ = stream.set_nodelay(true);
    let mut codec = ServerCodec::new(stream);
    loop {
        match codec.next().await {
            None => return,
            Some(Ok(request)) => {
                let close = wants_close(&request);
                let response = respond(&request, close);
                if codec.send_and_flush(response).await.is_err() || close {
                    return;
                }
            }
            Some(Err(_)) => {
                let response = json(StatusCode::BAD_REQUEST, BAD_REQUEST_BODY, None, true);
                let _ = codec.send_and_flush(response).await;
                return;
            }
        }
    }
}

/// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 closes unless
/// `Connection: keep-alive` (RFC 9112 section 9.3).
fn wants_close(request: &Request) -> bool {
    let connection = request.headers().get(header::CONNECTION);
    let has = |token: &str| {
        connection.is_some_and(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if request.version() == Version::HTTP_11 {
        has("close")
    } else {
        !has("keep-alive")
    }
}

fn respond(request: &Request, close: bool) -> Response {
    let request_id = request.headers().get("x-request-id").cloned();
    if request.uri().path() != "/public/ping" {
        return json(StatusCode::NOT_FOUND, NOT_FOUND_BODY, request_id, close);
    }
    if request.method() != Method::GET {
        let mut response = json(
            StatusCode::METHOD_NOT_ALLOWED,
            br#"{"error":{"code":"METHOD_NOT_ALLOWED","message":"use GET"}}"#,
            request_id,
            close,
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let mut response = json(StatusCode::OK, PING_BODY, request_id, close);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON response with the fields the edge sends on every answer: `date`,
/// `x-request-id` (echoed or generated) and `content-type`; the codec adds
/// `content-length`.
fn json(
    status: StatusCode,
    body: &'static [u8],
    request_id: Option<HeaderValue>,
    close: bool,
) -> Response {
    let mut response = Response::new(Payload::Fixed(FixedPayload::new(Bytes::from_static(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::DATE, date());
    headers.insert("x-request-id", request_id.unwrap_or_else(new_request_id));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

thread_local! {
    /// IMF-fixdate of the current second (RFC 9110 section 5.6.7), formatted once a second.
    static DATE: RefCell<(u64, HeaderValue)> =
        const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    /// Request ids: a random prefix per thread and a counter, as the edge does.
    static REQUEST_IDS: Cell<u64> = Cell::new(random_prefix());
}

fn date() -> HeaderValue {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached_secs, value)| {
        if *cached_secs != secs {
            *cached_secs = secs;
            *value = HeaderValue::from_maybe_shared(Bytes::from(httpdate::fmt_http_date(now)))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
        }
        value.clone()
    })
}

fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id = REQUEST_IDS.get();
    REQUEST_IDS.set((id & !0xffff_ffff) | (id.wrapping_add(1) & 0xffff_ffff));
    let mut text = [0u8; 16];
    for (i, b) in text.iter_mut().enumerate() {
        *b = HEX[((id >> ((15 - i) * 4)) & 0xf) as usize];
    }
    // Hex digits are always a valid field value.
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn random_prefix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        << 32
}
