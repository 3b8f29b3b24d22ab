//! A buyer's whole journey through the running system, in both profiles: enter ->
//! hold -> payment intent -> commit -> the worker stores the order -> status CONFIRMED;
//! then the seat map shows the seat sold and a second buyer's hold on it is refused.
//! With Redis's status record gone, the status comes from PostgreSQL, unchanged.

use std::time::{Duration, Instant};

use e2e::{drop_event, env, listening_addr, seed_open, unique_event, Http, Moto, Proc, WAIT};
use serde_json::{json, Value};

/// The edge's environment shared by both profiles.
fn edge_env() -> Vec<(&'static str, String)> {
    vec![
        ("EDGE_ADDR", "127.0.0.1:0".into()),
        ("EDGE_THREADS", "1".into()),
        ("REDIS_URL", env("REDIS_URL")),
        ("ROOM_TOKEN_SECRET", "e2e-tests".into()),
        ("PUBLIC_CACHE_MS", "1".into()),
        ("DATABASE_URL", env("DATABASE_URL")),
    ]
}

fn worker_env() -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", env("REDIS_URL")),
        ("DATABASE_URL", env("DATABASE_URL")),
        ("WORKER_CONCURRENCY", "2".into()),
        ("WORKER_BLOCK_MS", "100".into()),
    ]
}

/// An event of ten seats in section A, open since a minute, admitting everyone.
fn seed_event(event: &str) {
    seed_open(event, &[]);
}

fn enter(http: &Http, event: &str, user: &str) -> String {
    let r = http.request(
        "POST",
        "/public/enter",
        &[],
        Some(&json!({"userId": user, "eventId": event})),
    );
    assert_eq!(r.status, 200, "enter: {:?}", r.json());
    r.json()["roomToken"]
        .as_str()
        .expect("roomToken")
        .to_owned()
}

fn hold(http: &Http, token: &str, event: &str, seat: &str) -> e2e::Response {
    http.request(
        "POST",
        "/public/hold",
        &[("x-room-token", token)],
        Some(&json!({"eventId": event, "seatId": seat})),
    )
}

/// The seat map's state of seat `n` of section A (`A`, `H` or `S`).
fn seat_state(http: &Http, event: &str, n: usize) -> char {
    let r = http.request("GET", &format!("/public/seats/{event}"), &[], None);
    assert_eq!(r.status, 200);
    let map = r.json();
    let seats = map["sections"][0]["seats"].as_str().expect("seats");
    seats.chars().nth(n - 1).expect("seat in the map")
}

