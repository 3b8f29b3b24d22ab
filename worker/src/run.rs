//! `worker run`: drains the commit queue into PostgreSQL.
//!
//! `WORKER_CONCURRENCY` consumer loops ([`consume`]), each with its own queue consumer
//! (`queue::streams` or `queue::sqs`) and Redis connection, share a PostgreSQL
//! [`Pool`] and an event refresher that re-reads the events and their catalogs every
//! `WORKER_EVENT_REFRESH_MS` (and creates the consumer group on a new event's
//! streams). A batch's path:
//!
//! receive -> [`commit::check`] (poison -> dead letter at once; a commit no retry can
//! sell -> stored `REJECTED` with the reason) -> [`store::store`] (one transaction;
//! retryable errors back off and retry, visibility extended meanwhile) ->
//! [`project::project`] (Redis, one round trip) -> ack.
//!
//! Nothing is acknowledged before its PostgreSQL commit; a crash anywhere after the
//! commit only repeats idempotent work on redelivery. Shutdown (the `shutdown` watch
//! turning true, on SIGTERM/SIGINT in `main`): loops stop receiving, finish and ack
//! the batch in hand, and return.

use std::{future::Future, sync::Arc, time::Duration};

use codec::{contract::OrderState, keys};
use tokio::{
    sync::{watch, Notify},
    task::JoinSet,
};
use tokio_postgres::error::SqlState;
use tracing::{debug, error, info, warn};

pub use crate::metrics::Metrics;
use crate::{
    commit::{self, Catalogs, Checked, Commit},
    config::{Config, Fault, Profile},
    db::Pool,
    error::Error,
    project,
    queue::{sqs::SqsConsumer, streams, streams::StreamConsumer, Consumer, Delivery},
    redis::{Conn, Script},
    store::{self, Outcome},
};

/// Exit status of `WORKER_FAULT=exit-after-commit`.
pub const FAULT_EXIT_CODE: i32 = 86;
/// A store that has not answered in this long is abandoned (and retried on a new
/// connection).
const STORE_TIMEOUT: Duration = Duration::from_secs(30);
/// After shutdown began, a batch still failing after this many tries is left to
/// redelivery.
const SHUTDOWN_ATTEMPTS: u32 = 3;

/// What the consumer loops share.
struct Shared {
    config: Config,
    pool: Arc<Pool>,
    catalogs: watch::Receiver<Arc<Catalogs>>,
    /// Wakes the refresher early (a message for an event not known yet).
    refresh: Notify,
    metrics: Arc<Metrics>,
    project: Script,
}

