//! The outputs of a loadgen invocation: `Report` (also the JSON file, histograms
//! included), its markdown rendering and an SVG chart of throughput and latency over
//! time, drawn by hand (one panel per target).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{
    audit::AuditReport,
    run::{fmt_us, ResourceSample, RunReport},
    soak::{self, SoakVerdict},
    stats::{server_failure, Percentiles, StageReport},
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub scenario: String,
    pub command: String,
    pub date: String,
    pub machine: String,
    pub notes: Vec<String>,
    pub runs: Vec<RunReport>,
    pub max: Vec<MaxResult>,
    pub audit: Option<AuditReport>,
    /// `loadgen soak`'s verdict on memory and open files.
    #[serde(default)]
    pub soak: Option<SoakVerdict>,
}

/// A `max` search against one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaxResult {
    pub target: String,
    pub p99_target_us: u64,
    /// The highest offered rate that passed (0: none did).
    pub top_rate: f64,
    /// Achieved rate of that trial.
    pub top_achieved: f64,
    pub final_fraction: f64,
    pub trials: Vec<Trial>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trial {
    pub offered: f64,
    pub achieved: f64,
    pub p99_us: u64,
    pub errors: u64,
    pub passed: bool,
    pub why: String,
}

fn cpu_cell(s: &StageReport) -> String {
    s.cpu
        .iter()
        .map(|c| format!("{} {:.2} ({:.0}%)", c.name, c.us_per_request, c.busy_pct))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct_cells(p: &Percentiles) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        fmt_us(p.p50),
        fmt_us(p.p95),
        fmt_us(p.p99),
        fmt_us(p.p999),
        fmt_us(p.max)
    )
}

