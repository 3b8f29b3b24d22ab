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

/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
/// A private `redis-server` (plain or TLS), shared with the edge's tests.
#[path = "../../../edge/tests/support/redis_server.rs"]
#[allow(dead_code)]
pub mod redis_server;

pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Polls `$cond` (which may `.await`) every 20 ms until true; panics after [`WAIT`].
#[macro_export]
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let deadline = std::time::Instant::now() + $crate::support::WAIT;
        loop {
            if $cond {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {}",
                $what
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// The worker's configuration for a test: the stack's services, only `events`, quick
/// timings (visibility 500 ms, block 100 ms, refresh 200 ms, two consumers); `extra`
/// overrides.
pub fn worker_config(events: &[&str], extra: &[(&str, &str)]) -> worker::config::Config {
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), env("DATABASE_URL")),
        ("REDIS_URL".into(), env("REDIS_URL")),
        ("WORKER_EVENTS".into(), events.join(",")),
        ("WORKER_VISIBILITY_MS".into(), "500".into()),
        ("WORKER_BLOCK_MS".into(), "100".into()),
        ("WORKER_EVENT_REFRESH_MS".into(), "200".into()),
        ("WORKER_CONCURRENCY".into(), "2".into()),
        // Many run at once; the metrics test asks for a port of its own.
        ("WORKER_METRICS_ADDR".into(), "off".into()),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push(((*k).to_owned(), (*v).to_owned()));
    }
    worker::config::Config::from_lookup(|name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .expect("a valid test configuration")
}

/// `worker run`'s consumers, in this process.
pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), worker::Error>>,
    pub metrics: std::sync::Arc<worker::run::Metrics>,
}

impl Running {
    pub fn start(config: worker::config::Config) -> Self {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let metrics = std::sync::Arc::new(worker::run::Metrics::default());
        let task = tokio::spawn(worker::run::run(
            config,
            shutdown,
            std::sync::Arc::clone(&metrics),
        ));
        Self {
            stop,
            task,
            metrics,
        }
    }

    pub fn acked(&self) -> u64 {
        worker::run::Metrics::get(&self.metrics.acked)
    }

    /// Asks the consumers to stop and waits (bounded) until they have.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the consumers stop in time")
            .expect("no panic")
            .expect("run returns Ok");
    }
}

/// A version 1 commit message, as the edge writes it.
pub fn commit_message(event: &str, user: &str, idem: &str, seats: &[&str]) -> String {
    let holds: Vec<String> = seats.iter().map(|s| format!("h-{user}-{s}")).collect();
    serde_json::json!({
        "v": 1, "idem": idem, "intentId": format!("pi-{idem}"), "eventId": event,
        "userId": user, "seatIds": seats, "holdIds": holds, "amount": 1000 * seats.len(),
        "currency": "USD", "acceptedAt": 1_700_000_000_000u64
    })
    .to_string()
}

/// Appends a message to one of the event's commit streams (field `msg`).
pub async fn xadd(redis: &mut Conn, event: &str, shard: u32, body: &str) {
    let key = codec::keys::commits(event, shard);
    redis
        .query(&[b"XADD", key.as_bytes(), b"*", b"msg", body.as_bytes()])
        .await
        .expect("XADD");
}

/// A hold made by the edge's hold script (`codec::store::Hold`, TTL 60 s, limit 16),
/// hold id `h-{user}-{seat}` as in [`commit_message`].
pub async fn hold(redis: &mut Conn, event: &str, user: &str, seat: &str) {
    let outcome = try_hold(redis, event, user, seat).await;
    assert!(
        matches!(outcome, codec::store::HoldOutcome::Held { .. }),
        "{seat} held: {outcome:?}"
    );
}