/// The journey, against an edge and a worker already running.
fn buy_a_seat(http: &Http, event: &str) {
    let token = enter(http, event, "alice");
    let held = hold(http, &token, event, "A-3");
    assert_eq!(held.status, 201, "hold: {:?}", held.json());
    assert_eq!(seat_state(http, event, 3), 'H');

    let intent = http.request(
        "POST",
        "/confirm/payment-intent",
        &[("x-room-token", &token), ("Idempotency-Key", "intent-1")],
        Some(&json!({"userId": "alice", "eventId": event, "seatIds": ["A-3"]})),
    );
    assert_eq!(intent.status, 201, "intent: {:?}", intent.json());
    let intent_id = intent.json()["intentId"]
        .as_str()
        .expect("intentId")
        .to_owned();
    assert_eq!(intent.json()["amount"], 50000);

    let commit = http.request(
        "POST",
        "/confirm/commit",
        &[("x-room-token", &token), ("Idempotency-Key", "order-1")],
        Some(&json!({"intentId": intent_id, "eventId": event, "seatIds": ["A-3"], "userId": "alice"})),
    );
    assert_eq!(commit.status, 202, "commit: {:?}", commit.json());
    let location = commit.header("location").expect("Location").to_owned();
    assert_eq!(location, "/confirm/status?idem=order-1");

    // The worker takes it from the queue to PostgreSQL and writes the final status.
    let deadline = Instant::now() + WAIT;
    let status: Value = loop {
        let r = http.request("GET", &location, &[("x-room-token", &token)], None);
        assert_eq!(r.status, 200, "status: {:?}", r.json());
        let body = r.json();
        match body["order"]["status"].as_str() {
            Some("CONFIRMED") => break body,
            Some("PENDING") => {}
            other => panic!("unexpected order status {other:?}: {body}"),
        }
        assert!(
            Instant::now() < deadline,
            "still PENDING after {WAIT:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["order"]["seatIds"], json!(["A-3"]));
    assert_eq!(status["order"]["reason"], Value::Null);
    assert_eq!(status["payment"]["status"], "CAPTURED");
    assert_eq!(status["payment"]["amount"], 50000);

    // Redis loses the status record (it expired, or Redis lost its data): the edge
    // answers from PostgreSQL, byte for byte what the worker had written, same ETag.
    let confirmed = http.request("GET", &location, &[("x-room-token", &token)], None);
    let record = codec::keys::order_status(event, "alice", "order-1");
    block_on(redis_del(&record));
    let from_db = http.request("GET", &location, &[("x-room-token", &token)], None);
    assert_eq!(
        from_db.status,
        200,
        "status from PostgreSQL: {:?}",
        from_db.json()
    );
    assert_eq!(from_db.body, confirmed.body);
    assert_eq!(from_db.header("etag"), confirmed.header("etag"));
    let never = http.request(
        "GET",
        "/confirm/status?idem=never-committed",
        &[("x-room-token", &token)],
        None,
    );
    assert_eq!(never.status, 404, "{:?}", never.json());
    assert_eq!(never.json()["error"]["code"], "ORDER_NOT_FOUND");

    // Sold: the seat map says so, and nobody can hold it any more.
    let deadline = Instant::now() + WAIT;
    while seat_state(http, event, 3) != 'S' {
        assert!(Instant::now() < deadline, "seat A-3 never shown sold");
        std::thread::sleep(Duration::from_millis(20));
    }
    let bob = enter(http, event, "bob");
    let refused = hold(http, &bob, event, "A-3");
    assert_eq!(refused.status, 409);
    assert_eq!(refused.json()["error"]["code"], "SEAT_SOLD");
    // The seats next to it still sell.
    assert_eq!(hold(http, &bob, event, "A-4").status, 201);
}

async fn redis_del(key: &str) {
    let config = worker::redis::RedisConfig::from_url(&env("REDIS_URL")).expect("REDIS_URL");
    let mut redis = worker::redis::Conn::connect(&config).await.expect("Redis");
    let deleted = redis.query(&[b"DEL", key.as_bytes()]).await.expect("DEL");
    assert_eq!(deleted, worker::redis::Frame::Integer(1), "{key} was there");
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn a_buyer_gets_a_seat_through_redis_streams() {
    let event = unique_event("local");
    seed_event(&event);
    let (_edge, line) = Proc::start("edge", &[], &edge_env(), " listening ");
    let http = Http {
        addr: listening_addr(&line),
    };
    let mut worker_env = worker_env();
    worker_env.push(("WORKER_EVENTS", event.clone()));
    let (mut worker, _) = Proc::start("worker", &["run"], &worker_env, "consuming Redis Streams");

    buy_a_seat(&http, &event);

    assert!(
        worker.terminate().success(),
        "the worker exits 0 on SIGTERM"
    );
    block_on(drop_event(&event));
}

#[test]
fn a_buyer_gets_a_seat_through_sqs() {
    let moto = Moto::start();
    let queue_url = block_on(moto.create_resources());
    let event = unique_event("aws");
    seed_event(&event);
    let aws = |mut base: Vec<(&'static str, String)>| {
        base.extend(moto.env());
        base.push(("PROFILE", "aws".into()));
        base.push(("SQS_QUEUE_URL", queue_url.clone()));
        base
    };
    let mut edge_env = aws(edge_env());
    edge_env.push(("HOLD_MIRROR_TABLE", e2e::HOLD_TABLE.into()));
    let (_edge, line) = Proc::start("edge", &[], &edge_env, " listening ");
    let http = Http {
        addr: listening_addr(&line),
    };
    let mut worker_env = aws(worker_env());
    worker_env.push(("SQS_WAIT_SECS", "1".into()));
    let (mut worker, _) = Proc::start("worker", &["run"], &worker_env, "consuming SQS");

    buy_a_seat(&http, &event);

    assert!(
        worker.terminate().success(),
        "the worker exits 0 on SIGTERM"
    );
    block_on(drop_event(&event));
}
