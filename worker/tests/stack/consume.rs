//! `worker run` on the local profile (Redis Streams) against the stack's PostgreSQL and
//! Redis: exactly-once effects from at-least-once delivery, seat races, dead letters,
//! final rejections, crashes between commit and ack, graceful shutdown.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use codec::{keys, store::HoldOutcome};
use worker::{
    commit::{self, Commit},
    db::Pool,
    dlq,
    redis::{Conn, Frame},
    run::FAULT_EXIT_CODE,
    store,
};

use super::support::{
    commit_message, count, drop_event, env, hold, integer, pending, pg, redis, seed, sold_bit,
    state, status, stream_len, text, unique, worker_config, xadd, Running, WAIT,
};
use crate::eventually;

const ORDERS: &str = "SELECT count(*) FROM orders WHERE event_id = $1";
const SOLD: &str = "SELECT count(*) FROM sold_seats WHERE event_id = $1";
const PAYMENTS: &str =
    "SELECT count(*) FROM payments p JOIN orders o USING (order_id) WHERE o.event_id = $1";

#[tokio::test]
async fn the_same_message_delivered_twice_makes_one_order() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("twice");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    hold(&mut redis, &event, "alice", "A-1").await;
    let msg = commit_message(&event, "alice", "order-1", &["A-1"]);
    // Two entries with the same commit, on two shards: two consumers may take them at once.
    xadd(&mut redis, &event, 0, &msg).await;
    xadd(&mut redis, &event, 1, &msg).await;

    let worker = Running::start(worker_config(&[&event], &[]));
    eventually!("both deliveries acked", worker.acked() == 2);
    worker.stop().await;

    assert_eq!(count(&pg, ORDERS, &event).await, 1);
    assert_eq!(count(&pg, SOLD, &event).await, 1);
    assert_eq!(count(&pg, PAYMENTS, &event).await, 1);
    let s = status(&mut redis, &event, "alice", "order-1")
        .await
        .expect("a status record");
    assert_eq!(
        serde_json::to_value(&s).expect("json"),
        serde_json::json!({
            "order": {"idem": "order-1", "status": "CONFIRMED", "eventId": event,
                      "seatIds": ["A-1"], "amount": 1000, "currency": "USD", "reason": null,
                      "updatedAt": s.order.updated_at},
            "payment": {"status": "CAPTURED", "amount": 1000, "currency": "USD"}
        })
    );
    assert!(s.order.updated_at.abs_diff(worker::catalog::now_ms()) < 60_000);
    assert_eq!(sold_bit(&mut redis, &event, "A-1").await, 1);
    // The hold key says `sold` for good; the hold is gone from the section's zset and
    // from the buyer's zset.
    let marker = redis
        .query(&[b"GET", keys::hold(&event, "A", 1).as_bytes()])
        .await
        .expect("GET");
    assert_eq!(
        marker,
        Frame::BulkString(codec::store::SOLD.to_vec().into())
    );
    let held = redis
        .query(&[b"ZCARD", keys::section_holds(&event, "A").as_bytes()])
        .await
        .expect("ZCARD");
    assert_eq!(integer(&held), 0);
    let records = redis
        .query(&[b"EXISTS", keys::user_holds(&event, "alice").as_bytes()])
        .await
        .expect("EXISTS");
    assert_eq!(integer(&records), 0);
    // Processed entries leave the streams and the pending list.
    assert_eq!(stream_len(&mut redis, &event, 4).await, 0);
    assert_eq!(pending(&mut redis, &event, 4).await, 0);

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn two_commits_for_one_seat_make_one_confirmed_and_one_rejected() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("race");
    seed(&mut pg, &mut redis, &event, &[("A", 100)]).await;
    // In order on one stream: alice wins A-2; bob asks, loses, and his A-3
    // is not sold.
    hold(&mut redis, &event, "bob", "A-3").await;
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "alice", "k", &["A-2"]),
    )
    .await;
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "bob", "k", &["A-2", "A-3"]),
    )
    .await;
    // And twenty buyers for A-50 at once, over every shard and both consumers.
    for i in 0..20 {
        let user = format!("buyer-{i}");
        xadd(
            &mut redis,
            &event,
            i % 4,
            &commit_message(&event, &user, "k", &["A-50"]),
        )
        .await;
    }

    let worker = Running::start(worker_config(&[&event], &[]));
    eventually!("all acked", worker.acked() == 22);
    worker.stop().await;

    assert_eq!(
        state(&mut redis, &event, "alice", "k").await.as_deref(),
        Some("CONFIRMED")
    );
    let bob = status(&mut redis, &event, "bob", "k")
        .await
        .expect("bob's status");
    assert_eq!(format!("{:?}", bob.order.status), "Rejected");
    assert_eq!(bob.order.reason.as_deref(), Some("SEAT_SOLD"));
    assert_eq!(format!("{:?}", bob.payment.status), "Voided");
    assert_eq!(sold_bit(&mut redis, &event, "A-2").await, 1);
    assert_eq!(sold_bit(&mut redis, &event, "A-3").await, 0);
    let bobs_hold = redis
        .query(&[b"GET", keys::hold(&event, "A", 3).as_bytes()])
        .await
        .expect("GET");
    assert_eq!(
        text(&bobs_hold),
        None,
        "a rejected order releases its holds"
    );

    let mut confirmed = 0;
    for i in 0..20 {
        match state(&mut redis, &event, &format!("buyer-{i}"), "k")
            .await
            .as_deref()
        {
            Some("CONFIRMED") => confirmed += 1,
            Some("REJECTED") => {}
            other => panic!("buyer-{i}: {other:?}"),
        }
    }
    assert_eq!(confirmed, 1, "A-50 is sold once");
    let row = pg
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'CONFIRMED'), count(*) FILTER (WHERE reason = 'SEAT_SOLD'),
                    (SELECT count(*) FROM sold_seats WHERE event_id = $1),
                    (SELECT count(*) FROM payments p JOIN orders o USING (order_id)
                      WHERE o.event_id = $1 AND p.status = 'VOIDED')
               FROM orders WHERE event_id = $1",
            &[&event],
        )
        .await
        .expect("counts");
    let counts: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        counts,
        (2, 20, 2, 20),
        "confirmed, rejected, seats sold, voided"
    );

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn a_batch_decides_seat_races_as_one_by_one_processing_would() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("rounds");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    let bodies = [
        commit_message(&event, "a", "k", &["A-1", "A-2"]),
        commit_message(&event, "b", "k", &["A-2", "A-3"]),
        commit_message(&event, "c", "k", &["A-3"]),
        commit_message(&event, "a", "k", &["A-1", "A-2"]),
    ];
    let commits: Vec<Commit> = bodies
        .iter()
        .map(|b| commit::decode(b.as_bytes()).expect("valid"))
        .collect();
    let refs: Vec<&Commit> = commits.iter().collect();
    let pool = Pool::new(super::support::pg_config(), 1);
    let mut conn = pool.get().await.expect("connection");
    let outcomes = store::store(&mut conn, &refs, 0, None)
        .await
        .expect("stored");
    let states: Vec<(String, bool)> = outcomes
        .iter()
        .map(|o| (format!("{:?}", o.state), o.replay))
        .collect();
    assert_eq!(
        states,
        [
            ("Confirmed".into(), false),
            ("Rejected".into(), false),
            ("Confirmed".into(), false),
            ("Confirmed".into(), true),
        ],
        "b loses A-2, which frees A-3 for c; a's second copy is a replay"
    );
    assert_eq!(outcomes[0].order_id, outcomes[3].order_id);
    // The same batch again changes nothing.
    let again = store::store(&mut conn, &refs, 0, None)
        .await
        .expect("stored again");
    assert!(again.iter().all(|o| o.replay));
    assert_eq!(
        again.iter().map(|o| o.order_id).collect::<Vec<_>>(),
        outcomes.iter().map(|o| o.order_id).collect::<Vec<_>>()
    );
    assert_eq!(count(&pg, SOLD, &event).await, 3);
    drop(conn);
    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn poison_goes_to_the_dead_letter_stream_with_its_reason_and_redrive_works() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("poison");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    let mut v2: serde_json::Value =
        serde_json::from_str(&commit_message(&event, "u", "v2", &["A-1"])).expect("json");
    v2["v"] = serde_json::json!(2);
    xadd(&mut redis, &event, 0, &v2.to_string()).await;
    xadd(&mut redis, &event, 1, "not json").await;
    // A currency the edge never writes (it copies the catalog's): a broken producer,
    // for an operator to look at.
    let mut lower: serde_json::Value =
        serde_json::from_str(&commit_message(&event, "u", "lower", &["A-1"])).expect("json");
    lower["currency"] = serde_json::json!("usd");
    xadd(&mut redis, &event, 2, &lower.to_string()).await;
    xadd(
        &mut redis,
        &event,
        3,
        &commit_message(&event, "u", "fine", &["A-2"]),
    )
    .await;

    let worker = Running::start(worker_config(&[&event], &[]));
    eventually!(
        "three dead letters",
        dlq::list(&mut redis, &event).await.expect("list").len() == 3
    );
    eventually!("the good one acked", worker.acked() == 1);
    let letters = dlq::list(&mut redis, &event).await.expect("list");
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(
        reasons[0],
        "currency must be three capital letters A-Z (got \"usd\")"
    );
    assert!(reasons[1].starts_with("not a JSON object"), "{reasons:?}");
    assert_eq!(reasons[2], "unknown version 2");
    for letter in &letters {
        assert!(letter
            .stream
            .starts_with(&format!("ev:{{{event}}}:commits:")));
        assert_eq!(letter.deliveries, 1);
        assert!(!letter.msg.is_empty());
    }
    assert_eq!(stream_len(&mut redis, &event, 4).await, 0);
    assert_eq!(pending(&mut redis, &event, 4).await, 0);
    assert_eq!(count(&pg, ORDERS, &event).await, 1);

    // Redriven, they are poison again: back in the dead-letter stream, no order.
    assert_eq!(dlq::redrive(&mut redis, &event).await.expect("redrive"), 3);
    eventually!("redriven", stream_len(&mut redis, &event, 4).await == 0);
    eventually!(
        "three dead letters again",
        dlq::list(&mut redis, &event).await.expect("list").len() == 3
    );
    worker.stop().await;
    assert_eq!(count(&pg, ORDERS, &event).await, 1);
    assert_eq!(state(&mut redis, &event, "u", "lower").await, None);

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn a_commit_no_retry_can_sell_ends_rejected_with_its_reason_not_in_the_dlq() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("reject");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    // What an edge older than codec::rules accepted (u32::from_str read these as seats
    // 1 and 1000000000), what is not in the catalog, and one good order.
    let cases = [
        ("zero", "A-01", "INVALID_SEAT_ID"),
        ("plus", "A-+1", "INVALID_SEAT_ID"),
        ("ten-digits", "A-1000000000", "INVALID_SEAT_ID"),
        ("beyond", "A-11", "SEAT_NOT_FOUND"),
        ("no-section", "Z-1", "SEAT_NOT_FOUND"),
    ];
    for (i, (user, seat, _)) in cases.iter().enumerate() {
        xadd(
            &mut redis,
            &event,
            i as u32 % 4,
            &commit_message(&event, user, "k", &["A-2", seat]),
        )
        .await;
    }
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "good", "k", &["A-2"]),
    )
    .await;

    let worker = Running::start(worker_config(&[&event], &[]));
    eventually!("all acked", worker.acked() == 6);
    worker.stop().await;

    for (user, seat, reason) in cases {
        let s = status(&mut redis, &event, user, "k")
            .await
            .unwrap_or_else(|| panic!("{user}: a status record"));
        // An invalid seat list is stored, and shown, as no seats.
        let seats = if reason == "INVALID_SEAT_ID" {
            serde_json::json!([])
        } else {
            serde_json::json!(["A-2", seat])
        };
        assert_eq!(
            serde_json::to_value(&s).expect("json"),
            serde_json::json!({
                "order": {"idem": "k", "status": "REJECTED", "eventId": event,
                          "seatIds": seats, "amount": 2000, "currency": "USD",
                          "reason": reason, "updatedAt": s.order.updated_at},
                "payment": {"status": "VOIDED", "amount": 2000, "currency": "USD"}
            }),
            "{user}"
        );
    }
    assert_eq!(
        state(&mut redis, &event, "good", "k").await.as_deref(),
        Some("CONFIRMED")
    );
    // user, status, reason, seat_ids, payment
    let rows: Vec<String> = pg
        .query(
            "SELECT format('%s %s %s %s %s', o.user_id, o.status, coalesce(o.reason, '-'),
                           o.seat_ids, p.status)
               FROM orders o JOIN payments p USING (order_id)
              WHERE o.event_id = $1 ORDER BY o.user_id",
            &[&event],
        )
        .await
        .expect("orders")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        [
            "beyond REJECTED SEAT_NOT_FOUND {A-2,A-11} VOIDED",
            "good CONFIRMED - {A-2} CAPTURED",
            "no-section REJECTED SEAT_NOT_FOUND {A-2,Z-1} VOIDED",
            "plus REJECTED INVALID_SEAT_ID {} VOIDED",
            "ten-digits REJECTED INVALID_SEAT_ID {} VOIDED",
            "zero REJECTED INVALID_SEAT_ID {} VOIDED",
        ]
    );
    // Only the good order sold a seat; nothing waits in the dead-letter stream.
    assert_eq!(count(&pg, SOLD, &event).await, 1);
    assert_eq!(sold_bit(&mut redis, &event, "A-2").await, 1);
    assert_eq!(dlq::list(&mut redis, &event).await.expect("list").len(), 0);
    assert_eq!(stream_len(&mut redis, &event, 4).await, 0);
    assert_eq!(pending(&mut redis, &event, 4).await, 0);

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn a_seat_missing_from_a_stale_catalog_is_looked_up_again_before_rejecting() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("grown");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    // The worker reads the catalog at start, then not for ten minutes...
    let worker = Running::start(worker_config(
        &[&event],
        &[("WORKER_EVENT_REFRESH_MS", "600000")],
    ));
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "early", "k", &["A-1"]),
    )
    .await;
    eventually!("the first acked", worker.acked() == 1);
    // ...while the operator grows the section and a buyer commits a new seat.
    seed(&mut pg, &mut redis, &event, &[("A", 30)]).await;
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "late", "k", &["A-20"]),
    )
    .await;
    eventually!("the second acked", worker.acked() == 2);
    worker.stop().await;
    assert_eq!(
        state(&mut redis, &event, "late", "k").await.as_deref(),
        Some("CONFIRMED")
    );
    assert_eq!(count(&pg, SOLD, &event).await, 2);

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn a_seat_the_database_no_longer_has_ends_rejected_not_in_the_dlq() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("shrunk");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    let worker = Running::start(worker_config(
        &[&event],
        &[("WORKER_EVENT_REFRESH_MS", "600000")],
    ));
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "early", "k", &["A-1"]),
    )
    .await;
    eventually!("the first acked", worker.acked() == 1);
    // The operator shrinks the section; the worker's copy still says 10 seats, so
    // PostgreSQL (sold_seats' trigger, SQLSTATE 23503) is the one to refuse A-8.
    seed(&mut pg, &mut redis, &event, &[("A", 5)]).await;
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "late", "k", &["A-3", "A-8"]),
    )
    .await;
    eventually!("the second acked", worker.acked() == 2);
    worker.stop().await;
    let late = status(&mut redis, &event, "late", "k")
        .await
        .expect("a status record");
    assert_eq!(format!("{:?}", late.order.status), "Rejected");
    assert_eq!(late.order.reason.as_deref(), Some("SEAT_NOT_FOUND"));
    assert_eq!(late.order.seat_ids, ["A-3", "A-8"]);
    assert_eq!(dlq::list(&mut redis, &event).await.expect("list").len(), 0);
    assert_eq!(count(&pg, ORDERS, &event).await, 2);
    assert_eq!(count(&pg, SOLD, &event).await, 1, "A-3 not sold");
    assert_eq!(pending(&mut redis, &event, 1).await, 0);

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn an_entry_delivered_too_often_becomes_a_dead_letter() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("ghost");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    // A consumer that takes the entry and dies: one delivery.
    ghosts_read_one_commit(&mut redis, &event, &["ghost"]).await;

    let worker = Running::start(worker_config(&[&event], &[("WORKER_MAX_DELIVERIES", "1")]));
    eventually!(
        "a dead letter",
        dlq::list(&mut redis, &event).await.expect("list").len() == 1
    );
    worker.stop().await;
    let letters = dlq::list(&mut redis, &event).await.expect("list");
    assert_eq!(letters[0].deliveries, 2);
    assert!(
        letters[0].reason.contains("delivered 2 times"),
        "{}",
        letters[0].reason
    );
    assert_eq!(pending(&mut redis, &event, 1).await, 0);
    assert_eq!(count(&pg, ORDERS, &event).await, 0);

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn consumers_of_dead_workers_leave_the_group_once_they_hold_nothing() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("sweep");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    // A dead worker's consumer holding the entry, and one holding nothing.
    let key = ghosts_read_one_commit(&mut redis, &event, &["ghost-holding", "ghost-empty"]).await;

    // Visibility 500 ms: the entry is reclaimed and stored; both ghosts then hold
    // nothing and go once idle for 10 visibility timeouts. The worker's own stays.
    let worker = Running::start(worker_config(&[&event], &[]));
    eventually!("the order stored", count(&pg, ORDERS, &event).await == 1);
    eventually!("the ghosts removed", {
        let left = consumers(&mut redis, &key).await;
        !left.is_empty() && left.iter().all(|name| !name.starts_with("ghost"))
    });
    worker.stop().await;
    assert_eq!(pending(&mut redis, &event, 1).await, 0);

    drop_event(&pg, &mut redis, &event).await;
}

