//! `loadgen`'s command line and what it runs: buyers entered first when the scenario
//! needs them, the runs (plain, stepup or a max search; then the same against the
//! comparison target), the audit, and the report files.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Command,
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{
    audit,
    report::{MaxResult, Report, Trial},
    run::{self, fmt_us, Driver, RunReport, RunSpec, Target},
    scenario::{Accepted, Kind, Plan, User},
    schedule::{stepup, Stage},
    setup, soak,
    stats::{merge_trace, Trace, TraceBucket},
};

pub const USAGE: &str = "\
usage: loadgen SCENARIO [options]        open-loop load, report in OUT.md/.json/.svg
       loadgen merge OUT FILE.json...    merge runs of several machines into one report

scenarios:
  ping      GET --path (default /public/ping)
  summary   GET /public/summary/EVENT/SECTION, random section
  enter     POST /public/enter, a new buyer each request; --addresses N: from N client
            addresses (X-Forwarded-For 10.x.y.z; run the edge with TRUSTED_PROXY_HOPS=1);
            --abusers N --abuse-pct P: P% of the requests from N abusive addresses
            (192.0.2.k), reported apart as `enter (abusers)`
  hold      POST /public/hold, random seats, buyers entered beforehand (--users)
  room-status  GET /public/room-status of the buyers entered beforehand, in turn
  status    each connection buys until one commit is accepted, then polls the status of
            its accepted orders in turn (final or not); ends with the audit
  mixed     of every 10 requests: 7 public reads, 2 buying steps (hold, intent, commit),
            1 status poll; ends with the audit
  buy       buying steps only (hold, payment-intent, commit: a third of the slots are
            commits), buyers entered beforehand; ends with the audit
  journey   --rate buyers/s arrive; each: enter, room-status until admitted, hold,
            payment-intent, commit, status until final; ends with the audit
  soak      mixed at a steady --rate for --duration (the seed's >= 30 minutes), the
            --watch processes' RSS and open files sampled every --sample-s; passes
            when they stay flat (see perf/src/soak.rs), the audit passes and no
            request failed on the server's side
  stepup    --of SCENARIO at --from .. --to requests/s in --steps stages of --step-duration
  max       --of SCENARIO: highest offered rate whose p99 <= --p99-ms (achieved >= 97%,
            errors < 0.1%), then a run at --final-fraction of it

target and comparison:
  --target ADDR (127.0.0.1:8080) --name NAME (edge) --cpu NAME=PID (repeatable)
  --compare ADDR --compare-name NAME (nginx) --compare-cpu NAME=PID
      the same runs against a second server (nginx's static 200), ratios printed
  --reset-cmd CMD   `sh -c CMD` before every measured run (e.g. re-seed the event)
  --header 'NAME: VALUE' (repeatable): sent with every ping and summary request
      (Accept-Encoding: gzip, Origin: https://...)
load:
  --rate N (1000) --duration S (10) --warmup S (2) --connections N (64)
  --threads N (1) --driver uring|epoll (uring) --timeout-ms N (10000)
  --drop-after-ms N (timeout): a request still unsent this late is dropped (counted)
  --from N --to N --steps N (5) --step-duration S (10)                      (stepup)
  --of SCENARIO --p99-ms X (5) --start-rate N (10000) --max-rate N (400000)
  --trial-duration S (5) --max-trials N (12) --precision F (0.03)
  --final-fraction F (0.8) --final-duration S (10) --retries N (2)
  --others-pct X (25): a failed trial while other processes used more than X% of a
      core is run again, at most --retries times                            (max)
event and buyers:
  --event ID (perf) --sections A,B,C,D,E --seats-per-section N (10000)
  --users N (enough for the run) --enter-connections N (64) --run-id ID
  --poll-ms N (500) --journey-timeout-s S (60)                          (journey)
  --database-url URL (env DATABASE_URL) --audit-wait-s S (60) --no-audit
resources (any scenario; judged by soak):
  --watch NAME=PID (repeatable): sampled and judged  --observe NAME=PID: sampled only
  --sample-s S (10) --rss-growth-pct X (10)
output:
  --out PREFIX (perf/results/loadgen-SCENARIO) --quiet (no progress lines)
  --trace FILE: CSV of the requests by send time in 100 ms buckets of the wall clock
      (epoch ms, sent, ok, 4xx, 503, 503 without Retry-After, other 5xx, connect, I/O,
      timeout, other, slowest answer in µs): what the fault suite judges
";

/// HOLD_LIMIT's default in the edge: live holds per buyer.
const HOLDS_PER_BUYER: f64 = 4.0;

struct Args {
    positional: Vec<String>,
    opts: HashMap<String, Vec<String>>,
    flags: Vec<String>,
}

impl Args {
    fn parse(raw: &[String]) -> Result<Args, String> {
        let (mut positional, mut opts, mut flags) = (Vec::new(), HashMap::new(), Vec::new());
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if matches!(name, "quiet" | "no-audit" | "help") {
                    flags.push(name.to_owned());
                    continue;
                }
                let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                opts.entry(name.to_owned())
                    .or_insert_with(Vec::new)
                    .push(value.clone());
            } else {
                positional.push(a.clone());
            }
        }
        Ok(Args {
            positional,
            opts,
            flags,
        })
    }

    fn str(&self, name: &str, default: &str) -> String {
        self.opts
            .get(name)
            .and_then(|v| v.last())
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    fn opt(&self, name: &str) -> Option<String> {
        self.opts.get(name).and_then(|v| v.last()).cloned()
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.opt(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v}")),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn pids(&self, name: &str) -> Result<Vec<(String, u32)>, String> {
        self.opts
            .get(name)
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|kv| {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--{name} {kv}: want NAME=PID"))?;
                let pid = v.parse().map_err(|_| format!("--{name} {kv}: bad pid"))?;
                Ok((k.to_owned(), pid))
            })
            .collect()
    }
}

fn kind_of(name: &str) -> Result<Kind, String> {
    Ok(match name {
        "ping" => Kind::Ping,
        "summary" => Kind::Summary,
        "enter" => Kind::Enter,
        "hold" => Kind::Hold,
        "room-status" => Kind::RoomStatus,
        "status" => Kind::Status,
        "mixed" => Kind::Mixed,
        "buy" => Kind::Buy,
        "journey" => Kind::Journey,
        other => return Err(format!("unknown scenario {other}")),
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Entry point; the process exit code.
pub fn main(raw: Vec<String>) -> i32 {
    match real_main(&raw) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{USAGE}");
            64
        }
    }
}

fn real_main(raw: &[String]) -> Result<i32, String> {
    let args = Args::parse(raw)?;
    if args.flag("help") || args.positional.is_empty() {
        println!("{USAGE}");
        return Ok(0);
    }
    let scenario = args.positional[0].clone();
    if scenario == "merge" {
        return merge(&args.positional[1..]);
    }
    let inner = match scenario.as_str() {
        "stepup" | "max" => args.str("of", "summary"),
        "soak" => "mixed".to_owned(),
        s => s.to_owned(),
    };
    let kind = kind_of(&inner)?;
    let addr: SocketAddr = args
        .str("target", "127.0.0.1:8080")
        .parse()
        .map_err(|e| format!("--target: {e}"))?;
    let target = Target {
        name: args.str("name", "edge"),
        addr,
        cpu: args.pids("cpu")?,
    };
    let compare = match args.opt("compare") {
        Some(a) => Some(Target {
            name: args.str("compare-name", "nginx"),
            addr: a.parse().map_err(|e| format!("--compare: {e}"))?,
            cpu: args.pids("compare-cpu")?,
        }),
        None => None,
    };
    if compare.is_some() && kind.buys() {
        return Err(
            "--compare needs a scenario without an audit (ping, summary, enter, hold)".into(),
        );
    }
    let driver = match args.str("driver", "uring").as_str() {
        "uring" => Driver::Uring,
        "epoll" => Driver::Epoll,
        d => return Err(format!("--driver {d}: uring or epoll")),
    };
    let timeout = Duration::from_millis(args.num("timeout-ms", 10_000)?);
    let run_id = args.opt("run-id").unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        format!("lg{}", t.as_millis() % 10_000_000_000)
    });
    let plan = Arc::new(Plan {
        kind,
        event: args.str("event", "perf"),
        sections: args
            .str("sections", "A,B,C,D,E")
            .split(',')
            .map(str::to_owned)
            .collect(),
        seats_per_section: args.num("seats-per-section", 10_000)?,
        run_id: run_id.clone(),
        ping_path: args.str("path", "/public/ping"),
        read_headers: args
            .opts
            .get("header")
            .into_iter()
            .flatten()
            .map(|h| format!("{h}\r\n"))
            .collect(),
        poll: Duration::from_millis(args.num("poll-ms", 500)?),
        journey_timeout: secs(args.num("journey-timeout-s", 60.0)?),
        addresses: args
            .opt("addresses")
            .map(|v| v.parse())
            .transpose()
            .map_err(|_| "--addresses: not a number".to_owned())?,
        abusers: args.num("abusers", 0)?,
        abuse_pct: args.num::<u32>("abuse-pct", 50)?.min(100),
    });
    let base = RunSpec {
        label: String::new(),
        stages: Vec::new(),
        connections: args.num("connections", if kind == Kind::Journey { 512 } else { 64 })?,
        threads: args.num("threads", 1)?,
        timeout,
        drop_after: args
            .opt("drop-after-ms")
            .map(|v| v.parse().map(Duration::from_millis))
            .transpose()
            .map_err(|_| "--drop-after-ms: not a number".to_owned())?
            .unwrap_or(timeout),
        driver,
        progress: !args.flag("quiet"),
        trace: args.opt("trace").is_some(),
        watch: args
            .pids("watch")?
            .into_iter()
            .chain(args.pids("observe")?)
            .collect(),
        sample_every: secs(args.num("sample-s", 10.0)?),
    };
    let rate: f64 = args.num("rate", 1000.0)?;
    let duration: f64 = args.num("duration", 10.0)?;
    let warmup: f64 = args.num("warmup", 2.0)?;
    let reset = args.opt("reset-cmd");

    let stage = |name: &str, rate: f64, d: f64, measured: bool| Stage {
        name: name.to_owned(),
        rate,
        duration: secs(d),
        measured,
    };
    let with_warmup = |mut stages: Vec<Stage>| {
        if warmup > 0.0 {
            let first = stages.first().map(|s| s.rate).unwrap_or(rate);
            stages.insert(0, stage("warm-up", first, warmup, false));
        }
        stages
    };

    // The most requests one run sends: how many buyers a run needs.
    let (max_rate, trial_s): (f64, f64) = (
        args.num("max-rate", 400_000.0)?,
        args.num("trial-duration", 5.0)?,
    );
    let stepup_stages = stepup(
        args.num("from", rate / 5.0)?,
        args.num("to", rate)?,
        args.num("steps", 5)?,
        secs(args.num("step-duration", 10.0)?),
    );
    let slots_per_run = match scenario.as_str() {
        "stepup" => {
            stepup_stages
                .iter()
                .map(|s| s.rate * s.duration.as_secs_f64())
                .sum::<f64>()
                + warmup * stepup_stages.first().map(|s| s.rate).unwrap_or(0.0)
        }
        "max" => max_rate * (trial_s + warmup).max(args.num("final-duration", 10.0)? + warmup),
        _ => rate * (duration + warmup),
    };
    let mut notes = Vec::new();
    let users: Vec<Arc<Vec<User>>> = if kind.needs_users() {
        let auto = match kind {
            Kind::Hold => slots_per_run / HOLDS_PER_BUYER,
            // Three steps a buyer; a buyer gives way after three failed holds.
            Kind::Buy => slots_per_run / 3.0 * 1.25,
            _ => slots_per_run * 0.2 / 2.0,
        }
        .ceil() as usize
            + 16;
        let count = args.num("users", auto)?;
        let entry = setup::enter_users(
            addr,
            &plan.event,
            &run_id,
            count,
            args.num("enter-connections", 64)?,
            driver,
        );
        let line = format!(
            "setup: {} buyers entered the waiting room of `{}` in {:.1} s ({:.0}/s), {} failed",
            entry.users.len(),
            plan.event,
            entry.seconds,
            entry.users.len() as f64 / entry.seconds.max(1e-9),
            entry.failed
        );
        eprintln!("loadgen: {line}");
        notes.push(line);
        if entry.users.is_empty() {
            return Err(format!(
                "no buyer could enter event {} at {addr}",
                plan.event
            ));
        }
        // Thread t takes every threads-th buyer.
        let threads = base.threads.max(1);
        (0..threads)
            .map(|t| {
                Arc::new(
                    entry
                        .users
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .cloned()
                        .collect(),
                )
            })
            .collect()
    } else {
        Vec::new()
    };

    let reset_now = || -> Result<(), String> {
        if let Some(cmd) = &reset {
            let status = Command::new("sh")
                .args(["-c", cmd])
                .status()
                .map_err(|e| format!("--reset-cmd: {e}"))?;
            if !status.success() {
                return Err(format!("--reset-cmd failed: {status}"));
            }
        }
        Ok(())
    };

    let mut runs: Vec<RunReport> = Vec::new();
    let mut trace = Trace::new();
    let mut maxes = Vec::new();
    let mut accepted: Vec<Accepted> = Vec::new();
    let targets: Vec<&Target> = std::iter::once(&target).chain(compare.as_ref()).collect();
    if scenario == "max" {
        maxes = max_searches(
            &args,
            &targets,
            &plan,
            &base,
            &users,
            warmup,
            &reset_now,
            &mut runs,
            &mut accepted,
        )?;
    }
    for t in targets.iter().filter(|_| scenario != "max") {
        let stages = if scenario == "stepup" {
            with_warmup(stepup_stages.clone())
        } else {
            with_warmup(vec![stage(&format!("{rate:.0}/s"), rate, duration, true)])
        };
        reset_now()?;
        let spec = RunSpec {
            label: scenario.clone(),
            stages,
            ..base.clone()
        };
        let outcome = run::run(t, &plan, &spec, &users);
        runs.push(outcome.report);
        merge_trace(&mut trace, &outcome.trace);
        if std::ptr::eq(*t, &target) {
            accepted = outcome.accepted;
        }
    }
    if let Some(path) = args.opt("trace") {
        let mut csv = String::from(TraceBucket::CSV_HEADER);
        csv.push('\n');
        for (ms, b) in &trace {
            csv.push_str(&b.csv(*ms));
            csv.push('\n');
        }
        std::fs::write(&path, csv).map_err(|e| format!("--trace {path}: {e}"))?;
    }

    let audit = if kind.buys() && !args.flag("no-audit") {
        let url = args
            .opt("database-url")
            .or_else(|| std::env::var("DATABASE_URL").ok());
        eprintln!(
            "loadgen: audit of {} accepted commits (waiting up to {} s for final statuses)",
            accepted.len(),
            args.num("audit-wait-s", 60.0)?
        );
        Some(audit::audit(
            addr,
            &plan,
            &mut accepted,
            secs(args.num("audit-wait-s", 60.0)?),
            url.as_deref(),
            driver,
        ))
    } else {
        None
    };

    let mut report = Report {
        scenario: scenario.clone(),
        command: std::iter::once("loadgen".to_owned())
            .chain(raw.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
        date: httpdate::fmt_http_date(SystemTime::now()),
        machine: machine(),
        notes,
        runs,
        max: maxes,
        audit,
        soak: None,
    };
    if scenario == "soak" {
        let judged: Vec<String> = args.pids("watch")?.into_iter().map(|(n, _)| n).collect();
        report.soak = Some(soak::judge(
            report.resources(),
            &judged,
            warmup,
            duration,
            args.num("rss-growth-pct", 10.0)?,
            report.server_failures(),
        ));
    }
    let out = args.str("out", &format!("perf/results/loadgen-{scenario}"));
    write_outputs(&report, &out)?;
    let failed = report.audit.as_ref().is_some_and(|a| !a.passed)
        || report.soak.as_ref().is_some_and(|v| !v.passed);
    Ok(i32::from(failed))
}

/// One target's `max` search: doubling until a trial fails, then bisecting.
struct Search<'a> {
    target: &'a Target,
    rate: f64,
    lo: f64,
    hi: Option<f64>,
    top_achieved: f64,
    trials: Vec<Trial>,
    retried: usize,
    done: bool,
}

