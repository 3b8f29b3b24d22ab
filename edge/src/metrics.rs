//! Prometheus metrics. Each core counts into its own [`CoreMetrics`], which only that
//! core writes: an update is a load and a store (no read-modify-write, no cache line
//! that two cores write), and the numbers live in fixed arrays, so counting allocates
//! nothing. The scrape, on its own thread and listener (`METRICS_ADDR`, never the public
//! port), sums every core's numbers and renders the Prometheus text format, or
//! OpenMetrics when the scraper asks for it.
//!
//! Label values come from fixed lists (routes, statuses, error codes, latency buckets):
//! no user, seat or event ever becomes a label.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use codec::error_code::ErrorCode;
use tracing::{info, warn};

use crate::{redis::Stats, side::SideStats};

/// Route labels, by the path's first two segments ([`route_of`]).
pub const ROUTES: [&str; 17] = [
    "ping",
    "health",
    "enter",
    "room_status",
    "hold",
    "release",
    "summary",
    "seats",
    "payment_intent",
    "commit",
    "status",
    "room_events",
    "challenge",
    "fairness",
    "payment_callback",
    "admin",
    "other",
];
const ADMIN_ROUTE: usize = ROUTES.len() - 2;
const OTHER_ROUTE: usize = ROUTES.len() - 1;

/// The cached reads ([`crate::cache`]), by route.
pub const CACHED: [&str; 2] = ["summary", "seats"];
pub const CACHED_SUMMARY: usize = 0;
pub const CACHED_SEATS: usize = 1;

/// Status labels; any other status counts as `other`.
const STATUSES: [u16; 22] = [
    200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 408, 409, 410, 413, 415, 422, 429, 431, 500,
    501, 503, 505,
];

/// Latency buckets: bucket `i` holds answers faster than 2^(i + 5) µs (32 µs .. 8.4 s);
/// the last is +Inf.
const BUCKETS: usize = 20;

/// The core's Redis client counters, as [`CoreMetrics::publish_redis`] copies them.
const REDIS: [&str; 9] = [
    "commands",
    "writes",
    "written",
    "replies",
    "timeouts",
    "overloaded",
    "disconnected",
    "reconnects",
    "noscript_retries",
];
/// The Redis client's errors, by kind (`maxtps_edge_redis_errors_total{kind}`).
const REDIS_ERRORS: [&str; 5] = ["server", "protocol", "io", "tls", "closed_by_server"];

/// A number only its core writes.
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    #[inline]
    fn add(&self, n: u64) {
        // One writer: a plain load and store, not a locked read-modify-write.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn counters<const N: usize>() -> [Counter; N] {
    std::array::from_fn(|_| Counter::default())
}

/// One core's numbers.
pub struct CoreMetrics {
    requests: [[Counter; STATUSES.len() + 1]; ROUTES.len()],
    latency: [[Counter; BUCKETS]; ROUTES.len()],
    latency_us: [Counter; ROUTES.len()],
    errors: [Counter; ErrorCode::ALL.len()],
    received_bytes: Counter,
    sent_bytes: Counter,
    opened: Counter,
    closed: Counter,
    redis: [Counter; REDIS.len()],
    redis_errors: [Counter; REDIS_ERRORS.len()],
    /// Per cached read ([`CACHED`]): answers from the cache, and renderings.
    cache_hits: [Counter; CACHED.len()],
    cache_renders: [Counter; CACHED.len()],
    /// Requests since the last one the access log kept.
    sampled: Counter,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| counters()),
            latency: std::array::from_fn(|_| counters()),
            latency_us: counters(),
            errors: counters(),
            received_bytes: Counter::default(),
            sent_bytes: Counter::default(),
            opened: Counter::default(),
            closed: Counter::default(),
            redis: counters(),
            redis_errors: counters(),
            cache_hits: counters(),
            cache_renders: counters(),
            sampled: Counter::default(),
        }
    }
}

impl CoreMetrics {
    /// A request answered: its route, status, time from its head to its answer, and
    /// the error code it was refused with.
    #[inline]
    pub fn request(&self, route: usize, status: u16, micros: u64, code: Option<ErrorCode>) {
        self.requests[route][status_index(status)].add(1);
        self.latency[route][bucket(micros)].add(1);
        self.latency_us[route].add(micros);
        if let Some(i) = code.and_then(|code| ErrorCode::ALL.iter().position(|&c| c == code)) {
            self.errors[i].add(1);
        }
    }

