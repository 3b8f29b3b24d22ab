//! The Redis client against a real Redis Cluster (a private one a test, see
//! `support::redis_cluster`): commands reach the primary of their slot, a slot
//! migrated by hand is followed through `ASK` and then `MOVED`, a reshard under load
//! loses no command, and a primary killed is replaced by its replica with no help.

mod support;

use std::{
    rc::Rc,
    time::{Duration, Instant},
};

use codec::{cluster::key_slot, store::Call};
use edge::redis::{BatchScript, Client, Frame, RedisConfig, RedisError, Script};
use support::redis_cluster::RedisCluster;

fn run<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

async fn connected(url: &str) -> Client {
    let client = Client::connect(RedisConfig::from_url(url).expect("url"));
    monoio::time::timeout(support::WAIT, client.wait_connected())
        .await
        .expect("the slot map is whole and its primaries connected");
    client
}

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

fn bulk(s: &str) -> Frame {
    Frame::BulkString(s.as_bytes().to_vec().into())
}

/// A hash tag whose slot is in `slots`.
fn tag_in(slots: std::ops::Range<u16>) -> String {
    (0..)
        .map(|i| format!("t{i}"))
        .find(|t| slots.contains(&key_slot(t.as_bytes())))
        .expect("some tag")
}

/// Sets both keys, returns the second's new count: a script of two keys, which a
/// half-migrated slot answers with `TRYAGAIN`.
const TWO_KEYS: &str = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('INCR', KEYS[2])";

/// The batch form: each call's one key incremented, one reply a call.
const BATCH_INCR: &str =
    "local out = {} for i = 1, #KEYS do out[i] = redis.call('INCR', KEYS[i]) end return out";

#[test]
fn every_command_reaches_the_primary_of_its_slot() {
    let cluster = RedisCluster::start(3, 0);
    run(async {
        let client = connected(&cluster.url()).await;
        for i in 0..200 {
            let key = format!("k{i}");
            assert_eq!(
                client.query(&[b"SET", key.as_bytes(), b"v"]).await,
                Ok(Frame::SimpleString("OK".into())),
                "{key}"
            );
        }
        let script = Script::new(TWO_KEYS);
        let two = call(&[b"{ev}:a", b"{ev}:b"], &[b"x"]);
        assert_eq!(client.run(&script, &two).await, Ok(Frame::Integer(1)));
        let batch = Rc::new(BatchScript::new(BATCH_INCR, Vec::new(), 64));
        let calls: Vec<Call> = (0..40)
            .map(|i| {
                let key = format!("{{ev{}}}:n", i % 4);
                call(&[key.as_bytes()], &[])
            })
            .collect();
        let groups: Vec<String> = (0..40).map(|i| format!("ev{}", i % 4)).collect();
        let replies = futures_join(
            calls
                .iter()
                .zip(&groups)
                .map(|(c, g)| client.run_batched(&batch, g.as_bytes(), c))
                .collect(),
        )
        .await;
        let mut counts: Vec<i64> = replies
            .into_iter()
            .map(|r| match r {
                Ok(Frame::Integer(n)) => n,
                other => panic!("{other:?}"),
            })
            .collect();
        counts.sort_unstable();
        let want: Vec<i64> = (1..=10).flat_map(|n| [n; 4]).collect();
        assert_eq!(counts, want, "each event's ten calls counted 1..=10");
        let stats = client.stats();
        assert_eq!((stats.moved, stats.asked), (0, 0), "the map was right");
    });
    for i in 0..200 {
        let key = format!("k{i}");
        let owner = cluster.owner(cluster.nodes[0].port, cluster.slot(&key));
        assert_eq!(
            cluster.cli(owner, &["GET", &key]),
            "v",
            "{key} on its primary"
        );
    }
}

/// Awaits every future (they were all sent before the first is awaited).
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
}