/// `max` against every target in lockstep: each round runs one trial per target still
/// searching, one after the other, so a noisy minute on a shared machine hits them all
/// rather than one; then the runs at `--final-fraction` of each top rate, likewise.
#[allow(clippy::too_many_arguments)]
fn max_searches(
    args: &Args,
    targets: &[&Target],
    plan: &Arc<Plan>,
    base: &RunSpec,
    users: &[Arc<Vec<User>>],
    warmup: f64,
    reset_now: &dyn Fn() -> Result<(), String>,
    runs: &mut Vec<RunReport>,
    // The commits the first target accepted in any trial or the final run: the audit
    // follows every one of them to its end.
    accepted: &mut Vec<Accepted>,
) -> Result<Vec<MaxResult>, String> {
    let p99_target_us = (args.num("p99-ms", 5.0)? * 1000.0) as u64;
    let max_rate: f64 = args.num("max-rate", 400_000.0)?;
    let trial_s: f64 = args.num("trial-duration", 5.0)?;
    let precision: f64 = args.num("precision", 0.03)?;
    let fraction: f64 = args.num("final-fraction", 0.8)?;
    let final_s: f64 = args.num("final-duration", 10.0)?;
    let max_trials: usize = args.num("max-trials", 12)?;
    let retries: usize = args.num("retries", 2)?;
    let others_limit: f64 = args.num("others-pct", 25.0)?;
    let start_rate: f64 = args.num("start-rate", 10_000.0)?;
    let mut searches: Vec<Search<'_>> = targets
        .iter()
        .map(|t| Search {
            target: t,
            rate: start_rate,
            lo: 0.0,
            hi: None,
            top_achieved: 0.0,
            trials: Vec::new(),
            retried: 0,
            done: false,
        })
        .collect();
    while searches.iter().any(|s| !s.done) {
        for search in searches.iter_mut().filter(|s| !s.done) {
            let rate = search.rate;
            reset_now()?;
            let spec = RunSpec {
                label: format!("trial {rate:.0}/s"),
                stages: vec![
                    Stage {
                        name: "warm-up".into(),
                        rate,
                        duration: secs(warmup.min(trial_s)),
                        measured: false,
                    },
                    Stage {
                        name: format!("{rate:.0}/s"),
                        rate,
                        duration: secs(trial_s),
                        measured: true,
                    },
                ],
                progress: false,
                // A request this late has failed the trial already; dropping it keeps an
                // overloaded trial from running on for the whole timeout.
                drop_after: base
                    .drop_after
                    .min(Duration::from_micros(p99_target_us * 20).max(Duration::from_secs(1))),
                ..base.clone()
            };
            let outcome = run::run(search.target, plan, &spec, users);
            if std::ptr::eq(search.target, targets[0]) {
                accepted.extend(outcome.accepted.iter().cloned());
            }
            let m = outcome
                .report
                .measured()
                .ok_or("a trial without a measured stage")?;
            let p99 = m.overall_latency().value_at_quantile(0.99);
            let error_rate = m.errors as f64 / m.answered.max(1) as f64;
            let why = if m.achieved_rate < 0.97 * rate {
                format!("achieved {:.0}/s < 97%", m.achieved_rate)
            } else if error_rate >= 0.001 {
                format!("{} errors", m.errors)
            } else if p99 > p99_target_us {
                format!("p99 {}", fmt_us(p99))
            } else {
                String::new()
            };
            let passed = why.is_empty();
            // Other tenants of a shared machine can fail a trial on their own: a failed
            // trial during which they were busy is run again (up to --retries a search).
            let disturbed = !passed && m.others_busy_pct > others_limit && search.retried < retries;
            eprintln!(
                "loadgen [{}] max: trial {:.0}/s -> achieved {:.0}/s p99 {} errors {}, others busy {:.0}%: {}",
                search.target.name,
                rate,
                m.achieved_rate,
                fmt_us(p99),
                m.errors,
                m.others_busy_pct,
                if passed { "pass" } else { &why }
            );
            search.trials.push(Trial {
                offered: rate,
                achieved: m.achieved_rate,
                p99_us: p99,
                errors: m.errors,
                passed,
                why: if disturbed {
                    format!("{why}; others busy {:.0}%: run again", m.others_busy_pct)
                } else {
                    why
                },
            });
            runs.push(outcome.report);
            if disturbed {
                search.retried += 1;
                continue;
            }
            if passed {
                search.lo = rate;
                search.top_achieved = m.achieved_rate;
            } else {
                search.hi = Some(rate);
            }
            let converged = match search.hi {
                Some(h) => h - search.lo <= precision * h,
                None => rate >= max_rate,
            };
            if converged || search.trials.len() >= max_trials + search.retried {
                search.done = true;
            }
            search.rate = match search.hi {
                None => (rate * 2.0).min(max_rate),
                Some(h) => ((search.lo + h) / 2.0).round(),
            };
        }
    }
    for search in searches.iter().filter(|s| s.lo > 0.0) {
        reset_now()?;
        let final_rate = (search.lo * fraction).round();
        let spec = RunSpec {
            label: format!("{:.0}% of max", fraction * 100.0),
            stages: vec![
                Stage {
                    name: "warm-up".into(),
                    rate: final_rate,
                    duration: secs(warmup),
                    measured: false,
                },
                Stage {
                    name: format!("{final_rate:.0}/s"),
                    rate: final_rate,
                    duration: secs(final_s),
                    measured: true,
                },
            ],
            ..base.clone()
        };
        let outcome = run::run(search.target, plan, &spec, users);
        if std::ptr::eq(search.target, targets[0]) {
            accepted.extend(outcome.accepted);
        }
        runs.push(outcome.report);
    }
    Ok(searches
        .into_iter()
        .map(|s| MaxResult {
            target: s.target.name.clone(),
            p99_target_us,
            top_rate: s.lo,
            top_achieved: s.top_achieved,
            final_fraction: fraction,
            trials: s.trials,
        })
        .collect())
}

