//! What a run measures, per stage and endpoint: latency from the due time (coordinated
//! omission corrected) and service time from the send, both HdrHistograms in
//! microseconds; answers counted by status; the clock's send lag; a per-second timeline.
//! The serializable forms (`StageReport`, `EndpointReport`) carry the histograms in
//! HdrHistogram's V2 encoding, DEFLATE-compressed, base64 (as HdrHistogram's Java and C
//! libraries log them), so runs from several machines merge exactly.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::{
    serialization::{Deserializer, Serializer, V2DeflateSerializer},
    Histogram,
};
use serde::{Deserialize, Serialize};

/// Histograms track 1 µs to 100 s with 3 significant digits.
const HIGHEST_US: u64 = 100_000_000;
const SIGFIG: u8 = 3;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).expect("static histogram bounds")
}

pub fn encode(h: &Histogram<u64>) -> String {
    let mut out = Vec::new();
    // Serializing into a Vec cannot fail on I/O; an error would be a bug in the bounds.
    V2DeflateSerializer::new()
        .serialize(h, &mut out)
        .expect("V2 serialization into memory");
    base64::engine::general_purpose::STANDARD.encode(out)
}

pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("histogram base64: {e}"))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| format!("histogram V2: {e:?}"))?;
    // Widen to the common bounds so histograms of any origin add up.
    let mut out = histogram();
    out.add(&h)
        .map_err(|e| format!("histogram bounds: {e:?}"))?;
    Ok(out)
}

/// The endpoints a scenario calls, plus `Settle` and `Journey` (spans of several
/// requests: not requests themselves, left out of rates and overall percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Ping,
    Summary,
    Seats,
    Enter,
    RoomStatus,
    Hold,
    Intent,
    Commit,
    Status,
    /// From a commit's 202 to the first status poll that saw it final.
    Settle,
    Journey,
    /// `enter` by the abusive clients of `enter --abusers` (README "Abuse limits").
    AbusiveEnter,
}

pub const ENDPOINTS: usize = 12;

impl Endpoint {
    pub const ALL: [Endpoint; ENDPOINTS] = [
        Endpoint::Ping,
        Endpoint::Summary,
        Endpoint::Seats,
        Endpoint::Enter,
        Endpoint::RoomStatus,
        Endpoint::Hold,
        Endpoint::Intent,
        Endpoint::Commit,
        Endpoint::Status,
        Endpoint::Settle,
        Endpoint::Journey,
        Endpoint::AbusiveEnter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Ping => "ping",
            Endpoint::Summary => "summary",
            Endpoint::Seats => "seats",
            Endpoint::Enter => "enter",
            Endpoint::RoomStatus => "room-status",
            Endpoint::Hold => "hold",
            Endpoint::Intent => "payment-intent",
            Endpoint::Commit => "commit",
            Endpoint::Status => "status",
            Endpoint::Settle => "commit-to-final",
            Endpoint::Journey => "journey",
            Endpoint::AbusiveEnter => "enter (abusers)",
        }
    }

    /// Whether an answer is a success for the load test. A 409 on hold (seat taken by
    /// someone else) is the normal outcome of buyers racing, not a server error.
    /// A span of several requests rather than one request.
    pub fn is_span(self) -> bool {
        matches!(self, Endpoint::Settle | Endpoint::Journey)
    }

    pub fn ok(self, status: u16) -> bool {
        (200..400).contains(&status) || (self == Endpoint::Hold && status == 409)
    }
}

/// Pseudo status of a slot dropped because no connection was free for too long.
pub const DROPPED: u16 = 5;
/// Pseudo status of a hold refused with 409 `HOLD_LIMIT`: the run had too few buyers.
pub const HOLD_LIMIT: u16 = 6;
/// Pseudo status of a 503 without `Retry-After` (the contract wants one on every 503).
pub const NO_RETRY_AFTER: u16 = 7;

/// Whether a status (or pseudo status) is the server's failure rather than an answer
/// the request earned: a 5xx, a 503 without `Retry-After`, no answer (connect, I/O,
/// timeout, bad response) or a slot dropped unsent.
pub fn server_failure(status: u16) -> bool {
    status >= 500 || (1..=5).contains(&status) || status == NO_RETRY_AFTER
}

/// Width of a trace bucket (`--trace`), milliseconds.
pub const TRACE_MS: u64 = 100;

