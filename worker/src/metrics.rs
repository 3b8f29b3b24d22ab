//! `GET /metrics` of `worker run` on `WORKER_METRICS_ADDR` (default `127.0.0.1:9101`;
//! `off` serves none), in the Prometheus text format: what the consumers and the
//! payment loop did (the counters of [`Metrics`]), their batch sizes, transaction times and commit-to-final
//! times, the PostgreSQL pool in use, and, in the local profile, each commit stream's
//! backlog and the age of its oldest waiting entry, read from Redis at each scrape.
//! (With SQS, CloudWatch's `ApproximateNumberOfMessagesVisible` and
//! `ApproximateAgeOfOldestMessage` are those figures.)

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tracing::{info, warn};

use crate::{
    commit::Catalogs,
    db::Pool,
    queue::streams::GROUP,
    redis::{Conn, Frame, Pipeline, RedisConfig, Script},
};

/// Events whose line and sections a scrape reports, at most (by id): labels stay
/// bounded however many events PostgreSQL holds.
const MAX_EVENTS: usize = 100;

/// Counts of values at most each bound, and their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn record(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Renders it with its values divided by `scale` (1000: milliseconds as seconds).
    fn render(&self, out: &mut String, name: &str, help: &str, scale: f64) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_owned(), |&b| format!("{}", b as f64 / scale));
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum.load(Ordering::Relaxed) as f64 / scale;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Commits per PostgreSQL transaction.
pub const BATCH_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128];
/// Milliseconds: a transaction; a commit from its acceptance to its final state.
pub const MS_BOUNDS: &[u64] = &[
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];

/// What one [`crate::payment::settle`] did: payments moved by a callback, to the state they reached
/// (each an applied callback), callbacks ignored, payments timed out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub authorized: u64,
    pub captured: u64,
    pub failed: u64,
    pub ignored: u64,
    pub timed_out: u64,
}

impl Settled {
    /// Callbacks applied: every move but a timeout.
    pub fn applied(&self) -> u64 {
        self.authorized + self.captured + self.failed
    }
}

impl std::ops::AddAssign for Settled {
    fn add_assign(&mut self, other: Self) {
        self.authorized += other.authorized;
        self.captured += other.captured;
        self.failed += other.failed;
        self.ignored += other.ignored;
        self.timed_out += other.timed_out;
    }
}

/// What the consumers did.
#[derive(Debug)]
pub struct Metrics {
    pub received: AtomicU64,
    pub confirmed: AtomicU64,
    pub rejected: AtomicU64,
    /// Redeliveries of orders already stored (their projection re-applied).
    pub replayed: AtomicU64,
    pub acked: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub retries: AtomicU64,
    /// PostgreSQL transactions committed.
    pub transactions: AtomicU64,
    /// Orders stored `REJECTED`, by reason.
    pub rejected_by: Mutex<BTreeMap<String, u64>>,
    pub batch: Histogram,
    pub transaction_ms: Histogram,
    /// From `acceptedAt` (the edge's 202) to the order stored final.
    pub final_ms: Histogram,
    /// The payment loop's moves (`PAYMENT_MODE=provider`), summed over its ticks.
    pub payments: Mutex<Settled>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            received: AtomicU64::default(),
            confirmed: AtomicU64::default(),
            rejected: AtomicU64::default(),
            replayed: AtomicU64::default(),
            acked: AtomicU64::default(),
            dead_lettered: AtomicU64::default(),
            retries: AtomicU64::default(),
            transactions: AtomicU64::default(),
            rejected_by: Mutex::default(),
            batch: Histogram::new(BATCH_BOUNDS),
            transaction_ms: Histogram::new(MS_BOUNDS),
            final_ms: Histogram::new(MS_BOUNDS),
            payments: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn rejected_because(&self, reason: &str) {
        let mut by = self
            .rejected_by
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *by.entry(reason.to_owned()).or_default() += 1;
    }

