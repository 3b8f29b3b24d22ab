//! CORS over real sockets against the real edge: an allowed origin's page may call the
//! API (preflight answered by the edge alone, even with Redis stalled), any other
//! origin gets the same answers as before with no CORS header, and with
//! `CORS_ALLOWED_ORIGINS` unset nothing changes at all.

mod support;

use serde_json::json;
use support::{redis_server::RedisServer, seed_event, seed_event_at, unique_event, Edge};

const SITE: &str = "http://tickets.example.test:3000";
const OTHER: &str = "https://evil.example.test";
const EXPOSED: &str = "location, etag, retry-after, x-idempotent-replay, x-request-id";

fn edge(extra: &[(&str, &str)]) -> Edge {
    let mut env = vec![
        (
            "CORS_ALLOWED_ORIGINS",
            "https://other.example.test, http://tickets.example.test:3000",
        ),
        ("PUBLIC_CACHE_MS", "1"),
    ];
    env.extend_from_slice(extra);
    Edge::start(&env)
}

fn open_event(tag: &str) -> String {
    let event = unique_event(tag);
    seed_event(&event, &[("A", 10, 100)], 0, 1_000_000);
    event
}

fn cors_headers(r: &support::Response) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
        .cloned()
        .collect()
}

fn varies_on(r: &support::Response, what: &str) -> bool {
    r.headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("vary") && v.split(',').any(|v| v.trim() == what))
}

#[test]
fn an_allowed_origin_gets_its_origin_back_on_answers_and_errors() {
    let edge = edge(&[]);
    let event = open_event("cors");
    let mut c = edge.connect();
    let origin = format!("Origin: {SITE}\r\n");

    let r = c.get_with(&format!("/public/summary/{event}/A"), &origin);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(SITE));
    assert_eq!(r.header("access-control-expose-headers"), Some(EXPOSED));
    assert!(varies_on(&r, "Origin"), "{:?}", r.headers);
    assert_eq!(r.header("access-control-allow-credentials"), None);

    let body = json!({"userId": "u1", "eventId": event}).to_string();
    let r = c.request(
        format!(
            "POST /public/enter HTTP/1.1\r\nHost: t\r\n{origin}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(SITE));

    // An error is readable by the page too, so it can show the code.
    let r = c.get_with("/public/summary/no-such-event/A", &origin);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "EVENT_NOT_FOUND")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some(SITE));

    // The operators' endpoints are never offered to pages.
    let r = c.get_with("/admin/events/x/admission", &origin);
    assert_eq!(r.status, 405);
    assert_eq!(cors_headers(&r), vec![]);
}

