//! `GET /metrics` of `worker run` after a known batch: exact counts, the histograms'
//! totals, reasons, and the streams' backlog.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::eventually;

use super::support::{
    commit_message, drop_event, hold, pg, redis, seed, unique, worker_config, xadd, Running,
};

async fn scrape(addr: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        .await
        .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read to the close");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_owned()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn a_scrape_shows_what_the_consumers_did() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("metrics");
    seed(&mut pg, &mut redis, &event, &[("A", 100)]).await;
    hold(&mut redis, &event, "bob", "A-3").await;
    // alice buys A-2; bob's lose to her (SEAT_SOLD); carol buys A-7.
    for (user, seats) in [
        ("alice", &["A-2"][..]),
        ("bob", &["A-2", "A-3"]),
        ("carol", &["A-7"]),
    ] {
        xadd(
            &mut redis,
            &event,
            0,
            &commit_message(&event, user, "k", seats),
        )
        .await;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let worker = Running::start(worker_config(
        &[&event],
        &[
            ("WORKER_METRICS_ADDR", addr.as_str()),
            ("WORKER_CONCURRENCY", "1"),
        ],
    ));
    eventually!("all acked", worker.acked() == 3);

    let text = scrape(&addr).await;
    assert_eq!(value(&text, "maxtps_worker_received_total"), 3.0);
    assert_eq!(value(&text, "maxtps_worker_confirmed_total"), 2.0);
    assert_eq!(value(&text, "maxtps_worker_rejected_total"), 1.0);
    assert_eq!(value(&text, "maxtps_worker_acked_total"), 3.0);
    assert_eq!(
        value(
            &text,
            "maxtps_worker_rejected_by_reason_total{reason=\"SEAT_SOLD\"}"
        ),
        1.0
    );
    let transactions = value(&text, "maxtps_worker_transactions_total");
    assert_eq!(
        value(&text, "maxtps_worker_batch_commits_count"),
        transactions
    );
    assert_eq!(value(&text, "maxtps_worker_batch_commits_sum"), 3.0);
    assert_eq!(
        value(&text, "maxtps_worker_transaction_seconds_count"),
        transactions
    );
    assert_eq!(
        value(&text, "maxtps_worker_commit_to_final_seconds_count"),
        3.0
    );
    // The messages were accepted in 2023: every one is in the last bucket.
    assert_eq!(
        value(
            &text,
            "maxtps_worker_commit_to_final_seconds_bucket{le=\"60\"}"
        ),
        0.0
    );
    assert_eq!(value(&text, "maxtps_worker_queue_up"), 1.0);
    let stream = codec::keys::commits(&event, 0);
    for family in ["undelivered", "pending", "oldest_age_seconds"] {
        let series = format!("maxtps_worker_queue_{family}{{stream=\"{stream}\"}}");
        assert_eq!(value(&text, &series), 0.0, "{series}");
    }
    assert_eq!(value(&text, "maxtps_worker_pg_connections_in_use"), 0.0);
    // Instant payments: the payment loop's series are there, at zero.
    for series in [
        "maxtps_worker_payments_total{outcome=\"captured\"}",
        "maxtps_worker_payments_total{outcome=\"timed_out\"}",
        "maxtps_worker_payment_callbacks_total{outcome=\"applied\"}",
        "maxtps_worker_payment_callbacks_total{outcome=\"ignored\"}",
    ] {
        assert_eq!(value(&text, series), 0.0, "{series}");
    }
    // The event's line and section, as the edge's summary counts them.
    let section = |family: &str| {
        value(
            &text,
            &format!("maxtps_section_{family}{{event=\"{event}\",section=\"A\"}}"),
        )
    };
    assert_eq!(
        (section("seats"), section("sold"), section("held")),
        (100.0, 2.0, 0.0),
        "A-2 and A-7 sold; bob's hold on A-3 released with his REJECTED order"
    );
    assert_eq!(
        value(&text, &format!("maxtps_event_entered{{event=\"{event}\"}}")),
        0.0
    );

    worker.stop().await;
    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn the_line_is_counted_as_the_edges_admit_it() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("mline");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    // Ten places handed out; five admitted for good (rate 0 since a change that had
    // admitted five); places 2 and 8 left (2 done, 8 abandoned while waiting).
    let adm = codec::keys::admission(&event);
    let (queue, left) = (codec::keys::queue(&event), codec::keys::left(&event));
    for args in [
        &[
            "HSET",
            &adm,
            "openAtMs",
            "1",
            "rate",
            "0",
            "baseMs",
            "1",
            "baseAdmitted",
            "5",
        ][..],
        &["SET", &queue, "10"],
        &["ZADD", &left, "2", "2", "8", "8"],
    ] {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        redis.query(&args).await.expect("seed the line");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let worker = Running::start(worker_config(
        &[&event],
        &[("WORKER_METRICS_ADDR", addr.as_str())],
    ));
    // The listener is up once `worker run` has read its events: scrape until it answers.
    let mut text: String;
    eventually!("a scrape with the event's line", {
        text = match tokio::net::TcpStream::connect(&addr).await {
            Ok(_) => scrape(&addr).await,
            Err(_) => String::new(),
        };
        text.contains("maxtps_event_waiting{")
    });
    let line = |family: &str| {
        value(
            &text,
            &format!("maxtps_event_{family}{{event=\"{event}\"}}"),
        )
    };
    assert_eq!(
        (
            line("entered"),
            line("admitted"),
            line("active"),
            line("waiting")
        ),
        (10.0, 5.0, 4.0, 4.0)
    );

    worker.stop().await;
    drop_event(&pg, &mut redis, &event).await;
}
