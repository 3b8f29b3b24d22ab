//! Connections to the local stack, unique names, clean-up.

use std::{
    str::FromStr,
    sync::atomic::{AtomicU32, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use tokio_postgres::Client;
use worker::redis::{Conn, Frame, RedisConfig};

/// The variable's value; panics with what to do when the stack's environment is missing.
pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set. These tests need the local PostgreSQL and Redis: run `make test`, \
             or `make services` and then `set -a; eval \"$(infra/local/stack.sh env)\"; cargo test -p worker`"
        )
    })
}

pub fn pg_config() -> tokio_postgres::Config {
    tokio_postgres::Config::from_str(&env("DATABASE_URL")).expect("DATABASE_URL parses")
}

pub fn redis_config() -> RedisConfig {
    RedisConfig::from_url(&env("REDIS_URL")).expect("REDIS_URL parses")
}

/// A name no other test (in this run or a parallel one) uses: `{prefix}_{pid}_{n}_{time}`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The stack's database, migrated (concurrent test binaries migrate it at once, which
/// the advisory lock makes safe).
pub async fn pg() -> Client {
    let mut client = worker::db::connect(&pg_config())
        .await
        .expect("connect to DATABASE_URL");
    worker::migrate::run(&mut client)
        .await
        .expect("migrate the stack's database");
    client
}

pub async fn redis() -> Conn {
    Conn::connect(&redis_config())
        .await
        .expect("connect to REDIS_URL")
}

/// A database of its own, created empty and dropped (with any connections to it) when
/// this value is dropped, also when the test panics.
pub struct ScratchDb {
    pub name: String,
    pub config: tokio_postgres::Config,
}

impl ScratchDb {
    pub async fn create() -> Self {
        let name = unique("worker_test");
        let admin = worker::db::connect(&pg_config())
            .await
            .expect("connect to DATABASE_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE (the role needs CREATEDB)");
        let mut config = pg_config();
        config.dbname(&name);
        Self { name, config }
    }

    pub async fn connect(&self) -> Client {
        worker::db::connect(&self.config)
            .await
            .expect("connect to the scratch database")
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread
        // with a runtime of its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let admin = worker::db::connect(&pg_config()).await?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                Ok::<_, worker::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop scratch database {}: {dropped:?}", self.name);
        }
    }
}

/// Every Redis key of the event (`ev:{E}:*`).
pub async fn event_keys(redis: &mut Conn, event_id: &str) -> Vec<Vec<u8>> {
    let pattern = format!("ev:{{{event_id}}}:*");
    let (mut cursor, mut keys) = (b"0".to_vec(), Vec::new());
    loop {
        let reply = redis
            .query(&[
                b"SCAN",
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"1000",
            ])
            .await
            .expect("SCAN");
        let Frame::Array(mut parts) = reply else {
            panic!("SCAN reply {reply:?}")
        };
        let (Some(Frame::Array(batch)), Some(Frame::BulkString(next))) = (parts.pop(), parts.pop())
        else {
            panic!("SCAN reply parts")
        };
        keys.extend(batch.into_iter().filter_map(|k| match k {
            Frame::BulkString(k) => Some(k.to_vec()),
            _ => None,
        }));
        if &next[..] == b"0" {
            return keys;
        }
        cursor = next.to_vec();
    }
}

/// Deletes the event's keys, as a `FLUSHALL` would, without touching anyone else's.
pub async fn flush_event(redis: &mut Conn, event_id: &str) {
    for key in event_keys(redis, event_id).await {
        redis.query(&[b"DEL", &key]).await.expect("DEL");
    }
}

/// Removes the event from PostgreSQL and Redis.
pub async fn drop_event(pg: &Client, redis: &mut Conn, event_id: &str) {
    pg.execute("DELETE FROM sold_seats WHERE event_id = $1", &[&event_id])
        .await
        .expect("delete sold seats");
    pg.execute(
        "DELETE FROM payments p USING orders o WHERE p.order_id = o.order_id AND o.event_id = $1",
        &[&event_id],
    )
    .await
    .expect("delete payments");
    pg.execute("DELETE FROM orders WHERE event_id = $1", &[&event_id])
        .await
        .expect("delete orders");
    pg.execute("DELETE FROM events WHERE event_id = $1", &[&event_id])
        .await
        .expect("delete event");
    flush_event(redis, event_id).await;
}

/// A bulk string reply as text; `None` for a null reply.
pub fn text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::BulkString(b) | Frame::SimpleString(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        Frame::Null => None,
        other => panic!("expected a string reply, got {other:?}"),
    }
}

pub fn integer(frame: &Frame) -> i64 {
    match frame {
        Frame::Integer(n) => *n,
        other => panic!("expected an integer reply, got {other:?}"),
    }
}