/// What the edge's hold script answers to a hold as in [`hold`].
pub async fn try_hold(
    redis: &mut Conn,
    event: &str,
    user: &str,
    seat: &str,
) -> codec::store::HoldOutcome {
    let codec::rules::Seat { section, n } = codec::rules::seat_id(seat).expect("seat id");
    let hold_id = format!("h-{user}-{seat}");
    let mut call = codec::store::Call::default();
    codec::store::Hold {
        event,
        section,
        n,
        hold_id: hold_id.as_bytes(),
        user,
        seat_id: seat,
    }
    .call(&mut call);
    let keys: Vec<&[u8]> = call.keys().collect();
    let shared = codec::store::Hold::shared(60_000, 16);
    let mut args: Vec<&[u8]> = shared.iter().map(Vec::as_slice).collect();
    args.extend(call.args());
    let script = worker::redis::Script::new(codec::store::scripts::HOLD);
    let mut p = worker::redis::Pipeline::new();
    script.push(&mut p, &keys, &args);
    let replies = redis.run_script(&script, &p).await.expect("hold");
    match replies.first() {
        Some(Frame::Array(items)) if items.len() == 1 => {
            codec::store::Hold::decode(&items[0]).expect("a hold outcome")
        }
        other => panic!("hold script replied {other:?}"),
    }
}

/// The order's status record, if any.
pub async fn status(
    redis: &mut Conn,
    event: &str,
    user: &str,
    idem: &str,
) -> Option<codec::contract::StatusResponse> {
    let key = codec::keys::order_status(event, user, idem);
    let reply = redis.query(&[b"GET", key.as_bytes()]).await.expect("GET");
    text(&reply).map(|json| serde_json::from_str(&json).expect("a StatusResponse"))
}

/// The order's state in its status record, if any.
pub async fn state(redis: &mut Conn, event: &str, user: &str, idem: &str) -> Option<String> {
    status(redis, event, user, idem)
        .await
        .map(|s| format!("{:?}", s.order.status).to_uppercase())
}

/// One integer from a query with one row and column.
pub async fn count(pg: &Client, sql: &str, event: &str) -> i64 {
    pg.query_one(sql, &[&event])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Entries pending in the group, over the event's first `shards` streams.
pub async fn pending(redis: &mut Conn, event: &str, shards: u32) -> i64 {
    let mut total = 0;
    for shard in 0..shards {
        let key = codec::keys::commits(event, shard);
        match redis
            .query(&[b"XPENDING", key.as_bytes(), b"workers"])
            .await
        {
            Ok(Frame::Array(parts)) => total += integer(&parts[0]),
            Ok(other) => panic!("XPENDING {other:?}"),
            Err(_) => {} // no group yet
        }
    }
    total
}

/// Entries in the event's first `shards` streams.
pub async fn stream_len(redis: &mut Conn, event: &str, shards: u32) -> i64 {
    let mut total = 0;
    for shard in 0..shards {
        let key = codec::keys::commits(event, shard);
        total += integer(&redis.query(&[b"XLEN", key.as_bytes()]).await.expect("XLEN"));
    }
    total
}

/// Seeds `event` with sections of `seats` seats each, priced 1000 USD cents.
pub async fn seed(pg: &mut Client, redis: &mut Conn, event: &str, sections: &[(&str, u32)]) {
    let mut spec = worker::catalog::SeedSpec::new(event);
    spec.currency = "USD".into();
    spec.sections = sections
        .iter()
        .map(|(id, seats)| codec::keys::CatalogSection {
            id: (*id).to_owned(),
            seats: *seats,
            price: 1000,
        })
        .collect();
    worker::catalog::seed(pg, redis, &spec).await.expect("seed");
}

pub async fn sold_bit(redis: &mut Conn, event: &str, seat: &str) -> i64 {
    let codec::rules::Seat { section, n } = codec::rules::seat_id(seat).expect("seat id");
    integer(
        &redis
            .query(&[
                b"GETBIT",
                codec::keys::sold(event, section).as_bytes(),
                n.to_string().as_bytes(),
            ])
            .await
            .expect("GETBIT"),
    )
}