    /// True for one request in `every` on this core (the sampled access log).
    pub fn sampled(&self, every: u64) -> bool {
        let n = self.sampled.get();
        self.sampled.set(if n + 1 >= every { 0 } else { n + 1 });
        n == 0
    }

    /// A cached read (`CACHED[kind]`) answered from the cache, or rendered anew.
    #[inline]
    pub fn cached(&self, kind: usize, rendered: bool) {
        if rendered {
            self.cache_renders[kind].add(1);
        } else {
            self.cache_hits[kind].add(1);
        }
    }

    pub fn received(&self, bytes: usize) {
        self.received_bytes.add(bytes as u64);
    }

    pub fn sent(&self, bytes: usize) {
        self.sent_bytes.add(bytes as u64);
    }

    pub fn opened(&self) {
        self.opened.add(1);
    }

    pub fn closed(&self) {
        self.closed.add(1);
    }

    /// Copies the core's Redis client counters (the client keeps them in plain fields
    /// on the core; a timer publishes them here).
    pub fn publish_redis(&self, s: &Stats) {
        let values = [
            s.commands,
            s.writes,
            s.written,
            s.replies,
            s.timeouts,
            s.overloaded,
            s.disconnected,
            s.reconnects,
            s.noscript_retries,
        ];
        for (counter, value) in self.redis.iter().zip(values) {
            counter.set(value);
        }
        let errors = [
            s.server_errors,
            s.protocol_errors,
            s.io_errors,
            s.tls_errors,
            s.closed_by_server,
        ];
        for (counter, value) in self.redis_errors.iter().zip(errors) {
            counter.set(value);
        }
    }
}

/// The route label of `path`, from its first two segments. Byte comparisons, no
/// splitting: it runs for every request.
#[inline]
pub fn route_of(path: &str) -> usize {
    let (prefix, rest) = match path.as_bytes() {
        [b'/', b'p', b'u', b'b', b'l', b'i', b'c', b'/', rest @ ..] => (0, rest),
        [b'/', b'c', b'o', b'n', b'f', b'i', b'r', b'm', b'/', rest @ ..] => (1, rest),
        [b'/', b'a', b'd', b'm', b'i', b'n', b'/' | b'?', ..] | b"/admin" => return ADMIN_ROUTE,
        _ => return OTHER_ROUTE,
    };
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    match (prefix, &rest[..end]) {
        (0, b"ping") => 0,
        (0, b"health") => 1,
        (0, b"enter") => 2,
        (0, b"room-status") => 3,
        (0, b"hold") => 4,
        (0, b"release") => 5,
        (0, b"summary") => 6,
        (0, b"seats") => 7,
        (1, b"payment-intent") => 8,
        (1, b"commit") => 9,
        (1, b"status") => 10,
        (0, b"room-events") => 11,
        (0, b"challenge") => 12,
        (0, b"fairness") => 13,
        (1, b"payment-callback") => 14,
        _ => OTHER_ROUTE,
    }
}

/// Microseconds of the monotonic clock: cheaper to take and subtract than an
/// [`std::time::Instant`], and taken twice a request.
#[inline]
pub fn now_micros() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
    })
}

#[inline]
fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len())
}

#[inline]
fn bucket(micros: u64) -> usize {
    let bits = (u64::BITS - micros.leading_zeros()) as usize;
    bits.saturating_sub(5).min(BUCKETS - 1)
}

/// Every core's numbers and the side thread's, for the scrape.
#[derive(Default)]
pub struct Registry {
    cores: Mutex<Vec<Arc<CoreMetrics>>>,
    side: Mutex<Option<(Arc<SideStats>, Arc<AtomicUsize>)>>,
}

impl Registry {
    /// A new core's numbers, registered for the scrape.
    pub fn core(&self) -> Arc<CoreMetrics> {
        let metrics = Arc::new(CoreMetrics::default());
        lock(&self.cores).push(metrics.clone());
        metrics
    }

    /// The side thread's counters and its DynamoDB mirror backlog.
    pub fn side(&self, stats: Arc<SideStats>, mirror_pending: Arc<AtomicUsize>) {
        *lock(&self.side) = Some((stats, mirror_pending));
    }

