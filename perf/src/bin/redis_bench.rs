//! `redis_bench`: the edge's pipelined Redis client on one core against a Redis, for
//! comparison with `redis-benchmark` on the same server in the same run
//! (`bench-redis.sh`).
//!
//! `CALLERS` tasks (default 256) each loop `SET key:<random> val NX PX 300000` for
//! `SECONDS` (default 10) after a 1 s warm-up; prints one line of `key=value` pairs:
//! ops/s, mean commands per write, errors.

use std::{
    cell::Cell,
    rc::Rc,
    time::{Duration, Instant},
};

use edge::redis::{Client, RedisConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let url: String = env("REDIS_URL", "redis://127.0.0.1:16379".to_owned());
    let callers: usize = env("CALLERS", 256);
    let seconds: u64 = env("SECONDS", 10);
    let driver: String = env("DRIVER", "uring".to_owned());
    let mut config = RedisConfig::from_url(&url).expect("REDIS_URL");
    config.max_in_flight = callers * 2;
    let run = async move {
        let client = Client::connect(config);
        monoio::time::timeout(Duration::from_secs(5), client.wait_connected())
            .await
            .expect("connect");
        let (ops, errors, stop) = (
            Rc::new(Cell::new(0u64)),
            Rc::new(Cell::new(0u64)),
            Rc::new(Cell::new(false)),
        );
        let tasks: Vec<_> = (0..callers)
            .map(|i| {
                let (client, ops, errors, stop) =
                    (client.clone(), ops.clone(), errors.clone(), stop.clone());
                monoio::spawn(async move {
                    // xorshift per caller: distinct random keys without a shared generator.
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ ((i as u64 + 1) * 0xbf58_476d_1ce4_e5b9);
                    let mut key = Vec::with_capacity(32);
                    while !stop.get() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        key.clear();
                        key.extend_from_slice(b"bench:");
                        codec::json::write_u64(&mut key, x % 100_000_000);
                        match client
                            .query(&[b"SET", &key, b"val", b"NX", b"PX", b"300000"])
                            .await
                        {
                            Ok(_) => ops.set(ops.get() + 1),
                            Err(_) => errors.set(errors.get() + 1),
                        }
                    }
                })
            })
            .collect();
        monoio::time::sleep(Duration::from_secs(1)).await;
        let (start, start_ops, start_stats) = (Instant::now(), ops.get(), client.stats());
        monoio::time::sleep(Duration::from_secs(seconds)).await;
        let (elapsed, done, stats) = (start.elapsed(), ops.get() - start_ops, client.stats());
        stop.set(true);
        for task in tasks {
            task.await;
        }
        let writes = stats.writes - start_stats.writes;
        // Commands the writes carried: refused ones never reached a write.
        let commands = stats.written - start_stats.written;
        println!(
            "ops_per_sec={:.0} mean_depth={:.1} writes={writes} commands={commands} errors={}",
            done as f64 / elapsed.as_secs_f64(),
            commands as f64 / writes.max(1) as f64,
            errors.get()
        );
    };
    match driver.as_str() {
        "epoll" => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("rt")
            .block_on(run),
        _ => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("rt")
            .block_on(run),
    }
}
