//! The fair line end to end (README "Fair admission"): a `random` pre-queue seeded by
//! `worker seed`, drawn at the opening, published, and checked by `worker
//! verify-shuffle` and by recomputing it here; and an active limit whose slot a
//! confirmed order frees.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use e2e::{bin, drop_event, env, listening_addr, seed, seed_open, unique_event, Http, Proc, WAIT};
use serde_json::{json, Value};

fn edge(extra: &[(&'static str, String)]) -> (Proc, Http) {
    let mut env = vec![
        ("EDGE_ADDR", "127.0.0.1:0".to_owned()),
        ("EDGE_THREADS", "1".to_owned()),
        ("REDIS_URL", env("REDIS_URL")),
        ("ROOM_TOKEN_SECRET", "e2e-line".to_owned()),
        ("EVENT_REFRESH_MS", "50".to_owned()),
    ];
    env.extend_from_slice(extra);
    let (proc, line) = Proc::start("edge", &[], &env, " listening ");
    let http = Http {
        addr: listening_addr(&line),
    };
    (proc, http)
}

fn enter(http: &Http, event: &str, user: &str) -> Value {
    let r = http.request(
        "POST",
        "/public/enter",
        &[],
        Some(&json!({"userId": user, "eventId": event})),
    );
    assert_eq!(r.status, 200, "enter {user}: {:?}", r.json());
    r.json()
}

fn status(http: &Http, token: &str) -> Value {
    let r = http.request(
        "GET",
        "/public/room-status",
        &[("x-room-token", token)],
        None,
    );
    assert_eq!(r.status, 200, "room-status: {:?}", r.json());
    r.json()
}

fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn the_pre_queue_is_drawn_at_the_opening_and_the_verifier_recomputes_it() {
    let event = unique_event("draw");
    // The pre-queue is open from the seed on; the opening comes 3 s later.
    seed(
        &event,
        &[
            "--sections",
            "A",
            "--seats-per-section",
            "100",
            "--open-in-secs",
            "3",
            "--prequeue-in-secs",
            "-1",
            "--queueing",
            "random",
            "--rate",
            "1000000",
        ],
    );
    let (_edge, http) = edge(&[]);
    let published = |http: &Http| {
        let r = http.request("GET", &format!("/public/fairness/{event}"), &[], None);
        assert_eq!(r.status, 200);
        r.json()
    };
    let before = published(&http);
    let committed = before["seedHash"].as_str().expect("seedHash").to_owned();
    assert_eq!(before["seed"], Value::Null, "no seed before the draw");
    assert_eq!(before["queueing"], "random");

    // 30 buyers enter in the order u00, u01, ...: all pre-queued, none admitted.
    let users: Vec<String> = (0..30).map(|i| format!("u{i:02}")).collect();
    let mut tokens = Vec::new();
    for user in &users {
        let r = enter(&http, &event, user);
        assert_eq!(r["position"], 0, "{user} pre-queued: {r}");
        tokens.push(r["roomToken"].as_str().expect("roomToken").to_owned());
    }
    let r = http.request(
        "POST",
        "/public/hold",
        &[("x-room-token", &tokens[0])],
        Some(&json!({"eventId": event, "seatId": "A-1"})),
    );
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (403, json!("NOT_ADMITTED"))
    );

    // At the opening each gets their drawn place and a token that carries it.
    until("the draw", || status(&http, &tokens[0])["position"] != 0);
    let mut order = vec![String::new(); users.len()];
    for (user, token) in users.iter().zip(&tokens) {
        let s = status(&http, token);
        let p = s["position"].as_u64().expect("position") as usize;
        assert!((1..=users.len()).contains(&p), "{user}: {s}");
        assert!(order[p - 1].is_empty(), "place {p} drawn twice");
        order[p - 1] = user.clone();
        let drawn = s["roomToken"]
            .as_str()
            .expect("a token with the drawn place");
        let r = http.request(
            "POST",
            "/public/hold",
            &[("x-room-token", drawn)],
            Some(&json!({"eventId": event, "seatId": format!("A-{p}")})),
        );
        assert_eq!(r.status, 201, "{user} admitted at {p}: {:?}", r.json());
    }
    assert_ne!(order, users, "the draw kept the arrival order");

    // The published record proves it: the seed matches its commitment, and the order
    // is the documented function of the seed and the sorted list.
    let after = published(&http);
    let seed = after["seed"].as_str().expect("seed revealed").to_owned();
    assert_eq!(after["seedHash"], committed.as_str());
    assert_eq!(codec::fairness::commitment(&seed), committed);
    assert_eq!(after["prequeued"], 30);
    let ids: Vec<&str> = users.iter().map(String::as_str).collect();
    let (expected, digest) = codec::fairness::draw(&seed, &ids);
    assert_eq!(after["listDigest"], digest.as_str());
    assert_eq!(expected, order);

    // A late buyer queues behind the draw.
    assert_eq!(enter(&http, &event, "late")["position"], 31);

    let out = Command::new(bin("worker"))
        .args(["verify-shuffle", &event])
        .env("REDIS_URL", env("REDIS_URL"))
        .env("DATABASE_URL", env("DATABASE_URL"))
        .output()
        .expect("run worker verify-shuffle");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("30 pre-queued, 30 at their drawn place"),
        "{stdout}"
    );

    // Someone rewrites a drawn place: the verifier says so and fails.
    let pos = codec::keys::positions(&event);
    block_on(async {
        let config = worker::redis::RedisConfig::from_url(&env("REDIS_URL")).expect("REDIS_URL");
        let mut redis = worker::redis::Conn::connect(&config).await.expect("Redis");
        redis
            .query(&[b"HSET", pos.as_bytes(), order[0].as_bytes(), b"2"])
            .await
            .expect("HSET");
    });
    let out = Command::new(bin("worker"))
        .args(["verify-shuffle", &event])
        .env("REDIS_URL", env("REDIS_URL"))
        .env("DATABASE_URL", env("DATABASE_URL"))
        .output()
        .expect("run worker verify-shuffle");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("MISMATCH"), "{stdout}");
    block_on(drop_event(&event));
}

