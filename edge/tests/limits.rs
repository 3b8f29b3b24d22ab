//! The door's abuse limits through HTTP against the real edge and the shared Redis:
//! rate limits per client address (`X-Forwarded-For`) and per buyer (429), the
//! proof-of-work on `enter` (403), the purchase limit in Redis (409), revocation
//! across two cores (401).

mod support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::{redis, seed_event, unique_event, Client, Edge, Response};

const ADMIN: &str = "limits-admin-token";

fn edge(extra: &[(&str, &str)]) -> Edge {
    let mut env = vec![
        ("ROOM_TOKEN_SECRET", "limits-tests"),
        ("ADMIN_TOKEN", ADMIN),
    ];
    env.extend_from_slice(extra);
    Edge::start(&env)
}

fn open_event(tag: &str) -> String {
    let event = unique_event(tag);
    seed_event(&event, &[("A", 100, 10_000)], 0, 1_000_000);
    event
}

fn code(r: &Response) -> (u16, String) {
    let code = if r.status >= 400 {
        r.error_code()
    } else {
        String::new()
    };
    (r.status, code)
}

fn limited(r: &Response) {
    assert_eq!(code(r), (429, "RATE_LIMITED".into()), "{:?}", r.json());
    let secs: u32 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
}

/// `POST path` with extra header lines (each ending in \r\n).
fn post_with(c: &mut Client, path: &str, headers: &str, body: &Value) -> Response {
    let body = body.to_string();
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\n{headers}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    c.request(raw.as_bytes())
}

fn enter_from(c: &mut Client, xff: &str, event: &str, user: &str) -> Response {
    let headers = if xff.is_empty() {
        String::new()
    } else {
        format!("x-forwarded-for: {xff}\r\n")
    };
    post_with(
        c,
        "/public/enter",
        &headers,
        &json!({"userId": user, "eventId": event}),
    )
}

#[test]
fn a_buyer_past_its_burst_gets_429_with_retry_after_on_every_limited_route() {
    // One core: the buckets are per core.
    let edge = edge(&[
        ("RATE_LIMITS", "on"),
        ("EDGE_THREADS", "1"),
        ("RATE_BUYER_PER_SEC", "1"),
        ("RATE_BUYER_BURST", "3"),
    ]);
    let event = open_event("lbuy");
    let mut c = edge.connect();
    // enter: three of one buyer pass, the fourth is refused; another buyer is not.
    for _ in 0..3 {
        assert_eq!(enter_from(&mut c, "", &event, "ann").status, 200);
    }
    limited(&enter_from(&mut c, "", &event, "ann"));
    assert_eq!(enter_from(&mut c, "", &event, "ann2").status, 200);

    // hold, payment-intent, commit: a fresh buyer each, whose entry took one token;
    // two calls pass (whatever they answer), the third is refused.
    type Body = fn(&str, usize) -> Value;
    let routes: [(&str, Body, &str); 3] = [
        (
            "/public/hold",
            |e, i| json!({"eventId": e, "seatId": format!("A-{}", i + 1)}),
            "",
        ),
        (
            "/confirm/payment-intent",
            |e, _| json!({"userId": "bea", "eventId": e, "seatIds": ["A-50"]}),
            "bea",
        ),
        (
            "/confirm/commit",
            |e, _| json!({"userId": "cy", "eventId": e, "seatIds": ["A-60"], "intentId": "0123456789abcdef"}),
            "cy",
        ),
    ];
    for (path, body, user) in routes {
        let user = if user.is_empty() { "dee" } else { user };
        let token = c.enter(&event, user);
        for i in 0..2 {
            let headers = format!("x-room-token: {token}\r\nIdempotency-Key: k{i}\r\n");
            let r = post_with(&mut c, path, &headers, &body(&event, i));
            assert_ne!(r.status, 429, "{path} call {i}: {:?}", r.json());
        }
        let headers = format!("x-room-token: {token}\r\nIdempotency-Key: k9\r\n");
        limited(&post_with(&mut c, path, &headers, &body(&event, 2)));
    }
}