    /// Counts what one tick of the payment loop committed.
    pub fn settled(&self, settled: &Settled) {
        *self
            .payments
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) += *settled;
    }

    fn payments(&self) -> Settled {
        *self
            .payments
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The counters in one log line.
    pub fn line(&self) -> String {
        format!(
            "received {}, confirmed {}, rejected {}, replayed {}, acked {}, dead letters {}, retries {}, transactions {}",
            Self::get(&self.received),
            Self::get(&self.confirmed),
            Self::get(&self.rejected),
            Self::get(&self.replayed),
            Self::get(&self.acked),
            Self::get(&self.dead_lettered),
            Self::get(&self.retries),
            Self::get(&self.transactions),
        )
    }

    fn render(&self, out: &mut String) {
        let counters = [
            ("received", "Commit messages received.", &self.received),
            ("confirmed", "Orders stored CONFIRMED.", &self.confirmed),
            ("rejected", "Orders stored REJECTED.", &self.rejected),
            (
                "replayed",
                "Redeliveries of orders already stored.",
                &self.replayed,
            ),
            ("acked", "Messages acknowledged.", &self.acked),
            (
                "dead_lettered",
                "Messages moved to the dead-letter queue.",
                &self.dead_lettered,
            ),
            (
                "retries",
                "Retried PostgreSQL, Redis or queue calls.",
                &self.retries,
            ),
            (
                "transactions",
                "PostgreSQL transactions committed.",
                &self.transactions,
            ),
        ];
        for (name, help, counter) in counters {
            let name = format!("maxtps_worker_{name}_total");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", Self::get(counter));
        }
        let name = "maxtps_worker_rejected_by_reason_total";
        let _ = writeln!(
            out,
            "# HELP {name} Orders stored REJECTED, by reason.\n# TYPE {name} counter"
        );
        let by = self
            .rejected_by
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (reason, n) in by.iter() {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
        }
        drop(by);
        // Every label always, so a dashboard finds the series before the first payment.
        let p = self.payments();
        let name = "maxtps_worker_payments_total";
        let _ = writeln!(
            out,
            "# HELP {name} Payments the payment loop moved, by outcome.\n# TYPE {name} counter"
        );
        for (outcome, n) in [
            ("authorized", p.authorized),
            ("captured", p.captured),
            ("failed", p.failed),
            ("timed_out", p.timed_out),
        ] {
            let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {n}");
        }
        let name = "maxtps_worker_payment_callbacks_total";
        let _ = writeln!(
            out,
            "# HELP {name} Recorded provider callbacks the payment loop applied or ignored.\n# TYPE {name} counter"
        );
        for (outcome, n) in [("applied", p.applied()), ("ignored", p.ignored)] {
            let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {n}");
        }
        self.batch.render(
            out,
            "maxtps_worker_batch_commits",
            "Commits per PostgreSQL transaction.",
            1.0,
        );
        self.transaction_ms.render(
            out,
            "maxtps_worker_transaction_seconds",
            "Time of one storing transaction.",
            1000.0,
        );
        self.final_ms.render(
            out,
            "maxtps_worker_commit_to_final_seconds",
            "From a commit's acceptance (202) to its order stored final.",
            1000.0,
        );
    }
}

impl Histogram {
    fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// The upper bound of the bucket holding quantile `q` of the values recorded
    /// since `before` (the last bound for the overflow bucket).
    fn quantile_since(&self, before: &[u64], q: f64) -> u64 {
        let delta: Vec<u64> = self
            .counts()
            .iter()
            .zip(before)
            .map(|(now, then)| now - then)
            .collect();
        let total: u64 = delta.iter().sum();
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut cumulative = 0;
        for (i, n) in delta.iter().enumerate() {
            cumulative += n;
            if cumulative >= rank {
                return self.bounds[i.min(self.bounds.len() - 1)];
            }
        }
        0
    }
}

/// Writes the counters' increase (and the commit-to-final and transaction p99) as
/// CloudWatch EMF lines on stdout every `interval` (`METRICS_EMF=1`).
pub async fn emit(metrics: Arc<Metrics>, interval: Duration) {
    let counters = |m: &Metrics| {
        let p = m.payments();
        [
            ("Received", Metrics::get(&m.received)),
            ("Confirmed", Metrics::get(&m.confirmed)),
            ("Rejected", Metrics::get(&m.rejected)),
            ("Replayed", Metrics::get(&m.replayed)),
            ("DeadLettered", Metrics::get(&m.dead_lettered)),
            ("Retries", Metrics::get(&m.retries)),
            ("Transactions", Metrics::get(&m.transactions)),
            ("PaymentsCaptured", p.captured),
            ("PaymentsFailed", p.failed),
            ("PaymentsTimedOut", p.timed_out),
            ("CallbacksApplied", p.applied()),
            ("CallbacksIgnored", p.ignored),
        ]
    };
    let mut last = counters(&metrics);
    let mut last_final = metrics.final_ms.counts();
    let mut last_tx = metrics.transaction_ms.counts();
    loop {
        tokio::time::sleep(interval).await;
        let now = counters(&metrics);
        let mut values: Vec<(&str, codec::emf::Unit, f64)> = now
            .iter()
            .zip(&last)
            .map(|((name, n), (_, then))| (*name, codec::emf::Unit::Count, (n - then) as f64))
            .collect();
        let p99 = metrics.final_ms.quantile_since(&last_final, 0.99);
        let tx = metrics.transaction_ms.quantile_since(&last_tx, 0.99);
        values.push((
            "CommitToFinalP99",
            codec::emf::Unit::Milliseconds,
            p99 as f64,
        ));
        values.push(("TransactionP99", codec::emf::Unit::Milliseconds, tx as f64));
        let line = codec::emf::line(crate::now_ms(), &[("Service", "worker")], &values);
        println!("{line}");
        last = now;
        last_final = metrics.final_ms.counts();
        last_tx = metrics.transaction_ms.counts();
    }
}

