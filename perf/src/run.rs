//! One run of a scenario against one target: `threads` monoio runtimes, each with its
//! share of the connections and of the rate; the main thread prints a progress line every
//! second and samples CPU time at every stage boundary.

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    net::SocketAddr,
    rc::Rc,
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use serde::{Deserialize, Serialize};

use crate::{
    cpu::{self, TICKS_PER_S},
    scenario::{connection, Accepted, Plan, ThreadCtx, User},
    schedule::{Clock, Stage},
    stats::{merge_trace, CpuReport, Interval, StageReport, StageStats, Tick, Trace},
};

/// Where load goes, and which processes' CPU time it is charged to.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
    /// (name, pid): CPU-µs per request is reported for each.
    pub cpu: Vec<(String, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Driver {
    Uring,
    Epoll,
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub label: String,
    pub stages: Vec<Stage>,
    pub connections: usize,
    pub threads: usize,
    pub timeout: Duration,
    pub drop_after: Duration,
    pub driver: Driver,
    /// Print the per-second progress line.
    pub progress: bool,
    /// Keep a `--trace` of the requests (100 ms buckets of the wall clock).
    pub trace: bool,
    /// Processes whose memory and open files are sampled (`--watch`, `--observe`).
    pub watch: Vec<(String, u32)>,
    /// Between two samples of them.
    pub sample_every: Duration,
}

/// One run, serializable: what the report, the JSON file and `merge` work from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub label: String,
    pub target: String,
    pub addr: String,
    pub connections: usize,
    pub threads: usize,
    pub driver: Driver,
    pub stages: Vec<StageReport>,
    pub timeline: Vec<Tick>,
    /// Connections opened (more than `connections`: the server closed some).
    pub connects: u64,
    /// The watched processes' memory and open files over the run.
    #[serde(default)]
    pub resources: Vec<ResourceSample>,
}

/// One process at one moment of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceSample {
    /// Seconds since the run's start (its first stage, warm-up included).
    pub t: f64,
    pub name: String,
    /// `None`: the process was gone.
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
}

impl ResourceSample {
    /// `VmRSS` of `/proc/PID/status` and the entries of `/proc/PID/fd`.
    pub fn take(t: f64, name: &str, pid: u32) -> ResourceSample {
        let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            });
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.count() as u64);
        ResourceSample {
            t,
            name: name.to_owned(),
            rss_kib,
            fds: fds.filter(|_| rss_kib.is_some()),
        }
    }
}

impl RunReport {
    /// The measured stages merged into one (for `max` trials and ratios).
    pub fn measured(&self) -> Option<StageReport> {
        let mut it = self.stages.iter().filter(|s| s.measured);
        let mut total = it.next()?.clone();
        for s in it {
            // Stages run one after the other: rates are time-weighted, not added.
            let (d0, d1) = (total.duration_s, s.duration_s);
            let offered = (total.offered_rate * d0 + s.offered_rate * d1) / (d0 + d1);
            let achieved = (total.achieved_rate * d0 + s.achieved_rate * d1) / (d0 + d1);
            let cpu = total.cpu.clone();
            let _ = total.merge(s);
            total.offered_rate = offered;
            total.achieved_rate = achieved;
            total.duration_s = d0 + d1;
            total.cpu = cpu
                .iter()
                .zip(&s.cpu)
                .map(|(a, b)| {
                    let cpu_s = a.cpu_s + b.cpu_s;
                    CpuReport {
                        name: a.name.clone(),
                        cpu_s,
                        us_per_request: cpu_s * 1e6 / total.answered.max(1) as f64,
                        busy_pct: 100.0 * cpu_s / total.duration_s,
                    }
                })
                .collect();
        }
        Some(total)
    }
}

pub struct RunOutcome {
    pub report: RunReport,
    pub accepted: Vec<Accepted>,
    /// Empty unless `spec.trace`.
    pub trace: Trace,
}

enum Msg {
    Tick { second: u64, interval: Interval },
    Done(usize, ThreadResult),
}

struct ThreadResult {
    stages: Vec<StageStats>,
    accepted: Vec<Accepted>,
    connects: u64,
    leftover: Interval,
    trace: Trace,
}

