#!/usr/bin/env python3
"""perf/faults.py: judges the runs of perf/faults.sh and writes its table.

    faults.py row --fault F --t0 MS --t1 MS --trace CSV --report JSON ...   one JSON line
    faults.py table --rows ROWS.jsonl --mode long|short ...                 markdown
    faults.py verdict --rows ROWS.jsonl                                     exit 1 if any failed

A row judges one fault run from loadgen's --trace (requests by send time in 100 ms
buckets of the wall clock) and its JSON report (audit, commit-to-final, connects); the
fault's start and end (t0, t1) are the harness's, on the same clock. The rules are in
perf/faults.sh's header; each becomes a line of `problems` when broken.
"""

import argparse
import csv
import json
import sys

BUCKET_MS = 100
FAILURES = ("unavailable_503", "no_retry_after_503", "other_5xx", "connect", "io", "timeout", "other")
LABELS = {
    "unavailable_503": "503",
    "no_retry_after_503": "503 without Retry-After",
    "other_5xx": "other 5xx",
    "connect": "connect error",
    "io": "I/O error",
    "timeout": "timeout",
    "other": "dropped/bad",
    "client_4xx": "4xx",
}
# Faults whose clients must see errors while they last (the fault bit).
ERRORS_EXPECTED = {"redis-kill", "redis-stop", "proxy-slow", "proxy-reset", "proxy-blackhole"}
# Faults that hold commits back rather than fail requests.
COMMITS_HELD = {"worker-kill", "pg-restart"}


def load_trace(path):
    with open(path, newline="") as f:
        rows = []
        for r in csv.DictReader(f):
            rows.append({k: int(v) for k, v in r.items()})
        return rows


def failures(b):
    return sum(b[k] for k in FAILURES)


def settle_max_us(report):
    """The slowest commit-to-final any status poll saw, µs (0 if none)."""
    worst = 0
    for run in report.get("runs", []):
        for stage in run.get("stages", []):
            for e in stage.get("endpoints", []):
                if e["endpoint"] == "commit-to-final":
                    worst = max(worst, e["latency"]["max"])
    return worst


def fmt_s(ms):
    return f"{ms / 1000:.1f} s"