    /// The Prometheus text format (`openmetrics`: OpenMetrics 1.0) of every number.
    pub fn render(&self, openmetrics: bool) -> String {
        let cores = lock(&self.cores).clone();
        let mut out = Out {
            text: String::with_capacity(16 * 1024),
            openmetrics,
        };
        let sum = |f: &dyn Fn(&CoreMetrics) -> u64| cores.iter().map(|c| f(c)).sum::<u64>();

        out.family(
            "maxtps_edge_cores",
            "gauge",
            "Cores (threads) serving requests.",
        );
        out.sample("maxtps_edge_cores", "", cores.len() as u64);

        out.family(
            "maxtps_edge_core_requests",
            "counter",
            "Requests answered, by core (threads should share the load).",
        );
        for (i, core) in cores.iter().enumerate() {
            let n: u64 = core.requests.iter().flatten().map(Counter::get).sum();
            out.sample(
                "maxtps_edge_core_requests_total",
                &format!("core=\"{i}\""),
                n,
            );
        }

        out.family(
            "maxtps_edge_requests",
            "counter",
            "Requests answered, by route and status.",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            for s in 0..=STATUSES.len() {
                let n = sum(&|c| c.requests[r][s].get());
                if n > 0 {
                    let status = STATUSES.get(s).map_or("other".into(), u16::to_string);
                    let labels = format!("route=\"{route}\",status=\"{status}\"");
                    out.sample("maxtps_edge_requests_total", &labels, n);
                }
            }
        }

        out.family(
            "maxtps_edge_request_duration_seconds",
            "histogram",
            "Time from a request's head to its answer, by route.",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            let counts: Vec<u64> = (0..BUCKETS)
                .map(|b| sum(&|c| c.latency[r][b].get()))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (b, n) in counts.iter().enumerate() {
                cumulative += n;
                let le = if b + 1 == BUCKETS {
                    "+Inf".to_owned()
                } else {
                    format!("{}", (1u64 << (b + 5)) as f64 / 1e6)
                };
                let labels = format!("route=\"{route}\",le=\"{le}\"");
                out.sample(
                    "maxtps_edge_request_duration_seconds_bucket",
                    &labels,
                    cumulative,
                );
            }
            let labels = format!("route=\"{route}\"");
            let micros = sum(&|c| c.latency_us[r].get());
            out.sample_f64(
                "maxtps_edge_request_duration_seconds_sum",
                &labels,
                micros as f64 / 1e6,
            );
            out.sample("maxtps_edge_request_duration_seconds_count", &labels, total);
        }

        out.family(
            "maxtps_edge_errors",
            "counter",
            "Requests refused or failed, by error code.",
        );
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            let n = sum(&|c| c.errors[i].get());
            if n > 0 {
                let labels = format!("code=\"{}\"", code.as_str());
                out.sample("maxtps_edge_errors_total", &labels, n);
            }
        }

        out.family(
            "maxtps_edge_cache_requests",
            "counter",
            "Cached reads (summary, seats): answered from a core's cache (hit) or rendered anew from Redis (render).",
        );
        for (i, route) in CACHED.iter().enumerate() {
            for (result, n) in [
                ("hit", sum(&|c| c.cache_hits[i].get())),
                ("render", sum(&|c| c.cache_renders[i].get())),
            ] {
                let labels = format!("route=\"{route}\",result=\"{result}\"");
                out.sample("maxtps_edge_cache_requests_total", &labels, n);
            }
        }

        let opened = sum(&|c| c.opened.get());
        let closed = sum(&|c| c.closed.get());
        let simple = [
            (
                "maxtps_edge_received_bytes",
                "Bytes read from clients.",
                sum(&|c| c.received_bytes.get()),
            ),
            (
                "maxtps_edge_sent_bytes",
                "Bytes written to clients.",
                sum(&|c| c.sent_bytes.get()),
            ),
            (
                "maxtps_edge_connections_opened",
                "Client connections accepted.",
                opened,
            ),
            (
                "maxtps_edge_connections_closed",
                "Client connections closed.",
                closed,
            ),
        ];
        for (name, help, n) in simple {
            out.family(name, "counter", help);
            out.sample(&format!("{name}_total"), "", n);
        }
        out.family(
            "maxtps_edge_connections_open",
            "gauge",
            "Client connections open now.",
        );
        out.sample(
            "maxtps_edge_connections_open",
            "",
            opened.saturating_sub(closed),
        );