/// The stage's errors by status over all endpoints ("503: 12, I/O error: 3"), `-` if none.
fn errors_cell(s: &StageReport) -> String {
    let by = s.errors_by_status();
    if by.is_empty() {
        return "-".to_owned();
    }
    by.iter()
        .map(|(code, n)| format!("{}: {n}", label_of(*code)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn label_of(code: u16) -> String {
    status_name(code).unwrap_or_else(|| code.to_string())
}

fn overall(s: &StageReport) -> Percentiles {
    Percentiles::of(&s.overall_latency())
}

impl Report {
    pub fn markdown(&self, chart: Option<&str>) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# loadgen `{}`\n", self.scenario);
        let _ = writeln!(md, "- date: {}", self.date);
        let _ = writeln!(md, "- machine: {}", self.machine);
        let _ = writeln!(md, "- command: `{}`", self.command);
        for n in &self.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push_str(
            "\nLatency is measured from each request's due time on the open-loop clock when it \
             had to wait for a connection (coordinated omission corrected), from its send \
             otherwise; *service p99* is from the send only, what a closed-loop tool reports. \
             CPU-µs/req: process CPU time (utime+stime, with direct children) over the stage \
             divided by the requests answered, and that process's busy % of one core.\n\n",
        );
        if let Some(chart) = chart {
            let _ = writeln!(md, "![throughput and latency over time]({chart})\n");
        }

        md.push_str("## Runs (measured stages together)\n\n");
        md.push_str("| run | target | offered/s | achieved/s | p50 | p95 | p99 | p99.9 | max | service p99 | errors | errors by status | CPU-µs/req (busy) | others busy |\n");
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|\n");
        for run in &self.runs {
            let Some(m) = run.measured() else { continue };
            let service = m
                .endpoints
                .iter()
                .filter(|e| e.endpoint != "journey" && e.endpoint != "commit-to-final")
                .map(|e| e.service.p99)
                .max()
                .unwrap_or(0);
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0}% |",
                run.label,
                run.target,
                m.offered_rate,
                m.achieved_rate,
                pct_cells(&overall(&m)),
                fmt_us(service),
                m.errors,
                errors_cell(&m),
                cpu_cell(&m),
                m.others_busy_pct
            );
        }

        let ratios = self.ratios();
        if !ratios.is_empty() {
            md.push_str("\n## Side by side\n\n");
            for r in ratios {
                let _ = writeln!(md, "- {r}");
            }
        }

        for m in &self.max {
            let _ = writeln!(
                md,
                "\n## `max` search: {} (p99 target {})\n",
                m.target,
                fmt_us(m.p99_target_us)
            );
            let _ = writeln!(
                md,
                "Top rate holding the target: **{:.0}/s offered, {:.0}/s achieved**; the final run is at {:.0}% of it.\n",
                m.top_rate,
                m.top_achieved,
                m.final_fraction * 100.0
            );
            md.push_str("| trial | offered/s | achieved/s | p99 | errors | passed |\n|---:|---:|---:|---:|---:|---|\n");
            for (i, t) in m.trials.iter().enumerate() {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.0} | {} | {} | {} |",
                    i + 1,
                    t.offered,
                    t.achieved,
                    fmt_us(t.p99_us),
                    t.errors,
                    if t.passed {
                        "yes".to_owned()
                    } else {
                        format!("no: {}", t.why)
                    }
                );
            }
        }

        md.push_str("\n## Per stage\n");
        for run in &self.runs {
            if run.stages.len() < 2 && run.label.starts_with("trial") {
                continue;
            }
            let _ = writeln!(
                md,
                "\n### {} → {} ({} connections, {} threads, {:?}; {} connects)\n",
                run.label, run.target, run.connections, run.threads, run.driver, run.connects
            );
            md.push_str("| stage | offered/s | achieved/s | answered | p50 | p95 | p99 | p99.9 | max | errors | send lag p99 | CPU-µs/req (busy) |\n");
            md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
            for s in &run.stages {
                let _ = writeln!(
                    md,
                    "| {}{} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                    s.name,
                    if s.measured { "" } else { " (not measured)" },
                    s.offered_rate,
                    s.achieved_rate,
                    s.answered,
                    pct_cells(&overall(s)),
                    s.errors,
                    fmt_us(s.send_lag.p99),
                    cpu_cell(s)
                );
            }
            if let Some(m) = run.measured() {
                md.push_str("\n| endpoint | answered | errors | statuses | p50 | p95 | p99 | p99.9 | max | service p99 |\n");
                md.push_str("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
                for e in &m.endpoints {
                    let statuses = e
                        .statuses
                        .iter()
                        .map(|(s, n)| {
                            let name = s
                                .parse::<u16>()
                                .ok()
                                .and_then(status_name)
                                .unwrap_or_else(|| s.clone());
                            format!("{name}: {n}")
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {} |",
                        e.endpoint,
                        e.count,
                        e.errors,
                        statuses,
                        pct_cells(&e.latency),
                        fmt_us(e.service.p99)
                    );
                }
                if m.endpoints.iter().any(|e| e.endpoint == "commit-to-final") {
                    md.push_str(
                        "\ncommit-to-final: from the commit's send to the order's `updatedAt`, the \
                         worker's PostgreSQL transaction (one clock: this machine's), for the \
                         orders a status poll saw final; millisecond resolution.\n",
                    );
                }
            }
        }

        if let Some(v) = &self.soak {
            let chart = chart.map(|c| c.replace(".svg", "-resources.svg"));
            md.push_str(&soak::markdown(v, self.resources(), chart.as_deref()));
        }

        if let Some(a) = &self.audit {
            md.push_str("\n## Audit\n\n");
            let opt = |v: Option<i64>| {
                v.map(|v| v.to_string())
                    .unwrap_or_else(|| "not checked".into())
            };
            let _ = writeln!(md, "**{}**\n", if a.passed { "PASSED" } else { "FAILED" });
            let _ = writeln!(md, "| check | value | must be |\n|---|---:|---|");
            let _ = writeln!(md, "| commits accepted (202) | {} | |", a.accepted);
            let _ = writeln!(
                md,
                "| ... seen CONFIRMED / REJECTED | {} / {} | |",
                a.confirmed, a.rejected
            );
            let _ = writeln!(
                md,
                "| ... never final (waited {:.0} s) | {} | 0 |",
                a.waited_s, a.never_final
            );
            let _ = writeln!(
                md,
                "| seats in two CONFIRMED orders | {} | 0 |",
                opt(a.double_sold_seats)
            );
            let _ = writeln!(
                md,
                "| order rows for the accepted commits | {} | {} |",
                opt(a.orders_for_accepted),
                a.accepted
            );
            let _ = writeln!(
                md,
                "| sold seats without a CONFIRMED order | {} | 0 |",
                opt(a.sold_without_confirmed_order)
            );
            let _ = writeln!(
                md,
                "| CONFIRMED orders / their seats (event `{}`, all runs) | {} / {} | |",
                a.event,
                opt(a.confirmed_orders),
                opt(a.confirmed_seats)
            );
            let _ = writeln!(
                md,
                "| summary `sold`, all sections | {} | = seats of CONFIRMED orders |",
                a.summary_sold
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "unreadable".into())
            );
            for p in &a.problems {
                let _ = writeln!(md, "\n- problem: {p}");
            }
        }
        md
    }

    /// The resource samples of the first run that has any.
    pub fn resources(&self) -> &[ResourceSample] {
        self.runs
            .iter()
            .map(|r| r.resources.as_slice())
            .find(|r| !r.is_empty())
            .unwrap_or_default()
    }

    /// Server-side failures (`stats::server_failure`) in the measured stages of all runs.
    pub fn server_failures(&self) -> u64 {
        self.runs
            .iter()
            .filter_map(|r| r.measured())
            .map(|m| {
                m.errors_by_status()
                    .iter()
                    .filter(|(code, _)| server_failure(**code))
                    .map(|(_, n)| n)
                    .sum::<u64>()
            })
            .sum()
    }

    /// "edge/nginx" lines for runs with the same label against two targets.
    pub fn ratios(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for a in &self.runs {
            if seen.contains(&a.label) || a.label.starts_with("trial") {
                continue;
            }
            let others: Vec<&RunReport> = self
                .runs
                .iter()
                .filter(|b| b.label == a.label && b.target != a.target)
                .collect();
            let Some(b) = others.first() else { continue };
            seen.push(a.label.clone());
            let (Some(ma), Some(mb)) = (a.measured(), b.measured()) else {
                continue;
            };
            let pa = overall(&ma);
            let pb = overall(&mb);
            let mut line = format!(
                "{}: {} {:.0}/s vs {} {:.0}/s achieved ({:.2}x); p99 {} vs {}",
                a.label,
                a.target,
                ma.achieved_rate,
                b.target,
                mb.achieved_rate,
                ma.achieved_rate / mb.achieved_rate.max(1e-9),
                fmt_us(pa.p99),
                fmt_us(pb.p99)
            );
            if let (Some(ca), Some(cb)) = (ma.cpu.first(), mb.cpu.first()) {
                if ca.name != "loadgen" && cb.name != "loadgen" {
                    let _ = write!(
                        line,
                        "; CPU-µs/req {} {:.2} vs {} {:.2} (capacity per core {:.2}x)",
                        ca.name,
                        ca.us_per_request,
                        cb.name,
                        cb.us_per_request,
                        cb.us_per_request / ca.us_per_request.max(1e-9)
                    );
                }
            }
            out.push(line);
        }
        for m in &self.max {
            for n in self.max.iter().filter(|n| n.target != m.target) {
                if seen.contains(&format!("max {} {}", n.target, m.target)) {
                    continue;
                }
                seen.push(format!("max {} {}", m.target, n.target));
                out.push(format!(
                    "max: {} {:.0}/s vs {} {:.0}/s achieved at the p99 target ({:.2}x)",
                    m.target,
                    m.top_achieved,
                    n.target,
                    n.top_achieved,
                    m.top_achieved / n.top_achieved.max(1e-9)
                ));
            }
        }
        out
    }

    /// One panel per target: every run against it in order, achieved and offered rate
    /// (left axis) and p50/p99 latency per second (right axis, logarithmic).
    pub fn svg(&self) -> String {
        let mut targets: Vec<&str> = Vec::new();
        for r in &self.runs {
            if !targets.contains(&r.target.as_str()) {
                targets.push(&r.target);
            }
        }
        let (w, ph) = (960.0, 280.0);
        let (ml, mr, mt, mb) = (70.0, 70.0, 34.0, 40.0);
        let h = ph * targets.len().max(1) as f64;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        for (pi, target) in targets.iter().enumerate() {
            let y0 = ph * pi as f64;
            // Concatenate the target's runs on one time axis.
            let mut points = Vec::new(); // (t, offered, done, p50, p99)
            let mut marks = Vec::new(); // (t, label)
            let mut offset = 0.0;
            for r in self.runs.iter().filter(|r| r.target == *target) {
                marks.push((offset, r.label.clone()));
                for t in &r.timeline {
                    points.push((
                        offset + t.t,
                        t.offered_rate,
                        t.done as f64,
                        t.p50_us,
                        t.p99_us,
                    ));
                }
                offset += r.timeline.last().map(|t| t.t).unwrap_or(0.0);
            }
            let tmax = offset.max(1.0);
            let rmax = points.iter().map(|p| p.1.max(p.2)).fold(1.0, f64::max) * 1.1;
            let lmax_us = points.iter().map(|p| p.4).max().unwrap_or(1000).max(1000);
            let (lo, hi) = (1.0f64, (lmax_us as f64).log10().ceil().max(3.0)); // 10 µs .. 10^hi µs
            let pw = w - ml - mr;
            let pht = ph - mt - mb;
            let x = |t: f64| ml + pw * t / tmax;
            let yr = |r: f64| y0 + mt + pht * (1.0 - r / rmax);
            let yl = |us: u64| {
                let v = (us.max(10) as f64).log10().clamp(lo, hi);
                y0 + mt + pht * (1.0 - (v - lo) / (hi - lo))
            };
            let _ = writeln!(
                svg,
                r#"<text x="{ml}" y="{}" font-size="13" font-weight="bold">{} — {}: achieved req/s (blue), offered (grey dashes); latency p50 (green), p99 (red), log scale</text>"#,
                y0 + 18.0,
                xml(&self.scenario),
                xml(target)
            );
            let _ = writeln!(
                svg,
                r##"<rect x="{ml}" y="{}" width="{pw}" height="{pht}" fill="none" stroke="#999"/>"##,
                y0 + mt
            );
            for i in 0..=4 {
                let r = rmax * i as f64 / 4.0;
                let _ = writeln!(
                    svg,
                    r##"<text x="{}" y="{}" text-anchor="end" fill="#1f5fbf">{:.0}</text><line x1="{ml}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/>"##,
                    ml - 4.0,
                    yr(r) + 4.0,
                    r,
                    ml + pw,
                    y = yr(r)
                );
            }
            let mut e = lo as i32;
            while e as f64 <= hi {
                let us = 10u64.pow(e as u32);
                let _ = writeln!(
                    svg,
                    r##"<text x="{}" y="{}" fill="#b22">{}</text>"##,
                    ml + pw + 4.0,
                    yl(us) + 4.0,
                    fmt_us(us)
                );
                e += 1;
            }
            let ticks = 10;
            for i in 0..=ticks {
                let t = tmax * i as f64 / ticks as f64;
                let _ = writeln!(
                    svg,
                    r#"<text x="{}" y="{}" text-anchor="middle">{:.0}s</text>"#,
                    x(t),
                    y0 + mt + pht + 14.0,
                    t
                );
            }
            for (t, label) in &marks {
                let _ = writeln!(
                    svg,
                    r##"<line x1="{xx}" x2="{xx}" y1="{}" y2="{}" stroke="#888" stroke-dasharray="2,3"/><text x="{}" y="{}" fill="#555" font-size="9">{}</text>"##,
                    y0 + mt,
                    y0 + mt + pht,
                    x(*t) + 2.0,
                    y0 + mt + pht + 28.0,
                    xml(label),
                    xx = x(*t),
                );
            }
            let line = |pts: Vec<(f64, f64)>, color: &str, dash: &str| {
                let d: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
                format!(
                    r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" {dash} points="{}"/>"#,
                    d.join(" ")
                )
            };
            let _ = writeln!(
                svg,
                "{}",
                line(
                    points.iter().map(|p| (x(p.0), yr(p.1))).collect(),
                    "#999",
                    r#"stroke-dasharray="5,4""#
                )
            );
            let _ = writeln!(
                svg,
                "{}",
                line(
                    points.iter().map(|p| (x(p.0), yr(p.2))).collect(),
                    "#1f5fbf",
                    ""
                )
            );
            let _ = writeln!(
                svg,
                "{}",
                line(
                    points
                        .iter()
                        .filter(|p| p.2 > 0.0)
                        .map(|p| (x(p.0), yl(p.3)))
                        .collect(),
                    "#2a2",
                    ""
                )
            );
            let _ = writeln!(
                svg,
                "{}",
                line(
                    points
                        .iter()
                        .filter(|p| p.2 > 0.0)
                        .map(|p| (x(p.0), yl(p.4)))
                        .collect(),
                    "#c22",
                    ""
                )
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn status_name(code: u16) -> Option<String> {
    if code == crate::stats::DROPPED {
        return Some("dropped".to_owned());
    }
    if code == crate::stats::HOLD_LIMIT {
        return Some("409 HOLD_LIMIT".to_owned());
    }
    if code == crate::stats::NO_RETRY_AFTER {
        return Some("503 without Retry-After".to_owned());
    }
    crate::client::Failure::name(code).map(str::to_owned)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