fn machine() -> String {
    // Not available_parallelism: it counts only the CPUs this process is pinned to.
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs ({model}), kernel {}", kernel.trim())
}

fn write_outputs(report: &Report, out: &str) -> Result<(), String> {
    let path = std::path::Path::new(out);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let svg_name = path
        .file_name()
        .map(|f| format!("{}.svg", f.to_string_lossy()))
        .unwrap_or_default();
    let samples = report.resources();
    if !samples.is_empty() {
        let (from, duration) = report
            .soak
            .as_ref()
            .map(|v| (v.from_s, v.duration_s))
            .unwrap_or((0.0, samples.last().map_or(0.0, |s| s.t)));
        let p = format!("{out}-resources.svg");
        std::fs::write(&p, soak::svg(samples, from, duration, &report.scenario))
            .map_err(|e| format!("{p}: {e}"))?;
    }
    let write = |ext: &str, body: &str| {
        let p = format!("{out}.{ext}");
        std::fs::write(&p, body).map_err(|e| format!("{p}: {e}"))
    };
    let json = serde_json::to_string_pretty(report).map_err(|e| format!("JSON: {e}"))?;
    write("json", &json)?;
    write("svg", &report.svg())?;
    let md = report.markdown(Some(&svg_name));
    write("md", &md)?;
    for r in report.ratios() {
        println!("{r}");
    }
    if let Some(a) = &report.audit {
        println!(
            "audit: {} ({} accepted, {} never final, {} seats in two CONFIRMED orders)",
            if a.passed { "passed" } else { "FAILED" },
            a.accepted,
            a.never_final,
            a.double_sold_seats
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        );
        for p in &a.problems {
            println!("audit problem: {p}");
        }
    }
    if let Some(v) = &report.soak {
        println!(
            "soak: {} ({} server-side failures)",
            if v.passed { "passed" } else { "FAILED" },
            v.server_failures
        );
        for p in &v.processes {
            println!(
                "soak: {}: RSS {:.1} -> {:.1} MiB (Q2 mean {:.1}, Q4 mean {:.1}, {:+.1}%), fds {} -> {}",
                p.name,
                p.rss_first_kib as f64 / 1024.0,
                p.rss_last_kib as f64 / 1024.0,
                p.rss_q2_mean_kib / 1024.0,
                p.rss_q4_mean_kib / 1024.0,
                p.rss_growth_pct,
                p.fds_first,
                p.fds_last
            );
        }
        for p in &v.problems {
            println!("soak problem: {p}");
        }
    }
    println!("loadgen: wrote {out}.md, {out}.json, {out}.svg");
    Ok(())
}

