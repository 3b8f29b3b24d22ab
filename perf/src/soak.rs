//! `loadgen soak` (issue 14): a long steady mixed load whose pass mark is flat memory.
//! The run samples the watched processes' RSS and open file descriptors (`run`'s
//! `ResourceSample`); this module judges them and draws them.
//!
//! The rule, for every process named with `--watch` (`--observe` ones are drawn, not
//! judged), over the measured stage of duration `d` after the warm-up:
//! - RSS: the mean of the last quarter is within `--rss-growth-pct` (10 %) of the mean
//!   of the second quarter. The first quarter is left out: allocators, caches and
//!   connection pools grow to their working size there. A leak of a few bytes a request
//!   shows as a rising line, so the last quarter ends above the second.
//! - Open files: the most in the last quarter is at most the most in the second quarter
//!   plus the same percentage (at least 4 descriptors).
//! - The process is alive at every sample, and each quarter has at least 2 samples.
//!
//! Besides: the audit passes and no request failed on the server's side (5xx, a 503
//! without `Retry-After`, no answer, dropped unsent).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::run::ResourceSample;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SoakVerdict {
    pub rule: String,
    /// The measured stage in run time: from `from_s` for `duration_s` seconds.
    pub from_s: f64,
    pub duration_s: f64,
    pub rss_growth_pct_limit: f64,
    pub processes: Vec<ProcessTrend>,
    /// Server-side failures in the measured stage: must be 0.
    pub server_failures: u64,
    pub passed: bool,
    pub problems: Vec<String>,
}

/// One process over the run; KiB and descriptor counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessTrend {
    pub name: String,
    pub judged: bool,
    pub samples: usize,
    pub rss_first_kib: u64,
    pub rss_last_kib: u64,
    pub rss_max_kib: u64,
    pub rss_q2_mean_kib: f64,
    pub rss_q4_mean_kib: f64,
    /// Q4 mean over Q2 mean, minus one, in %.
    pub rss_growth_pct: f64,
    pub fds_first: u64,
    pub fds_last: u64,
    pub fds_q2_max: u64,
    pub fds_q4_max: u64,
    pub passed: bool,
}

pub const RULE: &str =
    "over the measured stage (after the warm-up), per watched process: mean RSS \
of the last quarter <= mean RSS of the second quarter x (1 + limit); most open files of the last \
quarter <= most of the second quarter + max(4, limit x that); alive at every sample; >= 2 samples \
a quarter. And: the audit passes, 0 server-side failures";