/// Requests sent within one `TRACE_MS` of the wall clock, by what became of them: the
/// fine timeline a fault run is judged on (when errors began and ended, how long the
/// slowest answer took).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceBucket {
    pub sent: u64,
    /// Answers the load test counts as fine (`Endpoint::ok`).
    pub ok: u64,
    /// Other 4xx (and `HOLD_LIMIT`): the request's fault or a lost race.
    pub client_4xx: u64,
    pub unavailable_503: u64,
    pub no_retry_after_503: u64,
    /// 5xx other than 503 (500 above all).
    pub other_5xx: u64,
    pub connect: u64,
    pub io: u64,
    pub timeout: u64,
    /// Bad responses and slots dropped unsent.
    pub other: u64,
    /// Slowest answer (from the send), µs.
    pub max_service_us: u64,
}

impl TraceBucket {
    pub fn add(&mut self, endpoint: Endpoint, status: u16, service_us: u64) {
        self.sent += 1;
        self.max_service_us = self.max_service_us.max(service_us);
        let count = match status {
            _ if endpoint.ok(status) => &mut self.ok,
            503 => &mut self.unavailable_503,
            NO_RETRY_AFTER => &mut self.no_retry_after_503,
            500..=599 => &mut self.other_5xx,
            1 => &mut self.connect,
            2 => &mut self.io,
            3 => &mut self.timeout,
            HOLD_LIMIT | 400..=499 => &mut self.client_4xx,
            _ => &mut self.other,
        };
        *count += 1;
    }

    pub fn merge(&mut self, o: &TraceBucket) {
        self.sent += o.sent;
        self.ok += o.ok;
        self.client_4xx += o.client_4xx;
        self.unavailable_503 += o.unavailable_503;
        self.no_retry_after_503 += o.no_retry_after_503;
        self.other_5xx += o.other_5xx;
        self.connect += o.connect;
        self.io += o.io;
        self.timeout += o.timeout;
        self.other += o.other;
        self.max_service_us = self.max_service_us.max(o.max_service_us);
    }

    pub const CSV_HEADER: &'static str = "ms,sent,ok,client_4xx,unavailable_503,\
        no_retry_after_503,other_5xx,connect,io,timeout,other,max_service_us";

    /// One CSV line; `ms`: the bucket's start, wall-clock epoch milliseconds.
    pub fn csv(&self, ms: u64) -> String {
        format!(
            "{ms},{},{},{},{},{},{},{},{},{},{},{}",
            self.sent,
            self.ok,
            self.client_4xx,
            self.unavailable_503,
            self.no_retry_after_503,
            self.other_5xx,
            self.connect,
            self.io,
            self.timeout,
            self.other,
            self.max_service_us
        )
    }
}

/// Trace buckets by their start (wall-clock epoch ms, a multiple of `TRACE_MS`).
pub type Trace = BTreeMap<u64, TraceBucket>;

pub fn merge_trace(into: &mut Trace, from: &Trace) {
    for (ms, b) in from {
        into.entry(*ms).or_default().merge(b);
    }
}

#[derive(Clone)]
pub struct EndpointStats {
    /// From the due time when the slot waited, from the send otherwise.
    pub latency: Histogram<u64>,
    /// From the send: what a closed-loop tool would report.
    pub service: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
}

impl EndpointStats {
    fn new() -> Self {
        EndpointStats {
            latency: histogram(),
            service: histogram(),
            statuses: BTreeMap::new(),
        }
    }
}

/// One stage's measurements on one thread.
#[derive(Clone)]
pub struct StageStats {
    pub endpoints: Vec<Option<Box<EndpointStats>>>,
    /// How late the clock woke a free connection (the tool's own timer slack).
    pub send_lag: Histogram<u64>,
    /// Answers that arrived within the stage's window (any slot), for the achieved rate.
    pub completed_in_window: u64,
}

impl StageStats {
    pub fn new() -> Self {
        StageStats {
            endpoints: (0..ENDPOINTS).map(|_| None).collect(),
            send_lag: histogram(),
            completed_in_window: 0,
        }
    }

    pub fn record(&mut self, endpoint: Endpoint, status: u16, latency_us: u64, service_us: u64) {
        let e =
            self.endpoints[endpoint as usize].get_or_insert_with(|| Box::new(EndpointStats::new()));
        e.latency.saturating_record(latency_us.max(1));
        e.service.saturating_record(service_us.max(1));
        *e.statuses.entry(status).or_default() += 1;
    }