/// Runs the consumers until `shutdown` turns true and every loop has finished its
/// batch. `metrics` is the caller's, to watch progress (`worker bench`).
pub async fn run(
    config: Config,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) -> Result<(), Error> {
    let run = config.run.clone();
    let pool = Pool::new(config.database.clone(), run.pg_connections);
    let (catalogs_tx, catalogs) = watch::channel(Arc::new(Catalogs::new()));
    let (streams_tx, streams_rx) = watch::channel(Arc::new(Vec::new()));
    let shared = Arc::new(Shared {
        config,
        pool,
        catalogs,
        refresh: Notify::new(),
        metrics,
        project: Script::new(project::PROJECT),
    });

    // Bound first, so that an address in use stops the worker before it consumes.
    let mut tasks = JoinSet::new();
    if let Some(addr) = run.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::Invalid(format!(
                "cannot serve metrics on {addr} (WORKER_METRICS_ADDR; `off` serves none): {e}"
            ))
        })?;
        let sources = crate::metrics::Sources {
            pool: Arc::clone(&shared.pool),
            redis: shared.config.redis.clone(),
            streams: streams_rx.clone(),
            catalogs: shared.catalogs.clone(),
        };
        tasks.spawn(crate::metrics::serve(
            listener,
            Arc::clone(&shared.metrics),
            sources,
        ));
    }

    if let Some(interval) = run.metrics_emf {
        tasks.spawn(crate::metrics::emit(Arc::clone(&shared.metrics), interval));
    }

    let mut refresher = Refresher {
        shared: Arc::clone(&shared),
        catalogs: catalogs_tx,
        streams: streams_tx,
        redis: None,
    };
    // The first refresh must succeed: without catalogs every message looks unknown.
    let mut backoff = Backoff::default();
    while let Err(e) = refresher.refresh().await {
        warn!(error = %e, kind = e.kind(), "cannot read the events yet");
        if !backoff.wait(&shutdown).await {
            return Ok(());
        }
    }
    let events = shared.catalogs.borrow().len();
    tasks.spawn(refresher.run(shutdown.clone()));
    tasks.spawn(report(Arc::clone(&shared.metrics), shutdown.clone()));
    if run.payment_timeout.is_some() {
        tasks.spawn(crate::payment::run(
            Arc::new(shared.config.clone()),
            Script::new(project::PROJECT),
            Arc::clone(&shared.metrics),
            shutdown.clone(),
        ));
    }

    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let mut loops = JoinSet::new();
    match &run.profile {
        Profile::Local => {
            info!(
                consumers = run.concurrency,
                events,
                shards = run.commit_shards,
                batch = run.batch,
                visibility_ms = run.visibility.as_millis() as u64,
                "consuming Redis Streams (group {})",
                streams::GROUP
            );
            for i in 0..run.concurrency {
                let name = format!("{host}-{}-{i}", std::process::id());
                let consumer = StreamConsumer::new(
                    shared.config.redis.clone(),
                    name,
                    streams_rx.clone(),
                    &run,
                );
                loops.spawn(consume(consumer, Arc::clone(&shared), shutdown.clone()));
            }
        }
        Profile::Aws {
            queue_url,
            wait_secs,
        } => {
            info!(consumers = run.concurrency, queue_url = %queue_url, batch = run.batch.min(10), "consuming SQS");
            let client = SqsConsumer::client_from_env().await;
            for _ in 0..run.concurrency {
                let consumer = SqsConsumer::new(
                    client.clone(),
                    queue_url.clone(),
                    *wait_secs,
                    run.visibility,
                    run.batch,
                    shutdown.clone(),
                );
                loops.spawn(consume(consumer, Arc::clone(&shared), shutdown.clone()));
            }
        }
    }
    while let Some(done) = loops.join_next().await {
        if let Err(e) = done {
            error!(error = %e, "a consumer loop panicked");
        }
    }
    tasks.abort_all();
    info!("stopped: {}", shared.metrics.line());
    Ok(())
}

/// Logs the counters every 10 s while they move.
async fn report(metrics: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) {
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = shutdown.changed() => return,
        }
        let line = metrics.line();
        if line != last {
            info!("{line}");
            last = line;
        }
    }
}

/// Re-reads events and catalogs; creates consumer groups on new streams.
struct Refresher {
    shared: Arc<Shared>,
    catalogs: watch::Sender<Arc<Catalogs>>,
    streams: watch::Sender<Arc<Vec<String>>>,
    redis: Option<Conn>,
}

impl Refresher {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.shared.config.run.event_refresh) => {}
                _ = self.shared.refresh.notified() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = self.refresh().await {
                warn!(error = %e, kind = e.kind(), "refreshing the events failed");
            }
        }
    }

    async fn refresh(&mut self) -> Result<(), Error> {
        let run = &self.shared.config.run;
        let catalogs = {
            let conn = self.shared.pool.get().await?;
            let rows = conn
                .client
                .query(
                    "SELECT event_id, section_id, seats FROM sections
                      WHERE $1::text[] IS NULL OR event_id = ANY($1)",
                    &[&run.events],
                )
                .await?;
            conn.reuse();
            let mut catalogs = Catalogs::new();
            for row in &rows {
                catalogs
                    .entry(row.get(0))
                    .or_default()
                    .insert(row.get(1), row.get::<_, i32>(2) as u32);
            }
            catalogs
        };
        if run.profile == Profile::Local {
            let mut events: Vec<&String> = catalogs.keys().collect();
            events.sort();
            let keys: Vec<String> = events
                .iter()
                .flat_map(|e| (0..run.commit_shards).map(|shard| keys::commits(e, shard)))
                .collect();
            if **self.streams.borrow() != keys {
                let fresh: Vec<String> = keys
                    .iter()
                    .filter(|k| !self.streams.borrow().contains(k))
                    .cloned()
                    .collect();
                if self.redis.as_ref().is_none_or(Conn::is_dead) {
                    self.redis = Some(Conn::connect(&self.shared.config.redis).await?);
                }
                let redis = self.redis.as_mut().expect("just connected");
                streams::ensure_groups(redis, &fresh).await?;
                info!(
                    events = events.len(),
                    streams = keys.len(),
                    "consuming streams"
                );
                self.streams.send_replace(Arc::new(keys));
            }
        }
        self.catalogs.send_replace(Arc::new(catalogs));
        Ok(())
    }
}