#[test]
fn the_address_is_the_rightmost_untrusted_forwarded_for_hop() {
    let edge = edge(&[
        ("RATE_LIMITS", "on"),
        ("EDGE_THREADS", "1"),
        ("TRUSTED_PROXY_HOPS", "1"),
        ("RATE_ADDRESS_PER_SEC", "1"),
        ("RATE_ADDRESS_BURST", "3"),
    ]);
    let event = open_event("laddr");
    let mut c = edge.connect();
    // The client writes whatever it likes on the left; the proxy appended 203.0.113.1.
    for (i, spoof) in ["1.1.1.1", "2.2.2.2", "3.3.3.3"].iter().enumerate() {
        let xff = format!("{spoof}, 203.0.113.1");
        let r = enter_from(&mut c, &xff, &event, &format!("a{i}"));
        assert_eq!(r.status, 200);
    }
    limited(&enter_from(&mut c, "4.4.4.4, 203.0.113.1", &event, "a4"));
    // Another client behind the same proxy, and the proxy's own peer address.
    assert_eq!(
        enter_from(&mut c, "203.0.113.1, 203.0.113.2", &event, "b1").status,
        200
    );
    assert_eq!(enter_from(&mut c, "", &event, "c1").status, 200);
    // The address bucket covers hold, payment-intent and commit too, before any other
    // check (here: no room token at all).
    for (n, path) in ["/public/hold", "/confirm/payment-intent", "/confirm/commit"]
        .iter()
        .enumerate()
    {
        let xff = format!("x-forwarded-for: 198.51.100.{n}\r\n");
        for _ in 0..3 {
            let r = post_with(&mut c, path, &xff, &json!({}));
            assert_ne!(r.status, 429, "{path}");
        }
        limited(&post_with(&mut c, path, &xff, &json!({})));
    }
}

#[test]
fn without_trusted_hops_forwarded_for_is_ignored_and_limits_off_limit_nothing() {
    let edge_on = edge(&[
        ("RATE_LIMITS", "on"),
        ("EDGE_THREADS", "1"),
        ("RATE_ADDRESS_PER_SEC", "1"),
        ("RATE_ADDRESS_BURST", "2"),
    ]);
    let event = open_event("lhops");
    let mut c = edge_on.connect();
    assert_eq!(enter_from(&mut c, "192.0.2.1", &event, "u1").status, 200);
    assert_eq!(enter_from(&mut c, "192.0.2.2", &event, "u2").status, 200);
    limited(&enter_from(&mut c, "192.0.2.3", &event, "u3"));

    let edge_off = edge(&[
        ("RATE_LIMITS", "off"),
        ("RATE_ADDRESS_BURST", "1"),
        ("RATE_BUYER_BURST", "1"),
    ]);
    let mut c = edge_off.connect();
    for _ in 0..50 {
        assert_eq!(enter_from(&mut c, "", &event, "u1").status, 200);
    }
}