#[test]
fn a_slot_migrated_by_hand_is_followed_through_ask_then_moved() {
    let cluster = RedisCluster::start(3, 0);
    let tag = tag_in(0..100);
    let slot = cluster.slot(&format!("{{{tag}}}"));
    let seed = cluster.nodes[0].port;
    let from = cluster.owner(seed, slot);
    let to = cluster
        .nodes
        .iter()
        .map(|n| n.port)
        .find(|&p| p != from)
        .expect("another primary");
    let (from_id, to_id) = (cluster.id(from), cluster.id(to));
    let (old, new, later) = (
        format!("{{{tag}}}:old"),
        format!("{{{tag}}}:new"),
        format!("{{{tag}}}:later"),
    );
    run(async {
        let client = connected(&cluster.url()).await;
        let set = |key: &str| {
            let key = key.to_owned();
            let client = client.clone();
            async move { client.query(&[b"SET", key.as_bytes(), b"1"]).await }
        };
        let get = |key: &str| client.query(&[b"GET", key.as_bytes()]);
        let ok = Ok(Frame::SimpleString("OK".into()));
        assert_eq!(set(&old).await, ok);

        // The spec's migration, step by step: importing on the target, migrating on
        // the source, keys moved with MIGRATE, then the slot given to the target.
        let s = slot.to_string();
        assert_eq!(
            cluster.cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]),
            "OK"
        );
        assert_eq!(
            cluster.cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]),
            "OK"
        );
        // A key the source does not have: ASK, then ASKING + SET on the target.
        assert_eq!(set(&new).await, ok);
        assert_eq!(client.stats().asked, 1);
        assert_eq!(
            cluster.cli(to, &["CLUSTER", "COUNTKEYSINSLOT", &s]),
            "1",
            "written on the target"
        );
        // A key still on the source is served there.
        assert_eq!(get(&old).await, Ok(bulk("1")));
        assert_eq!(client.stats().asked, 1);
        let port = to.to_string();
        assert_eq!(
            cluster.cli(
                from,
                &["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", &old]
            ),
            "OK"
        );
        // Moved now: ASK again.
        assert_eq!(get(&old).await, Ok(bulk("1")));
        assert_eq!(client.stats().asked, 2);
        for node in &cluster.nodes {
            assert_eq!(
                cluster.cli(node.port, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]),
                "OK"
            );
        }
        // The source answers MOVED; the client points the slot at the target.
        assert_eq!(set(&later).await, ok);
        assert_eq!(client.stats().moved, 1);
        assert_eq!(get(&later).await, Ok(bulk("1")));
        assert_eq!(get(&new).await, Ok(bulk("1")));
        assert_eq!(
            client.stats().moved,
            1,
            "no second MOVED: the map was updated"
        );
    });
    assert_eq!(cluster.cli(to, &["GET", &later]), "1");
}