        for (i, name) in REDIS.iter().enumerate() {
            let family = format!("maxtps_edge_redis_{name}");
            out.family(
                &family,
                "counter",
                "The cores' Redis clients (published every second).",
            );
            out.sample(&format!("{family}_total"), "", sum(&|c| c.redis[i].get()));
        }
        out.family(
            "maxtps_edge_redis_errors",
            "counter",
            "Redis errors and lost connections by kind (published every second).",
        );
        for (i, kind) in REDIS_ERRORS.iter().enumerate() {
            let n = sum(&|c| c.redis_errors[i].get());
            out.sample(
                "maxtps_edge_redis_errors_total",
                &format!("kind=\"{kind}\""),
                n,
            );
        }

        if let Some((side, pending)) = lock(&self.side).clone() {
            let name = "maxtps_edge_side_mirror_backlog";
            out.family(name, "gauge", "Hold mirror writes waiting for DynamoDB.");
            out.sample(name, "", pending.load(Ordering::Relaxed) as u64);
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let side_counters = [
                (
                    "sqs_batches",
                    "SQS SendMessageBatch calls.",
                    get(&side.sqs_batches),
                ),
                (
                    "sqs_messages",
                    "Commit messages SQS accepted.",
                    get(&side.sqs_messages),
                ),
                (
                    "sqs_failed",
                    "Commit messages SQS refused.",
                    get(&side.sqs_failed),
                ),
                (
                    "mirror_written",
                    "Holds mirrored to DynamoDB.",
                    get(&side.mirror_written),
                ),
                (
                    "mirror_dropped",
                    "Mirror writes dropped (backlog full).",
                    get(&side.mirror_dropped),
                ),
                (
                    "mirror_failed",
                    "Mirror writes DynamoDB refused.",
                    get(&side.mirror_failed),
                ),
                (
                    "lookups",
                    "Order look-ups in PostgreSQL.",
                    get(&side.lookups),
                ),
                (
                    "lookups_failed",
                    "Order look-ups that failed.",
                    get(&side.lookups_failed),
                ),
                (
                    "db_reads",
                    "Events read from PostgreSQL for summary and seats (Redis had no copy).",
                    get(&side.db_reads),
                ),
                (
                    "db_reads_failed",
                    "Event reads from PostgreSQL that failed.",
                    get(&side.db_reads_failed),
                ),
            ];
            for (name, help, n) in side_counters {
                let family = format!("maxtps_edge_side_{name}");
                out.family(&family, "counter", help);
                out.sample(&format!("{family}_total"), "", n);
            }
        }
        if openmetrics {
            out.text.push_str("# EOF\n");
        }
        out.text
    }
}

/// The cores' sums at one moment, to send what changed since the last EMF lines.
#[derive(Clone)]
pub struct Totals {
    requests: [[u64; STATUSES.len() + 1]; ROUTES.len()],
    latency: [[u64; BUCKETS]; ROUTES.len()],
    redis_errors: u64,
    redis_timeouts: u64,
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            requests: [[0; STATUSES.len() + 1]; ROUTES.len()],
            latency: [[0; BUCKETS]; ROUTES.len()],
            redis_errors: 0,
            redis_timeouts: 0,
        }
    }
}

impl Registry {
    fn totals(&self) -> (Totals, u64) {
        let cores = lock(&self.cores).clone();
        let mut t = Totals::default();
        let mut open = 0u64;
        for c in &cores {
            for r in 0..ROUTES.len() {
                for s in 0..=STATUSES.len() {
                    t.requests[r][s] += c.requests[r][s].get();
                }
                for b in 0..BUCKETS {
                    t.latency[r][b] += c.latency[r][b].get();
                }
            }
            t.redis_errors += c.redis_errors.iter().map(Counter::get).sum::<u64>();
            t.redis_timeouts += c.redis[4].get();
            open += c.opened.get().saturating_sub(c.closed.get());
        }
        (t, open)
    }

