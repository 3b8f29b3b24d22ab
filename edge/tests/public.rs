//! `/public/*` through HTTP against the real edge and the shared Redis: waiting room,
//! holds, release, summary and seat map, admission changes. Each test seeds its own
//! event (as `worker seed` projects one) so tests never share state.

mod support;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use edge::token::{Keys, RoomToken};
use serde_json::json;
use support::{now_ms, redis_server::RedisServer, seed_event, unique_event, Edge};

const SECRET: &str = "test-secret";

fn edge(extra: &[(&str, &str)]) -> Edge {
    let mut env = vec![("ROOM_TOKEN_SECRET", SECRET), ("PUBLIC_CACHE_MS", "1")];
    env.extend_from_slice(extra);
    Edge::start(&env)
}

fn open_event(tag: &str, seats: u32) -> String {
    let event = unique_event(tag);
    seed_event(
        &event,
        &[("A", seats, 50_000), ("B", seats, 30_000)],
        0,
        1_000_000,
    );
    event
}

fn hold(c: &mut support::Client, event: &str, token: &str, seat: &str) -> support::Response {
    c.post(
        "/public/hold",
        Some(token),
        &json!({"eventId": event, "seatId": seat}),
    )
}

#[test]
fn entering_twice_keeps_the_position_and_the_token_reports_it() {
    let edge = edge(&[]);
    let event = open_event("enter", 10);
    let mut c = edge.connect();
    let first = c.post(
        "/public/enter",
        None,
        &json!({"userId": "u1", "eventId": event}),
    );
    assert_eq!(first.status, 200);
    let again = c.post(
        "/public/enter",
        None,
        &json!({"userId": "u1", "eventId": event}),
    );
    let other = c.post(
        "/public/enter",
        None,
        &json!({"userId": "u2", "eventId": event}),
    );
    let position = |r: &support::Response| r.json()["position"].as_u64().expect("position");
    assert_eq!(position(&first), position(&again));
    assert_eq!(position(&other), position(&first) + 1);
    assert_eq!(first.json()["etaSec"], 0);

    let token = first.json()["roomToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let status = c.get_with(&format!("/public/room-status?token={token}"), "");
    assert_eq!(status.status, 200);
    assert_eq!(
        status.json(),
        json!({"ready": true, "leftSec": 0, "position": position(&first)})
    );
    let by_header = c.get_with("/public/room-status", &format!("x-room-token: {token}\r\n"));
    assert_eq!(by_header.json(), status.json());
}

#[test]
fn concurrent_entries_number_each_buyer_once_from_one() {
    let edge = edge(&[]);
    let event = open_event("crowd", 10);
    // 40 connections at once; threads 2k and 2k+1 enter the same 25 buyers.
    let threads: Vec<_> = (0..40)
        .map(|t| {
            let (mut c, event) = (edge.connect(), event.clone());
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let user = format!("buyer-{}-{i}", t / 2);
                        let r = c.post(
                            "/public/enter",
                            None,
                            &json!({"userId": user, "eventId": event}),
                        );
                        assert_eq!(r.status, 200);
                        (user, r.json()["position"].as_u64().expect("position"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut positions = std::collections::HashMap::new();
    for (user, position) in threads.into_iter().flat_map(|t| t.join().expect("thread")) {
        let first = *positions.entry(user.clone()).or_insert(position);
        assert_eq!(first, position, "{user} entered twice, one position");
    }
    let mut numbers: Vec<u64> = positions.into_values().collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=500).collect::<Vec<_>>(),
        "500 buyers, 1 to 500"
    );
}

#[test]
fn bad_bodies_unknown_events_and_bad_tokens_get_their_codes() {
    let edge = edge(&[]);
    let event = open_event("bad", 10);
    let mut c = edge.connect();
    let r = c.request(b"POST /public/enter HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n{nope");
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_JSON"));
    let r = c.post("/public/enter", None, &json!({"userId": "u1"}));
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_FIELD"));
    let r = c.post(
        "/public/enter",
        None,
        &json!({"userId": "u1", "eventId": "no{such}"}),
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_FIELD"));
    let r = c.post(
        "/public/enter",
        None,
        &json!({"userId": "u1", "eventId": unique_event("none")}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "EVENT_NOT_FOUND")
    );

    let keys = Keys::new(SECRET.as_bytes(), None);
    let token = |event: &str, expires_ms| {
        keys.sign(&RoomToken {
            event,
            user: "u1",
            position: 1,
            issued_ms: 0,
            expires_ms,
        })
    };
    let expired = token(&event, now_ms() - 1);
    let other_event = token(&unique_event("other"), now_ms() + 60_000);
    let forged = Keys::new(b"not-the-secret", None).sign(&RoomToken {
        event: &event,
        user: "u1",
        position: 1,
        issued_ms: 0,
        expires_ms: now_ms() + 60_000,
    });
    for (token, code) in [
        (expired.as_str(), "TOKEN_EXPIRED"),
        (forged.as_str(), "TOKEN_INVALID"),
        ("garbage", "TOKEN_INVALID"),
        (other_event.as_str(), "TOKEN_WRONG_EVENT"),
    ] {
        let r = hold(&mut c, &event, token, "A-1");
        assert_eq!((r.status, r.error_code().as_str()), (401, code), "{code}");
    }
    let r = c.post(
        "/public/hold",
        None,
        &json!({"eventId": event, "seatId": "A-1"}),
    );
    assert_eq!((r.status, r.error_code().as_str()), (401, "TOKEN_MISSING"));
    let r = c.get_with(&format!("/public/room-status?token={expired}"), "");
    assert_eq!((r.status, r.error_code().as_str()), (401, "TOKEN_EXPIRED"));

    let t = c.enter(&event, "u1");
    for seat in ["A-0", "A-11", "C-1", "A1", "A-x"] {
        let r = hold(&mut c, &event, &t, seat);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "SEAT_NOT_FOUND"),
            "{seat}"
        );
    }
}

/// An admission state the edge cannot read (a float Redis wrote for a nanosecond
/// time, say) keeps the room closed: failing open would admit everyone.
#[test]
fn an_unreadable_admission_state_keeps_the_room_closed() {
    let edge = edge(&[]);
    let event = open_event("unreadable", 10);
    support::redis(&[
        "HSET",
        &format!("ev:{{{event}}}:adm"),
        "openAtMs",
        "1.796291e+18",
    ]);
    let mut c = edge.connect();
    let t = c.enter(&event, "u1");
    let r = c.get_with(&format!("/public/room-status?token={t}"), "");
    assert_eq!((r.status, r.json()["ready"].as_bool()), (200, Some(false)));
    let r = hold(&mut c, &event, &t, "A-1");
    assert_eq!((r.status, r.error_code().as_str()), (403, "NOT_ADMITTED"));
}

/// Seat ids that PostgreSQL would refuse (`codec::rules::seat_id`: one spelling a
/// seat) are no seat at the door, so no hold, intent or commit is ever accepted for
/// them; once, `A-01` was held as a second spelling of `A-1` and its order stuck.
#[test]
fn a_seat_has_one_spelling() {
    let edge = edge(&[]);
    let event = open_event("spell", 10);
    let mut c = edge.connect();
    let t = c.enter(&event, "u1");
    for seat in [
        "A-01",
        "A-+1",
        "A- 1",
        "A-1 ",
        "a-1",
        "A-1000000000",
        "A-１",
    ] {
        let r = hold(&mut c, &event, &t, seat);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "SEAT_NOT_FOUND"),
            "{seat}"
        );
    }
    assert_eq!(hold(&mut c, &event, &t, "A-1").status, 201);
    // A field a rule refuses is 400 with the field named.
    let r = c.post(
        "/public/enter",
        None,
        &json!({"userId": "a b", "eventId": event}),
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_FIELD"));
    assert_eq!(
        r.json()["error"]["message"],
        "userId must be 1 to 64 visible ASCII characters"
    );
    let long = "h".repeat(65);
    let body = json!({"eventId": event, "seatId": "A-1", "holdId": long});
    let r = c.post("/public/release", Some(&t), &body);
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_FIELD"));
    assert!(r.json()["error"]["message"]
        .as_str()
        .expect("message")
        .starts_with("holdId must be"));
}

#[test]
fn thousand_buyers_racing_for_ten_seats_get_exactly_ten_holds() {
    let edge = edge(&[]);
    let event = open_event("race", 10);
    let threads: Vec<_> = (0..50)
        .map(|t| {
            let (mut c, event) = (edge.connect(), event.clone());
            std::thread::spawn(move || {
                let tokens: Vec<_> = (0..20)
                    .map(|i| c.enter(&event, &format!("buyer-{t}-{i}")))
                    .collect();
                let mut won = Vec::new();
                for (i, token) in tokens.iter().enumerate() {
                    let seat = format!("A-{}", (t * 20 + i) % 10 + 1);
                    let r = hold(&mut c, &event, token, &seat);
                    match r.status {
                        201 => won.push(seat),
                        409 => assert_eq!(r.error_code(), "SEAT_HELD"),
                        other => panic!("unexpected {other}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut won: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    won.sort();
    let mut seats: Vec<String> = (1..=10).map(|n| format!("A-{n}")).collect();
    seats.sort();
    assert_eq!(won, seats, "each seat held exactly once");
    let summary = edge
        .connect()
        .get_with(&format!("/public/summary/{event}/A"), "")
        .json();
    assert_eq!(
        (summary["held"].as_u64(), summary["available"].as_u64()),
        (Some(10), Some(0))
    );
}

#[test]
fn holds_refuse_sold_seats_and_enforce_the_per_buyer_limit() {
    let edge = edge(&[("HOLD_LIMIT", "2")]);
    let event = open_event("limit", 10);
    // The worker marks a sold seat in the section's bitmap (bit n = seat n) and leaves
    // `sold` in its hold key.
    support::redis(&["SETBIT", &format!("ev:{{{event}}}:sold:A"), "5", "1"]);
    support::redis(&["SET", &format!("ev:{{{event}}}:hold:A:5"), "sold"]);
    let mut c = edge.connect();
    let t = c.enter(&event, "collector");
    let r = hold(&mut c, &event, &t, "A-5");
    assert_eq!((r.status, r.error_code().as_str()), (409, "SEAT_SOLD"));
    let r = hold(&mut c, &event, &t, "A-1");
    assert_eq!(r.status, 201);
    assert!(r.json()["expiresAt"].as_u64().expect("expiresAt") > now_ms());
    let r = hold(&mut c, &event, &t, "A-1");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "SEAT_HELD"),
        "one's own hold too"
    );
    assert_eq!(hold(&mut c, &event, &t, "B-1").status, 201);
    let r = hold(&mut c, &event, &t, "A-2");
    assert_eq!((r.status, r.error_code().as_str()), (409, "HOLD_LIMIT"));
    // At the limit: sold is still said first, then the limit before held.
    let r = hold(&mut c, &event, &t, "A-5");
    assert_eq!((r.status, r.error_code().as_str()), (409, "SEAT_SOLD"));
    let r = hold(&mut c, &event, &t, "A-1");
    assert_eq!((r.status, r.error_code().as_str()), (409, "HOLD_LIMIT"));
}

#[test]
fn one_buyers_concurrent_holds_stop_exactly_at_the_limit() {
    let edge = edge(&[("HOLD_LIMIT", "3"), ("EDGE_THREADS", "1")]);
    let event = open_event("climit", 40);
    let token = edge.connect().enter(&event, "greedy");
    // 8 connections a thread, 5 distinct seats each, all at once: one core batches
    // them into shared script calls, so the limit is counted inside a batch too.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (mut c, event, token) = (edge.connect(), event.clone(), token.clone());
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| {
                        let r = hold(&mut c, &event, &token, &format!("A-{}", t * 5 + i + 1));
                        let code = (r.status != 201).then(|| r.error_code());
                        (r.status, code)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outcomes: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    let held = outcomes.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(held, 3, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.0 == 201 || (o.0 == 409 && o.1.as_deref() == Some("HOLD_LIMIT"))),
        "{outcomes:?}"
    );
    let summary = edge
        .connect()
        .get_with(&format!("/public/summary/{event}/A"), "")
        .json();
    assert_eq!(summary["held"].as_u64(), Some(3));
}

#[test]
fn a_hold_key_the_section_and_the_buyer_expire_at_the_answered_moment() {
    let edge = edge(&[]);
    let event = open_event("moment", 10);
    let mut c = edge.connect();
    let t = c.enter(&event, "punctual");
    let r = hold(&mut c, &event, &t, "B-4");
    assert_eq!(r.status, 201);
    let expires_at = r.json()["expiresAt"].as_u64().expect("expiresAt");
    // The key lives until expiresAt and the zsets count it until then, to the ms:
    // summary and seat map (score > now) stop counting it when the key goes.
    let integer = |reply: String| -> u64 {
        reply
            .trim_start_matches(':')
            .trim_end()
            .parse()
            .expect("integer reply")
    };
    let bulk = |reply: String| -> u64 {
        let value = reply.lines().nth(1).expect("bulk reply");
        value.parse().expect("a whole number")
    };
    let hold_key = format!("ev:{{{event}}}:hold:B:4");
    assert_eq!(
        integer(support::redis(&["PEXPIRETIME", &hold_key])),
        expires_at
    );
    let section = format!("ev:{{{event}}}:held:B");
    assert_eq!(
        bulk(support::redis(&["ZSCORE", &section, "B-4"])),
        expires_at
    );
    let buyer = format!("ev:{{{event}}}:uholds:punctual");
    assert_eq!(bulk(support::redis(&["ZSCORE", &buyer, "B-4"])), expires_at);
    assert_eq!(
        integer(support::redis(&["PEXPIRETIME", &buyer])),
        expires_at
    );
}

#[test]
fn only_the_holder_releases_and_a_second_release_says_false() {
    let edge = edge(&[]);
    let event = open_event("release", 10);
    let mut c = edge.connect();
    let (holder, other) = (c.enter(&event, "holder"), c.enter(&event, "other"));
    let hold_id = hold(&mut c, &event, &holder, "A-3").json()["holdId"]
        .as_str()
        .expect("id")
        .to_owned();
    let release = |c: &mut support::Client, token: &str, hold_id: &str| {
        let r = c.post(
            "/public/release",
            Some(token),
            &json!({"eventId": event, "seatId": "A-3", "holdId": hold_id}),
        );
        assert_eq!(r.status, 200);
        r.json()["released"].as_bool().expect("released")
    };
    assert!(
        !release(&mut c, &other, &hold_id),
        "another buyer with the right holdId"
    );
    assert!(
        !release(&mut c, &holder, "0000000000000000"),
        "the holder with a wrong holdId"
    );
    assert_eq!(
        hold(&mut c, &event, &other, "A-3").error_code(),
        "SEAT_HELD",
        "still held"
    );
    assert!(release(&mut c, &holder, &hold_id));
    assert!(!release(&mut c, &holder, &hold_id), "second release");
    assert_eq!(
        hold(&mut c, &event, &other, "A-3").status,
        201,
        "free again"
    );
}

#[test]
fn an_expired_hold_frees_the_seat_the_summary_and_the_buyers_limit() {
    let edge = edge(&[("HOLD_TTL_MS", "300"), ("HOLD_LIMIT", "1")]);
    let event = open_event("expiry", 10);
    let mut c = edge.connect();
    let (a, b) = (c.enter(&event, "a"), c.enter(&event, "b"));
    assert_eq!(hold(&mut c, &event, &a, "A-7").status, 201);
    assert_eq!(
        hold(&mut c, &event, &a, "A-8").error_code(),
        "HOLD_LIMIT",
        "a holds one seat, the limit"
    );
    let held = |c: &mut support::Client| {
        c.get_with(&format!("/public/summary/{event}/A"), "").json()["held"].as_u64()
    };
    assert_eq!(held(&mut c), Some(1));
    let deadline = Instant::now() + support::WAIT;
    while held(&mut c) != Some(0) {
        assert!(Instant::now() < deadline, "hold never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        hold(&mut c, &event, &b, "A-7").status,
        201,
        "the seat is free again"
    );
    assert_eq!(
        hold(&mut c, &event, &a, "A-8").status,
        201,
        "an expired hold no longer counts against the buyer's limit"
    );
}

#[test]
fn buyers_wait_until_admitted() {
    let edge = edge(&[]);
    let event = unique_event("closed");
    seed_event(&event, &[("A", 10, 1)], now_ms() + 3_600_000, 100);
    let mut c = edge.connect();
    let entered = c.post(
        "/public/enter",
        None,
        &json!({"userId": "early", "eventId": event}),
    );
    assert!(entered.json()["etaSec"].as_u64().expect("eta") >= 3_599);
    let token = entered.json()["roomToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let status = c
        .get_with(&format!("/public/room-status?token={token}"), "")
        .json();
    assert_eq!(status["ready"], false);
    let r = hold(&mut c, &event, &token, "A-1");
    assert_eq!((r.status, r.error_code().as_str()), (403, "NOT_ADMITTED"));
}

#[test]
fn an_admission_change_reaches_every_core_within_a_second() {
    let edge = edge(&[("ADMIN_TOKEN", "op-secret"), ("EDGE_THREADS", "2")]);
    let event = unique_event("admin");
    seed_event(&event, &[("A", 10, 1)], now_ms() + 3_600_000, 100);
    // SO_REUSEPORT spreads connections by hash: connect until both cores answer. A
    // core is told by the 8-hex-digit prefix of the request ids it makes (`ids.rs`).
    let mut clients: Vec<support::Client> = Vec::new();
    let mut cores = HashSet::new();
    while cores.len() < 2 {
        assert!(clients.len() < 200, "every connection went to one core");
        let mut c = edge.connect();
        let id = c
            .get_with("/public/ping", "")
            .header("x-request-id")
            .map(str::to_owned);
        cores.insert(id.expect("x-request-id")[..8].to_owned());
        clients.push(c);
    }
    let token = clients[0].enter(&event, "waiting");
    let ready = |c: &mut support::Client| {
        c.get_with(&format!("/public/room-status?token={token}"), "")
            .json()["ready"]
            .as_bool()
            .expect("ready")
    };
    assert!(
        clients.iter_mut().all(|c| !ready(c)),
        "every core sees the room closed"
    );

    let path = format!("/admin/events/{event}/admission");
    let r = clients[0].post(&path, None, &json!({"openAtMs": now_ms()}));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "TOKEN_INVALID"),
        "no bearer token"
    );
    let body = json!({"openAtMs": now_ms(), "rate": 1000}).to_string();
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer op-secret\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let changed = Instant::now();
    let r = clients[0].request(raw.as_bytes());
    assert_eq!((r.status, r.json()["rate"].as_u64()), (200, Some(1000)));
    // EVENT_REFRESH_MS is 500 by default: every core follows within a second.
    while !clients.iter_mut().all(&ready) {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "a core still has the old admission"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The runbook's pause: an opening moved into the future closes the room (new holds
/// refused), and the real opening posted again resumes the sale.
#[test]
fn an_opening_moved_into_the_future_pauses_the_sale_and_back_resumes_it() {
    let edge = edge(&[("ADMIN_TOKEN", "op-secret"), ("EVENT_REFRESH_MS", "50")]);
    let event = unique_event("pause");
    seed_event(&event, &[("A", 10, 1)], now_ms() - 60_000, 1000);
    let mut c = edge.connect();
    let token = c.enter(&event, "paused");
    assert_eq!(hold(&mut c, &event, &token, "A-1").status, 201);
    let admission = |c: &mut support::Client, open_at: u64| {
        let body = json!({"openAtMs": open_at}).to_string();
        let raw = format!(
            "POST /admin/events/{event}/admission HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer op-secret\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(c.request(raw.as_bytes()).status, 200);
    };
    // Holds are tried only once this connection's core says the room changed, so no
    // hold races the change.
    let ready_is = |c: &mut support::Client, want: bool| {
        let deadline = Instant::now() + support::WAIT;
        while c
            .get_with(&format!("/public/room-status?token={token}"), "")
            .json()["ready"]
            != want
        {
            assert!(Instant::now() < deadline, "ready never became {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    admission(&mut c, now_ms() + 3_600_000);
    ready_is(&mut c, false);
    let r = hold(&mut c, &event, &token, "A-2");
    assert_eq!((r.status, r.error_code().as_str()), (403, "NOT_ADMITTED"));
    admission(&mut c, now_ms() - 60_000);
    ready_is(&mut c, true);
    assert_eq!(hold(&mut c, &event, &token, "A-2").status, 201);
}

#[test]
fn an_expired_summary_is_rendered_once_while_the_others_get_the_old_one() {
    // A private Redis, so it can be paused without disturbing other tests.
    let redis = support::redis_server::RedisServer::start(&[]);
    let addr = format!("127.0.0.1:{}", redis.port);
    let event = unique_event("swr");
    support::seed_event_at(&addr, &event, &[("A", 10, 100)], 0, 1_000_000);
    let url = redis.url();
    let edge = edge(&[
        ("REDIS_URL", &url),
        ("EDGE_THREADS", "1"),
        ("EVENT_REFRESH_MS", "600000"),
    ]);
    let path = format!("/public/summary/{event}/A");
    let first = edge.connect().get_with(&path, "");
    assert_eq!(first.json()["sold"], 0);
    support::redis_at(
        &addr,
        &["SETBIT", &format!("ev:{{{event}}}:sold:A"), "3", "1"],
    );
    let renders = || {
        let stats = support::redis_at(&addr, &["INFO", "commandstats"]);
        stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|l| l.split(',').next())
            .map_or(0, |n| n.parse::<u64>().expect("calls"))
    };
    let before = renders();
    // PUBLIC_CACHE_MS is 1: the entry has expired. Redis then stalls for 300 ms, so the
    // request that renders anew waits while the 19 others arrive.
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(redis.raw("CLIENT PAUSE 300 ALL"), "+OK\r\n");
    let mut clients: Vec<support::Client> = (0..20).map(|_| edge.connect()).collect();
    for c in &mut clients {
        c.send(&support::get(&path));
    }
    let sold: Vec<u64> = clients
        .iter_mut()
        .map(|c| {
            let r = c.read_response();
            assert_eq!(r.status, 200);
            r.json()["sold"].as_u64().expect("sold")
        })
        .collect();
    assert_eq!(
        (sold.iter().filter(|&&n| n == 1).count(), sold.len()),
        (1, 20),
        "one fresh rendering, 19 answers from the expired one: {sold:?}"
    );
    assert_eq!(renders() - before, 1, "Redis was asked once");
}

/// An edge of one core on a private Redis (so it can be stopped) with an open event.
fn edge_on_private_redis(extra: &[(&str, &str)]) -> (RedisServer, Edge, String) {
    let redis = RedisServer::start(&[]);
    let event = unique_event("own");
    let addr = format!("127.0.0.1:{}", redis.port);
    support::seed_event_at(&addr, &event, &[("A", 10, 100)], 0, 1_000_000);
    let url = redis.url();
    let mut env = vec![("REDIS_URL", url.as_str()), ("EDGE_THREADS", "1")];
    env.extend_from_slice(extra);
    let edge = edge(&env);
    (redis, edge, event)
}

#[test]
fn a_stalled_or_lost_redis_is_a_503_with_retry_after_never_a_hang() {
    // No catalog re-read in the background: every Redis call here is a request's.
    let (mut redis, edge, event) =
        edge_on_private_redis(&[("REDIS_TIMEOUT_MS", "200"), ("EVENT_REFRESH_MS", "600000")]);
    let mut c = edge.connect();
    let t = c.enter(&event, "patient");

    redis.pause();
    let r = hold(&mut c, &event, &t, "A-1");
    assert_eq!((r.status, r.error_code().as_str()), (503, "UNAVAILABLE"));
    assert_eq!(r.header("retry-after"), Some("1"), "stalled");
    redis.resume();
    redis.kill();
    let r = hold(&mut c, &event, &t, "A-1");
    assert_eq!((r.status, r.error_code().as_str()), (503, "UNAVAILABLE"));
    assert_eq!(r.header("retry-after"), Some("1"), "gone");
    let r = c.post(
        "/public/enter",
        None,
        &json!({"eventId": event, "userId": "late"}),
    );
    assert_eq!((r.status, r.error_code().as_str()), (503, "UNAVAILABLE"));

    redis.restart();
    let deadline = Instant::now() + support::WAIT;
    let r = loop {
        let r = hold(&mut c, &event, &t, "A-1");
        if r.status != 503 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r.status, 201, "served again once Redis is back");

    // The core's Redis counters, logged when it stops, saw each failure by its kind.
    edge.signal("TERM");
    let line = support::wait_for_line(&edge.log, "core stopped");
    let counter = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("redis_{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no redis_{name} in {line}"))
    };
    assert_eq!(counter("timeouts"), 1, "{line}");
    assert!(counter("disconnected") >= 2, "{line}");
    assert!(counter("reconnects") >= 1, "{line}");
    assert_eq!(
        counter("server_errors"),
        counter("noscript_retries"),
        "the restarted Redis had no scripts; nothing else was refused: {line}"
    );
    assert!(counter("written") >= 3 && counter("writes") >= 3, "{line}");
}

#[test]
fn a_drain_finishes_a_request_waiting_on_redis() {
    let (redis, mut edge, event) = edge_on_private_redis(&[("REDIS_TIMEOUT_MS", "10000")]);
    let mut c = edge.connect();
    let t = c.enter(&event, "drained");
    let hold = json!({"eventId": event, "seatId": "A-2"});
    redis.pause();
    c.send_and_wait_read(&support::post("/public/hold", Some(&t), &hold));
    // Ctrl-C in a terminal: SIGINT to the process group, then a supervisor's SIGTERM.
    edge.signal("INT");
    edge.signal("TERM");
    support::wait_for_line(&edge.log, "core draining");
    // The listening socket goes once the kernel drops the accept the core had pending.
    let deadline = Instant::now() + support::WAIT;
    while std::net::TcpStream::connect(edge.addr).is_ok() {
        assert!(Instant::now() < deadline, "the listener stays open");
        std::thread::sleep(Duration::from_millis(10));
    }
    redis.resume();
    let r = c.read_response();
    assert_eq!(r.status, 201, "the hold in flight completes");
    assert_eq!(r.header("connection"), Some("close"));
    drop(c); // or the edge lingers (up to 2 s) for the client to close first
    assert_eq!(edge.wait_exit().code(), Some(0));
}

#[test]
fn a_drain_gives_up_on_a_stuck_request_after_the_grace() {
    let (redis, mut edge, event) = edge_on_private_redis(&[
        ("REDIS_TIMEOUT_MS", "60000"),
        ("EDGE_SHUTDOWN_GRACE_MS", "300"),
    ]);
    let mut c = edge.connect();
    let t = c.enter(&event, "stuck");
    let hold = json!({"eventId": event, "seatId": "A-3"});
    redis.pause();
    c.send_and_wait_read(&support::post("/public/hold", Some(&t), &hold));
    edge.signal("TERM");
    support::wait_for_line(&edge.log, "shutdown grace over");
    assert_eq!(edge.wait_exit().code(), Some(0));
    assert!(c.is_closed(), "the stuck request's connection is closed");
    redis.resume();
}

#[test]
fn summary_and_seat_map_carry_cache_validators() {
    let edge = edge(&[]);
    let event = open_event("map", 12);
    support::redis(&["SETBIT", &format!("ev:{{{event}}}:sold:B"), "12", "1"]);
    let mut c = edge.connect();
    let t = c.enter(&event, "viewer");
    assert_eq!(hold(&mut c, &event, &t, "A-2").status, 201);

    let summary = c.get_with(&format!("/public/summary/{event}/B"), "");
    assert_eq!(summary.status, 200);
    assert_eq!(
        summary.json(),
        json!({"eventId": event, "section": "B", "total": 12, "available": 11, "held": 0, "sold": 1, "price": 30000, "currency": "KRW"})
    );
    assert_eq!(
        summary.header("cache-control"),
        Some("public, max-age=1, s-maxage=1")
    );
    let etag = summary.header("etag").expect("etag").to_owned();
    let again = c.get_with(
        &format!("/public/summary/{event}/B"),
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!((again.status, again.body.len()), (304, 0));
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    let map = c.get_with(&format!("/public/seats/{event}"), "");
    assert_eq!(map.status, 200);
    assert_eq!(
        map.json(),
        json!({"eventId": event, "sections": [
            {"section": "A", "seats": "AHAAAAAAAAAA"},
            {"section": "B", "seats": "AAAAAAAAAAAS"},
        ]})
    );
    let r = c.get_with(&format!("/public/summary/{event}/Z"), "");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "EVENT_NOT_FOUND")
    );
}

/// A log that cannot be written (stderr on `/dev/full`: every write fails with ENOSPC)
/// costs log lines, not the edge: it serves, then stops cleanly on SIGTERM. (The fault
/// suite found a full disk aborting the edges and the worker at their first log line.)
#[test]
fn a_log_that_cannot_be_written_does_not_stop_the_edge() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .env("EDGE_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", "off")
        .env("EDGE_THREADS", "1")
        .env("EDGE_LOG", "debug")
        .env_remove("DATABASE_URL")
        .stderr(full)
        .spawn()
        .expect("spawn edge");
    let deadline = Instant::now() + support::WAIT;
    let stream = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("the edge died with its log unwritable: {status}");
        }
        if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break stream;
        }
        assert!(Instant::now() < deadline, "the edge never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    stream
        .set_read_timeout(Some(support::WAIT))
        .expect("timeout");
    let mut c = support::Client::from(stream);
    for _ in 0..3 {
        assert_eq!(c.request(&support::get("/public/health")).status, 200);
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    drop(c);
    let deadline = Instant::now() + support::WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "after SIGTERM: {status}");
}
