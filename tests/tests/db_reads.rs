//! Reads when Redis has no copy (README "Reads when Redis has no copy"): Redis is
//! flushed under load, and every `summary` and `seats` answer stays 200 with the sold
//! seats PostgreSQL holds; PostgreSQL is asked once for the event however many requests
//! miss at once (the edge's `db_reads` counter), and that one read writes the
//! projection back into Redis (catalog, admission, sold bits and sold markers).
//!
//! The Redis is a private one: flushing the stack's would break the tests beside this.

use std::{
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use e2e::{drop_event, env, listening_addr, unique_event, worker_cli, Http, Proc, WAIT};

/// A private `redis-server`, shared with the edge's tests.
#[path = "../../edge/tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use redis_server::RedisServer;

/// Readers at once, and requests each.
const READERS: usize = 16;
const READS: usize = 20;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Seats and B-1 sold in PostgreSQL, by one confirmed order.
async fn sell(event: &str) {
    let config: tokio_postgres::Config = env("DATABASE_URL").parse().expect("DATABASE_URL");
    let pg = worker::db::connect(&config).await.expect("PostgreSQL");
    let row = pg
        .query_one(
            "INSERT INTO orders (idem, user_id, event_id, intent_id, seat_ids, amount, currency, status)
             VALUES ('k1', 'u1', $1, 'i1', ARRAY['A-3', 'A-7', 'B-1'], 3000, 'KRW', 'CONFIRMED')
             RETURNING order_id",
            &[&event],
        )
        .await
        .expect("order");
    let order: i64 = row.get(0);
    for seat in ["A-3", "A-7", "B-1"] {
        pg.execute(
            "INSERT INTO sold_seats (event_id, seat_id, order_id) VALUES ($1, $2, $3)",
            &[&event, &seat, &order],
        )
        .await
        .expect("sold seat");
    }
}

/// Checks one answer: 200 and the sold seats of PostgreSQL.
fn check(path: &str, r: &e2e::Response) {
    assert_eq!(
        r.status,
        200,
        "{path}: {:?}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    if path.contains("/summary/") {
        let (sold, held) = (&body["sold"], &body["held"]);
        let want = if path.ends_with("/A") { 2 } else { 1 };
        assert_eq!(
            (sold.as_u64(), held.as_u64()),
            (Some(want), Some(0)),
            "{path}: {body}"
        );
        assert_eq!(
            body["available"].as_u64(),
            Some(10 - want),
            "{path}: {body}"
        );
    } else {
        let sections = body["sections"].as_array().expect("sections");
        let maps: Vec<&str> = sections
            .iter()
            .map(|s| s["seats"].as_str().expect("seats"))
            .collect();
        assert_eq!(maps, ["AASAAASAAA", "SAAAAAAAAA"], "{path}");
    }
}

#[test]
fn reads_after_a_flush_come_from_postgres_once_and_repair_redis() {
    let redis = RedisServer::start(&[]);
    let event = unique_event("dbreads");
    let url = redis.url();
    worker_cli(&url, &["migrate"]);
    worker_cli(
        &url,
        &[
            "seed",
            &event,
            "--sections",
            "A,B",
            "--seats-per-section",
            "10",
            "--price",
            "1000",
            "--open-in-secs",
            "-60",
        ],
    );
    block_on(sell(&event));
    let (mut edge, line) = Proc::start(
        "edge",
        &[],
        &[
            ("EDGE_ADDR", "127.0.0.1:0".into()),
            ("EDGE_THREADS", "2".into()),
            ("REDIS_URL", url.clone()),
            ("DATABASE_URL", env("DATABASE_URL")),
            // Every read after the first millisecond renders anew: none is answered by
            // a copy made before the flush.
            ("PUBLIC_CACHE_MS", "1".into()),
        ],
        " listening ",
    );
    let http = Http {
        addr: listening_addr(&line),
    };
    // Every core has its Redis connection (each answers health 200 once it has; the
    // kernel spreads new connections over the cores).
    let deadline = Instant::now() + WAIT;
    let mut ready_in_a_row = 0;
    while ready_in_a_row < 64 {
        let ready = http.request("GET", "/public/health", &[], None).status == 200;
        ready_in_a_row = if ready { ready_in_a_row + 1 } else { 0 };
        assert!(
            Instant::now() < deadline,
            "the edge's cores never all ready"
        );
    }
    let paths = [
        format!("/public/summary/{event}/A"),
        format!("/public/summary/{event}/B"),
        format!("/public/seats/{event}"),
    ];
    // Redis's copy, the seed's projection, has nothing sold: an answer with PostgreSQL's
    // sales comes from PostgreSQL. (No read before the flush: a copy in the edge's
    // cache would be served, with its age, while the first read after renders anew.)
    let bitcount = format!("BITCOUNT ev:{{{event}}}:sold:A");
    assert_eq!(redis.raw(&bitcount), ":0\r\n");

    assert_eq!(redis.raw("FLUSHALL"), "+OK\r\n");
    let start = Arc::new(Barrier::new(READERS));
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let (start, paths) = (start.clone(), paths.clone());
            std::thread::spawn(move || {
                start.wait();
                for j in 0..READS {
                    let path = &paths[(i + j) % paths.len()];
                    check(path, &http.request("GET", path, &[], None));
                }
            })
        })
        .collect();
    for reader in readers {
        reader
            .join()
            .expect("every read answered 200 with PostgreSQL's counts");
    }

    // The projection is back in Redis, as `worker rebuild-redis` writes it.
    let get = |key: &str| redis.raw(&format!("GET {key}"));
    assert!(get(&format!("ev:{{{event}}}:catalog")).contains("\"sections\""));
    assert_eq!(get(&format!("ev:{{{event}}}:hold:A:7")), "$4\r\nsold\r\n");
    assert_eq!(redis.raw(&bitcount), ":2\r\n");
    assert_eq!(
        redis.raw(&format!("GETBIT ev:{{{event}}}:sold:B 1")),
        ":1\r\n"
    );
    assert!(redis
        .raw(&format!("HGET ev:{{{event}}}:adm rate"))
        .starts_with('$'));
    // And Redis answers again: a seat sold there now shows (the edge re-reads it
    // within PUBLIC_CACHE_MS).
    redis.raw(&format!("SETBIT ev:{{{event}}}:sold:A 9 1"));
    let deadline = Instant::now() + WAIT;
    loop {
        let r = http.request("GET", &paths[0], &[], None);
        if r.json()["sold"] == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis's copy is read again: {:?}",
            r.json()
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    edge.terminate();
    let totals = edge.wait_for_line("side thread totals");
    let counter = |name: &str| -> u64 {
        totals
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {totals}"))
    };
    assert_eq!(
        (counter("db_reads"), counter("db_reads_failed")),
        (1, 0),
        "{READERS} readers missed at once, PostgreSQL was asked once: {totals}"
    );
    block_on(drop_event(&event));
}
