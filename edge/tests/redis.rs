//! The pipelined Redis client against real Redis: the shared one at `REDIS_URL` (`make
//! services` starts it) and private `redis-server`s for kill, pause and AUTH cases.

mod support;

use std::{rc::Rc, time::Duration};

use codec::store::Call;
use edge::redis::{BatchScript, Client, Frame, RedisConfig, RedisError, Script};

/// A script call of these keys and arguments.
fn call(keys: &[&[u8]], args: &[&[u8]]) -> Call {
    let mut call = Call::default();
    for key in keys {
        call.key(|out| out.extend_from_slice(key));
    }
    for arg in args {
        call.arg(arg);
    }
    call
}
use support::redis_server::RedisServer;

fn shared_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL: run the tests with `make test` (it starts Redis)")
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Runs the test body on an io_uring runtime, then on an epoll one (as `run`).
fn on_both_drivers<F: std::future::Future>(test: impl Fn() -> F) {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
        .block_on(test());
    run(test());
}

async fn connected(config: RedisConfig) -> Client {
    let client = Client::connect(config);
    monoio::time::timeout(support::WAIT, client.wait_connected())
        .await
        .expect("connects");
    client
}

fn config(url: &str) -> RedisConfig {
    RedisConfig::from_url(url).expect("url")
}

fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    format!("test:{}:{}", std::process::id(), nanos.as_nanos())
}

fn bulk(s: &str) -> Frame {
    Frame::BulkString(s.to_owned().into())
}

