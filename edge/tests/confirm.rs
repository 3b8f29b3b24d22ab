//! `/confirm/*` through HTTP against the real edge and the shared Redis: the
//! idempotency matrix, intent and commit checks, the commit message on the stream,
//! order status.

mod support;

use std::collections::HashSet;

use codec::contract::CommitMessage;
use serde_json::{json, Value};
use support::{
    now_ms, redis_server::RedisServer, seed_event, unique_event, Client, Edge, Response,
};

fn edge(extra: &[(&str, &str)]) -> Edge {
    let mut env = vec![("ROOM_TOKEN_SECRET", "confirm-tests")];
    env.extend_from_slice(extra);
    Edge::start(&env)
}

/// An open event, a buyer with a token and holds on `seats`; returns (event, token, hold ids).
fn buyer_with_holds(c: &mut Client, user: &str, seats: &[&str]) -> (String, String, Vec<String>) {
    let event = unique_event("cf");
    seed_event(
        &event,
        &[("A", 100, 70_000), ("B", 100, 40_000)],
        0,
        1_000_000,
    );
    let token = c.enter(&event, user);
    let holds = seats
        .iter()
        .map(|seat| {
            let r = c.post(
                "/public/hold",
                Some(&token),
                &json!({"eventId": event, "seatId": seat}),
            );
            assert_eq!(r.status, 201, "hold {seat}");
            r.json()["holdId"].as_str().expect("holdId").to_owned()
        })
        .collect();
    (event, token, holds)
}

fn post_idem(c: &mut Client, path: &str, token: &str, key: Option<&str>, body: &Value) -> Response {
    let body = body.to_string();
    let key = key
        .map(|k| format!("Idempotency-Key: {k}\r\n"))
        .unwrap_or_default();
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nx-room-token: {token}\r\n{key}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.request(raw.as_bytes())
}

fn intent(
    c: &mut Client,
    token: &str,
    key: &str,
    user: &str,
    event: &str,
    seats: &[&str],
) -> Response {
    let body = json!({"userId": user, "eventId": event, "seatIds": seats});
    post_idem(c, "/confirm/payment-intent", token, Some(key), &body)
}

fn commit(
    c: &mut Client,
    token: &str,
    key: &str,
    user: &str,
    event: &str,
    intent_id: &str,
    seats: &[&str],
) -> Response {
    let body = json!({"intentId": intent_id, "eventId": event, "seatIds": seats, "userId": user});
    post_idem(c, "/confirm/commit", token, Some(key), &body)
}

fn code(r: &Response) -> (u16, String) {
    (r.status, r.error_code())
}

#[test]
fn payment_intent_idempotency_matrix() {
    let edge = edge(&[]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u1", &["A-1", "B-2"]);
    let first = intent(&mut c, &token, "k-1", "u1", &event, &["B-2", "A-1"]);
    assert_eq!(first.status, 201);
    assert_eq!(first.json()["amount"], 110_000);
    assert_eq!(first.json()["currency"], "KRW");
    assert_eq!(first.header("x-idempotent-replay"), None);

    // Same key, same request (seats in another order): the stored body, byte for byte.
    let replay = intent(&mut c, &token, "k-1", "u1", &event, &["A-1", "B-2"]);
    assert_eq!((replay.status, &replay.body), (200, &first.body));
    assert_eq!(replay.header("x-idempotent-replay"), Some("true"));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    let other = intent(&mut c, &token, "k-1", "u1", &event, &["A-1"]);
    assert_eq!(code(&other), (422, "IDEMPOTENCY_KEY_REUSED".into()));
    let body = json!({"userId": "u1", "eventId": event, "seatIds": ["A-1"]});
    let missing = post_idem(&mut c, "/confirm/payment-intent", &token, None, &body);
    assert_eq!(code(&missing), (400, "IDEMPOTENCY_KEY_MISSING".into()));
    let long = "k".repeat(256);
    let invalid = intent(&mut c, &token, &long, "u1", &event, &["A-1"]);
    assert_eq!(code(&invalid), (400, "IDEMPOTENCY_KEY_INVALID".into()));
    let max = "k".repeat(255);
    assert_eq!(
        intent(&mut c, &token, &max, "u1", &event, &["A-1"]).status,
        201
    );
}

#[test]
fn thirty_two_identical_intents_at_once_make_one_intent() {
    let edge = edge(&[]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u1", &["A-9"]);
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (mut c, token, event) = (edge.connect(), token.clone(), event.clone());
            std::thread::spawn(move || intent(&mut c, &token, "same-key", "u1", &event, &["A-9"]))
        })
        .collect();
    let answers: Vec<Response> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "exactly one effect");
    assert!(answers
        .iter()
        .all(|r| r.status == 201 || r.status == 200 || r.status == 409));
    let ids: HashSet<_> = answers
        .iter()
        .filter(|r| r.status != 409)
        .map(|r| r.json()["intentId"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "never two intents");
}

