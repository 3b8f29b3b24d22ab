//! The HTTP/1.1 layer of the real `edge` binary over real sockets: keep-alive,
//! pipelining, partial reads, limits, timeouts, drivers and graceful shutdown.

mod support;

use support::{get, Edge};

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let edge = Edge::start(&[]);
    let mut c = edge.connect();
    for _ in 0..3 {
        let r = c.request(&get("/public/ping"));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"], "ok");
        assert_eq!(r.header("connection"), None);
    }
    let r = c.request(&get("/public/health"));
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("ready"))
    );
}

#[test]
fn hundred_pipelined_requests_in_one_write_are_answered_in_order() {
    let edge = Edge::start(&[]);
    let mut c = edge.connect();
    let mut burst = Vec::new();
    for i in 0..100 {
        let path = if i % 2 == 0 { "/public/ping" } else { "/nope" };
        burst.extend_from_slice(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nx-request-id: r-{i}\r\n\r\n").as_bytes(),
        );
    }
    c.send(&burst);
    for i in 0..100 {
        let r = c.read_response();
        assert_eq!(r.header("x-request-id"), Some(format!("r-{i}").as_str()));
        assert_eq!(r.status, if i % 2 == 0 { 200 } else { 404 });
    }
    assert_eq!(c.request(&get("/public/ping")).status, 200, "still open");
}

#[test]
fn a_request_split_at_every_byte_is_answered_once() {
    let edge = Edge::start(&[]);
    let mut c = edge.connect();
    // A body on a route that refuses POST: the body must still be framed exactly, or
    // the request after it would not parse.
    let raw = b"POST /public/ping HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world";
    for split in 1..raw.len() {
        c.send_and_wait_read(&raw[..split]);
        c.send(&raw[split..]);
        let r = c.read_response();
        assert_eq!(r.status, 405, "split at {split}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        assert_eq!(
            c.request(&get("/public/ping")).status,
            200,
            "split at {split}"
        );
    }
}