#[test]
fn a_confirmed_order_frees_its_active_slot() {
    let event = unique_event("done");
    seed_open(&event, &["--active-limit", "1"]);
    let (_edge, http) = edge(&[]);
    let mut worker_env = vec![
        ("REDIS_URL", env("REDIS_URL")),
        ("DATABASE_URL", env("DATABASE_URL")),
        ("WORKER_CONCURRENCY", "2".to_owned()),
        ("WORKER_BLOCK_MS", "100".to_owned()),
    ];
    worker_env.push(("WORKER_EVENTS", event.clone()));
    let (_worker, _) = Proc::start("worker", &["run"], &worker_env, "consuming Redis Streams");

    let alice = enter(&http, &event, "alice")["roomToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let bob = enter(&http, &event, "bob")["roomToken"]
        .as_str()
        .expect("token")
        .to_owned();
    until("alice admitted", || status(&http, &alice)["ready"] == true);
    assert_eq!(
        status(&http, &bob)["ready"],
        false,
        "one active buyer at a time"
    );

    let held = http.request(
        "POST",
        "/public/hold",
        &[("x-room-token", &alice)],
        Some(&json!({"eventId": event, "seatId": "A-1"})),
    );
    assert_eq!(held.status, 201, "{:?}", held.json());
    let intent = http.request(
        "POST",
        "/confirm/payment-intent",
        &[("x-room-token", &alice), ("Idempotency-Key", "i-1")],
        Some(&json!({"userId": "alice", "eventId": event, "seatIds": ["A-1"]})),
    );
    assert_eq!(intent.status, 201, "{:?}", intent.json());
    let intent_id = intent.json()["intentId"]
        .as_str()
        .expect("intentId")
        .to_owned();
    let commit = http.request(
        "POST",
        "/confirm/commit",
        &[("x-room-token", &alice), ("Idempotency-Key", "o-1")],
        Some(&json!({"intentId": intent_id, "eventId": event, "seatIds": ["A-1"], "userId": "alice"})),
    );
    assert_eq!(commit.status, 202, "{:?}", commit.json());

    // The worker confirms the order: alice is done, and bob takes her slot.
    until("bob admitted once alice's order is CONFIRMED", || {
        status(&http, &bob)["ready"] == true
    });
    let r = http.request(
        "GET",
        "/confirm/status?idem=o-1",
        &[("x-room-token", &alice)],
        None,
    );
    assert_eq!(r.json()["order"]["status"], "CONFIRMED");
    block_on(drop_event(&event));
}