#[test]
fn thirty_two_identical_commits_at_once_make_one_order() {
    let edge = edge(&[]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u1", &["B-7"]);
    let first = intent(&mut c, &token, "pi", "u1", &event, &["B-7"]);
    let intent_id = first.json()["intentId"].as_str().expect("id").to_owned();
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (mut c, token, event) = (edge.connect(), token.clone(), event.clone());
            let intent_id = intent_id.clone();
            std::thread::spawn(move || {
                commit(&mut c, &token, "one", "u1", &event, &intent_id, &["B-7"])
            })
        })
        .collect();
    let answers: Vec<Response> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert!(
        answers
            .iter()
            .all(|r| r.status == 202 || code(r) == (409, "IDEMPOTENCY_IN_FLIGHT".into())),
        "{:?}",
        answers.iter().map(code).collect::<Vec<_>>()
    );
    let effects = answers
        .iter()
        .filter(|r| r.status == 202 && r.header("x-idempotent-replay").is_none())
        .count();
    assert_eq!(effects, 1, "exactly one accepted, the rest replays");
    let messages = stream_messages(&event);
    assert_eq!(messages.len(), 1, "one message enqueued");
    assert_eq!(messages[0].idem, "one");
}

#[test]
fn intents_need_this_buyers_holds() {
    let edge = edge(&[]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u1", &["A-1"]);
    let rival = c.enter(&event, "u2");
    assert_eq!(
        c.post(
            "/public/hold",
            Some(&rival),
            &json!({"eventId": event, "seatId": "A-2"})
        )
        .status,
        201
    );
    for seats in [&["A-1", "A-2"][..], &["A-3"]] {
        let r = intent(
            &mut c,
            &token,
            &format!("k-{}", seats.len()),
            "u1",
            &event,
            seats,
        );
        assert_eq!(code(&r), (409, "HOLD_MISMATCH".into()), "{seats:?}");
    }
    let r = intent(&mut c, &token, "k-x", "u2", &event, &["A-1"]);
    assert_eq!(code(&r), (403, "USER_MISMATCH".into()));
    let r = intent(&mut c, &token, "k-y", "u1", &event, &["A-1", "A-1"]);
    assert_eq!(code(&r), (400, "INVALID_FIELD".into()));
    // A failed attempt stores nothing: the key still works once the request is right.
    assert_eq!(
        intent(&mut c, &token, "k-1", "u1", &event, &["A-1"]).status,
        201
    );
}

/// Every message on the event's commit streams.
fn stream_messages(event: &str) -> Vec<CommitMessage> {
    (0..4)
        .flat_map(|shard| {
            let raw = support::redis(&[
                "XRANGE",
                &format!("ev:{{{event}}}:commits:{shard}"),
                "-",
                "+",
            ]);
            raw.lines()
                .filter(|l| l.starts_with('{'))
                .map(|l| serde_json::from_str(l).expect("a CommitMessage"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn commit_enqueues_the_message_and_records_the_order_pending() {
    let edge = edge(&[]);
    let mut c = edge.connect();
    let (event, token, holds) = buyer_with_holds(&mut c, "buyer:1", &["A-5", "B-7"]);
    let created = intent(&mut c, &token, "i-1", "buyer:1", &event, &["A-5", "B-7"]).json();
    let intent_id = created["intentId"].as_str().expect("intentId").to_owned();
    let before = now_ms();
    let r = commit(
        &mut c,
        &token,
        "order:1/x?y",
        "buyer:1",
        &event,
        &intent_id,
        &["B-7", "A-5"],
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        r.json(),
        json!({"idem": "order:1/x?y", "status": "PENDING"})
    );
    assert_eq!(
        r.header("location"),
        Some("/confirm/status?idem=order%3A1%2Fx%3Fy")
    );

    let messages = stream_messages(&event);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(
        (before..before + 10_000).contains(&m.accepted_at),
        "acceptedAt {}",
        m.accepted_at
    );
    assert_eq!(
        m,
        &CommitMessage {
            v: 1,
            idem: "order:1/x?y".into(),
            intent_id: intent_id.clone(),
            event_id: event.clone(),
            user_id: "buyer:1".into(),
            seat_ids: vec!["A-5".into(), "B-7".into()],
            hold_ids: holds,
            amount: 110_000,
            currency: "KRW".into(),
            accepted_at: m.accepted_at,
        }
    );

    let status = c.get_with(
        "/confirm/status?idem=order%3A1%2Fx%3Fy",
        &format!("x-room-token: {token}\r\n"),
    );
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["order"]["status"], "PENDING");
    assert_eq!(status.json()["order"]["seatIds"], json!(["A-5", "B-7"]));
    assert_eq!(
        status.json()["payment"],
        json!({"status": "PENDING", "amount": 110000, "currency": "KRW"})
    );
    assert_eq!(status.header("cache-control"), Some("no-cache"));
    let etag = status.header("etag").expect("etag").to_owned();
    let again = c.get_with(
        "/confirm/status?idem=order%3A1%2Fx%3Fy",
        &format!("x-room-token: {token}\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(again.status, 304);

    let replay = commit(
        &mut c,
        &token,
        "order:1/x?y",
        "buyer:1",
        &event,
        &intent_id,
        &["A-5", "B-7"],
    );
    assert_eq!((replay.status, &replay.body), (202, &r.body));
    assert_eq!(replay.header("x-idempotent-replay"), Some("true"));
    assert_eq!(
        stream_messages(&event).len(),
        1,
        "a replay enqueues nothing"
    );
    let other = commit(
        &mut c,
        &token,
        "order:1/x?y",
        "buyer:1",
        &event,
        &intent_id,
        &["A-5"],
    );
    assert_eq!(code(&other), (422, "IDEMPOTENCY_KEY_REUSED".into()));
}

/// A reused Idempotency-Key is 422 whatever else is wrong with the new body: a seat
/// that does not exist, another event, another user, an id no intent has.
#[test]
fn a_reused_key_is_refused_before_the_body_is_checked() {
    let edge = edge(&[]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u9", &["A-1"]);
    let first = intent(&mut c, &token, "k-9", "u9", &event, &["A-1"]);
    assert_eq!(first.status, 201);
    let intent_id = first.json()["intentId"].as_str().expect("id").to_owned();
    let done = commit(&mut c, &token, "c-9", "u9", &event, &intent_id, &["A-1"]);
    assert_eq!(done.status, 202);

    for (what, seats, ev, user) in [
        ("no such seat", &["A-999"][..], event.as_str(), "u9"),
        ("another event", &["A-1"][..], "elsewhere", "u9"),
        ("another user", &["A-1"][..], event.as_str(), "u10"),
    ] {
        let r = intent(&mut c, &token, "k-9", user, ev, seats);
        assert_eq!(
            code(&r),
            (422, "IDEMPOTENCY_KEY_REUSED".into()),
            "intent, {what}"
        );
        let r = commit(&mut c, &token, "c-9", user, ev, &intent_id, seats);
        assert_eq!(
            code(&r),
            (422, "IDEMPOTENCY_KEY_REUSED".into()),
            "commit, {what}"
        );
    }
    let r = commit(&mut c, &token, "c-9", "u9", &event, "no such id!", &["A-1"]);
    assert_eq!(
        code(&r),
        (422, "IDEMPOTENCY_KEY_REUSED".into()),
        "commit, bad intent id"
    );
    // A fresh key with the same faults gets the faults' own answers.
    let r = intent(&mut c, &token, "k-10", "u9", &event, &["A-999"]);
    assert_eq!(code(&r), (404, "SEAT_NOT_FOUND".into()));
    let r = intent(&mut c, &token, "k-10", "u9", "elsewhere", &["A-1"]);
    assert_eq!(code(&r), (401, "TOKEN_WRONG_EVENT".into()));
    let r = commit(
        &mut c,
        &token,
        "c-10",
        "u9",
        &event,
        "no such id!",
        &["A-1"],
    );
    assert_eq!(code(&r), (404, "INTENT_NOT_FOUND".into()));
}

#[test]
fn commit_checks_the_intent() {
    let edge = edge(&[]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u1", &["A-1", "A-2"]);
    let intent_id = intent(&mut c, &token, "i", "u1", &event, &["A-1"]).json()["intentId"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = commit(
        &mut c,
        &token,
        "c1",
        "u1",
        &event,
        "0123456789abcdef",
        &["A-1"],
    );
    assert_eq!(code(&r), (404, "INTENT_NOT_FOUND".into()));
    let r = commit(&mut c, &token, "c2", "u1", &event, &intent_id, &["A-2"]);
    assert_eq!(code(&r), (409, "INTENT_MISMATCH".into()));
    let other = c.enter(&event, "u2");
    let r = commit(&mut c, &other, "c3", "u2", &event, &intent_id, &["A-1"]);
    assert_eq!(
        code(&r),
        (409, "INTENT_MISMATCH".into()),
        "another buyer's intent"
    );
    assert!(stream_messages(&event).is_empty());
}

#[test]
fn an_intent_expires_with_its_holds() {
    let edge = edge(&[("HOLD_TTL_MS", "400")]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u1", &["A-1"]);
    let created = intent(&mut c, &token, "i", "u1", &event, &["A-1"]).json();
    let expires_at = created["expiresAt"].as_u64().expect("expiresAt");
    assert!(expires_at <= now_ms() + 400);
    // The behaviour under test is the passing of time itself.
    std::thread::sleep(std::time::Duration::from_millis(
        expires_at.saturating_sub(now_ms()) + 50,
    ));
    let intent_id = created["intentId"].as_str().expect("id");
    let r = commit(&mut c, &token, "c", "u1", &event, intent_id, &["A-1"]);
    assert_eq!(code(&r), (410, "INTENT_EXPIRED".into()));
}

#[test]
fn a_failed_enqueue_frees_the_key_for_a_retry() {
    let edge = edge(&[("COMMIT_SHARDS", "1")]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u1", &["A-1"]);
    let intent_id = intent(&mut c, &token, "i", "u1", &event, &["A-1"]).json()["intentId"]
        .as_str()
        .expect("id")
        .to_owned();
    // A broken queue: the stream's key holds a string, so XADD fails inside the script.
    // That is damage, not a passing state (a full Redis is 503: the next test), so 500.
    let stream = format!("ev:{{{event}}}:commits:0");
    support::redis(&["SET", &stream, "not a stream"]);
    let r = commit(&mut c, &token, "c", "u1", &event, &intent_id, &["A-1"]);
    assert_eq!(code(&r), (500, "INTERNAL".into()));
    let status = c.get_with(
        "/confirm/status?idem=c",
        &format!("x-room-token: {token}\r\n"),
    );
    assert_eq!(
        code(&status),
        (404, "ORDER_NOT_FOUND".into()),
        "nothing recorded"
    );
    support::redis(&["DEL", &stream]);
    let retry = commit(&mut c, &token, "c", "u1", &event, &intent_id, &["A-1"]);
    assert_eq!(
        (retry.status, retry.header("x-idempotent-replay")),
        (202, None)
    );
    assert_eq!(stream_messages(&event).len(), 1);
}

/// The streams path's enqueue refused because Redis cannot write now (here it was
/// demoted to a replica, as an old primary is after a failover: READONLY) is a 503 with
/// `Retry-After`, as the SQS path's failed send is; nothing is recorded, and the retry
/// once Redis writes again commits. (A full Redis, `maxmemory` reached, does not refuse
/// a commit: the script's first write is a PEXPIRE, which may run out of memory, and a
/// script that has written is let finish. Holds, whose first write is a SET, get 503.)
#[test]
fn a_redis_that_cannot_write_refuses_a_commit_with_503_and_records_nothing() {
    let redis = RedisServer::start(&[]);
    let event = unique_event("readonly");
    let addr = format!("127.0.0.1:{}", redis.port);
    support::seed_event_at(&addr, &event, &[("A", 10, 100)], 0, 1_000_000);
    let url = redis.url();
    let edge = edge(&[
        ("REDIS_URL", url.as_str()),
        ("EDGE_THREADS", "1"),
        ("COMMIT_SHARDS", "1"),
    ]);
    let mut c = edge.connect();
    let token = c.enter(&event, "u1");
    let held = c.post(
        "/public/hold",
        Some(&token),
        &json!({"eventId": event, "seatId": "A-1"}),
    );
    assert_eq!(held.status, 201);
    let intent_id = intent(&mut c, &token, "i", "u1", &event, &["A-1"]).json()["intentId"]
        .as_str()
        .expect("id")
        .to_owned();
    // A primary nobody listens on: the data stays, writes are refused.
    assert_eq!(redis.raw("REPLICAOF 127.0.0.1 1"), "+OK\r\n");
    let r = commit(&mut c, &token, "c", "u1", &event, &intent_id, &["A-1"]);
    assert_eq!(code(&r), (503, "UNAVAILABLE".into()));
    assert_eq!(r.header("retry-after"), Some("1"));
    let status = c.get_with(
        "/confirm/status?idem=c",
        &format!("x-room-token: {token}\r\n"),
    );
    assert_eq!(code(&status), (404, "ORDER_NOT_FOUND".into()));
    let stream = format!("XLEN ev:{{{event}}}:commits:0");
    assert_eq!(redis.raw(&stream), ":0\r\n", "nothing enqueued");

    assert_eq!(redis.raw("REPLICAOF NO ONE"), "+OK\r\n");
    let retry = commit(&mut c, &token, "c", "u1", &event, &intent_id, &["A-1"]);
    assert_eq!(
        (retry.status, retry.header("x-idempotent-replay")),
        (202, None)
    );
    assert_eq!(redis.raw(&stream), ":1\r\n");
}

#[test]
fn status_is_per_buyer() {
    let edge = edge(&[]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u1", &["A-1"]);
    let intent_id = intent(&mut c, &token, "i", "u1", &event, &["A-1"]).json()["intentId"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        commit(&mut c, &token, "mine", "u1", &event, &intent_id, &["A-1"]).status,
        202
    );
    let other = c.enter(&event, "u2");
    let r = c.get_with(
        "/confirm/status?idem=mine",
        &format!("x-room-token: {other}\r\n"),
    );
    assert_eq!(
        code(&r),
        (404, "ORDER_NOT_FOUND".into()),
        "another buyer cannot read it"
    );
    let r = c.get_with(
        "/confirm/status?idem=never",
        &format!("x-room-token: {token}\r\n"),
    );
    assert_eq!(code(&r), (404, "ORDER_NOT_FOUND".into()));
    let r = c.get_with("/confirm/status?idem=mine", "");
    assert_eq!(code(&r), (401, "TOKEN_MISSING".into()));
    // A key no commit can have (a control character, too long) is the request's
    // fault: 400 naming the parameter, never a 503 from the database refusing it.
    for idem in ["a%01b", "%7F", &"k".repeat(256)] {
        let r = c.get_with(
            &format!("/confirm/status?idem={idem}"),
            &format!("x-room-token: {token}\r\n"),
        );
        assert_eq!(code(&r), (400, "INVALID_FIELD".into()), "{idem}");
        let message = r.json()["error"]["message"].as_str().map(str::to_owned);
        assert!(
            message.is_some_and(|m| m.starts_with("idem must be")),
            "{idem}"
        );
    }
}

#[test]
fn status_without_a_record_and_without_postgres_is_503_not_404() {
    // Nothing listens on port 1: PostgreSQL, asked because Redis has no record, cannot
    // say whether the order exists, so the buyer is told to retry rather than "no order".
    let edge = edge(&[("DATABASE_URL", "postgres://maxtps@127.0.0.1:1/maxtps")]);
    let mut c = edge.connect();
    let (event, token, _) = buyer_with_holds(&mut c, "u1", &["A-1"]);
    let r = c.get_with(
        "/confirm/status?idem=unknown",
        &format!("x-room-token: {token}\r\n"),
    );
    assert_eq!(code(&r), (503, "UNAVAILABLE".into()), "{event}");
    assert_eq!(r.header("retry-after"), Some("1"));
    // A record in Redis still answers without PostgreSQL.
    let intent_id = intent(&mut c, &token, "i", "u1", &event, &["A-1"]).json()["intentId"]
        .as_str()
        .expect("id")
        .to_owned();
    let committed = commit(&mut c, &token, "k", "u1", &event, &intent_id, &["A-1"]);
    assert_eq!(committed.status, 202);
    let r = c.get_with(
        "/confirm/status?idem=k",
        &format!("x-room-token: {token}\r\n"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["order"]["status"], "PENDING");
}
