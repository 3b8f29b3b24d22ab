#!/usr/bin/env python3
"""perf/bench-index.py OUT_DIR: the index of a `make bench` run (perf/results/bench.md),
from the loadgen JSON reports in OUT_DIR: headline figures and a link to each report."""

import json
import os
import subprocess
import sys


# A trial counts as run on a quiet machine when others used at most this much of a core.
QUIET_OTHERS_PCT = 15


def fmt_us(us):
    if us < 1000:
        return f"{us}µs"
    if us < 1_000_000:
        return f"{us / 1000:.2f}ms"
    return f"{us / 1e6:.2f}s"


def measured(run):
    stages = [s for s in run["stages"] if s["measured"]]
    return stages[-1] if stages else None


def overall(stage):
    """p50/p99 of the stage's busiest endpoint (all but journey)."""
    eps = [e for e in stage["endpoints"] if e["endpoint"] not in ("journey", "commit-to-final")]
    if not eps:
        return None
    e = max(eps, key=lambda e: e["count"])
    return e["latency"]


def cpu(stage, name):
    for c in stage["cpu"]:
        if c["name"] == name:
            return f'{c["us_per_request"]:.2f}'
    return "-"


def main():
    out = sys.argv[1]
    reports = {}
    for f in sorted(os.listdir(out)):
        if f.endswith(".json"):
            with open(os.path.join(out, f)) as fh:
                try:
                    reports[f[:-5]] = json.load(fh)
                except ValueError:
                    pass
    print("# Benchmarks (`make bench`)\n")
    print("Written by `perf/bench.sh` from the loadgen reports beside this file (each has its")
    print("command, machine, per-stage tables, per-endpoint statuses and an SVG chart). Edge")
    server, redis = os.environ.get("SERVER_CPU", "0"), os.environ.get("REDIS_CPU")
    where = "on the same CPU" if redis in (None, server) else f"on CPU {redis}"
    print(f"with one thread pinned to CPU {server}, its Redis {where}, loadgen on another;")
    print("nginx's static 200 on the edge's CPU, measured in the same invocation.\n")
    first = next(iter(reports.values()), None)
    if first:
        print(f'- date: {first["date"]}; machine: {first["machine"]}')
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "edge", "codec", "worker"],
                           capture_output=True, text=True).stdout.split("\n")
    dirty = [d for d in dirty if d.strip()]
    print(f"- workspace: {rev or 'unknown'}, {len(dirty)} uncommitted paths under edge/ codec/ worker/ when the index was written\n")

    rows = []
    for name, r in reports.items():
        if not r.get("max"):
            continue
        edge, nginx = r["max"][0], (r["max"][1] if len(r["max"]) > 1 else None)
        finals = [run for run in r["runs"] if not run["label"].startswith("trial")]
        by_target = {run["target"]: run for run in finals}
        e_final = by_target.get(edge["target"])
        n_final = by_target.get(nginx["target"]) if nginx else None
        es = measured(e_final) if e_final else None
        ns = measured(n_final) if n_final else None
        lat = overall(es) if es else None
        nlat = overall(ns) if ns else None
        rows.append(
            "| [{}]({}.md) | {:.0f} | {} | {} | {} @ {:.0f}/s | {} | {} | {} | {} | {} |".format(
                name,
                name,
                edge["top_achieved"],
                f'{nginx["top_achieved"]:.0f}' if nginx else "-",
                f'{edge["top_achieved"] / nginx["top_achieved"]:.2f}x'
                if nginx and nginx["top_achieved"]
                else "-",
                f'{fmt_us(lat["p50"])} / {fmt_us(lat["p99"])}' if lat else "-",
                es["offered_rate"] if es else 0,
                f'{fmt_us(nlat["p50"])} / {fmt_us(nlat["p99"])}' if nlat else "-",
                cpu(es, "edge") if es else "-",
                cpu(es, "redis") if es else "-",
                cpu(ns, "nginx") if ns else "-",
                cpu(es, "loadgen") if es else "-",
            )
        )
    if rows:
        target = next(iter(r["max"][0]["p99_target_us"] for r in reports.values() if r.get("max")), 0)
        print("## Throughput ceiling, and latency at 80% of it\n")
        print(f"Ceiling: the highest offered rate served at >= 97% with < 0.1% errors and p99 <= {fmt_us(target)}")
        print("(an open-loop search, `loadgen max`); then a run at 80% of it, where issue 4 asks for")
        print("p99 under 5 ms. CPU-µs/req are from that 80% run.\n")
        print("| report | edge req/s | nginx req/s | edge/nginx | edge p50 / p99 at 80% | nginx p50 / p99 at 80% | edge CPU-µs/req | Redis CPU-µs/req | nginx CPU-µs/req | loadgen CPU-µs/req |")
        print("|---|---:|---:|---:|---|---|---:|---:|---:|---:|")
        for row in rows:
            print(row)
        print()

    quiet_rows = []
    for name, r in reports.items():
        if not r.get("max"):
            continue
        for m in r["max"]:
            runs = [run for run in r["runs"] if run["target"] == m["target"] and run["label"].startswith("trial")]
            quiet = []
            for run in runs:
                st = measured(run)
                if st is None or st["others_busy_pct"] > QUIET_OTHERS_PCT:
                    continue
                lat = overall(st)
                trial = next((t for t in m["trials"] if t["offered"] == st["offered_rate"]), None)
                passed = trial["passed"] if trial else False
                main_cpu = next((c for c in st["cpu"] if c["name"] != "loadgen"), None)
                quiet.append((st["offered_rate"], passed, lat["p99"] if lat else 0,
                               main_cpu["us_per_request"] if main_cpu else 0, st["others_busy_pct"]))
            if not quiet:
                continue
            best = max((q for q in quiet if q[1]), default=None, key=lambda q: q[0])
            worst = min((q for q in quiet if not q[1]), default=None, key=lambda q: q[0])
            trials = ", ".join(
                f'{q[0]:.0f}/s {"pass" if q[1] else "fail"} (p99 {fmt_us(q[2])}, {q[3]:.1f} µs/req)'
                for q in sorted(quiet))
            quiet_rows.append(f'| {name} | {m["target"]} | {f"{best[0]:.0f}" if best else "-"} | '
                              f'{f"{worst[0]:.0f}" if worst else "-"} | {trials} |')
    if quiet_rows:
        print(f"## Trials while other processes used at most {QUIET_OTHERS_PCT}% of a core\n")
        print("The machine is shared: other sessions' builds and test loops ran during these")
        print("searches (each trial's \"others busy\" is in its report), and a busy minute fails")
        print("any server's trial. These are the trials that ran on a quiet machine: the fairest")
        print("comparison. CPU-µs/req is the server process's (edge or nginx; Redis apart).\n")
        print("| report | target | highest quiet pass (req/s) | lowest quiet fail (req/s) | quiet trials |")
        print("|---|---|---:|---:|---|")
        for row in quiet_rows:
            print(row)
        print()

    others = [(n, r) for n, r in reports.items() if not r.get("max")]
    if others:
        print("## Other runs\n")
        print("| report | offered/s | achieved/s | p50 | p99 | p99.9 | errors | audit |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for name, r in others:
            for run in r["runs"]:
                stages = [s for s in run["stages"] if s["measured"]]
                if not stages:
                    continue
                answered = sum(s["answered"] for s in stages)
                errors = sum(s["errors"] for s in stages)
                dur = sum(s["duration_s"] for s in stages)
                offered = sum(s["offered_rate"] * s["duration_s"] for s in stages) / dur
                achieved = sum(s["achieved_rate"] * s["duration_s"] for s in stages) / dur
                last = stages[-1]
                lat = overall(last)
                audit = r.get("audit")
                verdict = "-"
                if audit:
                    verdict = "{}: {} accepted, {} never final, {} double-sold".format(
                        "passed" if audit["passed"] else "FAILED",
                        audit["accepted"],
                        audit["never_final"],
                        audit["double_sold_seats"],
                    )
                print(
                    f"| [{name}]({name}.md) | {offered:.0f} | {achieved:.0f} | "
                    f'{fmt_us(lat["p50"]) if lat else "-"} | {fmt_us(lat["p99"]) if lat else "-"} | '
                    f'{fmt_us(lat["p999"]) if lat else "-"} | {errors} | {verdict} |'
                )
        print("\n(stepup: p50/p99 of its last, highest stage; the per-stage table is in its report.")
        print("journey: offered is buyers/s, achieved is their requests/s, latencies of the busiest")
        print("endpoint; the whole journey and commit-to-final are in its report.)")


if __name__ == "__main__":
    main()