#[test]
fn ten_thousand_concurrent_commands_each_get_their_own_reply() {
    on_both_drivers(|| async {
        let client = connected(config(&shared_url())).await;
        let prefix = Rc::new(unique_prefix());
        let tasks: Vec<_> = (0..10_000)
            .map(|i| {
                let (client, prefix) = (client.clone(), prefix.clone());
                monoio::spawn(async move {
                    let (key, value) = (format!("{prefix}:{i}"), format!("value-{i}"));
                    let set =
                        client.query(&[b"SET", key.as_bytes(), value.as_bytes(), b"PX", b"60000"]);
                    assert_eq!(set.await, Ok(Frame::SimpleString("OK".into())));
                    assert_eq!(
                        client.query(&[b"GET", key.as_bytes()]).await,
                        Ok(bulk(&value))
                    );
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let stats = client.stats();
        assert_eq!((stats.commands, stats.replies), (20_000, 20_000));
        assert!(
            stats.mean_depth() > 10.0,
            "commands share writes: {stats:?}"
        );
    });
}

#[test]
fn error_replies_are_typed_and_the_connection_keeps_serving() {
    run(async {
        let client = connected(config(&shared_url())).await;
        let key = format!("{}:str", unique_prefix());
        client
            .query(&[b"SET", key.as_bytes(), b"text", b"PX", b"60000"])
            .await
            .expect("set");
        let incr = client.query(&[b"INCR", key.as_bytes()]).await;
        assert!(
            matches!(&incr, Err(RedisError::Server(m)) if m.starts_with("ERR")),
            "{incr:?}"
        );
        let push = client.query(&[b"LPUSH", key.as_bytes(), b"x"]).await;
        assert!(
            matches!(&push, Err(RedisError::Server(m)) if m.starts_with("WRONGTYPE")),
            "{push:?}"
        );
        let bad = client.query(&[b"NO-SUCH-COMMAND"]).await;
        assert!(matches!(bad, Err(RedisError::Server(_))));
        assert_eq!(
            client.query(&[b"PING"]).await,
            Ok(Frame::SimpleString("PONG".into()))
        );
        assert_eq!(client.stats().server_errors, 3);
    });
}

#[test]
fn scripts_run_by_sha_and_reload_after_script_flush() {
    let redis = RedisServer::start(&[]);
    run(async {
        let client = connected(config(&redis.url())).await;
        let script = Script::new("return {KEYS[1], ARGV[1]}");
        let want = Ok(Frame::Array(vec![bulk("k"), bulk("a")]));
        assert_eq!(
            client.run(&script, &call(&[b"k"], &[b"a"])).await,
            want,
            "first run loads it"
        );
        assert_eq!(client.run(&script, &call(&[b"k"], &[b"a"])).await, want);
        let retries = client.stats().noscript_retries;
        assert_eq!(redis.raw("SCRIPT FLUSH"), "+OK\r\n");
        assert_eq!(client.run(&script, &call(&[b"k"], &[b"a"])).await, want);
        assert_eq!(client.stats().noscript_retries, retries + 1);
    });
}

/// Each call: its key, the shared argument, its own argument, and the key's counter.
const ECHO_BATCH: &str = "
local out = {}
for i = 1, #KEYS do
  out[i] = KEYS[i] .. '|' .. ARGV[1] .. '|' .. ARGV[1 + i] .. '|' .. redis.call('INCR', KEYS[i])
end
return out
";

/// `calls` concurrent batched calls on `prefix:i`, each checked against its own reply.
async fn batched_calls(
    client: &Client,
    script: &Rc<BatchScript>,
    prefix: &Rc<String>,
    calls: usize,
    round: u32,
) {
    let tasks: Vec<_> = (0..calls)
        .map(|i| {
            let (client, script, prefix) = (client.clone(), script.clone(), prefix.clone());
            monoio::spawn(async move {
                let (key, arg) = (format!("{prefix}:{i}"), format!("a{i}"));
                let reply = client
                    .run_batched(&script, b"g", &call(&[key.as_bytes()], &[arg.as_bytes()]))
                    .await;
                assert_eq!(reply, Ok(bulk(&format!("{key}|s|{arg}|{round}"))));
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
}

#[test]
fn batched_calls_share_script_calls_each_get_their_own_reply_and_survive_script_flush() {
    let redis = RedisServer::start(&[]);
    run(async {
        let client = connected(config(&redis.url())).await;
        let script = Rc::new(BatchScript::new(ECHO_BATCH, vec![b"s".to_vec()], 64));
        let prefix = Rc::new(unique_prefix());
        batched_calls(&client, &script, &prefix, 1_000, 1).await;
        let stats = client.stats();
        // Not loaded yet: every call's first batch got NOSCRIPT, and it joined a
        // batch sent whole.
        assert_eq!(stats.noscript_retries, 1_000);
        assert_eq!(stats.batched, 2_000);
        // Every call was retried once: at least 2 x 1,000 / 64 script calls, and
        // far fewer than one a call.
        assert!(
            (32..200).contains(&stats.commands),
            "calls share script calls of at most 64: {stats:?}"
        );

        assert_eq!(redis.raw("SCRIPT FLUSH"), "+OK\r\n");
        batched_calls(&client, &script, &prefix, 100, 2).await;
        assert_eq!(client.stats().noscript_retries, 1_100);
        batched_calls(&client, &script, &prefix, 100, 3).await;
        assert_eq!(client.stats().noscript_retries, 1_100, "loaded again");

        // One call's error fails its batch, typed; the next batch is served.
        let text = format!("{prefix}:text");
        client
            .query(&[b"SET", text.as_bytes(), b"x"])
            .await
            .expect("set");
        let failed = client
            .run_batched(&script, b"g", &call(&[text.as_bytes()], &[b"a"]))
            .await;
        assert!(
            matches!(&failed, Err(RedisError::Server(m)) if m.contains("not an integer")),
            "{failed:?}"
        );
        batched_calls(&client, &script, &prefix, 10, 4).await;
    });
}

#[test]
fn calls_of_different_groups_never_share_a_script_call() {
    run(async {
        let client = connected(config(&shared_url())).await;
        // Each call: the first key of its script call, then its own.
        let script = Rc::new(BatchScript::new(
            "local out = {} for i = 1, #KEYS do out[i] = KEYS[1] .. ' ' .. KEYS[i] end return out",
            Vec::new(),
            64,
        ));
        let prefix = Rc::new(unique_prefix());
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let (client, script, prefix) = (client.clone(), script.clone(), prefix.clone());
                monoio::spawn(async move {
                    let group = format!("g{}", i % 3);
                    let key = format!("{{{group}}}:{prefix}:{i}");
                    let reply = client
                        .run_batched(&script, group.as_bytes(), &call(&[key.as_bytes()], &[]))
                        .await;
                    let Ok(Frame::BulkString(reply)) = reply else {
                        panic!("{reply:?}")
                    };
                    let reply = String::from_utf8(reply.to_vec()).expect("utf-8");
                    let (first, own) = reply.split_once(' ').expect("two keys");
                    assert_eq!(own, key);
                    assert!(first.starts_with(&format!("{{{group}}}:")), "{reply}");
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let stats = client.stats();
        assert!(
            stats.commands < 100,
            "calls of a group still share: {stats:?}"
        );
    });
}

#[test]
fn redis_killed_fails_every_command_at_once_and_a_restart_reconnects() {
    on_both_drivers(|| async {
        let mut redis = RedisServer::start(&[]);
        let mut cfg = config(&redis.url());
        cfg.timeout = Duration::from_secs(60); // so a failure here cannot be a timeout
        let client = connected(cfg).await;
        // Paused, Redis holds every command unanswered: they are in flight.
        assert_eq!(redis.raw("CLIENT PAUSE 60000 ALL"), "+OK\r\n");
        let in_flight: Vec<_> = (0..1000)
            .map(|i| {
                let client = client.clone();
                monoio::spawn(async move {
                    client
                        .query(&[b"SET", format!("k{i}").as_bytes(), b"v"])
                        .await
                })
            })
            .collect();
        let script = Rc::new(BatchScript::new(ECHO_BATCH, vec![b"s".to_vec()], 64));
        let batched: Vec<_> = (0..500)
            .map(|i| {
                let (client, script) = (client.clone(), script.clone());
                monoio::spawn(async move {
                    let key = format!("b{i}");
                    client
                        .run_batched(&script, b"g", &call(&[key.as_bytes()], &[b"a"]))
                        .await
                })
            })
            .collect();
        // Let every task send (or join its batch) before the kill.
        while client.stats().commands < 1000 || client.stats().batched < 500 {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        redis.kill();
        // Bounded: a command left waiting would fail the test instead of hanging it.
        let failed = async {
            for task in in_flight {
                assert_eq!(task.await, Err(RedisError::Disconnected));
            }
            for task in batched {
                assert_eq!(task.await, Err(RedisError::Disconnected));
            }
        };
        monoio::time::timeout(support::WAIT, failed)
            .await
            .expect("every command in flight fails, none hangs");
        assert!(!client.is_connected());
        assert_eq!(
            client.query(&[b"PING"]).await,
            Err(RedisError::Disconnected),
            "no queueing"
        );

        redis.restart();
        monoio::time::timeout(support::WAIT, client.wait_connected())
            .await
            .expect("reconnects");
        assert_eq!(
            client.query(&[b"PING"]).await,
            Ok(Frame::SimpleString("PONG".into()))
        );
        assert!(client.stats().reconnects >= 1);
    });
}

#[test]
fn a_deadline_passes_as_a_timeout_and_a_stalled_connection_is_replaced() {
    let redis = RedisServer::start(&[]);
    run(async {
        let mut cfg = config(&redis.url());
        cfg.timeout = Duration::from_millis(100);
        let client = connected(cfg).await;
        assert_eq!(redis.raw("CLIENT PAUSE 1000 ALL"), "+OK\r\n");
        assert_eq!(client.query(&[b"PING"]).await, Err(RedisError::Timeout));
        assert_eq!(client.stats().timeouts, 1);
        // No reply came for the oldest command: the driver drops the connection.
        let deadline = std::time::Instant::now() + support::WAIT;
        while client.stats().reconnects == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "stalled connection not replaced"
            );
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        // Until the pause ends, new connections stall too and are replaced in turn.
        loop {
            assert!(std::time::Instant::now() < deadline, "never served again");
            monoio::time::timeout(support::WAIT, client.wait_connected())
                .await
                .expect("reconnects");
            match client.query(&[b"PING"]).await {
                Err(RedisError::Timeout | RedisError::Disconnected) => continue,
                pong => break assert_eq!(pong, Ok(Frame::SimpleString("PONG".into()))),
            }
        }
    });
}

#[test]
fn past_the_in_flight_bound_commands_fail_fast() {
    let redis = RedisServer::start(&[]);
    run(async {
        let mut cfg = config(&redis.url());
        cfg.max_in_flight = 10;
        let client = connected(cfg).await;
        assert_eq!(redis.raw("CLIENT PAUSE 500 ALL"), "+OK\r\n");
        let held: Vec<_> = (0..10).map(|_| client.query(&[b"PING"])).collect();
        assert_eq!(client.query(&[b"PING"]).await, Err(RedisError::Overloaded));
        for pending in held {
            assert_eq!(pending.await, Ok(Frame::SimpleString("PONG".into())));
        }
    });
}

#[test]
fn auth_and_select_come_from_the_url() {
    let redis = RedisServer::start(&["--requirepass", "s3cret"]);
    run(async {
        let client = connected(config(&format!(
            "redis://:s3cret@127.0.0.1:{}/2",
            redis.port
        )))
        .await;
        client
            .query(&[b"SET", b"in-db-2", b"yes"])
            .await
            .expect("set");
        let mut other = config(&format!("redis://default:s3cret@127.0.0.1:{}", redis.port));
        other.url.db = 2;
        let other = connected(other).await;
        assert_eq!(other.query(&[b"GET", b"in-db-2"]).await, Ok(bulk("yes")));
        let db0 = connected(config(&format!("redis://:s3cret@127.0.0.1:{}", redis.port))).await;
        assert_eq!(db0.query(&[b"GET", b"in-db-2"]).await, Ok(Frame::Null));

        // A named ACL user (ElastiCache RBAC), its password percent-encoded in the URL.
        let acl: [&[u8]; 7] = [
            b"ACL", b"SETUSER", b"buyer", b"on", b">p@ss/w", b"~*", b"+@all",
        ];
        assert_eq!(
            client.query(&acl).await,
            Ok(Frame::SimpleString("OK".into()))
        );
        let buyer = connected(config(&format!(
            "redis://buyer:p%40ss%2Fw@127.0.0.1:{}/2",
            redis.port
        )))
        .await;
        assert_eq!(buyer.query(&[b"GET", b"in-db-2"]).await, Ok(bulk("yes")));
        assert_eq!(buyer.query(&[b"ACL", b"WHOAMI"]).await, Ok(bulk("buyer")));

        let wrong = Client::connect(config(&format!("redis://:nope@127.0.0.1:{}", redis.port)));
        let attempt =
            monoio::time::timeout(Duration::from_millis(300), wrong.wait_connected()).await;
        assert!(
            attempt.is_err() && !wrong.is_connected(),
            "a wrong password never connects"
        );
    });
}

#[test]
fn rediss_connects_with_a_trusted_ca_and_refuses_an_unknown_one() {
    let redis = RedisServer::start_tls();
    run(async {
        let url = format!("rediss://127.0.0.1:{}", redis.port);
        let mut trusted = config(&url);
        trusted.tls_ca_file = Some(redis.tls_dir().join("ca.crt"));
        let client = connected(trusted).await;
        client
            .query(&[b"SET", b"over-tls", b"yes"])
            .await
            .expect("set");
        assert_eq!(client.query(&[b"GET", b"over-tls"]).await, Ok(bulk("yes")));

        let stranger = Client::connect(config(&url));
        let attempt =
            monoio::time::timeout(Duration::from_millis(300), stranger.wait_connected()).await;
        assert!(
            attempt.is_err() && !stranger.is_connected(),
            "a server no root vouches for is refused"
        );
    });
}
