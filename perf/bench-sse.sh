#!/usr/bin/env bash
# perf/bench-sse.sh: idle waiting-room event streams on one core (`GET
# /public/room-events`): the edge's memory per stream, and holds' latency while an
# admission change is pushed to every stream (README "Fair admission").
#
# One edge core (pinned to CPU 0, epoll or io_uring as EDGE_DRIVER says) with a private
# Redis; perf/sse_bench.py (pinned to CPU 1) opens STREAMS idle streams on event `sse`
# (closed for an hour) and reads the edge's VmRSS before and after. Then loadgen runs
# `hold` at HOLD_RATE/s for DURATION s three times: alone, while PUSHES pushes (the
# opening moved, every PUSH_EVERY s) reach every stream, and while every stream's
# client leaves at once (CLOSE_AFTER s into the run: a mass disconnect). Writes
# OUT_DIR/sse.md.
#
# The target is 50,000 streams under 4 KiB each; one process may hold only `ulimit -n`
# descriptors here (20,000, and the sandbox refuses raising it), so STREAMS defaults to
# what fits. Not a timed test: a benchmark, run by hand.
#
#   STREAMS=18500 HOLD_RATE=2000 DURATION=14 PUSHES=3 PUSH_EVERY=4 PENDING=64 perf/bench-sse.sh
set -euo pipefail
NAME=bench-sse
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STREAMS=${STREAMS:-$(($(ulimit -n) - 1000))}
HOLD_RATE=${HOLD_RATE:-2000}
DURATION=${DURATION:-12}
PUSHES=${PUSHES:-3}
PUSH_EVERY=${PUSH_EVERY:-4}
# Streams being set up at once by the client (0: all at once, a flood).
PENDING=${PENDING:-64}
# When, in the last hold run, every stream closes.
CLOSE_AFTER=${CLOSE_AFTER:-3}
OUT_DIR=${OUT_DIR:-perf/results}
BENCH_REDIS_PORT=${BENCH_REDIS_PORT:-16484}
EDGE_PORT=${EDGE_PORT:-18385}
EDGE_DRIVER=${EDGE_DRIVER:-epoll}

release_binaries
local_stack_env
private_redis "$BENCH_REDIS_PORT" 1
"$SCRATCH/worker" migrate >/dev/null
"$SCRATCH/worker" seed perf --seats-per-section 200000 --open-in-secs -3600 --rate 1000000 >/dev/null
"$SCRATCH/worker" seed sse --sections A --seats-per-section 10 --open-in-secs 3600 --rate 100 >/dev/null

EDGE_ADDR=127.0.0.1:$EDGE_PORT EDGE_THREADS=1 EDGE_DRIVER=$EDGE_DRIVER EDGE_LOG=warn \
    ADMIN_TOKEN=bench RATE_LIMITS=off \
    taskset -c 0 "$SCRATCH/edge" >"$SCRATCH/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
wait_port "$EDGE_PORT" "$EDGE_PID" edge

hold_run() { # hold_run NAME: loadgen hold on CPU 1, p99 of holds in µs to stdout
    taskset -c 1 "$SCRATCH/loadgen" hold --target "127.0.0.1:$EDGE_PORT" --event perf \
        --seats-per-section 200000 --rate "$HOLD_RATE" --duration "$DURATION" --warmup 1 \
        --connections 16 --quiet --out "$SCRATCH/$1" >"$SCRATCH/$1.log" 2>&1
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
for run in r["runs"]:
    for s in run["stages"]:
        if s["measured"]:
            for e in s["endpoints"]:
                if e["endpoint"] == "hold":
                    l = e["latency"]
                    print(l["p50"], l["p99"], l["p999"], l["max"], e["count"], e["errors"])' "$SCRATCH/$1.json"
}

log "holds alone"
alone=$(hold_run alone)