#[test]
fn a_reshard_under_load_loses_no_command() {
    let cluster = RedisCluster::start(3, 0);
    // `redis-cli --cluster reshard` takes the source's slots from its lowest: slot 0
    // and up are on the first primary.
    let tag = tag_in(0..50);
    let seed = cluster.nodes[0].port;
    let from = cluster.owner(seed, key_slot(tag.as_bytes()));
    let to = cluster
        .nodes
        .iter()
        .map(|n| n.port)
        .find(|&p| p != from)
        .expect("another primary");
    let (from_id, to_id) = (cluster.id(from), cluster.id(to));
    let url = cluster.url();
    let (counter, a) = (format!("{{{tag}}}:n"), format!("{{{tag}}}:a"));
    let stats = run(async {
        let client = connected(&url).await;
        // Keys in the slot, so that the migration takes a while.
        for i in 0..3000 {
            let key = format!("{{{tag}}}:k{i}");
            client
                .query(&[b"SET", key.as_bytes(), b"v"])
                .await
                .expect("set");
        }
        let reshard = std::thread::spawn(move || {
            std::process::Command::new("redis-cli")
                .args(["--cluster", "reshard", &format!("127.0.0.1:{seed}")])
                .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
                .args(["--cluster-slots", "100", "--cluster-yes"])
                .args(["--cluster-pipeline", "10"])
                .output()
                .expect("redis-cli --cluster reshard")
        });
        let script = Script::new(TWO_KEYS);
        let mut rounds = 0u64;
        // Rounds of 32 commands in flight until the reshard is over (and 20 more).
        let mut after = 0;
        while after < 20 {
            if reshard.is_finished() {
                after += 1;
            }
            rounds += 1;
            let news: Vec<String> = (0..8).map(|i| format!("{{{tag}}}:r{rounds}:{i}")).collect();
            let two = call(&[a.as_bytes(), counter.as_bytes()], &[b"x"]);
            let mut sent = Vec::new();
            for key in &news {
                sent.push(client.query(&[b"SET", key.as_bytes(), b"v"]));
                sent.push(client.query(&[b"INCR", counter.as_bytes()]));
            }
            let scripted = client.run(&script, &two);
            for reply in futures_join(sent).await {
                assert!(reply.is_ok(), "round {rounds}: {reply:?}");
            }
            let reply = scripted.await;
            assert!(
                matches!(reply, Ok(Frame::Integer(_))),
                "round {rounds}: {reply:?}"
            );
        }
        let out = reshard.join().expect("reshard thread");
        assert!(
            out.status.success(),
            "reshard: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Every INCR counted once: 8 a round and one by the script.
        let want = (rounds * 9).to_string();
        assert_eq!(
            client.query(&[b"GET", counter.as_bytes()]).await,
            Ok(bulk(&want))
        );
        for i in (0..3000).step_by(97) {
            let key = format!("{{{tag}}}:k{i}");
            assert_eq!(client.query(&[b"GET", key.as_bytes()]).await, Ok(bulk("v")));
        }
        client.stats()
    });
    assert_eq!(
        cluster.owner(seed, key_slot(tag.as_bytes())),
        to,
        "the slot moved"
    );
    assert!(stats.moved >= 1, "MOVED followed: {stats:?}");
    eprintln!(
        "reshard under load: moved {} asked {} tryagain {} refreshes {}",
        stats.moved, stats.asked, stats.tryagain, stats.refreshes
    );
}

#[test]
fn a_killed_primary_is_replaced_by_its_replica_and_service_resumes() {
    let cluster = RedisCluster::start(3, 1);
    let tag = tag_in(0..5000);
    let counter = format!("{{{tag}}}:n");
    let seed = cluster.nodes[0].port;
    let primary = cluster.owner(seed, key_slot(tag.as_bytes()));
    let url = cluster.url();
    let killed = cluster
        .nodes
        .iter()
        .position(|n| n.port == primary)
        .expect("node");
    run(async {
        let client = connected(&url).await;
        for _ in 0..10 {
            client
                .query(&[b"INCR", counter.as_bytes()])
                .await
                .expect("incr");
        }
        // Replication is asynchronous: wait until the replica has the ten.
        replicated(&cluster, primary);
        assert_eq!(
            client.query(&[b"GET", counter.as_bytes()]).await,
            Ok(bulk("10"))
        );
        cluster.kill(primary);
        let started = Instant::now();
        let mut failed = 0;
        let value = loop {
            match client.query(&[b"INCR", counter.as_bytes()]).await {
                Ok(Frame::Integer(n)) => break n,
                Ok(other) => panic!("{other:?}"),
                Err(
                    RedisError::Disconnected
                    | RedisError::Timeout
                    | RedisError::Io(_)
                    | RedisError::Closed,
                ) => failed += 1,
                Err(RedisError::Server(m)) if m.starts_with("CLUSTERDOWN") => failed += 1,
                Err(other) => panic!("not a transient error: {other:?}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no primary for the slot after 30 s"
            );
            monoio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(value, 11, "the replica had the ten");
        assert!(failed > 0, "the kill was noticed");
        eprintln!(
            "failover: {failed} commands failed over {:?}; stats {:?}",
            started.elapsed(),
            client.stats()
        );
    });
    let survivor = cluster.nodes[(killed + 1) % cluster.nodes.len()].port;
    let new_primary = cluster.owner(survivor, key_slot(tag.as_bytes()));
    assert_ne!(new_primary, primary, "a replica took over");
}

/// Waits until the replicas of the primary on `port` have all it wrote.
fn replicated(cluster: &RedisCluster, port: u16) {
    cluster.wait_until("the replica caught up", |c| {
        let info = c.cli(port, &["INFO", "replication"]);
        let offset = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("master_repl_offset:"))
            .map(str::to_owned);
        offset.is_some_and(|o| info.contains(&format!("offset={o},")))
    });
}

#[test]
fn the_edge_serves_holds_on_a_cluster_through_a_failover() {
    let cluster = RedisCluster::start(3, 1);
    let event = support::unique_event("cluster");
    let seed = cluster.nodes[0].port;
    let primary = cluster.owner(seed, key_slot(event.as_bytes()));
    support::seed_event_at(
        &format!("127.0.0.1:{primary}"),
        &event,
        &[("A", 100, 5_000)],
        0,
        1_000_000,
    );
    let url = cluster.url();
    let edge = support::Edge::start(&[
        ("REDIS_URL", &url),
        ("ROOM_TOKEN_SECRET", "cluster-test-secret"),
        ("PUBLIC_CACHE_MS", "1"),
        ("REDIS_TIMEOUT_MS", "300"),
    ]);
    let mut c = edge.connect();
    // Ready (the slot map whole, its primaries connected) before the first request,
    // as a load balancer's health check would wait.
    cluster.wait_until("the edge is ready", |_| {
        c.get_with("/public/health", "").status == 200
    });
    let hold = |c: &mut support::Client, token: &str, seat: &str| {
        c.post(
            "/public/hold",
            Some(token),
            &serde_json::json!({"eventId": event, "seatId": seat}),
        )
    };
    let (first, second) = (c.enter(&event, "first"), c.enter(&event, "second"));
    assert_eq!(hold(&mut c, &first, "A-1").status, 201);
    let r = hold(&mut c, &second, "A-1");
    assert_eq!((r.status, r.error_code().as_str()), (409, "SEAT_HELD"));
    let summary = format!("/public/summary/{event}/A");
    assert_eq!(c.get_with(&summary, "").json()["held"], 1);

    replicated(&cluster, primary);
    cluster.kill(primary);
    let started = Instant::now();
    let mut unavailable = 0;
    loop {
        let r = hold(&mut c, &second, "A-2");
        if r.status == 201 {
            break;
        }
        assert_eq!(
            (r.status, r.error_code().as_str(), r.header("retry-after")),
            (503, "UNAVAILABLE", Some("1")),
            "while no primary answers"
        );
        unavailable += 1;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failover in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "failover: {unavailable} holds answered 503 over {:?}",
        started.elapsed()
    );
    assert!(unavailable > 0, "the kill was noticed");
    // The hold taken before the kill survived on the replica, now the primary.
    let r = hold(&mut c, &second, "A-1");
    assert_eq!((r.status, r.error_code().as_str()), (409, "SEAT_HELD"));
    assert_eq!(c.get_with(&summary, "").json()["held"], 2);
    let health = c.get_with("/public/health", "");
    assert_eq!(health.status, 200, "ready again");
}
