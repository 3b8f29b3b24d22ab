//! A `202` from `commit` means kept, in the local profile too: with the worker paused
//! (as a slow PostgreSQL would leave it), buyers commit and get `202`; Redis is killed
//! with SIGKILL and started again on its data, `worker rebuild-redis` runs, the worker
//! resumes, and every accepted commit ends final in PostgreSQL and in its status record.
//!
//! The Redis is a private one (killing the stack's would break the tests running beside
//! this one), started with the stack's own `infra/local/redis.conf`: the test proves the
//! configuration `make run` uses, and fails when that file turns the AOF off.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use e2e::{drop_event, env, listening_addr, unique_event, worker_cli, Http, Proc, WAIT};
use serde_json::json;
use worker::redis::{Conn, Frame, RedisConfig};

/// A private `redis-server`, shared with the edge's and the worker's tests.
#[path = "../../edge/tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use redis_server::RedisServer;

/// Buyers who commit while the worker is paused.
const BUYERS: usize = 16;
/// The edge's and the worker's `COMMIT_SHARDS` (their default).
const SHARDS: u32 = 4;

/// A folder of the test's own for Redis's data, removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new(event: &str) -> DataDir {
        let dir = std::env::temp_dir().join(event);
        std::fs::create_dir_all(&dir).expect("data dir");
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn idem(buyer: usize) -> String {
    format!("order-{buyer}")
}

fn user(buyer: usize) -> String {
    format!("buyer{buyer}")
}

/// Buyer `n` enters, holds seat A-n, asks for a payment intent and commits: the
/// commit's answer, and the buyer's room token.
fn buy(http: &Http, event: &str, n: usize) -> (e2e::Response, String) {
    let user = user(n);
    let seat = format!("A-{n}");
    let entered = http.request(
        "POST",
        "/public/enter",
        &[],
        Some(&json!({"userId": user, "eventId": event})),
    );
    assert_eq!(entered.status, 200, "enter: {:?}", entered.json());
    let token = entered.json()["roomToken"]
        .as_str()
        .expect("roomToken")
        .to_owned();
    let held = http.request(
        "POST",
        "/public/hold",
        &[("x-room-token", &token)],
        Some(&json!({"eventId": event, "seatId": seat})),
    );
    assert_eq!(held.status, 201, "hold {seat}: {:?}", held.json());
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
        &[("x-room-token", &token), ("Idempotency-Key", &idem(n))],
        Some(&json!({"intentId": intent_id, "eventId": event, "seatIds": [seat], "userId": user})),
    );
    (commit, token)
}

/// Entries in the event's commit streams.
async fn queued(redis: &mut Conn, event: &str) -> i64 {
    let mut total = 0;
    for shard in 0..SHARDS {
        let key = codec::keys::commits(event, shard);
        match redis.query(&[b"XLEN", key.as_bytes()]).await.expect("XLEN") {
            Frame::Integer(n) => total += n,
            other => panic!("XLEN {other:?}"),
        }
    }
    total
}

/// The order status in each buyer's status record (`None`: no record).
async fn status_records(redis: &mut Conn, event: &str) -> Vec<Option<String>> {
    let mut states = Vec::new();
    for n in 1..=BUYERS {
        let key = codec::keys::order_status(event, &user(n), &idem(n));
        let state = match redis.query(&[b"GET", key.as_bytes()]).await.expect("GET") {
            Frame::BulkString(body) => {
                let record: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                record["order"]["status"].as_str().map(str::to_owned)
            }
            Frame::Null => None,
            other => panic!("GET {key}: {other:?}"),
        };
        states.push(state);
    }
    states
}

/// Each buyer's order in PostgreSQL: (status, reason), `None` where there is none.
async fn stored_orders(event: &str) -> Vec<Option<(String, Option<String>)>> {
    let config: tokio_postgres::Config = env("DATABASE_URL").parse().expect("DATABASE_URL");
    let pg = worker::db::connect(&config).await.expect("PostgreSQL");
    let mut orders = Vec::new();
    for n in 1..=BUYERS {
        let row = pg
            .query_opt(
                "SELECT status, reason FROM orders WHERE event_id = $1 AND user_id = $2 AND idem = $3",
                &[&event, &user(n), &idem(n)],
            )
            .await
            .expect("orders");
        orders.push(row.map(|r| (r.get(0), r.get(1))));
    }
    orders
}