    pub fn merge(&mut self, other: &StageStats) {
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            if let Some(t) = theirs {
                let m = mine.get_or_insert_with(|| Box::new(EndpointStats::new()));
                // Same bounds on both sides: add cannot fail.
                let _ = m.latency.add(&t.latency);
                let _ = m.service.add(&t.service);
                for (s, n) in &t.statuses {
                    *m.statuses.entry(*s).or_default() += n;
                }
            }
        }
        let _ = self.send_lag.add(&other.send_lag);
        self.completed_in_window += other.completed_in_window;
    }
}

impl Default for StageStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Answers of one second on one thread (all endpoints but `Journey`).
#[derive(Clone)]
pub struct Interval {
    pub done: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
}

impl Interval {
    pub fn new() -> Self {
        Interval {
            done: 0,
            errors: 0,
            latency: histogram(),
        }
    }
}

impl Default for Interval {
    fn default() -> Self {
        Self::new()
    }
}

/// One second of the timeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tick {
    /// Seconds since the run's start (end of the interval).
    pub t: f64,
    pub offered_rate: f64,
    pub done: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Latency percentiles of one histogram, µs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndpointReport {
    pub endpoint: String,
    pub count: u64,
    pub errors: u64,
    /// Status (or pseudo status: 1 connect, 2 I/O, 3 timeout, 4 bad response, 5
    /// dropped, 6 hold refused for HOLD_LIMIT) -> answers.
    pub statuses: BTreeMap<String, u64>,
    pub latency: Percentiles,
    pub service: Percentiles,
    /// HdrHistogram V2 + DEFLATE, base64, µs.
    pub latency_hist: String,
    pub service_hist: String,
}

/// CPU time of a process (and its direct children) over a stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CpuReport {
    pub name: String,
    pub cpu_s: f64,
    /// CPU-µs per answered request of the stage.
    pub us_per_request: f64,
    /// CPU time over the stage's wall time, in % of one core.
    pub busy_pct: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageReport {
    pub name: String,
    pub offered_rate: f64,
    pub duration_s: f64,
    pub measured: bool,
    /// Answers (any status) to the stage's slots.
    pub answered: u64,
    pub errors: u64,
    /// Answers that arrived within the stage's window, per second of it.
    pub achieved_rate: f64,
    pub endpoints: Vec<EndpointReport>,
    /// The tool's timer slack on free connections, µs.
    pub send_lag: Percentiles,
    pub send_lag_hist: String,
    pub cpu: Vec<CpuReport>,
    /// Other processes' busy time on the machine during the stage, % of one core.
    pub others_busy_pct: f64,
}

impl StageReport {
    pub fn build(
        name: &str,
        offered_rate: f64,
        duration_s: f64,
        measured: bool,
        stats: &StageStats,
    ) -> StageReport {
        let mut endpoints = Vec::new();
        let (mut answered, mut errors) = (0, 0);
        for endpoint in Endpoint::ALL {
            let Some(e) = &stats.endpoints[endpoint as usize] else {
                continue;
            };
            let count: u64 = e.statuses.values().sum();
            let errs: u64 = e
                .statuses
                .iter()
                .filter(|(s, _)| !endpoint.ok(**s))
                .map(|(_, n)| n)
                .sum();
            if !endpoint.is_span() {
                answered += count;
                errors += errs;
            }
            endpoints.push(EndpointReport {
                endpoint: endpoint.name().to_owned(),
                count,
                errors: errs,
                statuses: e
                    .statuses
                    .iter()
                    .map(|(s, n)| (s.to_string(), *n))
                    .collect(),
                latency: Percentiles::of(&e.latency),
                service: Percentiles::of(&e.service),
                latency_hist: encode(&e.latency),
                service_hist: encode(&e.service),
            });
        }
        StageReport {
            name: name.to_owned(),
            offered_rate,
            duration_s,
            measured,
            answered,
            errors,
            achieved_rate: stats.completed_in_window as f64 / duration_s.max(1e-9),
            endpoints,
            send_lag: Percentiles::of(&stats.send_lag),
            send_lag_hist: encode(&stats.send_lag),
            cpu: Vec::new(),
            others_busy_pct: 0.0,
        }
    }

    /// Errors (answers `Endpoint::ok` refuses) by status over every endpoint but the
    /// spans.
    pub fn errors_by_status(&self) -> BTreeMap<u16, u64> {
        let mut by = BTreeMap::new();
        for e in &self.endpoints {
            let Some(endpoint) = Endpoint::ALL.iter().find(|x| x.name() == e.endpoint) else {
                continue;
            };
            if endpoint.is_span() {
                continue;
            }
            for (s, n) in &e.statuses {
                let Ok(code) = s.parse::<u16>() else { continue };
                if !endpoint.ok(code) {
                    *by.entry(code).or_default() += n;
                }
            }
        }
        by
    }

