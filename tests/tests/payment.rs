//! The payment provider's approval callback (`PAYMENT_MODE=provider`, issue 18 §1),
//! through the real edge and worker: a buyer whose payment is authorized then captured
//! gets the seat; one whose payment failed, and one who never paid within
//! `PAYMENT_TIMEOUT_MS`, end `REJECTED` with their seats free for the next buyer. The
//! signature's refusals and a replayed callback have their own test, and the payment
//! loop's exactly-once moves under concurrent workers theirs.

use std::time::{Duration, Instant};

use codec::payment::sign;
use e2e::{
    drop_event, env, listening_addr, scrape, seed_open, unique_event, Http, Proc, Response, WAIT,
};
use serde_json::{json, Value};

const SECRET: &str = "e2e-payment-webhook-secret-0123456789";
const PREVIOUS: &str = "e2e-payment-webhook-secret-previous-01";
/// Long enough for a callback to arrive first on a busy machine, short for a test.
const TIMEOUT_MS: u64 = 6_000;

fn edge_env(mode: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EDGE_ADDR", "127.0.0.1:0".into()),
        ("EDGE_THREADS", "1".into()),
        ("REDIS_URL", env("REDIS_URL")),
        ("ROOM_TOKEN_SECRET", "e2e-tests".into()),
        ("PUBLIC_CACHE_MS", "1".into()),
        ("DATABASE_URL", env("DATABASE_URL")),
        ("PAYMENT_MODE", mode.into()),
        ("PAYMENT_WEBHOOK_SECRET", SECRET.into()),
        ("PAYMENT_WEBHOOK_SECRET_PREVIOUS", PREVIOUS.into()),
        ("PAYMENT_TIMEOUT_MS", TIMEOUT_MS.to_string()),
    ]
}

fn worker_env(event: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", env("REDIS_URL")),
        ("DATABASE_URL", env("DATABASE_URL")),
        ("WORKER_CONCURRENCY", "2".into()),
        ("WORKER_BLOCK_MS", "100".into()),
        ("WORKER_EVENTS", event.into()),
        ("PAYMENT_MODE", "provider".into()),
        ("PAYMENT_TIMEOUT_MS", TIMEOUT_MS.to_string()),
        ("PAYMENT_POLL_MS", "50".into()),
    ]
}

fn seed_event(event: &str) {
    seed_open(event, &[]);
}

fn now_ms() -> u64 {
    codec::now_ms()
}

/// The provider's call: `body` signed with `secret` at `t_ms`.
fn callback_signed(http: &Http, body: &Value, secret: &str, t_ms: u64) -> Response {
    // `Http::request` sends `body.to_string()`: the bytes signed here.
    let header = sign(&[secret.as_bytes()], t_ms, body.to_string().as_bytes());
    http.request(
        "POST",
        "/confirm/payment-callback",
        &[("Payment-Signature", &header)],
        Some(body),
    )
}