/// Judges the samples of a run whose measured stage spans `[from, from + duration)`
/// seconds of run time. `judged`: the names whose trend must be flat.
pub fn judge(
    samples: &[ResourceSample],
    judged: &[String],
    from: f64,
    duration: f64,
    growth_pct: f64,
    server_failures: u64,
) -> SoakVerdict {
    let mut names: Vec<&str> = Vec::new();
    for s in samples {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let mut problems = Vec::new();
    let mut processes = Vec::new();
    let quarter = |q: f64| (from + duration * (q - 1.0) / 4.0, from + duration * q / 4.0);
    let (q2, q4) = (quarter(2.0), quarter(4.0));
    for name in names {
        let mine: Vec<&ResourceSample> = samples.iter().filter(|s| s.name == name).collect();
        let is_judged = judged.iter().any(|j| j == name);
        let gone = mine.iter().filter(|s| s.rss_kib.is_none()).count();
        let live: Vec<(f64, u64, u64)> = mine
            .iter()
            .filter_map(|s| Some((s.t, s.rss_kib?, s.fds.unwrap_or(0))))
            .collect();
        let within = |(a, b): (f64, f64), last: bool| -> Vec<(f64, u64, u64)> {
            live.iter()
                .copied()
                .filter(|(t, _, _)| *t >= a && (*t < b || (last && *t <= b + 1.0)))
                .collect()
        };
        let (in_q2, in_q4) = (within(q2, false), within(q4, true));
        let mean = |v: &[(f64, u64, u64)]| {
            v.iter().map(|s| s.1 as f64).sum::<f64>() / v.len().max(1) as f64
        };
        let most = |v: &[(f64, u64, u64)]| v.iter().map(|s| s.2).max().unwrap_or(0);
        let (m2, m4) = (mean(&in_q2), mean(&in_q4));
        let growth = 100.0 * (m4 / m2.max(1.0) - 1.0);
        let (f2, f4) = (most(&in_q2), most(&in_q4));
        let fd_room = ((f2 as f64 * growth_pct / 100.0).ceil() as u64).max(4);
        let mut ok = true;
        if is_judged {
            if gone > 0 {
                ok = false;
                problems.push(format!("{name}: gone at {gone} of {} samples", mine.len()));
            }
            if in_q2.len() < 2 || in_q4.len() < 2 {
                ok = false;
                problems.push(format!(
                    "{name}: too few samples ({} in the second quarter, {} in the last)",
                    in_q2.len(),
                    in_q4.len()
                ));
            }
            if growth > growth_pct {
                ok = false;
                problems.push(format!(
                    "{name}: RSS grew {growth:.1}% from the second quarter to the last \
                     ({:.1} -> {:.1} MiB; limit {growth_pct}%)",
                    m2 / 1024.0,
                    m4 / 1024.0
                ));
            }
            if f4 > f2 + fd_room {
                ok = false;
                problems.push(format!(
                    "{name}: open files rose from at most {f2} to {f4} (limit +{fd_room})"
                ));
            }
        }
        processes.push(ProcessTrend {
            name: name.to_owned(),
            judged: is_judged,
            samples: mine.len(),
            rss_first_kib: live.first().map_or(0, |s| s.1),
            rss_last_kib: live.last().map_or(0, |s| s.1),
            rss_max_kib: live.iter().map(|s| s.1).max().unwrap_or(0),
            rss_q2_mean_kib: m2,
            rss_q4_mean_kib: m4,
            rss_growth_pct: growth,
            fds_first: live.first().map_or(0, |s| s.2),
            fds_last: live.last().map_or(0, |s| s.2),
            fds_q2_max: f2,
            fds_q4_max: f4,
            passed: ok,
        });
    }
    for j in judged {
        if !processes.iter().any(|p| &p.name == j) {
            problems.push(format!("{j}: never sampled"));
        }
    }
    if server_failures > 0 {
        problems.push(format!(
            "{server_failures} requests failed on the server's side"
        ));
    }
    SoakVerdict {
        rule: RULE.to_owned(),
        from_s: from,
        duration_s: duration,
        rss_growth_pct_limit: growth_pct,
        processes,
        server_failures,
        passed: problems.is_empty(),
        problems,
    }
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// The verdict and a sparse table of the samples, for the report.
pub fn markdown(v: &SoakVerdict, samples: &[ResourceSample], chart: Option<&str>) -> String {
    let mut md = String::new();
    md.push_str("\n## Soak: memory and open files\n\n");
    let _ = writeln!(
        md,
        "**{}** (RSS growth limit {}%)\n",
        if v.passed { "PASSED" } else { "FAILED" },
        v.rss_growth_pct_limit
    );
    let _ = writeln!(md, "Rule: {}.\n", v.rule);
    if let Some(chart) = chart {
        let _ = writeln!(md, "![RSS and open files over time]({chart})\n");
    }
    md.push_str("| process | judged | samples | RSS first | RSS last | RSS max | RSS mean Q2 | RSS mean Q4 | growth | fds first | fds last | fds max Q2 | fds max Q4 | passed |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for p in &v.processes {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:+.1}% | {} | {} | {} | {} | {} |",
            p.name,
            if p.judged { "yes" } else { "no (observed)" },
            p.samples,
            mib(p.rss_first_kib as f64),
            mib(p.rss_last_kib as f64),
            mib(p.rss_max_kib as f64),
            mib(p.rss_q2_mean_kib),
            mib(p.rss_q4_mean_kib),
            p.rss_growth_pct,
            p.fds_first,
            p.fds_last,
            p.fds_q2_max,
            p.fds_q4_max,
            if !p.judged {
                "-"
            } else if p.passed {
                "yes"
            } else {
                "no"
            }
        );
    }
    let _ = writeln!(
        md,
        "\nServer-side failures in the measured stage: {} (must be 0).",
        v.server_failures
    );
    for p in &v.problems {
        let _ = writeln!(md, "\n- problem: {p}");
    }
    // About a dozen rows, evenly spread.
    let mut times: Vec<f64> = samples.iter().map(|s| s.t).collect();
    times.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    if !times.is_empty() {
        let step = times.len().div_ceil(12).max(1);
        let mut picked: Vec<f64> = times.iter().copied().step_by(step).collect();
        if picked.last() != times.last() {
            picked.extend(times.last());
        }
        let names: Vec<&str> = v.processes.iter().map(|p| p.name.as_str()).collect();
        md.push_str("\n| t | ");
        md.push_str(
            &names
                .iter()
                .map(|n| format!("{n} RSS | {n} fds"))
                .collect::<Vec<_>>()
                .join(" | "),
        );
        md.push_str(" |\n|---:|");
        md.push_str(&"---:|---:|".repeat(names.len()));
        md.push('\n');
        for t in picked {
            let _ = write!(md, "| {t:.0} s |");
            for n in &names {
                match samples
                    .iter()
                    .find(|s| s.name == *n && (s.t - t).abs() < 1e-9)
                {
                    Some(ResourceSample {
                        rss_kib: Some(r),
                        fds,
                        ..
                    }) => {
                        let _ = write!(md, " {} | {} |", mib(*r as f64), fds.unwrap_or(0));
                    }
                    _ => md.push_str(" gone | gone |"),
                }
            }
            md.push('\n');
        }
    }
    md
}

const COLORS: [&str; 6] = ["#1f5fbf", "#c22", "#2a2", "#b60", "#808", "#088"];

/// Two panels over run time: RSS (MiB) and open files, a line per process; the second
/// and last quarters of the measured stage shaded.
pub fn svg(samples: &[ResourceSample], from: f64, duration: f64, title: &str) -> String {
    let mut names: Vec<&str> = Vec::new();
    for s in samples {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let (w, ph) = (960.0, 260.0);
    let (ml, mr, mt, mb) = (70.0, 20.0, 34.0, 36.0);
    let h = ph * 2.0 + 24.0;
    let tmax = samples
        .iter()
        .map(|s| s.t)
        .fold(from + duration, f64::max)
        .max(1.0);
    let pw = w - ml - mr;
    let pht = ph - mt - mb;
    let x = |t: f64| ml + pw * t / tmax;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    type Pick = fn(&ResourceSample) -> Option<f64>;
    let panels: [(&str, Pick); 2] = [
        ("RSS, MiB", |s| s.rss_kib.map(|k| k as f64 / 1024.0)),
        ("open file descriptors", |s| s.fds.map(|f| f as f64)),
    ];
    for (pi, (label, pick)) in panels.iter().enumerate() {
        let y0 = ph * pi as f64;
        let vmax = samples.iter().filter_map(pick).fold(1.0, f64::max) * 1.15;
        let y = |v: f64| y0 + mt + pht * (1.0 - v / vmax);
        let _ = writeln!(
            svg,
            r#"<text x="{ml}" y="{}" font-size="13" font-weight="bold">{} — {}; shaded: second and last quarters of the measured stage</text>"#,
            y0 + 18.0,
            xml(title),
            label
        );
        for (a, b) in [
            (from + duration / 4.0, from + duration / 2.0),
            (from + duration * 0.75, from + duration),
        ] {
            let _ = writeln!(
                svg,
                r##"<rect x="{:.1}" y="{}" width="{:.1}" height="{pht}" fill="#f3f3f3"/>"##,
                x(a),
                y0 + mt,
                (x(b) - x(a)).max(0.0)
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{ml}" y="{}" width="{pw}" height="{pht}" fill="none" stroke="#999"/>"##,
            y0 + mt
        );
        for i in 0..=4 {
            let v = vmax * i as f64 / 4.0;
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="end">{:.0}</text><line x1="{ml}" x2="{}" y1="{yy}" y2="{yy}" stroke="#eee"/>"##,
                ml - 4.0,
                y(v) + 4.0,
                v,
                ml + pw,
                yy = y(v)
            );
        }
        for i in 0..=10 {
            let t = tmax * i as f64 / 10.0;
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">{:.0}s</text>"#,
                x(t),
                y0 + mt + pht + 14.0,
                t
            );
        }
        for (ni, name) in names.iter().enumerate() {
            let color = COLORS[ni % COLORS.len()];
            let pts: Vec<String> = samples
                .iter()
                .filter(|s| s.name == *name)
                .filter_map(|s| Some(format!("{:.1},{:.1}", x(s.t), y(pick(s)?))))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                pts.join(" ")
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" fill="{color}">{}</text>"#,
                ml + 8.0 + 90.0 * ni as f64,
                y0 + mt + pht + 28.0,
                xml(name)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(
        name: &str,
        rss: impl Fn(f64) -> u64,
        fds: impl Fn(f64) -> u64,
    ) -> Vec<ResourceSample> {
        (0..=100)
            .map(|i| {
                let t = i as f64;
                ResourceSample {
                    t,
                    name: name.into(),
                    rss_kib: Some(rss(t)),
                    fds: Some(fds(t)),
                }
            })
            .collect()
    }

    #[test]
    fn flat_memory_passes_and_a_leak_fails() {
        let judged = vec!["edge".to_owned(), "worker".to_owned()];
        // Grows in the first quarter (warming), flat after: passes.
        let mut samples = series("edge", |t| 20_000 + (t.min(20.0) as u64) * 500, |_| 70);
        samples.extend(series("worker", |_| 30_000, |_| 12));
        samples.extend(series("redis", |t| 10_000 + t as u64 * 1000, |_| 30));
        let v = judge(&samples, &judged, 0.0, 100.0, 10.0, 0);
        assert!(v.passed, "{:?}", v.problems);
        assert!(
            !v.processes
                .iter()
                .find(|p| p.name == "redis")
                .expect("redis")
                .judged
        );

        // 0.5 % a sample: +25 % from Q2 to Q4.
        let mut leaky = series("edge", |t| 20_000 + (t * 100.0) as u64 * 2, |_| 70);
        leaky.extend(series("worker", |_| 30_000, |_| 12));
        let v = judge(&leaky, &judged, 0.0, 100.0, 10.0, 0);
        assert!(!v.passed);
        assert!(
            v.problems[0].starts_with("edge: RSS grew"),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn a_descriptor_leak_a_death_or_server_failures_fail() {
        let judged = vec!["edge".to_owned()];
        let fd_leak = series("edge", |_| 20_000, |t| 70 + t as u64);
        assert!(!judge(&fd_leak, &judged, 0.0, 100.0, 10.0, 0).passed);

        let mut died = series("edge", |_| 20_000, |_| 70);
        for s in died.iter_mut().skip(90) {
            s.rss_kib = None;
            s.fds = None;
        }
        let v = judge(&died, &judged, 0.0, 100.0, 10.0, 0);
        assert!(
            !v.passed && v.problems[0].contains("gone"),
            "{:?}",
            v.problems
        );

        let fine = series("edge", |_| 20_000, |_| 70);
        assert!(!judge(&fine, &judged, 0.0, 100.0, 10.0, 3).passed);
        assert!(!judge(&fine, &["worker".to_owned()], 0.0, 100.0, 10.0, 0).passed);
        let svg = svg(&fine, 0.0, 100.0, "soak");
        assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    }
}
