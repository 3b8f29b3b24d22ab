use codec::error_code::ErrorCode;

use super::*;

fn code(raw: &[u8]) -> ErrorCode {
    parse_head(raw).expect_err("must be refused").code
}

fn complete(raw: &[u8]) -> Head<'_> {
    parse_head(raw).expect("valid").expect("complete")
}

const FIXTURES: &[&[u8]] = &[
    b"GET /public/ping HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /public/room-status?token=abc HTTP/1.1\r\nHost: a\r\nx-request-id: r-1\r\n\r\n",
    b"POST /public/hold HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nx-room-token: t.t\r\n\r\n{}",
    b"GET http://example.com/public/ping HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    b"GET /public/ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\nGET /public/ping HTTP/1.1\r\nHost: a\r\nIdempotency-Key: k1\r\nIf-None-Match: \"e\"\r\n\r\n",
];

#[test]
fn every_prefix_of_a_head_is_incomplete_and_the_whole_is_complete() {
    for raw in FIXTURES {
        let head_len = complete(raw).len;
        for split in 0..head_len {
            assert!(
                parse_head(&raw[..split])
                    .expect("prefix is not an error")
                    .is_none(),
                "{:?} split at {split}",
                String::from_utf8_lossy(raw)
            );
        }
        for extra in head_len..=raw.len() {
            assert_eq!(complete(&raw[..extra]).len, head_len);
        }
    }
}

#[test]
fn fields_are_found_case_insensitively() {
    let h = complete(FIXTURES[5]);
    assert_eq!(
        (h.method, h.path, h.query),
        (Method::Get, "/public/ping", "")
    );
    assert_eq!(h.idempotency_key, Some(&b"k1"[..]));
    assert_eq!(h.if_none_match, Some(&b"\"e\""[..]));
    let h = complete(FIXTURES[1]);
    assert_eq!((h.path, h.query), ("/public/room-status", "token=abc"));
    assert_eq!(h.request_id, Some(&b"r-1"[..]));
    let h = complete(FIXTURES[2]);
    assert_eq!((h.method, h.content_length), (Method::Post, 2));
    assert_eq!(h.room_token, Some(&b"t.t"[..]));
}

#[test]
fn absolute_form_targets_route_by_their_path() {
    let h = complete(FIXTURES[3]);
    assert_eq!(h.path, "/public/ping");
    assert!(!h.keep_alive);
    assert_eq!(
        code(b"GET ftp://x/y HTTP/1.1\r\nHost: a\r\n\r\n"),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"),
        ErrorCode::BadRequest
    );
}

#[test]
fn keep_alive_follows_version_and_connection_options() {
    assert!(complete(FIXTURES[0]).keep_alive);
    assert!(complete(FIXTURES[4]).keep_alive);
    assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(
        !complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive
    );
}

#[test]
fn smuggling_shapes_are_refused() {
    // RFC 9112 section 6.1 and 6.3.
    let both =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(code(both), ErrorCode::BadRequest);
    let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(code(chunked), ErrorCode::LengthRequired);
    for cl in [
        "+5",
        "5a",
        "",
        "-1",
        "0x5",
        "5, 5",
        "1 2",
        "99999999999999999999",
    ] {
        let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\n");
        assert_eq!(
            code(raw.as_bytes()),
            ErrorCode::BadRequest,
            "Content-Length: {cl}"
        );
    }
    let differing = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(code(differing), ErrorCode::BadRequest);
    let same = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
    assert_eq!(complete(same).content_length, 1);
    // Whitespace before the colon (RFC 9112 section 5.1) and obs-fold (section 5.2).
    assert_eq!(
        code(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
        ErrorCode::BadRequest
    );
    // Host: exactly one in HTTP/1.1 (RFC 9112 section 3.2).
    assert_eq!(code(b"GET / HTTP/1.1\r\n\r\n"), ErrorCode::BadRequest);
    assert_eq!(
        code(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
        ErrorCode::BadRequest
    );
}

#[test]
fn head_limits_answer_431() {
    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(code(&many), ErrorCode::HeadersTooLarge);

    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.resize(MAX_HEAD_BYTES + 1, b'a');
    assert_eq!(
        code(&big),
        ErrorCode::HeadersTooLarge,
        "incomplete and over the limit"
    );
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        code(&big),
        ErrorCode::HeadersTooLarge,
        "complete and over the limit"
    );
}

#[test]
fn only_visible_request_ids_are_echoed() {
    let long = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nx-request-id: {}\r\n\r\n",
        "a".repeat(129)
    );
    assert_eq!(complete(long.as_bytes()).request_id, None);
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nx-request-id: {}\r\n\r\n",
        "a".repeat(128)
    );
    assert_eq!(
        complete(ok.as_bytes()).request_id.map(<[u8]>::len),
        Some(128)
    );
}

#[test]
fn only_visible_bounded_trace_ids_are_kept() {
    let with = |v: &str| {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Amzn-Trace-Id: {v}\r\n\r\n");
        complete(raw.as_bytes()).trace_id.map(<[u8]>::to_vec)
    };
    let alb = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1";
    assert_eq!(with(alb), Some(alb.as_bytes().to_vec()));
    assert_eq!(with("Root=1 x"), None, "a space inside");
    assert_eq!(with(&"a".repeat(257)), None);
    assert_eq!(with(&"a".repeat(256)).map(|v| v.len()), Some(256));
}

fn response(status: u16, head_only: bool, keep_alive: bool) -> String {
    let mut reply = Reply::default();
    reply.reset(status);
    reply.header("etag", b"\"x\"");
    reply.json_body().extend_from_slice(b"{\"a\":1}");
    let mut out = Vec::new();
    write_response(&mut out, &reply, Some(b"id-1"), keep_alive, head_only);
    String::from_utf8(out).expect("ascii")
}

#[test]
fn responses_carry_length_id_and_date() {
    let r = response(200, false, true);
    assert!(r.starts_with("HTTP/1.1 200 OK\r\ndate: "), "{r}");
    assert!(r.contains("\r\nx-request-id: id-1\r\n"), "{r}");
    assert!(r.contains("\r\ncontent-length: 7\r\n"), "{r}");
    assert!(r.contains("\r\netag: \"x\"\r\n"), "{r}");
    assert!(r.ends_with("\r\n\r\n{\"a\":1}"), "{r}");
    assert!(!r.contains("connection:"), "{r}");
    let date = r
        .split("date: ")
        .nth(1)
        .and_then(|s| s.split("\r\n").next())
        .expect("date");
    httpdate::parse_http_date(date).expect("IMF-fixdate");
}

#[test]
fn head_and_304_answers_have_no_body() {
    let r = response(200, true, false);
    assert!(
        r.contains("\r\ncontent-length: 7\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    assert!(r.contains("\r\nconnection: close\r\n"), "{r}");
    let r = response(304, false, true);
    assert!(
        r.starts_with("HTTP/1.1 304 Not Modified\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    assert!(!r.contains("content-length"), "{r}");
}