#[test]
fn errors_use_the_json_shape_and_request_ids_are_echoed_or_made() {
    let edge = Edge::start(&[]);
    let mut c = edge.connect();
    let r = c.request(b"GET /public/nope HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123\r\n\r\n");
    assert_eq!((r.status, r.error_code().as_str()), (404, "NOT_FOUND"));
    assert!(r.json()["error"]["message"].is_string());
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let a = c.request(&get("/public/ping"));
    let b = c.request(&get("/public/ping"));
    let (a, b) = (
        a.header("x-request-id").expect("id"),
        b.header("x-request-id").expect("id"),
    );
    assert!(!a.is_empty() && a != b);
    let r = c.request(b"DELETE /public/health HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (405, "METHOD_NOT_ALLOWED")
    );
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn head_gets_the_fields_of_get_without_a_body() {
    let edge = Edge::start(&[]);
    let mut c = edge.connect();
    c.send(b"HEAD /public/ping HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response_to(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("15")));
    assert_eq!(c.request(&get("/public/ping")).body, br#"{"status":"ok"}"#);
}

/// Sends `raw`, expects `status` with `code`, then the server's close.
fn refused_and_closed(edge: &Edge, raw: &[u8], status: u16, code: &str) {
    let mut c = edge.connect();
    let r = c.request(raw);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (status, code),
        "{:?}",
        String::from_utf8_lossy(raw)
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
}

#[test]
fn framing_errors_and_limits_answer_then_close() {
    let edge = Edge::start(&[("EDGE_MAX_BODY_BYTES", "1024")]);
    let mut big_head = b"GET /public/ping HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    big_head.resize(9000, b'a');
    big_head.extend_from_slice(b"\r\n\r\n");
    refused_and_closed(&edge, &big_head, 431, "HEADERS_TOO_LARGE");
    let mut many = b"GET /public/ping HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    refused_and_closed(&edge, &many, 431, "HEADERS_TOO_LARGE");
    let too_big = b"POST /public/ping HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n";
    refused_and_closed(&edge, too_big, 413, "PAYLOAD_TOO_LARGE");
    refused_and_closed(&edge, b"GARBAGE\r\n\r\n", 400, "BAD_REQUEST");
    refused_and_closed(
        &edge,
        b"GET /public/ping HTTP/1.1\r\n\r\n",
        400,
        "BAD_REQUEST",
    );
    let chunked =
        b"POST /public/ping HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    refused_and_closed(&edge, chunked, 411, "LENGTH_REQUIRED");
    let both = b"POST /public/ping HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\nGET /public/ping HTTP/1.1\r\nHost: t\r\n\r\n";
    refused_and_closed(&edge, both, 400, "BAD_REQUEST");
}

#[test]
fn a_body_of_exactly_the_limit_is_read() {
    let edge = Edge::start(&[("EDGE_MAX_BODY_BYTES", "1024")]);
    let mut c = edge.connect();
    let mut raw = b"POST /public/ping HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n".to_vec();
    raw.resize(raw.len() + 1024, b'x');
    assert_eq!(c.request(&raw).status, 405);
    assert_eq!(c.request(&get("/public/ping")).status, 200);
}

#[test]
fn a_slow_request_gets_408_and_an_idle_connection_closes() {
    let edge = Edge::start(&[
        ("EDGE_REQUEST_TIMEOUT_MS", "300"),
        ("EDGE_KEEPALIVE_MS", "300"),
    ]);
    let mut slow = edge.connect();
    slow.send(b"GET /public/ping HTTP/1.1\r\nHost: t\r\n");
    let r = slow.read_response();
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (408, "REQUEST_TIMEOUT")
    );
    assert!(slow.is_closed());

    let mut idle = edge.connect();
    assert_eq!(idle.request(&get("/public/ping")).status, 200);
    assert!(
        idle.is_closed(),
        "idle keep-alive connection closes after EDGE_KEEPALIVE_MS"
    );
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let edge = Edge::start(&[]);
    let mut c = edge.connect();
    let r = c.request(b"GET /public/ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.status, 200);
    let r = c.request(b"GET /public/ping HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(c.is_closed());
}

#[test]
fn both_drivers_serve_and_the_log_says_which() {
    for (driver, name) in [("uring", "\"io_uring\""), ("epoll", "\"epoll\"")] {
        let edge = Edge::start(&[("EDGE_DRIVER", driver)]);
        let line = support::wait_for_line(&edge.log, "core listening");
        assert!(line.contains(name), "{line}");
        assert_eq!(
            edge.connect().request(&get("/public/ping")).status,
            200,
            "{driver}"
        );
    }
}

/// The edge started through `support/no-io-uring.py`: io_uring_setup refused (EPERM)
/// by a seccomp filter, as Docker's default profile and Fargate refuse it.
fn edge_without_io_uring() -> std::process::Command {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/no-io-uring.py"
    ))
    .arg(env!("CARGO_BIN_EXE_edge"));
    cmd
}

#[test]
fn auto_falls_back_to_epoll_where_seccomp_refuses_io_uring() {
    let auto = [("EDGE_DRIVER", "auto".to_owned())];
    let edge = Edge::start_owned(&auto);
    let line = support::wait_for_line(&edge.log, "drivers=");
    assert!(
        line.contains(r#"drivers=["io_uring", "io_uring"]"#),
        "{line}"
    );

    let edge = Edge::start_command(edge_without_io_uring(), &auto);
    let line = support::wait_for_line(&edge.log, "drivers=");
    assert!(line.contains(r#"drivers=["epoll", "epoll"]"#), "{line}");
    assert_eq!(edge.connect().request(&get("/public/ping")).status, 200);

    let out = edge_without_io_uring()
        .env("EDGE_ADDR", "127.0.0.1:0")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("EDGE_DRIVER", "uring")
        .output()
        .expect("run edge");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "EDGE_DRIVER=uring must not start: {log}"
    );
    assert!(log.contains("io_uring"), "{log}");
}

#[test]
fn bad_configuration_exits_64_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .env("EDGE_DRIVER", "kqueue")
        .output()
        .expect("run edge");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EDGE_DRIVER"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .env("REDIS_URL", "rediss://127.0.0.1:1")
        .env("REDIS_TLS_CA_FILE", env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run edge");
    assert_eq!(out.status.code(), Some(64), "a CA file that is no PEM file");
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDIS_TLS_CA_FILE"));
}

#[test]
fn sigterm_drains_finishing_the_request_in_flight() {
    let mut edge = Edge::start(&[]);
    let mut idle = edge.connect();
    assert_eq!(idle.request(&get("/public/ping")).status, 200);
    // A whole request and the start of the next in one write: once the first is
    // answered, the server holds the second's partial bytes, so it is in flight.
    let mut busy = edge.connect();
    busy.send(b"GET /public/ping HTTP/1.1\r\nHost: t\r\n\r\nGET /public/health HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab");
    assert_eq!(busy.read_response().status, 200);

    edge.signal("TERM");
    support::wait_for_line(&edge.log, "draining");
    assert!(idle.is_closed(), "idle connections close at once");
    busy.send(b"cd");
    let r = busy.read_response();
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "DRAINING"),
        "health is 503 while draining"
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(busy.is_closed());
    assert_eq!(edge.wait_exit().code(), Some(0));
}

#[test]
fn health_is_503_not_ready_without_redis_while_ping_stays_200() {
    // Port 1 on loopback: nothing listens, every connect is refused.
    let edge = Edge::start(&[("REDIS_URL", "redis://127.0.0.1:1")]);
    let mut c = edge.connect();
    let r = c.request(&get("/public/health"));
    assert_eq!((r.status, r.error_code().as_str()), (503, "NOT_READY"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(c.request(&get("/public/ping")).status, 200);
}
