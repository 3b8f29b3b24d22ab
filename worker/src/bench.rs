//! `worker bench`: orders/s into PostgreSQL from a pre-filled queue, on this machine.
//!
//! Seeds a fresh event (`bench_{ms}`, `--seats` seats over five sections), appends
//! `--orders` commit messages for distinct seats to its streams (as the edge would,
//! without holds), then runs the same consumers as `worker run` (`WORKER_*` settings
//! apply) and times them from start until every message is acknowledged: stored in
//! PostgreSQL, projected into Redis, acked. Then it checks the count in PostgreSQL and
//! deletes the event (`--keep` keeps it).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use codec::{contract::CommitMessage, keys};
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::{
    catalog::{self, now_ms, SeedSpec},
    config::{Config, Profile},
    error::Error,
    redis::{Conn, Frame, Pipeline},
    run::{self, Metrics},
};

/// What `worker bench` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchSpec {
    pub orders: u32,
    pub seats: u32,
    pub keep: bool,
}

impl Default for BenchSpec {
    fn default() -> Self {
        Self {
            orders: 50_000,
            seats: 1_000_000,
            keep: false,
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub event_id: String,
    pub orders: u32,
    pub fill: Duration,
    pub drain: Duration,
    pub transactions: u64,
}

impl BenchReport {
    pub fn orders_per_sec(&self) -> f64 {
        f64::from(self.orders) / self.drain.as_secs_f64()
    }
}

const SECTIONS: [&str; 5] = ["A", "B", "C", "D", "E"];
/// Longest a drain may take before the bench gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

pub async fn bench(
    config: &Config,
    pg: &mut Client,
    redis: &mut Conn,
    spec: &BenchSpec,
) -> Result<BenchReport, Error> {
    if config.run.profile != Profile::Local {
        return Err(Error::Invalid(
            "worker bench runs on the local profile (Redis Streams)".into(),
        ));
    }
    let per_section = spec.seats.div_ceil(SECTIONS.len() as u32).max(1);
    if spec.orders as u64 > u64::from(per_section) * SECTIONS.len() as u64 {
        return Err(Error::Invalid(format!(
            "{} orders need as many seats; --seats is {}",
            spec.orders, spec.seats
        )));
    }
    let event_id = format!("bench_{}", now_ms());
    let mut seed = SeedSpec::new(&event_id);
    for section in &mut seed.sections {
        section.seats = per_section;
    }
    catalog::seed(pg, redis, &seed).await?;

    let started = Instant::now();
    fill(redis, &seed, spec.orders, config.run.commit_shards).await?;
    let fill_time = started.elapsed();

    let mut config = config.clone();
    config.run.events = Some(vec![event_id.clone()]);
    // A benchmark beside a running worker: no metrics listener to collide with it.
    config.run.metrics_addr = None;
    let metrics = Arc::new(Metrics::default());
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let worker = tokio::spawn(run::run(config, shutdown, Arc::clone(&metrics)));
    while Metrics::get(&metrics.acked) < u64::from(spec.orders) {
        if started.elapsed() > DRAIN_LIMIT || worker.is_finished() {
            let _ = stop.send(true);
            return Err(Error::Invalid(format!(
                "drained {} of {} in {:?}",
                Metrics::get(&metrics.acked),
                spec.orders,
                started.elapsed()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = started.elapsed();
    let _ = stop.send(true);
    let _ = worker.await;

    let stored: i64 = pg
        .query_one(
            "SELECT count(*) FROM orders WHERE event_id = $1 AND status = 'CONFIRMED'",
            &[&event_id],
        )
        .await?
        .get(0);
    if stored != i64::from(spec.orders) {
        return Err(Error::Invalid(format!(
            "{stored} confirmed orders in PostgreSQL, expected {}",
            spec.orders
        )));
    }
    if !spec.keep {
        drop_event(pg, redis, &event_id).await?;
    }
    Ok(BenchReport {
        event_id,
        orders: spec.orders,
        fill: fill_time,
        drain,
        transactions: Metrics::get(&metrics.transactions),
    })
}

/// Appends `orders` commits for distinct seats, round-robin over sections and shards,
/// 1,000 `XADD`s a round trip.
async fn fill(redis: &mut Conn, seed: &SeedSpec, orders: u32, shards: u32) -> Result<(), Error> {
    let now = now_ms();
    let sections = seed.sections.len() as u32;
    let mut pipeline = Pipeline::new();
    for i in 0..orders {
        let section = &seed.sections[(i % sections) as usize];
        let msg = CommitMessage {
            v: CommitMessage::VERSION,
            idem: format!("bench-{i}"),
            intent_id: format!("pi{i}"),
            event_id: seed.event_id.clone(),
            user_id: format!("bench-user-{i}"),
            seat_ids: vec![format!("{}-{}", section.id, i / sections + 1)],
            hold_ids: vec![format!("h{i}")],
            amount: section.price,
            currency: seed.currency.clone(),
            accepted_at: now,
        };
        let body = serde_json::to_vec(&msg).map_err(|e| Error::Invalid(e.to_string()))?;
        let key = keys::commits(&seed.event_id, i % shards);
        pipeline.push(&[b"XADD", key.as_bytes(), b"*", b"msg", &body]);
        if pipeline.len() == 1_000 {
            redis.pipeline(&pipeline).await?;
            pipeline = Pipeline::new();
        }
    }
    if !pipeline.is_empty() {
        redis.pipeline(&pipeline).await?;
    }
    Ok(())
}

/// Deletes a bench event from PostgreSQL and its keys from Redis.
async fn drop_event(pg: &mut Client, redis: &mut Conn, event_id: &str) -> Result<(), Error> {
    let tx = pg.transaction().await?;
    tx.execute("DELETE FROM sold_seats WHERE event_id = $1", &[&event_id])
        .await?;
    tx.execute(
        "DELETE FROM payments p USING orders o WHERE p.order_id = o.order_id AND o.event_id = $1",
        &[&event_id],
    )
    .await?;
    tx.execute("DELETE FROM orders WHERE event_id = $1", &[&event_id])
        .await?;
    tx.execute("DELETE FROM events WHERE event_id = $1", &[&event_id])
        .await?;
    tx.commit().await?;
    let pattern = format!("ev:{{{event_id}}}:*");
    let mut cursor = b"0".to_vec();
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
            .await?;
        let Frame::Array(mut parts) = reply else {
            break;
        };
        let (Some(Frame::Array(found)), Some(Frame::BulkString(next))) = (parts.pop(), parts.pop())
        else {
            break;
        };
        let mut del: Vec<&[u8]> = vec![b"DEL"];
        del.extend(found.iter().filter_map(|k| match k {
            Frame::BulkString(k) => Some(&k[..]),
            _ => None,
        }));
        if del.len() > 1 {
            redis.query(&del).await?;
        }
        if &next[..] == b"0" {
            break;
        }
        cursor = next.to_vec();
    }
    Ok(())
}