/// One commit stream's backlog, as the consumer group sees it.
struct Backlog {
    stream: String,
    /// Entries not yet delivered to a consumer (the group's lag).
    undelivered: u64,
    /// Delivered, not yet acknowledged.
    pending: u64,
    /// Age of the oldest entry waiting either way, in milliseconds.
    oldest_ms: Option<u64>,
}

/// What a scrape reads besides the counters.
pub struct Sources {
    pub pool: Arc<Pool>,
    pub redis: RedisConfig,
    pub streams: watch::Receiver<Arc<Vec<String>>>,
    pub catalogs: watch::Receiver<Arc<Catalogs>>,
}

/// Serves scrapes until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, sources: Sources) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving metrics");
    }
    let mut conn: Option<Conn> = None;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let streams = sources.streams.borrow().clone();
        let catalogs = sources.catalogs.borrow().clone();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            answer(stream, &metrics, &sources, &mut conn, &streams, &catalogs),
        );
        if let Ok(Err(e)) = answer.await {
            warn!(error = %e, "metrics scrape failed");
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    sources: &Sources,
    conn: &mut Option<Conn>,
    streams: &[String],
    catalogs: &Catalogs,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 8 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, body) = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?")
    {
        let mut out = String::with_capacity(8 * 1024);
        metrics.render(&mut out);
        let name = "maxtps_worker_pg_connections_in_use";
        let _ = writeln!(
            out,
            "# HELP {name} PostgreSQL connections lent out now.\n# TYPE {name} gauge\n{name} {}",
            sources.pool.in_use()
        );
        render_backlogs(&mut out, &backlogs(&sources.redis, conn, streams).await);
        if let Some(conn) = conn.as_mut() {
            render_events(&mut out, &events(conn, catalogs).await);
        }
        ("200 OK", out)
    } else {
        ("404 Not Found", "GET /metrics\n".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await
}

/// Each stream's backlog; streams whose numbers cannot be read now are left out (and
/// `maxtps_worker_queue_up` says 0).
async fn backlogs(
    redis: &RedisConfig,
    conn: &mut Option<Conn>,
    streams: &[String],
) -> Option<Vec<Backlog>> {
    if conn.as_ref().is_none_or(Conn::is_dead) {
        *conn = Conn::connect(redis).await.ok();
    }
    let conn = conn.as_mut()?;
    let now_ms = crate::now_ms();
    let mut out = Vec::with_capacity(streams.len());
    for stream in streams {
        let groups = conn.query(&[b"XINFO", b"GROUPS", stream.as_bytes()]).await;
        let Some(group) = groups.ok().and_then(|g| workers_group(&g)) else {
            continue;
        };
        let mut oldest: Option<u64> = None;
        let pending_ids = conn
            .query(&[b"XPENDING", stream.as_bytes(), GROUP.as_bytes()])
            .await;
        if let Ok(Frame::Array(summary)) = &pending_ids {
            oldest = summary.get(1).and_then(id_ms);
        }
        let from = format!("({}", group.last_delivered);
        let next = conn
            .query(&[
                b"XRANGE",
                stream.as_bytes(),
                from.as_bytes(),
                b"+",
                b"COUNT",
                b"1",
            ])
            .await;
        if let Ok(Frame::Array(entries)) = &next {
            let first = entries.first().and_then(|e| match e {
                Frame::Array(parts) => parts.first().and_then(id_ms),
                _ => None,
            });
            oldest = match (oldest, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        out.push(Backlog {
            stream: stream.clone(),
            undelivered: group.lag,
            pending: group.pending,
            oldest_ms: oldest.map(|ms| now_ms.saturating_sub(ms)),
        });
    }
    Some(out)
}

/// One event's line and sections, as Redis has them now.
struct EventFigures {
    event: String,
    /// Positions handed out in the waiting room (`ev:{E}:queue`).
    entered: u64,
    /// The line now ([`line`]): admitted and not done, and still waiting.
    line: Option<Line>,
    /// (section, seats, sold, live holds), by section id.
    sections: Vec<(String, u32, u64, u64)>,
}

/// Each known event's figures (the first [`MAX_EVENTS`] by id); sold and held come
/// from `summary.lua`, the script the edge's summary answers with, so both agree.
async fn events(conn: &mut Conn, catalogs: &Catalogs) -> Vec<EventFigures> {
    let mut ids: Vec<&String> = catalogs.keys().collect();
    ids.sort();
    ids.truncate(MAX_EVENTS);
    let summary = Script::new(codec::store::scripts::SUMMARY);
    let mut out = Vec::with_capacity(ids.len());
    for event in ids {
        let mut sections: Vec<(&String, &u32)> = catalogs[event].iter().collect();
        sections.sort();
        let mut pipeline = Pipeline::new();
        for (section, _) in &sections {
            let mut call = codec::store::Call::with_capacity(128, 2);
            codec::store::Section { event, section }.call(&mut call);
            let keys: Vec<&[u8]> = call.keys().collect();
            summary.push(&mut pipeline, &keys, &[]);
        }
        let entered = conn
            .query(&[b"GET", codec::keys::queue(event).as_bytes()])
            .await
            .ok()
            .and_then(|f| text(&f)?.parse().ok())
            .unwrap_or(0);
        let line = line(conn, event, entered).await;
        let Ok(replies) = conn.run_script(&summary, &pipeline).await else {
            continue;
        };
        let sections = sections
            .iter()
            .zip(&replies)
            .filter_map(|((section, seats), reply)| {
                let (sold, held) = codec::store::Section::decode_counts(reply).ok()??;
                Some(((*section).clone(), **seats, sold, held))
            })
            .collect();
        out.push(EventFigures {
            event: event.clone(),
            entered,
            line,
            sections,
        });
    }
    out
}

/// An event's line as the edges see it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    /// Positions admitted (the edges' formula, `codec::admission`), at most those entered.
    admitted: u64,
    /// Admitted and not done (done: confirmed, abandoned or expired: the `left` set).
    active: u64,
    /// Entered, not admitted yet, and not gone.
    waiting: u64,
}

/// The line of `event`, read without moving it: the admission hash's line fields, the
/// formula the edges apply to them, and the places left on each side of the admitted.
/// `None` when Redis does not answer or the hash does not parse.
async fn line(conn: &mut Conn, event: &str, entered: u64) -> Option<Line> {
    let adm = codec::keys::admission(event);
    let mut hmget: Vec<&[u8]> = vec![b"HMGET", adm.as_bytes()];
    hmget.extend(
        codec::store::LINE_FIELDS[..codec::store::LINE_ONLY]
            .iter()
            .map(|f| f.as_bytes()),
    );
    let reply = conn.query(&hmget).await.ok()?;
    let state = codec::store::LineState::decode_line(&reply).ok()?.ok()?;
    let admission = codec::admission::Admission::from_line(&state).ok()?;
    let admitted = admission.admitted(crate::now_ms()).min(entered);
    let left = codec::keys::left(event);
    let (upto, above) = (admitted.to_string(), (admitted + 1).to_string());
    let mut zcount = async |min: &[u8], max: &[u8]| match conn
        .query(&[b"ZCOUNT", left.as_bytes(), min, max])
        .await
    {
        Ok(Frame::Integer(n)) => u64::try_from(n).ok(),
        _ => None,
    };
    let left_admitted = zcount(b"1", upto.as_bytes()).await?;
    let left_waiting = zcount(above.as_bytes(), b"+inf").await?;
    Some(Line {
        admitted,
        active: admitted.saturating_sub(left_admitted),
        waiting: (entered - admitted).saturating_sub(left_waiting),
    })
}

fn render_events(out: &mut String, events: &[EventFigures]) {
    let entered = "maxtps_event_entered";
    let _ = writeln!(
        out,
        "# HELP {entered} Positions handed out in the event's waiting room.\n# TYPE {entered} gauge"
    );
    for e in events {
        let _ = writeln!(out, "{entered}{{event=\"{}\"}} {}", e.event, e.entered);
    }
    let line = [
        ("maxtps_event_admitted", "Positions admitted into the event (the edges' admission formula), at most those entered."),
        ("maxtps_event_active", "Buyers admitted and not done (confirmed, abandoned or expired)."),
        ("maxtps_event_waiting", "Buyers entered, not admitted yet, and not gone."),
    ];
    for (i, (name, help)) in line.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for e in events {
            if let Some(l) = e.line {
                let value = [l.admitted, l.active, l.waiting][i];
                let _ = writeln!(out, "{name}{{event=\"{}\"}} {value}", e.event);
            }
        }
    }
    let families = [
        ("maxtps_section_seats", "Seats of the section."),
        ("maxtps_section_sold", "Seats of the section sold."),
        ("maxtps_section_held", "Seats of the section held now."),
    ];
    for (i, (name, help)) in families.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for e in events {
            for (section, seats, sold, held) in &e.sections {
                let value = [u64::from(*seats), *sold, *held][i];
                let _ = writeln!(
                    out,
                    "{name}{{event=\"{}\",section=\"{section}\"}} {value}",
                    e.event
                );
            }
        }
    }
}