/// Exponential backoff with jitter, 100 ms doubling to 5 s.
#[derive(Debug, Default)]
struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// Sleeps before the next attempt; false when shutdown began and enough attempts
    /// were made (then the caller gives up and leaves the work to redelivery).
    async fn wait(&mut self, shutdown: &watch::Receiver<bool>) -> bool {
        self.attempts += 1;
        if *shutdown.borrow() && self.attempts > SHUTDOWN_ATTEMPTS {
            return false;
        }
        let base = 100u64 << self.attempts.min(6);
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()))
            % (base / 2 + 1);
        tokio::time::sleep(Duration::from_millis((base + jitter).min(5_000))).await;
        true
    }
}

/// Runs `work` while extending the visibility of `held` every third of the timeout,
/// so slow work or a retry loop does not let the messages be delivered elsewhere.
async fn extending<C: Consumer, T>(
    queue: &mut C,
    held: &[Delivery],
    visibility: Duration,
    work: impl Future<Output = T>,
) -> T {
    let every = visibility / 3;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticker.tick() => {
                if let Err(e) = queue.extend(held).await {
                    warn!(error = %e, kind = e.kind(), "extending visibility failed");
                }
            }
        }
    }
}

/// One consumer loop: receive, process, ack, until shutdown.
async fn consume<C: Consumer>(mut queue: C, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let mut redis: Option<Conn> = None;
    let mut backoff = Backoff::default();
    while !*shutdown.borrow() {
        let batch = match queue.receive().await {
            Ok(batch) => {
                backoff = Backoff::default();
                batch
            }
            Err(e) => {
                warn!(error = %e, kind = e.kind(), "receive failed");
                Metrics::add(&shared.metrics.retries, 1);
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        Metrics::add(&shared.metrics.received, batch.len());
        let work = sort_out(&mut queue, &shared, batch).await;
        for chunk in work.chunks(shared.config.run.batch) {
            process(&mut queue, &shared, &mut redis, chunk, &shutdown).await;
        }
    }
}

/// Sends poison and over-delivered messages to the dead-letter queue; returns the rest.
async fn sort_out<C: Consumer>(
    queue: &mut C,
    shared: &Shared,
    batch: Vec<Delivery>,
) -> Vec<(Delivery, Commit)> {
    let mut work = Vec::with_capacity(batch.len());
    for delivery in batch {
        if let Some(max) = queue.max_receives().filter(|&max| delivery.receives > max) {
            let reason = format!(
                "delivered {} times without success (WORKER_MAX_DELIVERIES={max})",
                delivery.receives
            );
            dead_letter(queue, shared, &delivery, &reason).await;
            continue;
        }
        let mut checked = commit::check(&delivery.body, &shared.catalogs.borrow().clone());
        if checked.wants_fresh_catalog() {
            // Maybe seeded since the last refresh.
            checked = commit::check(&delivery.body, &*fresh_catalogs(shared).await);
        }
        match checked {
            Checked::Valid(commit) => match &delivery.event_id {
                Some(stream_event) if *stream_event != commit.msg.event_id => {
                    let reason = format!(
                        "a commit of event {} on a stream of event {stream_event}",
                        commit.msg.event_id
                    );
                    dead_letter(queue, shared, &delivery, &reason).await;
                }
                _ => {
                    if let Some(rejected) = &commit.rejected {
                        warn!(source = %delivery.source, event = %commit.msg.event_id, idem = %commit.msg.idem,
                              reason = rejected.reason, detail = %rejected.detail, "storing the order REJECTED");
                    }
                    work.push((delivery, commit))
                }
            },
            Checked::Poison(poison) => dead_letter(queue, shared, &delivery, &poison.0).await,
            Checked::UnknownEvent(event) => {
                let reason = format!("unknown event {event}");
                dead_letter(queue, shared, &delivery, &reason).await;
            }
        }
    }
    work
}

/// The catalogs after a refresh asked for now (at most 5 s later: then the ones in hand).
async fn fresh_catalogs(shared: &Shared) -> Arc<Catalogs> {
    let mut catalogs = shared.catalogs.clone();
    catalogs.mark_unchanged();
    shared.refresh.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(5), catalogs.changed()).await;
    let fresh = catalogs.borrow().clone();
    fresh
}

async fn dead_letter<C: Consumer>(
    queue: &mut C,
    shared: &Shared,
    delivery: &Delivery,
    reason: &str,
) {
    warn!(source = %delivery.source, receipt = %delivery.receipt, receives = delivery.receives, reason, "dead letter");
    match queue.dead_letter(delivery, reason).await {
        Ok(()) => Metrics::add(&shared.metrics.dead_lettered, 1),
        // Still pending: delivered again, and dead-lettered again then.
        Err(e) => warn!(error = %e, kind = e.kind(), "moving a dead letter failed"),
    }
}

/// What storing a chunk came to.
enum Stored {
    Done(Vec<Outcome>),
    /// A non-retryable error: one of the commits can never be stored as it is.
    Refused(Error),
    /// Shutdown began while retrying: left to redelivery.
    GaveUp,
}

/// Stores, projects and acks one chunk (at most `WORKER_BATCH` commits). When the
/// chunk is refused, its commits are stored one by one, to dead-letter only the one
/// at fault.
async fn process<C: Consumer>(
    queue: &mut C,
    shared: &Shared,
    redis: &mut Option<Conn>,
    chunk: &[(Delivery, Commit)],
    shutdown: &watch::Receiver<bool>,
) {
    match store_retrying(queue, shared, chunk, shutdown).await {
        Stored::Done(outcomes) => finish(queue, shared, redis, chunk, &outcomes, shutdown).await,
        Stored::GaveUp => {}
        Stored::Refused(e) if chunk.len() > 1 => {
            warn!(error = %e, kind = e.kind(), commits = chunk.len(), "batch refused; storing one by one");
            for one in chunk.chunks(1) {
                match store_retrying(queue, shared, one, shutdown).await {
                    Stored::Done(outcomes) => {
                        finish(queue, shared, redis, one, &outcomes, shutdown).await
                    }
                    Stored::GaveUp => return,
                    Stored::Refused(e) => {
                        refused(queue, shared, redis, &one[0], &e, shutdown).await
                    }
                }
            }
        }
        Stored::Refused(e) => refused(queue, shared, redis, &chunk[0], &e, shutdown).await,
    }
}

/// One commit PostgreSQL refused for good. A seat gone from the catalog since this
/// worker's copy (a re-seed shrank or dropped its section; `sold_seats`' trigger or
/// foreign key refused it: SQLSTATE 23503) is no operator's to fix: once a fresh
/// catalog agrees, the order is stored `REJECTED` with `SEAT_NOT_FOUND`. Anything else
/// goes to the dead-letter queue with PostgreSQL's message.
async fn refused<C: Consumer>(
    queue: &mut C,
    shared: &Shared,
    redis: &mut Option<Conn>,
    (delivery, commit): &(Delivery, Commit),
    e: &Error,
    shutdown: &watch::Receiver<bool>,
) {
    let mut error = e.to_string();
    if commit.rejected.is_none() && e.sqlstate() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        if let Checked::Valid(again) = commit::check(&delivery.body, &*fresh_catalogs(shared).await)
        {
            if let Some(rejected) = &again.rejected {
                warn!(source = %delivery.source, event = %again.msg.event_id, idem = %again.msg.idem,
                      reason = rejected.reason, detail = %rejected.detail, "storing the order REJECTED");
                let one = [(delivery.clone(), again)];
                match store_retrying(queue, shared, &one, shutdown).await {
                    Stored::Done(outcomes) => {
                        return finish(queue, shared, redis, &one, &outcomes, shutdown).await
                    }
                    Stored::GaveUp => return,
                    Stored::Refused(e) => error = e.to_string(),
                }
            }
        }
    }
    dead_letter(
        queue,
        shared,
        delivery,
        &format!("cannot be stored: {error}"),
    )
    .await;
}

