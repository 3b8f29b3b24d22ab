//! `codec::rules` from the door to the database, over generated user ids and
//! Idempotency-Keys: through the running edge, the queue and the worker, each value is
//! either refused at the door with 400 naming its field, or accepted and stored in
//! PostgreSQL exactly as sent, its order final. Never a 5xx, never accepted then lost.

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use codec::{rules, url::percent_encode};
use e2e::{drop_event, env, listening_addr, seed, unique_event, Http, Proc, WAIT};
use proptest::{prelude::*, test_runner::TestCaseError};
use serde_json::json;

/// Printable ASCII mostly (what the rules accept), with some space, control,
/// non-ASCII and over-long values (what they refuse). No CR or LF: those end a header
/// line, which is HTTP framing, not the field's rule.
fn values() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[!-~]{1,64}",
        1 => "[!-~]{65,300}",
        1 => "[ -~\u{1}\u{7f}\u{e9}\u{ac00}]{0,20}",
    ]
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// What PostgreSQL stored for this buyer and key: (user_id, idem, status).
async fn stored(event: &str, user: &str, idem: &str) -> Option<(String, String, String)> {
    let config: tokio_postgres::Config = env("DATABASE_URL").parse().expect("DATABASE_URL");
    let pg = worker::db::connect(&config).await.expect("PostgreSQL");
    pg.query_opt(
        "SELECT user_id, idem, status FROM orders WHERE event_id = $1 AND user_id = $2 AND idem = $3",
        &[&event, &user, &idem],
    )
    .await
    .expect("query")
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

fn check(ok: bool, message: String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(message))
    }
}

/// One buyer's purchase with generated `user` and `idem`: refused at the field a rule
/// refuses, else stored as sent.
fn purchase(
    http: &Http,
    event: &str,
    seat: u32,
    user: &str,
    idem: &str,
) -> Result<(), TestCaseError> {
    let r = http.request(
        "POST",
        "/public/enter",
        &[],
        Some(&json!({"userId": user, "eventId": event})),
    );
    if rules::user_id(user).is_err() {
        let message = r.json()["error"]["message"].as_str().map(str::to_owned);
        return check(
            r.status == 400 && message.is_some_and(|m| m.starts_with("userId must be")),
            format!("enter {user:?}: {} {:?}", r.status, r.json()),
        );
    }
    check(r.status == 200, format!("enter {user:?}: {:?}", r.json()))?;
    let token = r.json()["roomToken"].as_str().expect("token").to_owned();
    let seat = format!("A-{seat}");
    let r = http.request(
        "POST",
        "/public/hold",
        &[("x-room-token", &token)],
        Some(&json!({"eventId": event, "seatId": seat})),
    );
    check(r.status == 201, format!("hold: {:?}", r.json()))?;
    let r = http.request(
        "POST",
        "/confirm/payment-intent",
        &[
            ("x-room-token", &token),
            ("Idempotency-Key", &format!("intent-{seat}")),
        ],
        Some(&json!({"userId": user, "eventId": event, "seatIds": [seat]})),
    );
    check(r.status == 201, format!("intent: {:?}", r.json()))?;
    let intent_id = r.json()["intentId"].as_str().expect("intentId").to_owned();
    let r = http.request(
        "POST",
        "/confirm/commit",
        &[("x-room-token", &token), ("Idempotency-Key", idem)],
        Some(&json!({"intentId": intent_id, "eventId": event, "seatIds": [seat], "userId": user})),
    );
    if rules::idempotency_key(idem.as_bytes()).is_err() {
        // A space at either end is trimmed away as HTTP's optional whitespace; a
        // control character is refused by the head's parser, the rest by the rule.
        let code = r.json()["error"]["code"].as_str().map(str::to_owned);
        let trimmed = idem.trim_matches(' ');
        return check(
            r.status == 400
                && matches!(
                    code.as_deref(),
                    Some("IDEMPOTENCY_KEY_INVALID" | "BAD_REQUEST")
                )
                || (r.status == 202 && rules::idempotency_key(trimmed.as_bytes()).is_ok()),
            format!("commit with key {idem:?}: {} {:?}", r.status, r.json()),
        );
    }
    check(r.status == 202, format!("commit {idem:?}: {:?}", r.json()))?;
    let mut location = b"/confirm/status?idem=".to_vec();
    percent_encode(&mut location, idem.as_bytes());
    let location = String::from_utf8(location).expect("ASCII");
    let deadline = Instant::now() + WAIT;
    loop {
        let r = http.request("GET", &location, &[("x-room-token", &token)], None);
        check(r.status == 200, format!("status {idem:?}: {:?}", r.json()))?;
        if r.json()["order"]["status"] == "CONFIRMED" {
            break;
        }
        check(Instant::now() < deadline, format!("{idem:?} not final"))?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let row = block_on(stored(event, user, idem));
    check(
        row == Some((user.to_owned(), idem.to_owned(), "CONFIRMED".to_owned())),
        format!("stored as {row:?}"),
    )
}

#[test]
fn generated_ids_are_refused_at_the_door_or_stored_as_sent() {
    let event = unique_event("rules");
    seed(
        &event,
        &[
            "--sections",
            "A",
            "--seats-per-section",
            "1000",
            "--open-in-secs",
            "-60",
            "--rate",
            "1000000",
        ],
    );
    let edge_env = vec![
        ("EDGE_ADDR", "127.0.0.1:0".to_owned()),
        ("EDGE_THREADS", "1".to_owned()),
        ("REDIS_URL", env("REDIS_URL")),
        ("DATABASE_URL", env("DATABASE_URL")),
        ("ROOM_TOKEN_SECRET", "e2e-rules".to_owned()),
    ];
    let (_edge, line) = Proc::start("edge", &[], &edge_env, " listening ");
    let http = Http {
        addr: listening_addr(&line),
    };
    let worker_env = vec![
        ("REDIS_URL", env("REDIS_URL")),
        ("DATABASE_URL", env("DATABASE_URL")),
        ("WORKER_BLOCK_MS", "100".to_owned()),
        ("WORKER_EVENTS", event.clone()),
    ];
    let (mut worker, _) = Proc::start("worker", &["run"], &worker_env, "consuming Redis Streams");

    // Each case buys the next seat, so cases never race for one.
    let next_seat = Cell::new(0);
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(user in values(), idem in values())| {
        next_seat.set(next_seat.get() + 1);
        purchase(&http, &event, next_seat.get(), &user, &idem)?;
    });

    assert!(worker.terminate().success());
    block_on(drop_event(&event));
}