def row(a):
    trace = load_trace(a.trace)
    try:
        with open(a.report) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        report = {"runs": [], "audit": None, "_error": str(e)}
    t0, t1 = a.t0, a.t1
    problems = []

    totals = {k: 0 for k in ("sent", "ok", "client_4xx") + FAILURES}
    for b in trace:
        for k in totals:
            totals[k] += b[k]
    slowest_us = max((b["max_service_us"] for b in trace), default=0)

    # Requests sent from the fault's start, less one Redis timeout (those already in
    # flight when it began), to RECOVERY_LIMIT_S after its end may fail with a 503.
    lo = t0 - a.redis_timeout_ms - BUCKET_MS
    hi = t1 + a.recovery_limit_s * 1000
    outside_503 = sum(b["unavailable_503"] for b in trace if not lo <= b["ms"] < hi)
    if outside_503:
        problems.append(f"{outside_503} 503s outside the fault's window")
    for k in ("no_retry_after_503", "other_5xx", "timeout", "other", "connect"):
        if totals[k]:
            problems.append(f"{totals[k]} x {LABELS[k]}")
    # I/O errors: the killed edge's connections, at the kill; nowhere else.
    io_lo, io_hi = t0 - 500, t1 + 1000
    if a.fault == "edge-kill":
        stray = sum(b["io"] for b in trace if not io_lo <= b["ms"] < io_hi)
        if stray:
            problems.append(f"{stray} I/O errors away from the edge's kill")
    elif totals["io"]:
        problems.append(f"{totals['io']} x I/O error")
    if slowest_us > a.deadline_ms * 1000:
        worst = max(trace, key=lambda b: b["max_service_us"])
        problems.append(
            f"an answer took {slowest_us / 1e6:.2f} s (deadline {a.deadline_ms} ms), "
            f"sent {(worst['ms'] - t0) / 1000:+.1f} s from the fault's start")

    # Recovery: the last request that failed, and the first that did not, after the end.
    failed = [b for b in trace if b["ms"] >= lo and failures(b)]
    window = {k: sum(b[k] for b in trace if lo <= b["ms"] < hi) for k in ("sent",) + FAILURES}
    last_fail_end = max((b["ms"] + BUCKET_MS for b in failed), default=None)
    clear_ms = max(0, last_fail_end - t1) if last_fail_end is not None else 0
    after = [b for b in trace if b["ms"] >= t1 - t1 % BUCKET_MS]
    first_ok = next((b for b in after if b["ok"]), None)
    first_ok_ms = max(0, first_ok["ms"] - t1) if first_ok else None
    if first_ok is None:
        problems.append("no request succeeded after the fault's end")
    if clear_ms > a.recovery_limit_s * 1000:
        problems.append(f"errors went on {fmt_s(clear_ms)} after the fault's end (limit {a.recovery_limit_s} s)")
    # Recovery must be seen, not cut off by the end of the run: a clean second after it.
    clean_from = max(t1, last_fail_end or t1)
    clean = [b for b in trace if b["ms"] >= clean_from]
    clean_ms = len(clean) * BUCKET_MS
    if clean_ms < 1000 or sum(b["ok"] for b in clean) == 0:
        problems.append(f"only {fmt_s(clean_ms)} of load after the last error: recovery not seen")

    # The fault bit.
    settle_us = settle_max_us(report)
    evidence = ""
    in_fault = [b for b in trace if t0 <= b["ms"] < t1]
    if a.fault in ERRORS_EXPECTED:
        n = sum(failures(b) for b in trace if lo <= b["ms"] < hi)
        evidence = f"{n} requests failed"
        if n == 0:
            problems.append("no request failed: the fault did not bite")
    elif a.fault in COMMITS_HELD:
        # Commits queued up unconsumed while it lasted.
        before = int(a.backlog_before or 0)
        at_end = int(a.backlog_at_end) if a.backlog_at_end else None
        evidence = f"commit backlog {before} before, {at_end if at_end is not None else '?'} at the fault's end"
        if at_end is None or at_end <= before:
            problems.append("no commit waited in the queue during the fault: it did not bite")
    elif a.fault == "edge-kill":
        connects = sum(r.get("connects", 0) for r in report.get("runs", []))
        evidence = f"{connects} connects for {a.connections} connections, {window['io']} I/O errors"
        if connects <= a.connections:
            problems.append("no connection was re-opened: the kill did not bite")
    elif a.fault == "proxy-latency":
        slow = max((b["max_service_us"] for b in in_fault), default=0)
        evidence = f"slowest answer during it {slow / 1000:.0f} ms"
        if slow < 2 * a.latency_ms * 1000:
            problems.append(f"no answer slowed by 2 x {a.latency_ms} ms: the latency did not bite")
    if a.fault == "proxy-reset":
        evidence += f", {a.proxy_resets or 0} connections reset"
        if not a.proxy_resets or int(a.proxy_resets) == 0:
            problems.append("the proxy reset no connection")

    audit = report.get("audit") or {}
    if not audit:
        problems.append("no audit in the report" + (f" ({report['_error']})" if "_error" in report else ""))
    elif not audit.get("passed"):
        problems.append("audit FAILED: " + "; ".join(audit.get("problems", [])))
    if a.loadgen_rc != 0:
        problems.append(f"loadgen exited with {a.loadgen_rc}")
    if a.drained == "never":
        problems.append("the commit backlog never drained")

    out = {
        "fault": a.fault,
        "note": a.note,
        "lasted_ms": t1 - t0,
        "requests": totals["sent"],
        "requests_in_window": window["sent"],
        "errors": {LABELS[k]: totals[k] for k in FAILURES + ("client_4xx",) if totals[k]},
        "errors_in_window": {LABELS[k]: window[k] for k in FAILURES if window[k]},
        "slowest_ms": slowest_us / 1000,
        "first_ok_after_end_ms": first_ok_ms,
        "errors_gone_after_end_ms": clear_ms,
        "drained_s": a.drained,
        "settle_max_ms": settle_us / 1000,
        "evidence": evidence,
        "audit": {k: audit.get(k) for k in ("passed", "accepted", "confirmed", "rejected", "never_final",
                                            "double_sold_seats")},
        "passed": not problems,
        "problems": problems,
    }
    print(json.dumps(out, sort_keys=True))


