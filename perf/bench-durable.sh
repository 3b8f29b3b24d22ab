#!/usr/bin/env bash
# perf/bench-durable.sh: what a durable 202 costs (issue 14). The edge (one thread) and
# `worker run` draining into the local PostgreSQL, both beside a private Redis on
# SERVER_CPU, loadgen's `buy` scenario (hold, payment-intent, commit: a third of the
# slots are commits) on LOAD_CPU, with the Redis in each persistence MODE in turn, in
# one invocation, ROUNDS times interleaved (the machine is shared: only same-run ratios
# mean anything):
#
#   none      --appendonly no --save '': the local stack before issue 14
#   everysec  AOF, fsynced once a second in the background
#   always    infra/local/redis.conf (AOF, fsynced before replies): the local stack now
#
# For each: `loadgen buy` at RATE steps/s for DURATION s (latency at equal load), then
# (unless SEARCH=0) `loadgen max --of buy` (the highest rate with p99 <= P99_MS, then
# 80% of it). Each run sells on an event of its own and ends with loadgen's audit (every
# 202 final, no seat sold twice). Redis starts empty each time. Writes
# OUT_DIR/MODE-ROUND-{rate,max}.{md,json,svg} and the summary OUT_DIR/README.md.
#
#   MODES="none everysec always" ROUNDS=3 RATE=2000 perf/bench-durable.sh
#   MODES="none always" ROUNDS=3 RATE=1000 SEARCH=0 OUT_DIR=perf/results/durable-1000 \
#       perf/bench-durable.sh
#
# Environment (defaults): SEARCH=1 SERVER_CPU=0 LOAD_CPU=1 P99_MS=50 MAX_RATE=40000 TRIAL_S=5
#   RUN_S=10 CONNECTIONS=256 BUILD=1 OUT_DIR=perf/results/durable BENCH_REDIS_PORT=16469
#   EDGE_PORT=18370; REDIS_PORT/PG_PORT are the local stack's (its PostgreSQL is used).
set -euo pipefail
NAME=bench-durable
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODES=${MODES:-none always}
ROUNDS=${ROUNDS:-2}
RATE=${RATE:-6000}
DURATION=${DURATION:-20}
SEARCH=${SEARCH:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
P99_MS=${P99_MS:-50}
MAX_RATE=${MAX_RATE:-40000}
TRIAL_S=${TRIAL_S:-5}
RUN_S=${RUN_S:-10}
CONNECTIONS=${CONNECTIONS:-256}
OUT_DIR=${OUT_DIR:-perf/results/durable}
BENCH_REDIS_PORT=${BENCH_REDIS_PORT:-16469}
EDGE_PORT=${EDGE_PORT:-18370}

release_binaries
local_stack_env
"$SCRATCH/worker" migrate >/dev/null
mkdir -p "$OUT_DIR"

# What one fsync costs where Redis writes its AOF (SCRATCH, on the disk of TMPDIR).
FSYNC=$(python3 - "$SCRATCH/fsync-probe" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
n, t = 1000, time.perf_counter()
for _ in range(n):
    os.write(fd, b"x" * 200)
    os.fsync(fd)
print(f"{(time.perf_counter() - t) / n * 1e6:.0f}")
EOF
)
log "one 200-byte append + fsync in $SCRATCH: $FSYNC µs"

mode_args() { # mode_args MODE: redis-server arguments after private_redis's defaults
    case $1 in
    none) ;;
    everysec) echo --appendonly yes --appendfsync everysec ;;
    always) echo --include "$ROOT/infra/local/redis.conf" ;;
    *) die "unknown mode $1" ;;
    esac
}

for ((round = 1; round <= ROUNDS; round++)); do
    for mode in $MODES; do
        tag=$mode-$round
        mkdir -p "$SCRATCH/redis-$tag"
        # shellcheck disable=SC2046 # the arguments split on purpose
        private_redis "$BENCH_REDIS_PORT" "$SERVER_CPU" --dir "$SCRATCH/redis-$tag" $(mode_args "$mode")
        log "$tag: redis appendonly $(redis-cli -p "$BENCH_REDIS_PORT" config get appendonly | tail -n 1)," \
            "appendfsync $(redis-cli -p "$BENCH_REDIS_PORT" config get appendfsync | tail -n 1)"
        event=durable-$(date +%s)-$tag
        for e in "$event" "$event-max"; do
            "$SCRATCH/worker" seed "$e" --seats-per-section 200000 --open-in-secs -3600 \
                --rate 1000000 >/dev/null
        done
        EDGE_ADDR=127.0.0.1:$EDGE_PORT EDGE_THREADS=1 EDGE_LOG=warn \
            taskset -c "$SERVER_CPU" "$SCRATCH/edge" >"$SCRATCH/edge-$tag.log" 2>&1 &
        EDGE_PID=$!
        PIDS+=("$EDGE_PID")
        wait_port "$EDGE_PORT" "$EDGE_PID" edge
        WORKER_EVENTS=$event,$event-max WORKER_LOG=warn taskset -c "$SERVER_CPU" \
            "$SCRATCH/worker" run >"$SCRATCH/worker-$tag.log" 2>&1 &
        WORKER_PID=$!
        PIDS+=("$WORKER_PID")
        COMMON=(--target "127.0.0.1:$EDGE_PORT" --name "redis-$mode" --cpu "edge=$EDGE_PID"
            --cpu "redis=$REDIS_PID" --cpu "worker=$WORKER_PID" --connections "$CONNECTIONS"
            --seats-per-section 200000 --quiet)
        log "$tag: buy at $RATE steps/s for $DURATION s"
        taskset -c "$LOAD_CPU" "$SCRATCH/loadgen" buy "${COMMON[@]}" --event "$event" \
            --rate "$RATE" --duration "$DURATION" --out "$OUT_DIR/$tag-rate" ||
            log "$tag: loadgen buy exited with $?"
        if [[ $SEARCH == 1 ]]; then
            log "$tag: buy max search (p99 <= $P99_MS ms)"
            taskset -c "$LOAD_CPU" "$SCRATCH/loadgen" max --of buy "${COMMON[@]}" --event "$event-max" \
                --p99-ms "$P99_MS" --start-rate 3000 --max-rate "$MAX_RATE" --trial-duration "$TRIAL_S" \
                --final-duration "$RUN_S" --out "$OUT_DIR/$tag-max" ||
                log "$tag: loadgen max exited with $?"
        fi
        stop_pid "$WORKER_PID"
        stop_pid "$EDGE_PID"
        stop_pid "$REDIS_PID"
    done