#[test]
fn enter_needs_a_solved_challenge_when_proof_of_work_is_on() {
    let edge = edge(&[("ENTER_POW_BITS", "10")]);
    let event = open_event("lpow");
    let mut c = edge.connect();
    let r = c.request(&support::get(&format!("/public/challenge?eventId={event}")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    assert_eq!(body["bits"], 10);
    assert!(body["expiresAt"].as_u64().expect("expiresAt") > support::now_ms());
    let challenge = body["challenge"].as_str().expect("challenge").to_owned();
    let nonce = (0u64..)
        .map(|n| n.to_string())
        .find(|n| edge::pow::leading_zero_bits(&edge::pow::solution(&challenge, "ann", n)) >= 10)
        .expect("a nonce");
    let enter = |c: &mut Client, user: &str, challenge: Option<&str>, nonce: Option<&str>| {
        let mut body = json!({"userId": user, "eventId": event});
        if let (Some(challenge), Some(nonce)) = (challenge, nonce) {
            body["challenge"] = json!(challenge);
            body["nonce"] = json!(nonce);
        }
        c.post("/public/enter", None, &body)
    };
    assert_eq!(
        code(&enter(&mut c, "ann", None, None)),
        (403, "POW_REQUIRED".into())
    );
    assert_eq!(
        code(&enter(&mut c, "ann", Some(&challenge), Some("not-it"))),
        (403, "POW_INVALID".into())
    );
    let first = enter(&mut c, "ann", Some(&challenge), Some(&nonce));
    assert_eq!(first.status, 200, "{:?}", first.json());
    // The same solution again for the same buyer: the same place, nothing gained.
    let again = enter(&mut c, "ann", Some(&challenge), Some(&nonce));
    assert_eq!(again.json()["position"], first.json()["position"]);
    // It proves nothing for another buyer.
    let other = (0..100)
        .map(|i| format!("bob{i}"))
        .find(|u| edge::pow::leading_zero_bits(&edge::pow::solution(&challenge, u, &nonce)) < 10)
        .expect("a buyer the nonce does not solve");
    assert_eq!(
        code(&enter(&mut c, &other, Some(&challenge), Some(&nonce))),
        (403, "POW_INVALID".into())
    );
    // A challenge of another event.
    let elsewhere = open_event("lpow2");
    let r = c.post(
        "/public/enter",
        None,
        &json!({"userId": "ann", "eventId": elsewhere, "challenge": challenge, "nonce": nonce}),
    );
    assert_eq!(code(&r), (403, "POW_INVALID".into()));
    let r = c.request(&support::get("/public/challenge?eventId=nosuchevent"));
    assert_eq!(code(&r), (404, "EVENT_NOT_FOUND".into()));
    let r = c.request(&support::get("/public/challenge"));
    assert_eq!(code(&r), (400, "INVALID_FIELD".into()));
}

#[test]
fn a_malformed_challenge_or_nonce_is_400_whether_or_not_proof_of_work_is_on() {
    for bits in ["0", "10"] {
        let edge = edge(&[("ENTER_POW_BITS", bits)]);
        let event = open_event("lpowbad");
        let mut c = edge.connect();
        for (field, challenge, nonce) in [
            ("nonce", "c".to_owned(), "0".repeat(65)),
            ("nonce", "c".to_owned(), "a b".to_owned()),
            ("challenge", "c".repeat(257), "n".to_owned()),
            ("challenge", String::new(), "n".to_owned()),
        ] {
            let r = c.post(
                "/public/enter",
                None,
                &json!({"userId": "ann", "eventId": event, "challenge": challenge, "nonce": nonce}),
            );
            assert_eq!(
                code(&r),
                (400, "INVALID_FIELD".into()),
                "bits {bits}, {field}"
            );
            let message = r.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(message.contains(field), "bits {bits}: {message}");
        }
        // null is a wrong type, not "left out" (schemathesis sent it).
        for field in ["challenge", "nonce"] {
            let r = c.post(
                "/public/enter",
                None,
                &json!({"userId": "ann", "eventId": event, field: null}),
            );
            assert_eq!(
                code(&r),
                (400, "INVALID_FIELD".into()),
                "bits {bits}, {field}: null"
            );
        }
    }
}

/// A buyer with a token and `seats` holds in a fresh event, and an intent for each
/// seat alone; returns (event, token, intent id per seat).
fn buyer_with_intents(c: &mut Client, user: &str, seats: usize) -> (String, String, Vec<String>) {
    let event = open_event("lpl");
    let token = c.enter(&event, user);
    let intents = (1..=seats)
        .map(|n| {
            let seat = format!("A-{n}");
            let r = c.post(
                "/public/hold",
                Some(&token),
                &json!({"eventId": event, "seatId": seat}),
            );
            assert_eq!(r.status, 201, "hold {seat}");
            let headers = format!("x-room-token: {token}\r\nIdempotency-Key: i{n}\r\n");
            let body = json!({"userId": user, "eventId": event, "seatIds": [seat]});
            let r = post_with(c, "/confirm/payment-intent", &headers, &body);
            assert_eq!(r.status, 201, "intent {seat}");
            r.json()["intentId"].as_str().expect("intentId").to_owned()
        })
        .collect();
    (event, token, intents)
}

#[test]
fn twenty_concurrent_commits_of_one_buyer_pass_the_purchase_limit_exactly() {
    let edge = edge(&[("PURCHASE_LIMIT", "3"), ("HOLD_LIMIT", "20")]);
    let mut c = edge.connect();
    let (event, token, intents) = buyer_with_intents(&mut c, "ann", 20);
    let conns: Vec<Client> = intents.iter().map(|_| edge.connect()).collect();
    let outcomes: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = intents
            .iter()
            .zip(conns)
            .enumerate()
            .map(|(i, (intent, mut c))| {
                let (event, token) = (&event, &token);
                s.spawn(move || {
                    let n = i + 1;
                    let headers = format!("x-room-token: {token}\r\nIdempotency-Key: c{n}\r\n");
                    let body = json!({"userId": "ann", "eventId": event, "seatIds": [format!("A-{n}")], "intentId": intent});
                    code(&post_with(&mut c, "/confirm/commit", &headers, &body))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("commit"))
            .collect()
    });
    let mut counts: HashMap<(u16, String), usize> = HashMap::new();
    for outcome in outcomes {
        *counts.entry(outcome).or_default() += 1;
    }
    assert_eq!(
        counts,
        HashMap::from([
            ((202, String::new()), 3),
            ((409, "PURCHASE_LIMIT".into()), 17)
        ])
    );
    // The buyer's record in Redis: three orders of one seat each.
    let bought = redis(&["HLEN", &codec::keys::bought(&event, "ann")]);
    assert_eq!(bought, ":3\r\n");
    // A replay of an accepted commit is still a replay, not a refusal.
    let accepted = (1..=20)
        .find(|n| {
            redis(&[
                "EXISTS",
                &codec::keys::order_status(&event, "ann", &format!("c{n}")),
            ]) == ":1\r\n"
        })
        .expect("an accepted commit");
    let headers = format!("x-room-token: {token}\r\nIdempotency-Key: c{accepted}\r\n");
    let body = json!({"userId": "ann", "eventId": event, "seatIds": [format!("A-{accepted}")], "intentId": intents[accepted - 1]});
    let replay = post_with(&mut c, "/confirm/commit", &headers, &body);
    assert_eq!(replay.status, 202);
    assert_eq!(replay.header("x-idempotent-replay"), Some("true"));
}

/// Connections to the edge until two cores have answered (a generated request id
/// starts with its core's random prefix); one connection per core.
fn one_connection_per_core(edge: &Edge) -> Vec<Client> {
    let mut by_core: HashMap<String, Client> = HashMap::new();
    for _ in 0..200 {
        let mut c = edge.connect();
        let r = c.request(&support::get("/public/ping"));
        let id = r.header("x-request-id").expect("x-request-id");
        by_core.entry(id[..8].to_owned()).or_insert(c);
        if by_core.len() == 2 {
            return by_core.into_values().collect();
        }
    }
    panic!("200 connections all landed on one core");
}

#[test]
fn a_revoked_buyer_is_refused_on_every_core_and_loses_its_holds() {
    let edge = edge(&[("EDGE_THREADS", "2"), ("EVENT_REFRESH_MS", "300")]);
    let event = open_event("lrev");
    let mut cores = one_connection_per_core(&edge);
    let token = cores[0].enter(&event, "mallory");
    let honest = cores[0].enter(&event, "olivia");
    for seat in ["A-1", "A-2"] {
        let r = cores[1].post(
            "/public/hold",
            Some(&token),
            &json!({"eventId": event, "seatId": seat}),
        );
        assert_eq!(r.status, 201);
    }
    let status = |c: &mut Client, token: &str| {
        c.get_with("/public/room-status", &format!("x-room-token: {token}\r\n"))
    };
    for c in cores.iter_mut() {
        assert_eq!(status(c, &token).status, 200);
    }

    let revoke = |c: &mut Client, auth: &str, event: &str, user: &str| {
        post_with(
            c,
            &format!("/admin/events/{event}/revoke"),
            auth,
            &json!({ "userId": user }),
        )
    };
    let bearer = format!("authorization: Bearer {ADMIN}\r\n");
    assert_eq!(
        code(&revoke(&mut cores[0], "", &event, "mallory")),
        (401, "TOKEN_INVALID".into())
    );
    assert_eq!(
        code(&revoke(
            &mut cores[0],
            "authorization: Bearer nope\r\n",
            &event,
            "mallory"
        )),
        (401, "TOKEN_INVALID".into())
    );
    assert_eq!(
        code(&revoke(&mut cores[0], &bearer, "nosuchevent", "mallory")),
        (404, "EVENT_NOT_FOUND".into())
    );
    let r = revoke(&mut cores[0], &bearer, &event, "mallory");
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        r.json(),
        json!({"userId": "mallory", "revoked": true, "holdsReleased": 2})
    );
    // The answer came after EVENT_REFRESH_MS: every core refuses the token now.
    for c in cores.iter_mut() {
        assert_eq!(code(&status(c, &token)), (401, "TOKEN_REVOKED".into()));
        let r = c.post(
            "/public/hold",
            Some(&token),
            &json!({"eventId": event, "seatId": "A-3"}),
        );
        assert_eq!(code(&r), (401, "TOKEN_REVOKED".into()));
        assert_eq!(status(c, &honest).status, 200);
    }
    // The holds are gone; the seats are free for others.
    for n in [1, 2] {
        assert_eq!(
            redis(&["EXISTS", &codec::keys::hold(&event, "A", n)]),
            ":0\r\n"
        );
    }
    // And out of the section's held zset, which summary and seats count.
    assert_eq!(
        redis(&["ZCARD", &codec::keys::section_holds(&event, "A")]),
        ":0\r\n"
    );
    let r = cores[1].post(
        "/public/hold",
        Some(&honest),
        &json!({"eventId": event, "seatId": "A-1"}),
    );
    assert_eq!(r.status, 201);
    // Again: idempotent, nothing left to release.
    let r = revoke(&mut cores[1], &bearer, &event, "mallory");
    assert_eq!(r.json()["holdsReleased"], 0);
    assert_eq!(redis(&["ZCARD", &codec::keys::revoked(&event)]), ":1\r\n");
}