#[test]
fn accepted_commits_survive_a_redis_kill() {
    let event = unique_event("durable");
    let data = DataDir::new(&event);
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/local/redis.conf");
    let dir = data.0.display().to_string();
    // `--include` after the helper's defaults: the stack's file decides persistence.
    let mut redis = RedisServer::start(&["--include", conf, "--dir", &dir]);
    let url = redis.url();
    let redis_config = RedisConfig::from_url(&url).expect("url");
    worker_cli(&url, &["migrate"]);
    worker_cli(
        &url,
        &[
            "seed",
            &event,
            "--sections",
            "A",
            "--seats-per-section",
            &BUYERS.to_string(),
            "--price",
            "1000",
            "--open-in-secs",
            "-60",
            "--rate",
            "1000000",
        ],
    );

    let edge_env = vec![
        ("EDGE_ADDR", "127.0.0.1:0".to_owned()),
        ("EDGE_THREADS", "1".into()),
        ("REDIS_URL", url.clone()),
        ("ROOM_TOKEN_SECRET", "e2e-tests".into()),
        ("DATABASE_URL", env("DATABASE_URL")),
    ];
    let (_edge, line) = Proc::start("edge", &[], &edge_env, " listening ");
    let http = Http {
        addr: listening_addr(&line),
    };
    let worker_env = vec![
        ("REDIS_URL", url.clone()),
        ("DATABASE_URL", env("DATABASE_URL")),
        ("WORKER_EVENTS", event.clone()),
        ("WORKER_CONCURRENCY", "2".into()),
        ("WORKER_BLOCK_MS", "100".into()),
        // Entries handed to the paused consumer before the kill are claimed this soon.
        ("WORKER_VISIBILITY_MS", "1000".into()),
    ];
    let (mut worker, _) = Proc::start("worker", &["run"], &worker_env, "consuming Redis Streams");
    worker.signal("STOP");

    // Buyers at once, so their commits share the edge's Redis writes.
    let answers: Vec<(usize, e2e::Response, String)> = std::thread::scope(|s| {
        let buyers: Vec<_> = (1..=BUYERS)
            .map(|n| {
                let (http, event) = (&http, &event);
                s.spawn(move || {
                    let (commit, token) = buy(http, event, n);
                    (n, commit, token)
                })
            })
            .collect();
        buyers
            .into_iter()
            .map(|b| b.join().expect("buyer"))
            .collect()
    });
    for (n, commit, _) in &answers {
        assert_eq!(commit.status, 202, "buyer {n}: {:?}", commit.json());
    }
    // Accepted, and only in Redis: nothing reached PostgreSQL.
    assert_eq!(block_on(stored_orders(&event)), vec![None; BUYERS]);
    let pending = block_on(async {
        let mut conn = Conn::connect(&redis_config).await.expect("Redis");
        (
            queued(&mut conn, &event).await,
            status_records(&mut conn, &event).await,
        )
    });
    assert_eq!(
        pending,
        (BUYERS as i64, vec![Some("PENDING".to_owned()); BUYERS])
    );

    redis.kill();
    redis.restart();
    // It answers -LOADING until its data is read back.
    let deadline = Instant::now() + WAIT;
    while !redis.raw("PING").starts_with("+PONG") {
        assert!(Instant::now() < deadline, "Redis never finished loading");
        std::thread::sleep(Duration::from_millis(10));
    }
    worker_cli(&url, &["rebuild-redis", &event]);
    worker.signal("CONT");

    // Every accepted commit ends final: in PostgreSQL, and in its status record.
    let confirmed = Some(("CONFIRMED".to_owned(), None));
    let deadline = Instant::now() + WAIT;
    loop {
        let orders = block_on(stored_orders(&event));
        if orders.iter().all(|o| o == &confirmed) {
            break;
        }
        let lost = orders.iter().filter(|o| o.is_none()).count();
        assert!(
            Instant::now() < deadline,
            "{lost} of {BUYERS} accepted commits never reached PostgreSQL after the kill: {orders:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let records = block_on(async {
        let mut conn = Conn::connect(&redis_config).await.expect("Redis");
        let deadline = Instant::now() + WAIT;
        loop {
            let records = status_records(&mut conn, &event).await;
            if records.iter().all(|r| r.as_deref() == Some("CONFIRMED"))
                || Instant::now() >= deadline
            {
                break records;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(records, vec![Some("CONFIRMED".to_owned()); BUYERS]);

    // And the buyer sees it: the edge reconnects to the restarted Redis (503 meanwhile).
    let (n, _, token) = &answers[0];
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let r = http.request(
            "GET",
            &format!("/confirm/status?idem={}", idem(*n)),
            &[("x-room-token", token)],
            None,
        );
        if r.status != 503 || Instant::now() >= deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.status, 200, "{:?}", status.json());
    assert_eq!(status.json()["order"]["status"], "CONFIRMED");

    assert!(
        worker.terminate().success(),
        "the worker exits 0 on SIGTERM"
    );
    block_on(drop_event(&event));
}
