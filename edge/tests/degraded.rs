//! Degraded mode (README "Degraded mode"): with its Redis stopped (SIGSTOP) or killed,
//! the edge keeps serving `summary` and `seats` from its last good copy, saying how old
//! it is in `x-data-age`; `/public/health` says `degraded`; writes answer 503 with
//! `Retry-After`; and once Redis answers again, everything is back by itself.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{redis_at, redis_server::RedisServer, seed_event_at, unique_event, Client, Edge};

/// Polls `probe` until it gives `Some`, at most [`support::WAIT`].
fn poll<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + support::WAIT;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn health(c: &mut Client) -> (u16, String) {
    let r = c.get_with("/public/health", "");
    let status = r.json()["status"].as_str().unwrap_or_default().to_owned();
    (r.status, status)
}

/// Every read of `paths` is 200 with the body of `good`, and each says its age.
fn served_from_the_last_copy(c: &mut Client, paths: &[String], good: &[Vec<u8>]) {
    for (path, body) in paths.iter().zip(good) {
        // The copy is younger than PUBLIC_CACHE_MS at first: fresh, no age.
        let r = poll(&format!("{path} says its age"), || {
            let r = c.get_with(path, "");
            assert_eq!(
                r.status,
                200,
                "{path}: {:?}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(&r.body, body, "{path}: the last good copy");
            r.header("x-data-age").is_some().then_some(r)
        });
        let age: u64 = r
            .header("x-data-age")
            .and_then(|a| a.parse().ok())
            .expect("seconds");
        assert!(age < 60, "{path}: age {age}");
        assert!(r.header("etag").is_some() && r.header("cache-control").is_some());
    }
}

#[test]
fn with_redis_stopped_or_killed_the_last_reads_are_served_writes_503_and_it_comes_back() {
    let mut redis = RedisServer::start(&[]);
    let addr = format!("127.0.0.1:{}", redis.port);
    let event = unique_event("degraded");
    let seed = || {
        seed_event_at(&addr, &event, &[("A", 10, 100)], 0, 1_000_000);
        redis_at(
            &addr,
            &["SETBIT", &format!("ev:{{{event}}}:sold:A"), "3", "1"],
        );
    };
    seed();
    let url = redis.url();
    let edge = Edge::start(&[
        ("REDIS_URL", &url),
        ("EDGE_THREADS", "1"),
        ("PUBLIC_CACHE_MS", "200"),
        ("REDIS_TIMEOUT_MS", "200"),
    ]);
    let mut c = edge.connect();
    assert_eq!(health(&mut c), (200, "ready".into()));
    let token = c.enter(&event, "buyer");
    let paths = [
        format!("/public/summary/{event}/A"),
        format!("/public/seats/{event}"),
    ];
    let good: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| {
            let r = c.get_with(p, "");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("x-data-age"), None, "a fresh copy");
            r.body
        })
        .collect();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&good[0]).expect("json")["sold"],
        1
    );
    let hold = |c: &mut Client, seat: &str| {
        c.post(
            "/public/hold",
            Some(&token),
            &json!({"eventId": event, "seatId": seat}),
        )
    };

    for how in ["SIGSTOP", "SIGKILL"] {
        if how == "SIGSTOP" {
            redis.pause();
        } else {
            redis.kill();
        }
        // The edge learns it from the requests that wait on Redis (past REDIS_TIMEOUT_MS
        // for a stopped one): health itself does no I/O.
        poll(&format!("{how}: health says degraded"), || {
            c.get_with(&paths[0], "");
            (health(&mut c) == (200, "degraded".into())).then_some(())
        });
        served_from_the_last_copy(&mut c, &paths, &good);
        let r = hold(&mut c, "A-1");
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (503, "UNAVAILABLE"),
            "{how}"
        );
        assert_eq!(r.header("retry-after"), Some("1"), "{how}");
        let r = c.post(
            "/public/enter",
            None,
            &json!({"eventId": event, "userId": "late"}),
        );
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (503, "UNAVAILABLE"),
            "{how}"
        );

        if how == "SIGSTOP" {
            redis.resume();
        } else {
            redis.restart();
            seed();
        }
        poll(&format!("{how}: health is ready again"), || {
            (health(&mut c) == (200, "ready".into())).then_some(())
        });
        // A fresh copy again: no age, and what Redis says now.
        redis_at(
            &addr,
            &["SETBIT", &format!("ev:{{{event}}}:sold:A"), "4", "1"],
        );
        poll(&format!("{how}: summary read from Redis again"), || {
            let r = c.get_with(&paths[0], "");
            (r.status == 200 && r.header("x-data-age").is_none() && r.json()["sold"] == 2)
                .then_some(())
        });
        redis_at(
            &addr,
            &["SETBIT", &format!("ev:{{{event}}}:sold:A"), "4", "0"],
        );
        let seat = if how == "SIGSTOP" { "A-1" } else { "A-2" };
        assert_eq!(hold(&mut c, seat).status, 201, "{how}: writes work again");
        // The holds taken now change the copy: make it the good one for the next round.
        redis_at(&addr, &["DEL", &format!("ev:{{{event}}}:held:A")]);
        redis_at(&addr, &["DEL", &format!("ev:{{{event}}}:hold:A:1")]);
        redis_at(&addr, &["DEL", &format!("ev:{{{event}}}:hold:A:2")]);
        redis_at(&addr, &["DEL", &format!("ev:{{{event}}}:uholds:buyer")]);
        poll(&format!("{how}: the copy is the good one again"), || {
            let fresh: Vec<Vec<u8>> = paths.iter().map(|p| c.get_with(p, "").body).collect();
            (fresh == good).then_some(())
        });
    }
}