/// Runs `spec` against `target`; `users[t]` are thread t's buyers.
pub fn run(
    target: &Target,
    plan: &Arc<Plan>,
    spec: &RunSpec,
    users: &[Arc<Vec<User>>],
) -> RunOutcome {
    let threads = spec.threads.max(1);
    // Connections open before the clock starts.
    let start = Instant::now() + Duration::from_millis(300 + spec.connections as u64 / 4);
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (tx, plan, spec) = (tx.clone(), plan.clone(), spec.clone());
            let users = users.get(t).cloned().unwrap_or_default();
            let addr = target.addr;
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || thread_main(t, threads, addr, plan, spec, users, start, tx))
                .expect("spawn a load thread")
        })
        .collect();
    drop(tx);

    let clock = Clock::new(start, &spec.stages, 0, 1);
    let mut boundaries = vec![start];
    boundaries.extend((0..spec.stages.len()).map(|i| clock.stage_window(i).1));
    let mut samples: Vec<cpu::Sample> = Vec::new();
    let mut pending: BTreeMap<u64, (usize, Interval)> = BTreeMap::new();
    let mut timeline = Vec::new();
    let mut results: Vec<Option<ThreadResult>> = (0..threads).map(|_| None).collect();
    let mut done = 0;
    let mut errors_total = 0;
    let mut resources = Vec::new();
    let mut next_sample = start;
    while done < threads {
        if !spec.watch.is_empty() && Instant::now() >= next_sample {
            let t = Instant::now()
                .saturating_duration_since(start)
                .as_secs_f64();
            for (name, pid) in &spec.watch {
                resources.push(ResourceSample::take(t, name, *pid));
            }
            next_sample += spec.sample_every.max(Duration::from_millis(100));
            continue;
        }
        if let Some(b) = boundaries.get(samples.len()) {
            if Instant::now() >= *b {
                samples.push(cpu::sample(&target.cpu));
                continue;
            }
        }
        let wait = boundaries
            .get(samples.len())
            .map(|b| b.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        match rx.recv_timeout(wait) {
            Ok(Msg::Tick { second, interval }) => {
                let entry = pending
                    .entry(second)
                    .or_insert_with(|| (0, Interval::new()));
                entry.0 += 1;
                merge_interval(&mut entry.1, &interval);
                if entry.0 == threads {
                    if let Some((_, iv)) = pending.remove(&second) {
                        errors_total += iv.errors;
                        let tick = tick_of(second as f64, &iv, &spec.stages);
                        if spec.progress {
                            progress(&target.name, &tick, &spec.stages, errors_total);
                        }
                        timeline.push(tick);
                    }
                }
            }
            Ok(Msg::Done(t, result)) => {
                results[t] = Some(result);
                done += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for h in handles {
        let _ = h.join();
    }
    if !spec.watch.is_empty() {
        let t = Instant::now()
            .saturating_duration_since(start)
            .as_secs_f64();
        for (name, pid) in &spec.watch {
            resources.push(ResourceSample::take(t, name, *pid));
        }
    }
    while samples.len() < boundaries.len() {
        samples.push(cpu::sample(&target.cpu));
    }
    let results: Vec<ThreadResult> = results.into_iter().flatten().collect();
    // What the threads answered after their last full second (the drain).
    let mut leftover = Interval::new();
    for r in &results {
        merge_interval(&mut leftover, &r.leftover);
    }
    for (second, (_, iv)) in pending {
        merge_interval(&mut leftover, &iv);
        let _ = second;
    }
    if leftover.done > 0 {
        let t = timeline.last().map(|t: &Tick| t.t + 1.0).unwrap_or(1.0);
        timeline.push(tick_of(t, &leftover, &spec.stages));
    }

    let mut stages = Vec::new();
    for (i, stage) in spec.stages.iter().enumerate() {
        let mut merged = StageStats::new();
        for r in &results {
            if let Some(s) = r.stages.get(i) {
                merged.merge(s);
            }
        }
        let secs = stage.duration.as_secs_f64();
        let mut report = StageReport::build(&stage.name, stage.rate, secs, stage.measured, &merged);
        let (a, b) = (&samples[i], &samples[i + 1]);
        let mut charged = 0;
        for (k, (name, _)) in target.cpu.iter().enumerate() {
            let ticks = b.processes[k].saturating_sub(a.processes[k]);
            charged += ticks;
            report
                .cpu
                .push(cpu_report(name, ticks, report.answered, secs));
        }
        let mine = b.me.saturating_sub(a.me);
        report
            .cpu
            .push(cpu_report("loadgen", mine, report.answered, secs));
        let others = b
            .machine
            .saturating_sub(a.machine)
            .saturating_sub(charged + mine);
        report.others_busy_pct = 100.0 * others as f64 / TICKS_PER_S / secs;
        stages.push(report);
    }
    let accepted = results
        .iter()
        .flat_map(|r| r.accepted.iter().cloned())
        .collect();
    let mut trace = Trace::new();
    for r in &results {
        merge_trace(&mut trace, &r.trace);
    }
    RunOutcome {
        report: RunReport {
            label: spec.label.clone(),
            target: target.name.clone(),
            addr: target.addr.to_string(),
            connections: spec.connections,
            threads,
            driver: spec.driver,
            stages,
            timeline,
            connects: results.iter().map(|r| r.connects).sum(),
            resources,
        },
        accepted,
        trace,
    }
}

fn cpu_report(name: &str, ticks: u64, answered: u64, secs: f64) -> CpuReport {
    let cpu_s = ticks as f64 / TICKS_PER_S;
    CpuReport {
        name: name.to_owned(),
        cpu_s,
        us_per_request: cpu_s * 1e6 / answered.max(1) as f64,
        busy_pct: 100.0 * cpu_s / secs.max(1e-9),
    }
}

fn merge_interval(into: &mut Interval, from: &Interval) {
    into.done += from.done;
    into.errors += from.errors;
    let _ = into.latency.add(&from.latency);
}

fn stage_at(stages: &[Stage], t: f64) -> Option<usize> {
    let mut end = 0.0;
    for (i, s) in stages.iter().enumerate() {
        end += s.duration.as_secs_f64();
        if t <= end + 1e-9 {
            return Some(i);
        }
    }
    None
}

fn tick_of(t: f64, iv: &Interval, stages: &[Stage]) -> Tick {
    let offered = stage_at(stages, t - 0.5)
        .map(|i| stages[i].rate)
        .unwrap_or(0.0);
    Tick {
        t,
        offered_rate: offered,
        done: iv.done,
        errors: iv.errors,
        p50_us: iv.latency.value_at_quantile(0.5),
        p99_us: iv.latency.value_at_quantile(0.99),
        max_us: iv.latency.max(),
    }
}

fn progress(target: &str, tick: &Tick, stages: &[Stage], errors_total: u64) {
    let stage = stage_at(stages, tick.t - 0.5)
        .map(|i| format!("{}/{} {}", i + 1, stages.len(), stages[i].name))
        .unwrap_or_else(|| "drain".to_owned());
    eprintln!(
        "loadgen [{target}] {:>4.0}s  stage {stage}: offered {:.0}/s  achieved {}/s  p50 {}  p99 {}  max {}  errors {} (total {})",
        tick.t,
        tick.offered_rate,
        tick.done,
        fmt_us(tick.p50_us),
        fmt_us(tick.p99_us),
        fmt_us(tick.max_us),
        tick.errors,
        errors_total
    );
}

/// `850µs`, `12.3ms`, `1.20s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[allow(clippy::too_many_arguments)]
fn thread_main(
    thread: usize,
    threads: usize,
    addr: SocketAddr,
    plan: Arc<Plan>,
    spec: RunSpec,
    users: Arc<Vec<User>>,
    start: Instant,
    tx: mpsc::Sender<Msg>,
) {
    let body = async move {
        let clock = Clock::new(start, &spec.stages, thread, threads);
        let windows = (0..spec.stages.len())
            .map(|i| clock.stage_window(i))
            .collect();
        let ctx = Rc::new(ThreadCtx {
            plan,
            addr,
            clock,
            windows,
            timeout: spec.timeout,
            drop_after: spec.drop_after,
            users,
            next_user: Cell::new(0),
            stages: RefCell::new((0..spec.stages.len()).map(|_| StageStats::new()).collect()),
            interval: RefCell::new(Interval::new()),
            accepted: RefCell::new(Vec::new()),
            connects: Cell::new(0),
            thread,
            nonce: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            trace: spec.trace.then(|| RefCell::new(Trace::new())),
            wall_base: (
                Instant::now(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            ),
        });
        let conns = spec.connections / threads + usize::from(thread < spec.connections % threads);
        let tasks: Vec<_> = (0..conns.max(1))
            .map(|c| monoio::spawn(connection(ctx.clone(), c)))
            .collect();
        let ticker = {
            let (ctx, tx) = (ctx.clone(), tx.clone());
            monoio::spawn(async move {
                for second in 1.. {
                    let at = start + Duration::from_secs(second);
                    monoio::time::sleep_until(monoio::time::Instant::from_std(at)).await;
                    let interval = std::mem::take(&mut *ctx.interval.borrow_mut());
                    if tx.send(Msg::Tick { second, interval }).is_err() {
                        break;
                    }
                }
            })
        };
        for t in tasks {
            t.await;
        }
        drop(ticker);
        let leftover = std::mem::take(&mut *ctx.interval.borrow_mut());
        let result = ThreadResult {
            stages: ctx.stages.take(),
            accepted: ctx.accepted.take(),
            connects: ctx.connects.get(),
            leftover,
            trace: ctx.trace.as_ref().map(|t| t.take()).unwrap_or_default(),
        };
        let _ = tx.send(Msg::Done(thread, result));
    };
    match spec.driver {
        Driver::Uring => match uring_runtime() {
            Ok(mut rt) => rt.block_on(body),
            Err(e) => eprintln!("loadgen: io_uring runtime: {e} (try --driver epoll)"),
        },
        Driver::Epoll => match RuntimeBuilder::<LegacyDriver>::new().enable_timer().build() {
            Ok(mut rt) => rt.block_on(body),
            Err(e) => eprintln!("loadgen: epoll runtime: {e}"),
        },
    }
}

/// An io_uring runtime whose ring runs completions' task work only when the thread
/// enters the kernel anyway (COOP_TASKRUN, as the edge does: no interrupt per
/// completion); without the flag on kernels before 5.19.
fn uring_runtime() -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>> {
    let build = |coop: bool| {
        let mut ring = io_uring::IoUring::builder();
        if coop {
            ring.setup_coop_taskrun().setup_taskrun_flag();
        }
        RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(4096)
            .uring_builder(ring)
            .enable_timer()
            .build()
    };
    build(true).or_else(|_| build(false))
}