/// One transaction for the chunk; retryable errors back off and try again, with the
/// messages' visibility extended meanwhile.
async fn store_retrying<C: Consumer>(
    queue: &mut C,
    shared: &Shared,
    chunk: &[(Delivery, Commit)],
    shutdown: &watch::Receiver<bool>,
) -> Stored {
    let held: Vec<Delivery> = chunk.iter().map(|(d, _)| d.clone()).collect();
    let commits: Vec<&Commit> = chunk.iter().map(|(_, c)| c).collect();
    extending(queue, &held, shared.config.run.visibility, async {
        let mut backoff = Backoff::default();
        loop {
            let started = std::time::Instant::now();
            match store_once(shared, &commits).await {
                Ok(outcomes) => {
                    let ms = started.elapsed().as_millis() as u64;
                    shared.metrics.transaction_ms.record(ms);
                    return Stored::Done(outcomes);
                }
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, kind = e.kind(), commits = commits.len(), "storing failed, will retry");
                    Metrics::add(&shared.metrics.retries, 1);
                    if !backoff.wait(shutdown).await {
                        return Stored::GaveUp;
                    }
                }
                Err(e) => return Stored::Refused(e),
            }
        }
    })
    .await
}

/// After the commit: the Redis projection, then the ack.
async fn finish<C: Consumer>(
    queue: &mut C,
    shared: &Shared,
    redis: &mut Option<Conn>,
    chunk: &[(Delivery, Commit)],
    outcomes: &[Outcome],
    shutdown: &watch::Receiver<bool>,
) {
    Metrics::add(&shared.metrics.transactions, 1);
    shared.metrics.batch.record(chunk.len() as u64);
    if shared.config.run.fault == Some(Fault::ExitAfterCommit) {
        eprintln!(
            "worker: WORKER_FAULT=exit-after-commit: exiting after the commit, before the ack"
        );
        std::process::exit(FAULT_EXIT_CODE);
    }
    let now = crate::now_ms();
    for ((_, commit), outcome) in chunk.iter().zip(outcomes) {
        let counter = match (outcome.replay, outcome.state) {
            (true, _) => &shared.metrics.replayed,
            (false, OrderState::Rejected) => &shared.metrics.rejected,
            (false, OrderState::Confirmed) => &shared.metrics.confirmed,
            // Awaiting its payment: final later, in the payment loop.
            (false, OrderState::Pending) => continue,
        };
        Metrics::add(counter, 1);
        if !outcome.replay {
            if let Some(reason) = &outcome.reason {
                shared.metrics.rejected_because(reason);
            }
            let accepted = commit.msg.accepted_at;
            shared.metrics.final_ms.record(now.saturating_sub(accepted));
        }
    }
    debug!(commits = chunk.len(), "stored");

    let held: Vec<Delivery> = chunk.iter().map(|(d, _)| d.clone()).collect();
    let orders: Vec<(&Commit, &Outcome)> = chunk.iter().map(|(_, c)| c).zip(outcomes).collect();
    let projected = extending(queue, &held, shared.config.run.visibility, async {
        let mut backoff = Backoff::default();
        loop {
            match project_once(shared, redis, &orders).await {
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, kind = e.kind(), "projecting into Redis failed, will retry");
                    Metrics::add(&shared.metrics.retries, 1);
                    if !backoff.wait(shutdown).await {
                        return Err(e);
                    }
                }
                result => return result,
            }
        }
    })
    .await;
    if let Err(e) = projected {
        // Not acknowledged: delivered again (the order is found, the projection tried
        // again) and dead-lettered after WORKER_MAX_DELIVERIES.
        error!(error = %e, kind = e.kind(), commits = chunk.len(), "projection failed; left unacknowledged");
        return;
    }

    let mut backoff = Backoff::default();
    loop {
        match queue.ack(&held).await {
            Ok(()) => {
                Metrics::add(&shared.metrics.acked, held.len());
                return;
            }
            Err(e) => {
                warn!(error = %e, kind = e.kind(), "ack failed");
                Metrics::add(&shared.metrics.retries, 1);
                // Unacknowledged work is delivered again and found done: harmless.
                if !e.is_retryable()
                    || backoff.attempts >= SHUTDOWN_ATTEMPTS
                    || !backoff.wait(shutdown).await
                {
                    return;
                }
            }
        }
    }
}

async fn store_once(shared: &Shared, commits: &[&Commit]) -> Result<Vec<Outcome>, Error> {
    let mut conn = shared.pool.get().await?;
    let stored = tokio::time::timeout(
        STORE_TIMEOUT,
        store::store(
            &mut conn,
            commits,
            shared.config.run.purchase_limit,
            shared.config.run.payment_timeout,
        ),
    )
    .await
    .map_err(|_| Error::Timeout(STORE_TIMEOUT))?;
    // A connection is reused only after a call that ran to its end.
    conn.reuse();
    stored
}

async fn project_once(
    shared: &Shared,
    redis: &mut Option<Conn>,
    orders: &[(&Commit, &Outcome)],
) -> Result<(), Error> {
    if redis.as_ref().is_none_or(Conn::is_dead) {
        *redis = Some(Conn::connect(&shared.config.redis).await?);
    }
    let conn = redis.as_mut().expect("just connected");
    project::project(
        conn,
        &shared.project,
        orders,
        shared.config.run.status_ttl,
        project::Pending::KeepRecord,
    )
    .await
}