    /// EMF lines of what happened since `last` (which becomes now): per route with
    /// traffic, requests, 4xx, 5xx and p50/p99 latency (the upper bound of the bucket
    /// holding the quantile); for the edge, requests, 5xx, open connections and Redis
    /// errors and timeouts.
    pub fn emf(&self, last: &mut Totals, now_ms: u64) -> Vec<String> {
        use codec::emf::{line, Unit};
        let (now, open) = self.totals();
        let mut lines = Vec::new();
        let (mut all, mut all_5xx) = (0u64, 0u64);
        for (r, route) in ROUTES.iter().enumerate() {
            let delta = |s: usize| now.requests[r][s] - last.requests[r][s];
            let requests: u64 = (0..=STATUSES.len()).map(delta).sum();
            if requests == 0 {
                continue;
            }
            let by_class = |class: u16| -> u64 {
                STATUSES
                    .iter()
                    .enumerate()
                    .filter(|(_, &s)| s / 100 == class)
                    .map(|(i, _)| delta(i))
                    .sum()
            };
            let (e4, e5) = (by_class(4), by_class(5));
            all += requests;
            all_5xx += e5;
            let buckets: Vec<u64> = (0..BUCKETS)
                .map(|b| now.latency[r][b] - last.latency[r][b])
                .collect();
            let quantile = |q: f64| quantile_ms(&buckets, q);
            lines.push(line(
                now_ms,
                &[("Route", route)],
                &[
                    ("Requests", Unit::Count, requests as f64),
                    ("Errors4xx", Unit::Count, e4 as f64),
                    ("Errors5xx", Unit::Count, e5 as f64),
                    ("LatencyP50", Unit::Milliseconds, quantile(0.5)),
                    ("LatencyP99", Unit::Milliseconds, quantile(0.99)),
                ],
            ));
        }
        lines.push(line(
            now_ms,
            &[],
            &[
                ("Requests", Unit::Count, all as f64),
                ("Errors5xx", Unit::Count, all_5xx as f64),
                ("ConnectionsOpen", Unit::Count, open as f64),
                (
                    "RedisErrors",
                    Unit::Count,
                    now.redis_errors.saturating_sub(last.redis_errors) as f64,
                ),
                (
                    "RedisTimeouts",
                    Unit::Count,
                    now.redis_timeouts.saturating_sub(last.redis_timeouts) as f64,
                ),
            ],
        ));
        *last = now;
        lines
    }
}

/// The upper bound, in milliseconds, of the bucket holding quantile `q` of `counts`.
fn quantile_ms(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut cumulative = 0;
    for (b, n) in counts.iter().enumerate() {
        cumulative += n;
        if cumulative >= rank {
            // The last bucket has no bound: say its lower one.
            let bound = 1u64 << (b + 5).min(BUCKETS + 3);
            return bound as f64 / 1000.0;
        }
    }
    0.0
}

/// Writes [`Registry::emf`] lines to stdout every `interval` until the process ends.
pub fn emit(registry: &Registry, interval: Duration) {
    let mut last = Totals::default();
    loop {
        std::thread::sleep(interval);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut out = std::io::stdout().lock();
        for line in registry.emf(&mut last, now_ms) {
            // stdout gone (a closed pipe): the figures are lost, the edge goes on.
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({} cores)", lock(&self.cores).len())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Out {
    text: String,
    openmetrics: bool,
}

impl Out {
    /// `# HELP` and `# TYPE` of a family. A counter family's name has no `_total` in
    /// OpenMetrics; the Prometheus text format names it as its sample.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let suffix = if kind == "counter" && !self.openmetrics {
            "_total"
        } else {
            ""
        };
        let _ = writeln!(self.text, "# HELP {name}{suffix} {help}");
        let _ = writeln!(self.text, "# TYPE {name}{suffix} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: u64) {
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {value}");
        } else {
            let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
        }
    }

    fn sample_f64(&mut self, name: &str, labels: &str, value: f64) {
        let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
    }
}

/// Serves `GET /metrics` on `listener` until the process ends, one connection at a
/// time (a scraper or two on an admin address), each closed after its answer.
pub fn serve(listener: TcpListener, registry: &Registry) {
    if let Ok(addr) = listener.local_addr() {
        // Not "listening": scripts find the public port by ` listening addr=`.
        info!(%addr, "serving metrics");
    }
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, registry) {
                    warn!(error = %e, "metrics scrape failed");
                }
            }
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

const MAX_HEAD: usize = 8 * 1024;

fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut request = lines.next().unwrap_or("").split(' ');
    let (method, target) = (request.next().unwrap_or(""), request.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return respond(&mut stream, "404 Not Found", "text/plain", "GET /metrics\n");
    }
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", "");
    }
    let openmetrics = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept")
                && value.contains("application/openmetrics-text")
        })
    });
    let body = registry.render(openmetrics);
    let kind = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    respond(&mut stream, "200 OK", kind, &body)
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests;
