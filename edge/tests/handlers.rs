//! Handlers called directly, with a `Core` built here on the shared Redis and no HTTP
//! server: a new endpoint's rules can be tested this way in milliseconds.

mod support;

use std::{rc::Rc, sync::Arc};

use edge::{
    api::public::holds,
    config::Config,
    core::Core,
    http::{parse_head, Reply},
    token::RoomToken,
};
use serde_json::{json, Value};
use support::{now_ms, redis_addr, seed_event, unique_event};

const SECRET: &str = "handler-secret";

/// A core of one, on the shared Redis, connected.
async fn core(hold_limit: &str) -> Rc<Core> {
    let url = format!("redis://{}", redis_addr());
    let env = [
        ("REDIS_URL", url.as_str()),
        ("ROOM_TOKEN_SECRET", SECRET),
        ("HOLD_LIMIT", hold_limit),
    ];
    let config = Config::from_lookup(|name| {
        env.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    })
    .expect("config");
    let core = Rc::new(Core::new(0, Arc::new(config), Arc::default(), None));
    core.redis.wait_connected().await;
    core
}

fn token(core: &Core, event: &str, user: &str) -> String {
    let now = now_ms();
    core.tokens.sign(&RoomToken {
        event,
        user,
        position: 1,
        issued_ms: now,
        expires_ms: now + 60_000,
    })
}

/// Calls `hold` or `release` as `user` with `body`: (status, JSON body).
async fn call(core: &Core, path: &str, user: &str, body: Value) -> (u16, Value) {
    let event = body["eventId"].as_str().expect("eventId").to_owned();
    let body = body.to_string();
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nx-room-token: {}\r\ncontent-length: {}\r\n\r\n",
        token(core, &event, user),
        body.len()
    );
    let head = parse_head(raw.as_bytes()).expect("head").expect("whole");
    let mut reply = Reply::default();
    let result = if path.ends_with("/hold") {
        holds::hold(core, &head, body.as_bytes(), &mut reply).await
    } else {
        holds::release(core, &head, body.as_bytes(), &mut reply).await
    };
    if let Err(e) = result {
        e.render(&mut reply);
    }
    let json = serde_json::from_slice(reply.body()).expect("a JSON body");
    (reply.status(), json)
}

#[test]
fn hold_and_release_keep_their_rules_without_a_server() {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let core = core("2").await;
        let event = unique_event("handlers");
        seed_event(&event, &[("A", 10, 5_000)], 0, 1_000_000);
        let seat = |n: u32| json!({"eventId": event, "seatId": format!("A-{n}")});

        let (status, held) = call(&core, "/public/hold", "ann", seat(1)).await;
        assert_eq!(status, 201, "{held}");
        let hold_id = held["holdId"].as_str().expect("holdId").to_owned();
        assert!(held["expiresAt"].as_u64().expect("expiresAt") > now_ms());

        let (status, taken) = call(&core, "/public/hold", "bob", seat(1)).await;
        assert_eq!(
            (status, &taken["error"]["code"]),
            (409, &json!("SEAT_HELD"))
        );
        let (status, _) = call(&core, "/public/hold", "ann", seat(2)).await;
        assert_eq!(status, 201);
        let (status, over) = call(&core, "/public/hold", "ann", seat(3)).await;
        assert_eq!(
            (status, &over["error"]["code"]),
            (409, &json!("HOLD_LIMIT"))
        );
        let (status, missing) = call(&core, "/public/hold", "ann", seat(11)).await;
        assert_eq!(
            (status, &missing["error"]["code"]),
            (404, &json!("SEAT_NOT_FOUND"))
        );

        let mut release = seat(1);
        release["holdId"] = json!(hold_id);
        let (status, not_yours) = call(&core, "/public/release", "bob", release.clone()).await;
        assert_eq!((status, not_yours), (200, json!({"released": false})));
        let (status, released) = call(&core, "/public/release", "ann", release).await;
        assert_eq!((status, released), (200, json!({"released": true})));
        let (status, _) = call(&core, "/public/hold", "bob", seat(1)).await;
        assert_eq!(status, 201, "a released seat can be held again");
    });
}

#[test]
fn a_request_without_a_token_is_refused_before_redis() {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let core = core("4").await;
        let commands = core.redis.stats().commands;
        let raw = b"POST /public/hold HTTP/1.1\r\nHost: t\r\ncontent-length: 2\r\n\r\n";
        let head = parse_head(raw).expect("head").expect("whole");
        let mut reply = Reply::default();
        let body = br#"{"eventId":"demo","seatId":"A-1"}"#;
        let error = holds::hold(&core, &head, body, &mut reply)
            .await
            .expect_err("refused");
        assert_eq!(error.code().as_str(), "TOKEN_MISSING");
        assert_eq!(core.redis.stats().commands, commands, "no Redis call");
    });
}
