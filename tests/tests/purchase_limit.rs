//! The purchase limit per buyer per event through the running system: checked by the
//! edge in Redis at commit (409 `PURCHASE_LIMIT`) and again by the worker in
//! PostgreSQL, which holds even when Redis does not check (or lost its record): an
//! order past the limit ends `REJECTED` with reason `PURCHASE_LIMIT`.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use e2e::{env, listening_addr, seed, unique_event, Http, Proc, WAIT};
use serde_json::json;

const LIMIT: usize = 3;

fn edge(purchase_limit: usize) -> (Proc, Http) {
    let env = vec![
        ("EDGE_ADDR", "127.0.0.1:0".into()),
        ("EDGE_THREADS", "2".into()),
        ("REDIS_URL", env("REDIS_URL")),
        ("ROOM_TOKEN_SECRET", "e2e-tests".into()),
        ("HOLD_LIMIT", "20".into()),
        ("PURCHASE_LIMIT", purchase_limit.to_string()),
    ];
    let (proc, line) = Proc::start("edge", &[], &env, " listening ");
    let http = Http {
        addr: listening_addr(&line),
    };
    (proc, http)
}

/// `user` enters, holds A-1.. A-20 (from `first`) and makes an intent for each seat
/// alone; returns the token and (seat, intent id) pairs.
fn twenty_intents(
    http: &Http,
    event: &str,
    user: &str,
    first: usize,
) -> (String, Vec<(String, String)>) {
    let r = http.request(
        "POST",
        "/public/enter",
        &[],
        Some(&json!({"userId": user, "eventId": event})),
    );
    assert_eq!(r.status, 200);
    let token = r.json()["roomToken"].as_str().expect("token").to_owned();
    let intents = (first..first + 20)
        .map(|n| {
            let seat = format!("A-{n}");
            let r = http.request(
                "POST",
                "/public/hold",
                &[("x-room-token", &token)],
                Some(&json!({"eventId": event, "seatId": seat})),
            );
            assert_eq!(r.status, 201, "hold {seat}: {:?}", r.json());
            let r = http.request(
                "POST",
                "/confirm/payment-intent",
                &[
                    ("x-room-token", &token),
                    ("Idempotency-Key", &format!("i-{seat}")),
                ],
                Some(&json!({"userId": user, "eventId": event, "seatIds": [seat]})),
            );
            assert_eq!(r.status, 201, "intent {seat}: {:?}", r.json());
            let intent = r.json()["intentId"].as_str().expect("intentId").to_owned();
            (seat, intent)
        })
        .collect();
    (token, intents)
}

/// The 20 commits at once, one connection each; returns (status, code) -> count and
/// the idempotency keys accepted.
fn commit_all(
    http: &Http,
    event: &str,
    user: &str,
    token: &str,
    intents: &[(String, String)],
) -> (HashMap<(u16, String), usize>, Vec<String>) {
    let results: Vec<(u16, String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = intents
            .iter()
            .map(|(seat, intent)| {
                s.spawn(move || {
                    let key = format!("c-{seat}");
                    let r = http.request(
                        "POST",
                        "/confirm/commit",
                        &[("x-room-token", token), ("Idempotency-Key", &key)],
                        Some(&json!({"userId": user, "eventId": event, "seatIds": [seat], "intentId": intent})),
                    );
                    let code = if r.status == 202 {
                        String::new()
                    } else {
                        r.json()["error"]["code"].as_str().unwrap_or("?").to_owned()
                    };
                    (r.status, code, key)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("commit"))
            .collect()
    });
    let mut counts = HashMap::new();
    let mut accepted = Vec::new();
    for (status, code, key) in results {
        if status == 202 {
            accepted.push(key);
        }
        *counts.entry((status, code)).or_default() += 1;
    }
    (counts, accepted)
}

/// The final status of each key: (status, reason) -> count.
fn finals(http: &Http, token: &str, keys: &[String]) -> HashMap<(String, String), usize> {
    let mut out = HashMap::new();
    for key in keys {
        let deadline = Instant::now() + WAIT;
        let (status, reason) = loop {
            let r = http.request(
                "GET",
                &format!("/confirm/status?idem={key}"),
                &[("x-room-token", token)],
                None,
            );
            assert_eq!(r.status, 200, "{key}: {:?}", r.json());
            let order = &r.json()["order"];
            let status = order["status"].as_str().expect("status").to_owned();
            if status != "PENDING" {
                break (status, order["reason"].as_str().unwrap_or("").to_owned());
            }
            assert!(Instant::now() < deadline, "{key} still PENDING");
            std::thread::sleep(Duration::from_millis(50));
        };
        *out.entry((status, reason)).or_default() += 1;
    }
    out
}

#[test]
fn twenty_concurrent_commits_of_one_buyer_confirm_exactly_the_limit() {
    let event = unique_event("plim");
    seed(
        &event,
        &[
            "--sections",
            "A",
            "--seats-per-section",
            "100",
            "--price",
            "1000",
            "--open-in-secs",
            "-60",
            "--rate",
            "1000000",
        ],
    );
    let worker_env = vec![
        ("REDIS_URL", env("REDIS_URL")),
        ("DATABASE_URL", env("DATABASE_URL")),
        ("WORKER_CONCURRENCY", "4".into()),
        ("WORKER_BATCH", "3".into()),
        ("WORKER_BLOCK_MS", "100".into()),
        ("WORKER_EVENTS", event.clone()),
        ("PURCHASE_LIMIT", LIMIT.to_string()),
    ];
    let (mut worker, _) = Proc::start("worker", &["run"], &worker_env, "consuming Redis Streams");

    // 1. The edge does not check (as after Redis lost the buyer's record): all 20 are
    //    accepted, spread over 4 streams and 4 consumers, and PostgreSQL confirms
    //    exactly the limit.
    let (mut unchecked, http) = edge(0);
    let (token, intents) = twenty_intents(&http, &event, "ann", 1);
    let (counts, accepted) = commit_all(&http, &event, "ann", &token, &intents);
    assert_eq!(counts, HashMap::from([((202, String::new()), 20)]));
    assert_eq!(
        finals(&http, &token, &accepted),
        HashMap::from([
            (("CONFIRMED".into(), String::new()), LIMIT),
            (("REJECTED".into(), "PURCHASE_LIMIT".into()), 20 - LIMIT),
        ])
    );
    unchecked.terminate();

    // 2. The edge checks in Redis: exactly the limit accepted, the rest 409, and the
    //    worker confirms those.
    let (mut checked, http) = edge(LIMIT);
    let (token, intents) = twenty_intents(&http, &event, "bob", 21);
    let (counts, accepted) = commit_all(&http, &event, "bob", &token, &intents);
    assert_eq!(
        counts,
        HashMap::from([
            ((202, String::new()), LIMIT),
            ((409, "PURCHASE_LIMIT".into()), 20 - LIMIT)
        ])
    );
    assert_eq!(
        finals(&http, &token, &accepted),
        HashMap::from([(("CONFIRMED".into(), String::new()), LIMIT)])
    );
    checked.terminate();
    worker.terminate();
}
