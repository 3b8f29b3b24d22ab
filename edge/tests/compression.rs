//! Compressed cached reads over real sockets: the seat map in gzip for a client that
//! takes it, gzipped once per rendering, with an ETag of its own and
//! `Vary: Accept-Encoding`; identity for everyone else.

mod support;

use std::io::Read;

use support::{redis_server::RedisServer, seed_event, seed_event_at, unique_event, Edge};

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

#[test]
fn the_seat_map_comes_gzipped_to_whoever_takes_gzip() {
    let edge = Edge::start(&[("PUBLIC_CACHE_MS", "60000")]);
    let event = unique_event("gz");
    seed_event(
        &event,
        &[("A", 5_000, 100), ("B", 5_000, 100)],
        0,
        1_000_000,
    );
    support::redis(&["SETBIT", &format!("ev:{{{event}}}:sold:B"), "77", "1"]);
    let mut c = edge.connect();
    let path = format!("/public/seats/{event}");

    let plain = c.get_with(&path, "");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        plain.json()["sections"][1]["seats"]
            .as_str()
            .map(|s| &s[75..78]),
        Some("ASA")
    );

    let gz = c.get_with(&path, "Accept-Encoding: gzip, deflate, br, zstd\r\n");
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_eq!(gunzip(&gz.body), plain.body);
    assert!(
        gz.body.len() * 20 < plain.body.len(),
        "{} bytes gzipped of {}",
        gz.body.len(),
        plain.body.len()
    );
    let (plain_tag, gz_tag) = (
        plain.header("etag").expect("etag"),
        gz.header("etag").expect("etag"),
    );
    assert_ne!(plain_tag, gz_tag, "a validator per representation");

    // Each validator matches its own representation only.
    let r = c.get_with(
        &path,
        &format!("Accept-Encoding: gzip\r\nIf-None-Match: {gz_tag}\r\n"),
    );
    assert_eq!(
        (r.status, r.body.len(), r.header("etag")),
        (304, 0, Some(gz_tag))
    );
    let r = c.get_with(&path, &format!("If-None-Match: {gz_tag}\r\n"));
    assert_eq!((r.status, &r.body), (200, &plain.body));
    let r = c.get_with(
        &path,
        &format!("Accept-Encoding: gzip\r\nIf-None-Match: {plain_tag}\r\n"),
    );
    assert_eq!((r.status, &r.body), (200, &gz.body));

    // Weights: refused gzip gets identity; refused identity with gzip allowed gets gzip;
    // a HEAD gets the fields and no body.
    for (accept, gzipped) in [
        ("gzip;q=0", false),
        ("deflate, br", false),
        ("br, gzip;q=0.5, identity;q=0.8", false),
        ("identity;q=0, gzip", true),
        ("*", true),
    ] {
        let r = c.get_with(&path, &format!("Accept-Encoding: {accept}\r\n"));
        assert_eq!(r.header("content-encoding").is_some(), gzipped, "{accept}");
        assert_eq!(
            &r.body,
            if gzipped { &gz.body } else { &plain.body },
            "{accept}"
        );
    }
    c.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n").as_bytes());
    let r = c.read_response_to(true);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("content-length"),
        Some(gz.body.len().to_string().as_str())
    );
    assert_eq!(r.body, b"");
}

#[test]
fn a_summary_too_short_to_gain_stays_identity() {
    let edge = Edge::start(&[("PUBLIC_CACHE_MS", "1")]);
    let event = unique_event("gz-sum");
    seed_event(&event, &[("A", 10, 100)], 0, 1_000_000);
    let r = edge.connect().get_with(
        &format!("/public/summary/{event}/A"),
        "Accept-Encoding: gzip\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.json()["total"], 10);
}

#[test]
fn both_codings_come_from_one_rendering() {
    let redis = RedisServer::start(&[]);
    let addr = format!("127.0.0.1:{}", redis.port);
    let event = unique_event("gz-once");
    seed_event_at(&addr, &event, &[("A", 2_000, 100)], 0, 1_000_000);
    let url = redis.url();
    let edge = Edge::start(&[
        ("REDIS_URL", &url),
        ("EDGE_THREADS", "1"),
        ("PUBLIC_CACHE_MS", "60000"),
        ("EVENT_REFRESH_MS", "600000"),
    ]);
    let scripts = || {
        support::redis_at(&addr, &["INFO", "commandstats"])
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|l| l.split(',').next())
            .map_or(0, |n| n.parse::<u64>().expect("calls"))
    };
    let mut c = edge.connect();
    let path = format!("/public/seats/{event}");
    assert_eq!(c.get_with(&path, "").status, 200);
    let after_first = scripts();
    for i in 0..10 {
        let accept = if i % 2 == 0 {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        let r = c.get_with(&path, accept);
        assert_eq!(
            (r.status, r.header("content-encoding").is_some()),
            (200, i % 2 == 0)
        );
    }
    assert_eq!(
        scripts(),
        after_first,
        "every later hit, in either coding, came from the cache"
    );
}