    /// All endpoints but the spans in one histogram.
    pub fn overall_latency(&self) -> Histogram<u64> {
        let mut all = histogram();
        let spans = [Endpoint::Settle.name(), Endpoint::Journey.name()];
        for e in self
            .endpoints
            .iter()
            .filter(|e| !spans.contains(&e.endpoint.as_str()))
        {
            if let Ok(h) = decode(&e.latency_hist) {
                let _ = all.add(&h);
            }
        }
        all
    }

    /// Adds a stage of the same plan run elsewhere (same time, another machine).
    pub fn merge(&mut self, other: &StageReport) -> Result<(), String> {
        self.offered_rate += other.offered_rate;
        self.duration_s = self.duration_s.max(other.duration_s);
        self.answered += other.answered;
        self.errors += other.errors;
        self.achieved_rate += other.achieved_rate;
        for theirs in &other.endpoints {
            match self
                .endpoints
                .iter_mut()
                .find(|e| e.endpoint == theirs.endpoint)
            {
                Some(mine) => {
                    let mut lat = decode(&mine.latency_hist)?;
                    lat.add(decode(&theirs.latency_hist)?)
                        .map_err(|e| format!("{e:?}"))?;
                    let mut svc = decode(&mine.service_hist)?;
                    svc.add(decode(&theirs.service_hist)?)
                        .map_err(|e| format!("{e:?}"))?;
                    mine.count += theirs.count;
                    mine.errors += theirs.errors;
                    for (s, n) in &theirs.statuses {
                        *mine.statuses.entry(s.clone()).or_default() += n;
                    }
                    mine.latency = Percentiles::of(&lat);
                    mine.service = Percentiles::of(&svc);
                    mine.latency_hist = encode(&lat);
                    mine.service_hist = encode(&svc);
                }
                None => self.endpoints.push(theirs.clone()),
            }
        }
        let mut lag = decode(&self.send_lag_hist)?;
        lag.add(decode(&other.send_lag_hist)?)
            .map_err(|e| format!("{e:?}"))?;
        self.send_lag = Percentiles::of(&lag);
        self.send_lag_hist = encode(&lag);
        // CPU figures stay per machine: keep both lists, names tell them apart.
        self.cpu.extend(other.cpu.iter().cloned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_and_merge() {
        let mut a = StageStats::new();
        let mut b = StageStats::new();
        for v in 1..=1000 {
            a.record(Endpoint::Summary, 200, v, v);
            b.record(Endpoint::Summary, 200, 1_000_000, 10);
        }
        b.record(Endpoint::Hold, 409, 5, 5);
        let mut ra = StageReport::build("s", 100.0, 10.0, true, &a);
        let rb = StageReport::build("s", 100.0, 10.0, true, &b);
        assert_eq!(
            decode(&ra.endpoints[0].latency_hist).expect("decode").len(),
            1000
        );
        ra.merge(&rb).expect("merge");
        let summary = &ra.endpoints[0];
        assert_eq!((summary.count, summary.errors), (2000, 0));
        assert!(summary.latency.p99 >= 999_000, "{:?}", summary.latency);
        assert!(summary.service.p99 <= 1000, "{:?}", summary.service);
        assert_eq!(ra.offered_rate, 200.0);
        assert_eq!(ra.endpoints.len(), 2);
        assert_eq!(ra.errors, 0, "a hold 409 is no error");
    }

    #[test]
    fn trace_buckets_sort_answers_by_what_went_wrong() {
        let mut b = TraceBucket::default();
        for (endpoint, status) in [
            (Endpoint::Hold, 201),
            (Endpoint::Hold, 409),
            (Endpoint::Intent, 409),
            (Endpoint::Commit, 503),
            (Endpoint::Commit, NO_RETRY_AFTER),
            (Endpoint::Summary, 500),
            (Endpoint::Summary, 1),
            (Endpoint::Summary, 2),
            (Endpoint::Summary, 3),
            (Endpoint::Summary, DROPPED),
        ] {
            b.add(endpoint, status, 7);
        }
        assert_eq!(
            b.csv(100),
            "100,10,2,1,1,1,1,1,1,1,1,7",
            "{}",
            TraceBucket::CSV_HEADER
        );
        assert_eq!(TraceBucket::CSV_HEADER.split(',').count(), 12);
        assert!(server_failure(500) && server_failure(NO_RETRY_AFTER) && server_failure(3));
        assert!(!server_failure(409) && !server_failure(HOLD_LIMIT) && !server_failure(200));
    }
}