/// The commit stream of shard 0 with the workers' group and one commit, which each of
/// `ghosts` (consumers of a worker that then dies) tries to read: the first takes it.
async fn ghosts_read_one_commit(redis: &mut Conn, event: &str, ghosts: &[&str]) -> String {
    let key = keys::commits(event, 0);
    redis
        .query(&[
            b"XGROUP",
            b"CREATE",
            key.as_bytes(),
            b"workers",
            b"0",
            b"MKSTREAM",
        ])
        .await
        .expect("XGROUP");
    xadd(redis, event, 0, &commit_message(event, "u", "k", &["A-1"])).await;
    for ghost in ghosts {
        redis
            .query(&[
                b"XREADGROUP",
                b"GROUP",
                b"workers",
                ghost.as_bytes(),
                b"COUNT",
                b"1",
                b"STREAMS",
                key.as_bytes(),
                b">",
            ])
            .await
            .expect("XREADGROUP");
    }
    key
}

/// The names of the workers' group's consumers of `key`.
async fn consumers(redis: &mut Conn, key: &str) -> Vec<String> {
    let reply = redis
        .query(&[b"XINFO", b"CONSUMERS", key.as_bytes(), b"workers"])
        .await
        .expect("XINFO");
    let Frame::Array(list) = reply else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|c| match c {
            Frame::Array(fields) => match fields.get(1) {
                Some(Frame::BulkString(name)) => Some(String::from_utf8_lossy(name).into_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The `worker run` binary, with the test's environment.
fn spawn_worker(event: &str, extra: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command
        .arg("run")
        .env("DATABASE_URL", env("DATABASE_URL"))
        .env("REDIS_URL", env("REDIS_URL"))
        .env("WORKER_EVENTS", event)
        .env("WORKER_VISIBILITY_MS", "500")
        .env("WORKER_BLOCK_MS", "100")
        .env("WORKER_EVENT_REFRESH_MS", "200")
        .env("WORKER_CONCURRENCY", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, v) in extra {
        command.env(k, v);
    }
    command.spawn().expect("spawn the worker binary")
}

/// Waits (bounded) for the process to exit.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_worker_killed_between_commit_and_ack_redelivers_and_doubles_nothing() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("crash");
    seed(&mut pg, &mut redis, &event, &[("A", 10)]).await;
    hold(&mut redis, &event, "carol", "A-7").await;
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "carol", "k", &["A-7"]),
    )
    .await;

    // Test-only fault: the process exits right after its PostgreSQL commit, as a
    // SIGKILL there would leave it: no Redis projection, no ack.
    let mut crashing = spawn_worker(&event, &[("WORKER_FAULT", "exit-after-commit")]);
    let exit = tokio::task::spawn_blocking(move || wait_exit(&mut crashing))
        .await
        .expect("join");
    assert_eq!(exit.code(), Some(FAULT_EXIT_CODE));
    assert_eq!(count(&pg, ORDERS, &event).await, 1, "committed");
    assert_eq!(pending(&mut redis, &event, 1).await, 1, "not acked");
    assert_eq!(
        state(&mut redis, &event, "carol", "k").await,
        None,
        "not projected"
    );

    // After a restart the entry is reclaimed once the visibility timeout passed.
    let mut restarted = spawn_worker(&event, &[]);
    eventually!(
        "CONFIRMED after the redelivery",
        state(&mut redis, &event, "carol", "k").await.as_deref() == Some("CONFIRMED")
    );
    eventually!("acked", pending(&mut redis, &event, 1).await == 0);
    let _ = restarted.kill();
    let _ = restarted.wait();
    assert_eq!(count(&pg, ORDERS, &event).await, 1);
    assert_eq!(count(&pg, SOLD, &event).await, 1);
    assert_eq!(count(&pg, PAYMENTS, &event).await, 1);
    assert_eq!(sold_bit(&mut redis, &event, "A-7").await, 1);
    let hold_left = redis
        .query(&[b"GET", keys::hold(&event, "A", 7).as_bytes()])
        .await
        .expect("GET");
    assert_eq!(text(&hold_left).as_deref(), Some("sold"), "the sale's mark");

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn sigterm_finishes_and_acks_the_batch_in_hand() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("term");
    seed(&mut pg, &mut redis, &event, &[("A", 5000)]).await;
    let mut p = worker::redis::Pipeline::new();
    let key = keys::commits(&event, 0);
    let bodies: Vec<String> = (1..=3000)
        .map(|i| commit_message(&event, &format!("u{i}"), "k", &[&format!("A-{i}")]))
        .collect();
    for body in &bodies {
        p.push(&[b"XADD", key.as_bytes(), b"*", b"msg", body.as_bytes()]);
    }
    redis.pipeline(&p).await.expect("XADD");

    // Small batches, so that SIGTERM lands mid-stream.
    let mut child = spawn_worker(
        &event,
        &[("WORKER_BATCH", "10"), ("WORKER_CONCURRENCY", "1")],
    );
    eventually!("some orders stored", count(&pg, ORDERS, &event).await > 0);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let exit = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .expect("join");
    assert!(exit.success(), "{exit:?}");

    // Everything stored was projected and acked; nothing received is left pending.
    let stored = count(&pg, ORDERS, &event).await;
    assert!(stored < 3000, "stopped before the end ({stored})");
    assert_eq!(pending(&mut redis, &event, 1).await, 0);
    assert_eq!(stream_len(&mut redis, &event, 1).await, 3000 - stored);
    let statuses = redis
        .query(&[b"BITCOUNT", keys::sold(&event, "A").as_bytes()])
        .await
        .expect("BITCOUNT");
    assert_eq!(
        integer(&statuses),
        stored,
        "every stored order was projected"
    );

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn rebuild_after_redis_lost_the_event_restores_sold_seats_and_statuses() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("rebuild");
    seed(&mut pg, &mut redis, &event, &[("A", 10), ("B", 10)]).await;
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "ann", "k1", &["A-1", "B-2"]),
    )
    .await;
    xadd(
        &mut redis,
        &event,
        0,
        &commit_message(&event, "ben", "k2", &["B-2"]),
    )
    .await;
    let worker = Running::start(worker_config(&[&event], &[]));
    eventually!("both acked", worker.acked() == 2);
    worker.stop().await;
    let before = (
        status(&mut redis, &event, "ann", "k1").await.expect("ann"),
        status(&mut redis, &event, "ben", "k2").await.expect("ben"),
    );
    assert_eq!(format!("{:?}", before.1.order.status), "Rejected");

    super::support::flush_event(&mut redis, &event).await;
    assert_eq!(sold_bit(&mut redis, &event, "A-1").await, 0);
    let projections = worker::catalog::rebuild_redis(
        &mut pg,
        &mut redis,
        Some(&event),
        Duration::from_secs(86_400),
    )
    .await
    .expect("rebuild");
    assert_eq!((projections[0].sold, projections[0].statuses), (2, 2));

    for seat in ["A-1", "B-2"] {
        assert_eq!(sold_bit(&mut redis, &event, seat).await, 1, "{seat}");
        // The hold key says `sold` again: the hold script refuses the seat.
        assert_eq!(
            super::support::try_hold(&mut redis, &event, "carl", seat).await,
            HoldOutcome::Sold,
            "{seat}"
        );
    }
    assert_eq!(sold_bit(&mut redis, &event, "A-2").await, 0);
    assert!(matches!(
        super::support::try_hold(&mut redis, &event, "carl", "A-2").await,
        HoldOutcome::Held { .. }
    ));
    assert_eq!(
        status(&mut redis, &event, "ann", "k1").await.as_ref(),
        Some(&before.0)
    );
    assert_eq!(
        status(&mut redis, &event, "ben", "k2").await.as_ref(),
        Some(&before.1)
    );
    let ttl = redis
        .query(&[b"PTTL", keys::order_status(&event, "ann", "k1").as_bytes()])
        .await
        .expect("PTTL");
    assert!(
        integer(&ttl) > 86_000_000,
        "the record keeps its remaining life"
    );

    // Statuses older than the TTL are not written back.
    super::support::flush_event(&mut redis, &event).await;
    pg.execute(
        "UPDATE orders SET updated_at = now() - interval '2 days' WHERE event_id = $1 AND user_id = 'ann'",
        &[&event],
    )
    .await
    .expect("age ann's order");
    let projections = worker::catalog::rebuild_redis(
        &mut pg,
        &mut redis,
        Some(&event),
        Duration::from_secs(86_400),
    )
    .await
    .expect("rebuild");
    assert_eq!(projections[0].statuses, 1);
    assert_eq!(status(&mut redis, &event, "ann", "k1").await, None);

    drop_event(&pg, &mut redis, &event).await;
}