done

python3 - "$OUT_DIR" "$FSYNC" "$MODES" "$ROUNDS" "$RATE" "$DURATION" "$P99_MS" "$SEARCH" >"$OUT_DIR/README.md" <<'EOF'
import json, sys
out, fsync, modes, rounds, rate, duration, p99_ms, search = sys.argv[1:]

def ms(us):
    return f"{us / 1000:.2f} ms"

def commits(stage):
    for e in stage["endpoints"]:
        if e["endpoint"] == "commit":
            return e
    return None

def measured(run):
    return [s for s in run["stages"] if s["measured"]]

def per_s(run, status):
    stages = measured(run)
    n = sum(int((commits(s) or {"statuses": {}})["statuses"].get(status, 0)) for s in stages)
    return n / max(sum(s["duration_s"] for s in stages), 1e-9)

def p99(run, commit_only=False, q="p99"):
    s = measured(run)[-1]
    if commit_only:
        return commits(s)["latency"][q]
    return max(e["latency"][q] for e in s["endpoints"])

def redis_us(run):
    s = measured(run)[-1]
    return next((c["us_per_request"] for c in s["cpu"] if c["name"] == "redis"), float("nan"))

def audit(d):
    a = d.get("audit") or {}
    return f"{'passed' if a.get('passed') else 'FAILED'} ({a.get('accepted', 0)} accepted, {a.get('never_final', '?')} never final)"

print("# What a durable 202 costs: Redis persistence modes under `loadgen buy`\n")
print(f"`perf/bench-durable.sh` (MODES=\"{modes}\" ROUNDS={rounds} RATE={rate} DURATION={duration} SEARCH={search}), "
      f"one invocation, modes interleaved. One 200-byte append + fsync on this disk: {fsync} µs.\n")
print("A buy step is a hold, a payment intent or a commit; commits/s counts the 202s. p99 is the worst "
      "endpoint's (coordinated omission corrected); commit p50/p99 the commit's alone. Others busy: "
      "the CPU other processes of the machine used meanwhile, in % of one core (of 2).\n")
print(f"## At {rate} steps/s\n")
print("| mode | round | steps/s | commits/s | p99 | commit p50 | commit p99 | Redis CPU-µs/step | others busy | audit | report |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
for r in range(1, int(rounds) + 1):
    for m in modes.split():
        try:
            d = json.load(open(f"{out}/{m}-{r}-rate.json"))
        except OSError:
            continue
        run = d["runs"][-1]
        s = measured(run)[-1]
        print(f"| {m} | {r} | {s['achieved_rate']:.0f} | {per_s(run, '202'):.0f} | {ms(p99(run))} | "
              f"{ms(p99(run, True, 'p50'))} | {ms(p99(run, True))} | {redis_us(run):.1f} | "
              f"{s['others_busy_pct']:.0f}% | {audit(d)} | [{m}-{r}-rate.md]({m}-{r}-rate.md) |")
if search == "0":
    sys.exit()
print(f"\n## Highest rate with p99 <= {p99_ms} ms (`loadgen max --of buy`)\n")
print("| mode | round | steps/s | commits/s there | p99 there | at 80%: commits/s, p99, commit p99 | audit | report |")
print("|---|---:|---:|---:|---:|---|---|---|")
for r in range(1, int(rounds) + 1):
    for m in modes.split():
        try:
            d = json.load(open(f"{out}/{m}-{r}-max.json"))
        except OSError:
            continue
        mx = d["max"][0]
        runs = d["runs"]
        top = None
        for trial, run in zip(mx["trials"], runs):
            if trial["passed"] and (top is None or trial["achieved"] > top[0]["achieved"]):
                top = (trial, run)
        final = runs[-1]
        there = f"{per_s(top[1], '202'):.0f} | {ms(p99(top[1]))}" if top else "- | -"
        print(f"| {m} | {r} | {mx['top_achieved']:.0f} | {there} | {per_s(final, '202'):.0f}, "
              f"{ms(p99(final))}, {ms(p99(final, True))} | {audit(d)} | [{m}-{r}-max.md]({m}-{r}-max.md) |")
EOF
cat "$OUT_DIR/README.md"
log "summary written to $OUT_DIR/README.md"