log "opening $STREAMS streams"
taskset -c 1 python3 perf/sse_bench.py --target "127.0.0.1:$EDGE_PORT" --event sse \
    --streams "$STREAMS" --edge-pid "$EDGE_PID" --admin-token bench --pushes "$PUSHES" \
    --push-every "$PUSH_EVERY" --pending "$PENDING" --ready-file "$SCRATCH/ready" --close-file "$SCRATCH/close" >"$SCRATCH/sse.json" 2>"$SCRATCH/sse.log" &
SSE_PID=$!
PIDS+=("$SSE_PID")
for ((i = 0; i < 2400; i++)); do
    [[ -f $SCRATCH/ready ]] && break
    kill -0 "$SSE_PID" 2>/dev/null || die "sse_bench.py failed: $(tail -5 "$SCRATCH/sse.log")"
    sleep 0.1
done
[[ -f $SCRATCH/ready ]] || die "streams not open after 240 s"
log "holds during $PUSHES pushes to $STREAMS streams"
pushed=$(hold_run pushed)
log "holds while every stream closes"
(
    sleep "$CLOSE_AFTER"
    touch "$SCRATCH/close"
) &
closing=$(hold_run closing)
wait "$SSE_PID" || die "sse_bench.py failed: $(tail -5 "$SCRATCH/sse.log")"

mkdir -p "$OUT_DIR"
python3 - "$SCRATCH/sse.json" "$alone" "$pushed" "$closing" "$OUT_DIR/sse.md" "$HOLD_RATE" "$DURATION" "$EDGE_DRIVER" "$PENDING" "$PUSH_EVERY" <<'EOF'
import json, sys, time, subprocess
sse = json.load(open(sys.argv[1]))
alone, pushed, closing = (list(map(int, x.split())) for x in sys.argv[2:5])
out, rate, duration, driver, pending, every = sys.argv[5:11]
ms = lambda us: f"{us / 1000:.2f} ms"
pushes = sse["pushes"]
lines = [
    "# Waiting-room event streams: memory per stream, holds during a push",
    "",
    f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; kernel {subprocess.check_output(['uname', '-r'], text=True).strip()}",
    f"- command: `STREAMS={sse['streams']} HOLD_RATE={rate} DURATION={duration} PUSHES={len(pushes)} PUSH_EVERY={every} PENDING={pending} EDGE_DRIVER={driver} perf/bench-sse.sh`",
    "- edge: one core (`EDGE_THREADS=1`, pinned to CPU 0); clients (streams, loadgen) on CPU 1; a private Redis",
    f"- machine load average at the end: {open('/proc/loadavg').read().split()[0]} (2 CPUs, shared with other work)",
    "",
    f"**{sse['streams']} idle streams: {sse['bytes_per_stream']} bytes of edge memory each** "
    f"(VmRSS {sse['rss_before_kib']} KiB before, {sse['rss_after_kib']} KiB after; opened in {sse['open_secs']} s)",
    "",
    "| holds at {}/s for {} s | answered | errors | p50 | p99 | p99.9 | max |".format(rate, duration),
    "|---|---:|---:|---:|---:|---:|---:|",
    f"| alone | {alone[4]} | {alone[5]} | {ms(alone[0])} | {ms(alone[1])} | {ms(alone[2])} | {ms(alone[3])} |",
    f"| during {len(pushes)} pushes to every stream | {pushed[4]} | {pushed[5]} | {ms(pushed[0])} | {ms(pushed[1])} | {ms(pushed[2])} | {ms(pushed[3])} |",
    f"| while every stream's client leaves at once | {closing[4]} | {closing[5]} | {ms(closing[0])} | {ms(closing[1])} | {ms(closing[2])} | {ms(closing[3])} |",
    "",
    "Pushes (an operator moves the opening; every stream gets an event): "
    + ", ".join(f"{p['reached']} streams in {p['secs']} s" for p in pushes),
    "",
    "Latencies are loadgen's, corrected for coordinated omission. The 50,000-stream",
    "target needs `ulimit -n` above 50,000 for the edge and the client; this machine allows",
    "20,000 a process, so the memory per stream is measured at the count above.",
]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