/// `loadgen merge OUT A.json B.json ...`: the same plan run on several machines at once,
/// added up run by run and stage by stage (histograms merged exactly).
fn merge(files: &[String]) -> Result<i32, String> {
    let (out, inputs) = files
        .split_first()
        .ok_or("merge needs OUT and at least one JSON file")?;
    let mut reports = Vec::new();
    for f in inputs {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        let r: Report = serde_json::from_str(&text).map_err(|e| format!("{f}: {e}"))?;
        reports.push(r);
    }
    let mut merged = reports.first().cloned().ok_or("no input files")?;
    for r in &reports[1..] {
        for theirs in &r.runs {
            match merged
                .runs
                .iter_mut()
                .find(|m| m.label == theirs.label && m.target == theirs.target)
            {
                Some(mine) => merge_run(mine, theirs)?,
                None => merged.runs.push(theirs.clone()),
            }
        }
        if let (Some(a), Some(b)) = (merged.audit.as_mut(), r.audit.as_ref()) {
            a.accepted += b.accepted;
            a.confirmed += b.confirmed;
            a.rejected += b.rejected;
            a.never_final += b.never_final;
            a.passed &= b.passed;
            a.problems.extend(b.problems.iter().cloned());
        }
    }
    merged.command = format!("loadgen merge {}", files.join(" "));
    merged.notes.push(format!(
        "merged from {} reports: rates, counts and histograms are added; per-second p50/p99 in \
         the chart are the worst of the machines; CPU figures stay per machine",
        reports.len()
    ));
    write_outputs(&merged, out)?;
    Ok(0)
}

fn merge_run(mine: &mut RunReport, theirs: &RunReport) -> Result<(), String> {
    for (a, b) in mine.stages.iter_mut().zip(&theirs.stages) {
        a.merge(b)?;
    }
    for (a, b) in mine.timeline.iter_mut().zip(&theirs.timeline) {
        a.offered_rate += b.offered_rate;
        a.done += b.done;
        a.errors += b.errors;
        a.p50_us = a.p50_us.max(b.p50_us);
        a.p99_us = a.p99_us.max(b.p99_us);
        a.max_us = a.max_us.max(b.max_us);
    }
    mine.connections += theirs.connections;
    mine.threads += theirs.threads;
    mine.connects += theirs.connects;
    Ok(())
}