def read_rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def table(a):
    rows = read_rows(a.rows)
    out = []
    w = out.append
    w(f"# Fault suite (`perf/faults.sh`, MODE={a.mode})\n")
    w("Each fault on services of its own: a Redis with `infra/local/redis.conf` (AOF, `appendfsync always`), "
      "two edges (one core each) sharing one port with `SO_REUSEPORT`, `worker run`, the local stack's "
      "PostgreSQL; `loadgen mixed` (7 reads, 2 buying steps, 1 status poll in 10) with its audit and a "
      "100 ms `--trace`; the fault injected mid-run. Two edges rather than loadgen pointed at one: an edge's "
      "kill then costs only the requests on its connections, as behind a load balancer, and the load goes on "
      "through the other, so the kill's cost and the restarted edge's return are measured rather than a "
      "total outage.\n")
    w(f"Settings: {a.settings}. Whole suite: {a.elapsed_s} s on this machine.\n")
    w("Rules (every one can fail a row): the audit passes (no seat in two CONFIRMED orders, every 202 final); "
      "no 500 or other 5xx but 503, no 503 without `Retry-After`, no timeout, nothing dropped unsent, no answer "
      "slower than DEADLINE_MS anywhere in the run; 503s only from the fault's start (less REDIS_TIMEOUT_MS) to "
      "RECOVERY_LIMIT_S after its end; I/O errors only at an edge's kill; the last failed request sent within "
      "RECOVERY_LIMIT_S of the fault's end and a clean second of load seen after it; the fault bit (requests "
      "failed, commits held back, connections re-opened or answers slowed, by fault).\n")
    w("Times are by send time at 100 ms resolution. *First OK*: the first request sent after the fault's end "
      "that succeeded; *errors gone*: when the last failed request was sent, after the fault's end; *backlog "
      "drained*: the commit streams back to their length before the fault. The fault's end: the restarted "
      "process answers (Redis PONG after loading its AOF, PostgreSQL ready, the edge listening, the worker "
      "consuming), or the signal/proxy mode lifted.\n")
    w("| fault | what was done | lasted | requests (in window) | errors by status | slowest answer | "
      "first OK after end | errors gone after end | backlog drained | commit-to-final max | evidence | audit | result |")
    w("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|")
    for r in rows:
        errs = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
        au = r["audit"]
        audit = ("passed" if au.get("passed") else "FAILED") + \
            f" ({au.get('accepted')} accepted, {au.get('never_final')} never final, " \
            f"{au.get('double_sold_seats')} double sold)"
        first_ok = "-" if r["first_ok_after_end_ms"] is None else fmt_s(r["first_ok_after_end_ms"])
        name = f"[{r['fault']}]({a.links}{r['fault']}.md)" if a.links else r["fault"]
        drained = "-" if not r["drained_s"] else (r["drained_s"] + (" s" if r["drained_s"] != "never" else ""))
        w(f"| {name} | {r['note']} | {fmt_s(r['lasted_ms'])} | {r['requests']} ({r['requests_in_window']}) | "
          f"{errs} | {r['slowest_ms'] / 1000:.2f} s | {first_ok} | {fmt_s(r['errors_gone_after_end_ms'])} | "
          f"{drained} | {r['settle_max_ms'] / 1000:.1f} s | {r['evidence']} | {audit} | "
          f"{'PASS' if r['passed'] else 'FAIL'} |")
    failed = [r for r in rows if not r["passed"]]
    w("")
    w(f"**{len(rows) - len(failed)} of {len(rows)} faults passed.**")
    for r in failed:
        w(f"\n- {r['fault']}: " + "; ".join(r["problems"]))
    print("\n".join(out))


def verdict(a):
    rows = read_rows(a.rows)
    failed = [r["fault"] for r in rows if not r["passed"]]
    if not rows:
        print("faults: no fault ran", file=sys.stderr)
        sys.exit(1)
    if failed:
        print(f"faults: FAILED: {' '.join(failed)}", file=sys.stderr)
        sys.exit(1)
    print(f"faults: all {len(rows)} passed", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("row")
    r.add_argument("--fault", required=True)
    r.add_argument("--note", default="")
    r.add_argument("--t0", type=int, required=True)
    r.add_argument("--t1", type=int, required=True)
    r.add_argument("--trace", required=True)
    r.add_argument("--report", required=True)
    r.add_argument("--loadgen-rc", type=int, default=0)
    r.add_argument("--drained", default="")
    r.add_argument("--redis-timeout-ms", type=int, default=1000)
    r.add_argument("--deadline-ms", type=int, default=2000)
    r.add_argument("--recovery-limit-s", type=float, default=5)
    r.add_argument("--fault-s", type=float, default=5)
    r.add_argument("--latency-ms", type=float, default=50)
    r.add_argument("--connections", type=int, default=256)
    r.add_argument("--proxy-resets", default="")
    r.add_argument("--backlog-before", default="")
    r.add_argument("--backlog-at-end", default="")
    t = sub.add_parser("table")
    t.add_argument("--rows", required=True)
    t.add_argument("--mode", default="long")
    t.add_argument("--elapsed-s", default="?")
    t.add_argument("--settings", default="")
    t.add_argument("--links", default="")
    v = sub.add_parser("verdict")
    v.add_argument("--rows", required=True)
    a = p.parse_args()
    {"row": row, "table": table, "verdict": verdict}[a.cmd](a)


if __name__ == "__main__":
    main()