#[test]
fn another_origin_gets_the_same_answer_and_no_cors_header() {
    let edge = edge(&[]);
    let event = open_event("cors-no");
    let mut c = edge.connect();
    let path = format!("/public/summary/{event}/A");
    let plain = c.get_with(&path, "");
    for origin in [
        OTHER,
        "http://tickets.example.test",
        "null",
        "http://TICKETS.example.test:3000",
    ] {
        let r = c.get_with(&path, &format!("Origin: {origin}\r\n"));
        assert_eq!((r.status, &r.body), (200, &plain.body), "{origin}");
        assert_eq!(cors_headers(&r), vec![], "{origin}");
        assert!(varies_on(&r, "Origin"), "a cache must keep origins apart");
    }
    // Its preflight is an OPTIONS like any other: 405, nothing allowed.
    let r = c.request(
        format!(
            "OPTIONS /public/hold HTTP/1.1\r\nHost: t\r\nOrigin: {OTHER}\r\nAccess-Control-Request-Method: POST\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (405, "METHOD_NOT_ALLOWED")
    );
    assert_eq!(cors_headers(&r), vec![]);
}

#[test]
fn a_preflight_is_answered_by_the_edge_alone() {
    // A private Redis, paused: any Redis call would be a 503 after REDIS_TIMEOUT_MS.
    let redis = RedisServer::start(&[]);
    let event = unique_event("preflight");
    seed_event_at(
        &format!("127.0.0.1:{}", redis.port),
        &event,
        &[("A", 10, 100)],
        0,
        1_000_000,
    );
    let url = redis.url();
    let edge = edge(&[
        ("REDIS_URL", &url),
        ("EDGE_THREADS", "1"),
        ("REDIS_TIMEOUT_MS", "200"),
    ]);
    let mut c = edge.connect();
    redis.pause();
    for path in [
        "/public/hold",
        "/confirm/commit",
        &format!("/public/seats/{event}"),
    ] {
        let r = c.request(
            format!(
                "OPTIONS {path} HTTP/1.1\r\nHost: t\r\nOrigin: {SITE}\r\n\
                 Access-Control-Request-Method: POST\r\n\
                 Access-Control-Request-Headers: content-type,x-room-token,idempotency-key\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 204, "{path}");
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.body, b"");
        assert_eq!(
            cors_headers(&r),
            [
                ("access-control-allow-origin", SITE),
                ("access-control-allow-methods", "GET, HEAD, POST"),
                (
                    "access-control-allow-headers",
                    "content-type, x-room-token, idempotency-key, authorization, x-request-id"
                ),
                ("access-control-max-age", "600"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
            "{path}"
        );
        assert!(varies_on(&r, "Origin"));
    }
    // And a request that needs Redis shows it was stalled all along.
    let r = c.get_with(
        &format!("/public/summary/{event}/A"),
        &format!("Origin: {SITE}\r\n"),
    );
    assert_eq!((r.status, r.error_code().as_str()), (503, "UNAVAILABLE"));
    assert_eq!(r.header("access-control-allow-origin"), Some(SITE));
    redis.resume();
}

#[test]
fn unset_cors_changes_nothing() {
    let edge = Edge::start(&[("PUBLIC_CACHE_MS", "1")]);
    let event = open_event("cors-off");
    let mut c = edge.connect();
    let r = c.get_with(
        &format!("/public/summary/{event}/A"),
        &format!("Origin: {SITE}\r\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(cors_headers(&r), vec![]);
    assert!(!varies_on(&r, "Origin"));
    let r = c.request(
        format!(
            "OPTIONS /public/enter HTTP/1.1\r\nHost: t\r\nOrigin: {SITE}\r\nAccess-Control-Request-Method: POST\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(cors_headers(&r), vec![]);
}

#[test]
fn a_bad_origin_list_stops_the_edge_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .env("CORS_ALLOWED_ORIGINS", "https://tickets.example.test/")
        .output()
        .expect("run edge");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CORS_ALLOWED_ORIGINS="), "{stderr}");
}

/// The head of `room-events` for `token`, sent with `origin`, read up to its blank line.
fn event_stream_head(edge: &Edge, token: &str, origin: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = edge.connect().stream;
    write!(
        stream,
        "GET /public/room-events?token={token} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\nOrigin: {origin}\r\n\r\n"
    )
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).expect("read"),
            1,
            "stream ended: {head:?}"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("UTF-8").to_ascii_lowercase()
}

#[test]
fn an_event_stream_carries_the_cors_headers_of_an_allowed_origin_only() {
    let edge = edge(&[]);
    let event = unique_event("corssse");
    // Opens in an hour: the stream stays open, waiting.
    seed_event(&event, &[("A", 10, 100)], support::now_ms() + 3_600_000, 10);
    let body = json!({"userId": "u1", "eventId": event}).to_string();
    let r = edge.connect().request(
        format!(
            "POST /public/enter HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200);
    let token = r.json()["roomToken"]
        .as_str()
        .expect("roomToken")
        .to_owned();

    let head = event_stream_head(&edge, &token, SITE);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains("content-type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("access-control-allow-origin: {SITE}\r\n")),
        "{head}"
    );
    assert!(head.contains("vary: origin\r\n"), "{head}");

    let head = event_stream_head(&edge, &token, OTHER);
    assert!(
        head.contains("content-type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(!head.contains("access-control-"), "{head}");
}