struct Group {
    pending: u64,
    lag: u64,
    last_delivered: String,
}

/// The `workers` group's entry of an `XINFO GROUPS` reply (a list of key-value lists).
fn workers_group(reply: &Frame) -> Option<Group> {
    let Frame::Array(groups) = reply else {
        return None;
    };
    groups.iter().find_map(|g| {
        let Frame::Array(kv) = g else { return None };
        let field = |name: &str| {
            kv.chunks(2)
                .find(|pair| text(&pair[0]).as_deref() == Some(name))
                .and_then(|pair| pair.get(1))
        };
        if field("name").and_then(text).as_deref() != Some(GROUP) {
            return None;
        }
        let number = |name| match field(name) {
            Some(Frame::Integer(n)) => Some(*n as u64),
            _ => None,
        };
        Some(Group {
            pending: number("pending")?,
            // `lag` is nil when Redis cannot tell (entries deleted): count none.
            lag: number("lag").unwrap_or(0),
            last_delivered: field("last-delivered-id").and_then(text)?,
        })
    })
}

fn text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::BulkString(b) | Frame::SimpleString(b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

/// The milliseconds of a stream entry id `ms-seq`.
fn id_ms(frame: &Frame) -> Option<u64> {
    text(frame)?.split('-').next()?.parse().ok()
}

fn render_backlogs(out: &mut String, backlogs: &Option<Vec<Backlog>>) {
    let up = "maxtps_worker_queue_up";
    let _ = writeln!(
        out,
        "# HELP {up} 1 when the commit streams could be read for this scrape.\n# TYPE {up} gauge\n{up} {}",
        u8::from(backlogs.is_some())
    );
    let Some(backlogs) = backlogs else { return };
    let families = [
        (
            "maxtps_worker_queue_undelivered",
            "Commit stream entries not yet delivered to a consumer.",
        ),
        (
            "maxtps_worker_queue_pending",
            "Commit stream entries delivered, not yet acknowledged.",
        ),
        (
            "maxtps_worker_queue_oldest_age_seconds",
            "Age of the oldest commit waiting in a stream.",
        ),
    ];
    for (i, (name, help)) in families.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for b in backlogs {
            let value = match i {
                0 => b.undelivered as f64,
                1 => b.pending as f64,
                _ => b.oldest_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
            };
            let _ = writeln!(out, "{name}{{stream=\"{}\"}} {value}", b.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_values_at_most_each_bound() {
        let h = Histogram::new(&[1, 10, 100]);
        for v in [0, 1, 2, 10, 11, 100, 1000] {
            h.record(v);
        }
        assert_eq!(h.counts(), vec![2, 2, 2, 1]);
        assert_eq!(h.count(), 7);
        let mut out = String::new();
        h.render(&mut out, "x", "help", 1000.0);
        assert!(out.contains("x_bucket{le=\"0.01\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 7\n"), "{out}");
        assert!(out.contains("x_sum 1.124\nx_count 7\n"), "{out}");
    }

    #[test]
    fn quantiles_since_a_moment_count_only_what_came_after() {
        let h = Histogram::new(&[1, 10, 100]);
        for _ in 0..100 {
            h.record(5);
        }
        let before = h.counts();
        for _ in 0..99 {
            h.record(50);
        }
        h.record(5_000);
        assert_eq!(h.quantile_since(&before, 0.5), 100);
        assert_eq!(h.quantile_since(&before, 0.99), 100);
        assert_eq!(
            h.quantile_since(&before, 1.0),
            100,
            "overflow says the last bound"
        );
        assert_eq!(h.quantile_since(&h.counts(), 0.99), 0, "nothing since");
    }
}