fn callback(
    http: &Http,
    event: &str,
    intent: &str,
    provider_event: &str,
    status: &str,
) -> Response {
    let body = json!({"providerEventId": provider_event, "eventId": event,
        "intentId": intent, "paymentId": format!("pay-{intent}"), "status": status});
    callback_signed(http, &body, SECRET, now_ms())
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

fn hold(http: &Http, token: &str, event: &str, seat: &str) -> Response {
    http.request(
        "POST",
        "/public/hold",
        &[("x-room-token", token)],
        Some(&json!({"eventId": event, "seatId": seat})),
    )
}

/// A buyer who holds `seat`, has an intent for it and committed: (token, intent id,
/// status location).
fn commit(http: &Http, event: &str, user: &str, seat: &str) -> (String, String, String) {
    let token = enter(http, event, user);
    let held = hold(http, &token, event, seat);
    assert_eq!(held.status, 201, "hold: {:?}", held.json());
    let intent = http.request(
        "POST",
        "/confirm/payment-intent",
        &[("x-room-token", &token), ("Idempotency-Key", "intent")],
        Some(&json!({"userId": user, "eventId": event, "seatIds": [seat]})),
    );
    assert_eq!(intent.status, 201, "intent: {:?}", intent.json());
    let intent_id = intent.json()["intentId"]
        .as_str()
        .expect("intentId")
        .to_owned();
    let commit = http.request(
        "POST",
        "/confirm/commit",
        &[("x-room-token", &token), ("Idempotency-Key", "order")],
        Some(&json!({"intentId": intent_id, "eventId": event, "seatIds": [seat], "userId": user})),
    );
    assert_eq!(commit.status, 202, "commit: {:?}", commit.json());
    let location = commit.header("location").expect("Location").to_owned();
    (token, intent_id, location)
}

/// Polls the status until `done` says so, at most [`WAIT`] past `extra`.
fn status_until(
    http: &Http,
    token: &str,
    location: &str,
    extra: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + extra + WAIT;
    loop {
        let r = http.request("GET", location, &[("x-room-token", token)], None);
        assert_eq!(r.status, 200, "status: {:?}", r.json());
        let body = r.json();
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "status never got there: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An order as PostgreSQL has it: buyer, status, reason, payment status, provider
/// payment id, seats sold.
type OrderRow = (String, String, Option<String>, String, Option<String>, i64);

fn states(body: &Value) -> (&str, &str) {
    (
        body["order"]["status"].as_str().unwrap_or_default(),
        body["payment"]["status"].as_str().unwrap_or_default(),
    )
}

async fn postgres() -> tokio_postgres::Client {
    let config: tokio_postgres::Config = env("DATABASE_URL").parse().expect("DATABASE_URL");
    worker::db::connect(&config).await.expect("PostgreSQL")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn a_buyer_pays_one_fails_one_never_pays() {
    let event = unique_event("pay");
    seed_event(&event);
    let (_edge, line) = Proc::start("edge", &[], &edge_env("provider"), " listening ");
    let http = Http {
        addr: listening_addr(&line),
    };
    // (The payment loop starts with the metrics: scraped at the end.)
    let (mut worker, metrics) =
        Proc::start("worker", &["run"], &worker_env(&event), "serving metrics");

    let (alice, alice_intent, alice_at) = commit(&http, &event, "alice", "A-1");
    let (bob, bob_intent, bob_at) = commit(&http, &event, "bob", "A-2");
    let (carol, _, carol_at) = commit(&http, &event, "carol", "A-3");
    let committed = Instant::now();

    // Stored PENDING: the seat is taken, the payment awaited.
    let pending = status_until(&http, &alice, &alice_at, Duration::ZERO, |b| {
        states(b) == ("PENDING", "PENDING")
    });
    assert_eq!(pending["order"]["reason"], Value::Null);

    // Approve: AUTHORIZED, then CAPTURED confirms.
    let r = callback(&http, &event, &alice_intent, "evt-a1", "AUTHORIZED");
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"received": true, "replay": false}))
    );
    status_until(&http, &alice, &alice_at, Duration::ZERO, |b| {
        states(b) == ("PENDING", "AUTHORIZED")
    });
    let r = callback(&http, &event, &alice_intent, "evt-a2", "CAPTURED");
    assert_eq!(r.status, 200, "{:?}", r.json());
    let confirmed = status_until(&http, &alice, &alice_at, Duration::ZERO, |b| {
        states(b).0 != "PENDING"
    });
    assert_eq!(states(&confirmed), ("CONFIRMED", "CAPTURED"));
    assert_eq!(confirmed["order"]["reason"], Value::Null);
    // A late AUTHORIZED moves nothing back.
    assert_eq!(
        callback(&http, &event, &alice_intent, "evt-a0", "AUTHORIZED").status,
        200
    );

    // Fail: REJECTED, the seat free again.
    assert_eq!(
        callback(&http, &event, &bob_intent, "evt-b1", "FAILED").status,
        200
    );
    let failed = status_until(&http, &bob, &bob_at, Duration::ZERO, |b| {
        states(b).0 != "PENDING"
    });
    assert_eq!(states(&failed), ("REJECTED", "FAILED"));
    assert_eq!(failed["order"]["reason"], "PAYMENT_FAILED");

    // Never paid: REJECTED once PAYMENT_TIMEOUT_MS has passed, and not before.
    let timed_out = status_until(
        &http,
        &carol,
        &carol_at,
        Duration::from_millis(TIMEOUT_MS),
        |b| states(b).0 != "PENDING",
    );
    assert!(
        committed.elapsed() >= Duration::from_millis(TIMEOUT_MS - 1_000),
        "rejected after {:?}, before its timeout",
        committed.elapsed()
    );
    assert_eq!(states(&timed_out), ("REJECTED", "VOIDED"));
    assert_eq!(timed_out["order"]["reason"], "PAYMENT_TIMEOUT");
    // Alice's late callback was recorded and ignored; she stays confirmed.
    let again = http.request("GET", &alice_at, &[("x-room-token", &alice)], None);
    assert_eq!(states(&again.json()), ("CONFIRMED", "CAPTURED"));

    // The next buyer gets the freed seats, not the sold one.
    let dave = enter(&http, &event, "dave");
    let sold = hold(&http, &dave, &event, "A-1");
    assert_eq!(
        (sold.status, sold.json()["error"]["code"].clone()),
        (409, json!("SEAT_SOLD"))
    );
    assert_eq!(hold(&http, &dave, &event, "A-2").status, 201);
    assert_eq!(hold(&http, &dave, &event, "A-3").status, 201);

    // PostgreSQL agrees, and every callback was applied or ignored, once.
    block_on(async {
        let pg = postgres().await;
        let rows = pg
            .query(
                "SELECT o.user_id, o.status, o.reason, p.status, p.provider_payment_id,
                        (SELECT count(*) FROM sold_seats s WHERE s.order_id = o.order_id)
                   FROM orders o JOIN payments p USING (order_id)
                  WHERE o.event_id = $1 ORDER BY o.user_id",
                &[&event],
            )
            .await
            .expect("orders");
        let got: Vec<OrderRow> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        let own = |s: &str| s.to_owned();
        assert_eq!(
            got,
            [
                (
                    own("alice"),
                    own("CONFIRMED"),
                    None,
                    own("CAPTURED"),
                    Some(format!("pay-{alice_intent}")),
                    1
                ),
                (
                    own("bob"),
                    own("REJECTED"),
                    Some(own("PAYMENT_FAILED")),
                    own("FAILED"),
                    Some(format!("pay-{bob_intent}")),
                    0
                ),
                (
                    own("carol"),
                    own("REJECTED"),
                    Some(own("PAYMENT_TIMEOUT")),
                    own("VOIDED"),
                    None,
                    0
                ),
            ]
        );
        let callbacks = pg
            .query(
                "SELECT provider_event_id, outcome FROM payment_callbacks
                  WHERE event_id = $1 ORDER BY provider_event_id",
                &[&event],
            )
            .await
            .expect("callbacks");
        let outcomes: Vec<(String, Option<String>)> =
            callbacks.iter().map(|r| (r.get(0), r.get(1))).collect();
        let applied = |id: &str, o: &str| (id.to_owned(), Some(o.to_owned()));
        assert_eq!(
            outcomes,
            [
                applied("evt-a0", "IGNORED"),
                applied("evt-a1", "APPLIED"),
                applied("evt-a2", "APPLIED"),
                applied("evt-b1", "APPLIED"),
            ]
        );
    });

    // The worker counted each move once, as it made it (its payment loop keeps to
    // this event: WORKER_EVENTS).
    let text = scrape(&metrics);
    let counts: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| l.starts_with("maxtps_worker_payment"))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(
        counts,
        [
            (r#"maxtps_worker_payments_total{outcome="authorized"}"#, "1"),
            (r#"maxtps_worker_payments_total{outcome="captured"}"#, "1"),
            (r#"maxtps_worker_payments_total{outcome="failed"}"#, "1"),
            (r#"maxtps_worker_payments_total{outcome="timed_out"}"#, "1"),
            (
                r#"maxtps_worker_payment_callbacks_total{outcome="applied"}"#,
                "3"
            ),
            (
                r#"maxtps_worker_payment_callbacks_total{outcome="ignored"}"#,
                "1"
            ),
        ]
    );

    assert!(
        worker.terminate().success(),
        "the worker exits 0 on SIGTERM"
    );
    block_on(drop_event(&event));
}

#[test]
fn a_callback_must_be_signed_and_a_replay_changes_nothing() {
    let event = unique_event("paysig");
    seed_event(&event);
    let (_edge, line) = Proc::start("edge", &[], &edge_env("provider"), " listening ");
    let http = Http {
        addr: listening_addr(&line),
    };
    let body = json!({"providerEventId": "evt-sig-1", "eventId": event,
        "intentId": "0123456789abcdef", "paymentId": "pay-1", "status": "CAPTURED"});
    let refused = |r: Response, status: u16, code: &str| {
        assert_eq!(
            (
                r.status,
                r.json()["error"]["code"].as_str().map(str::to_owned)
            ),
            (status, Some(code.to_owned())),
            "{:?}",
            r.json()
        );
    };
    let now = now_ms();
    let path = "/confirm/payment-callback";
    refused(
        http.request("POST", path, &[], Some(&body)),
        401,
        "SIGNATURE_MISSING",
    );
    refused(
        callback_signed(&http, &body, "some-other-secret-of-32-bytes-or-more", now),
        401,
        "SIGNATURE_INVALID",
    );
    refused(
        http.request(
            "POST",
            path,
            &[("Payment-Signature", "t=1,v1=00")],
            Some(&body),
        ),
        401,
        "SIGNATURE_INVALID",
    );
    refused(
        callback_signed(&http, &body, SECRET, now - 301_000),
        401,
        "SIGNATURE_EXPIRED",
    );
    // A signature for another body.
    let header = sign(&[SECRET.as_bytes()], now, b"{}");
    refused(
        http.request("POST", path, &[("Payment-Signature", &header)], Some(&body)),
        401,
        "SIGNATURE_INVALID",
    );
    // Signed, but not a callback.
    let mut bad = body.clone();
    bad["status"] = json!("REFUNDED");
    refused(
        callback_signed(&http, &bad, SECRET, now),
        400,
        "INVALID_FIELD",
    );
    bad["status"] = json!("CAPTURED");
    bad["providerEventId"] = json!("evt with spaces");
    refused(
        callback_signed(&http, &bad, SECRET, now),
        400,
        "INVALID_FIELD",
    );
    let mut huge = body.clone();
    huge["padding"] = json!("x".repeat(codec::payment::CALLBACK_MAX_BYTES));
    refused(
        callback_signed(&http, &huge, SECRET, now),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    let get = http.request("GET", path, &[], None);
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));
    // Nothing refused was recorded.
    let recorded = || {
        block_on(async {
            postgres()
                .await
                .query(
                    "SELECT provider_event_id, status FROM payment_callbacks
                      WHERE event_id = $1 ORDER BY provider_event_id",
                    &[&event],
                )
                .await
                .expect("callbacks")
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(recorded(), []);

    // Signed with the previous secret (a rotation in progress): accepted.
    let first = callback_signed(&http, &body, PREVIOUS, now);
    assert_eq!(
        (first.status, first.json()),
        (200, json!({"received": true, "replay": false}))
    );
    assert_eq!(first.header("x-idempotent-replay"), None);
    // The provider retries (a new timestamp), then sends the id again with another
    // status: each answered 200 as a replay, and the first stays the one recorded.
    let retry = callback_signed(&http, &body, SECRET, now_ms());
    assert_eq!(
        (retry.status, retry.json()),
        (200, json!({"received": true, "replay": true}))
    );
    assert_eq!(retry.header("x-idempotent-replay"), Some("true"));
    let mut other = body.clone();
    other["status"] = json!("FAILED");
    let other = callback_signed(&http, &other, SECRET, now_ms());
    assert_eq!(
        (other.status, other.json()["replay"].clone()),
        (200, json!(true))
    );
    assert_eq!(
        recorded(),
        [("evt-sig-1".to_owned(), "CAPTURED".to_owned())]
    );

    // No part of a callback is in Redis: an edge that cannot reach Redis at all still
    // records one, so a crash of Redis cannot lose an accepted callback.
    let mut no_redis = edge_env("provider");
    no_redis.retain(|(k, _)| *k != "REDIS_URL");
    no_redis.push(("REDIS_URL", "redis://127.0.0.1:9".into()));
    no_redis.push(("REDIS_TIMEOUT_MS", "200".into()));
    let (_no_redis, line) = Proc::start("edge", &[], &no_redis, " listening ");
    let lone = Http {
        addr: listening_addr(&line),
    };
    let health = lone.request("GET", "/public/health", &[], None);
    assert_eq!(health.status, 503, "Redis is away: {:?}", health.json());
    let mut second = body.clone();
    second["providerEventId"] = json!("evt-sig-2");
    let kept = callback_signed(&lone, &second, SECRET, now_ms());
    assert_eq!(
        (kept.status, kept.json()),
        (200, json!({"received": true, "replay": false}))
    );
    assert_eq!(
        recorded(),
        [
            ("evt-sig-1".to_owned(), "CAPTURED".to_owned()),
            ("evt-sig-2".to_owned(), "CAPTURED".to_owned())
        ]
    );

    // With PAYMENT_MODE=instant there is no callback route.
    let (_instant, line) = Proc::start("edge", &[], &edge_env("instant"), " listening ");
    let instant = Http {
        addr: listening_addr(&line),
    };
    refused(
        callback_signed(&instant, &body, SECRET, now_ms()),
        404,
        "NOT_FOUND",
    );

    block_on(drop_event(&event));
}

/// Eight payment loops at once (as eight workers would run them) over one order past
/// due and one captured callback: each is moved exactly once.
#[test]
fn concurrent_payment_loops_move_each_payment_once() {
    let event = unique_event("payonce");
    seed_event(&event);
    block_on(async {
        let pg = postgres().await;
        let mut orders = Vec::new();
        for (user, seat) in [("late", "A-5"), ("paid", "A-6")] {
            let row = pg
                .query_one(
                    "WITH o AS (
                        INSERT INTO orders (idem, user_id, event_id, intent_id, seat_ids, amount, currency, status)
                        VALUES ('order', $2, $1, $2 || '-intent', ARRAY[$3], 50000, 'KRW', 'PENDING')
                        RETURNING order_id),
                     s AS (INSERT INTO sold_seats (event_id, seat_id, order_id) SELECT $1, $3, order_id FROM o)
                     INSERT INTO payments (order_id, status, amount, currency, intent_id, due_at, hold_ids)
                     SELECT order_id, 'PENDING', 50000, 'KRW', $2 || '-intent',
                            CASE WHEN $2 = 'late' THEN now() - interval '1 second' ELSE now() + interval '1 hour' END,
                            ARRAY['h1']
                       FROM o RETURNING order_id",
                    &[&event, &user, &seat],
                )
                .await
                .expect("order");
            orders.push(row.get::<_, i64>(0));
        }
        pg.execute(
            "INSERT INTO payment_callbacks (provider_event_id, event_id, intent_id, payment_id, status)
             VALUES ($2, $1, 'paid-intent', 'pay-once', 'CAPTURED')",
            &[&event, &format!("evt-once-{event}")],
        )
        .await
        .expect("callback");

        // Connected first, so the eight transactions run at once.
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(postgres().await);
        }
        let loops: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let events = [event.clone()];
                tokio::spawn(async move {
                    worker::payment::settle(&mut client, Some(&events[..]))
                        .await
                        .expect("settle")
                })
            })
            .collect();
        let mut total = worker::metrics::Settled::default();
        for done in loops {
            total += done.await.expect("joined");
        }
        assert_eq!(
            total,
            worker::metrics::Settled {
                captured: 1,
                timed_out: 1,
                ..Default::default()
            }
        );
        let rows = pg
            .query(
                "SELECT o.user_id, o.status, o.reason, p.status, p.projected,
                        (SELECT count(*) FROM sold_seats s WHERE s.order_id = o.order_id)
                   FROM orders o JOIN payments p USING (order_id)
                  WHERE o.order_id = ANY($1) ORDER BY o.user_id",
                &[&orders],
            )
            .await
            .expect("orders");
        let got: Vec<(String, String, Option<String>, String, bool, i64)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        let own = |s: &str| s.to_owned();
        assert_eq!(
            got,
            [
                (
                    own("late"),
                    own("REJECTED"),
                    Some(own("PAYMENT_TIMEOUT")),
                    own("VOIDED"),
                    false,
                    0
                ),
                (
                    own("paid"),
                    own("CONFIRMED"),
                    None,
                    own("CAPTURED"),
                    false,
                    1
                ),
            ]
        );
        // Nothing more to do for anyone.
        let mut client = postgres().await;
        assert_eq!(
            worker::payment::settle(&mut client, Some(&[event.clone()][..]))
                .await
                .expect("settle"),
            worker::metrics::Settled::default()
        );
    });
    block_on(drop_event(&event));
}
