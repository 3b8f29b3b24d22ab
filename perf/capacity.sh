#!/usr/bin/env bash
# perf/capacity.sh: the capacity model's inputs and its check (`make capacity`, issue 17).
#
# For each offered rate in LOADS: every route the seed's mix uses, alone, at that rate
# (summary, room-status, hold, buy = hold + payment-intent + commit, status), then the
# mix itself (`loadgen mixed`). loadgen reports each process's CPU over the measured
# stage: the edge (one thread, pinned to SERVER_CPU), its private Redis (no persistence,
# as ElastiCache), the worker draining commits, and PostgreSQL (the local stack's, its
# postmaster with the backends). perf/capacity.py then turns the single-route runs into
# CPU-µs per request of each route and process, predicts each mixed run's CPU from its
# request counts, compares, and sizes 100k, 300k and 1M requests/s:
# perf/results/capacity.md (+ the loadgen reports under perf/results/capacity/).
#
# Costs per request fall as a core gets busier (more requests per wake-up, more commits per
# worker batch), so a route's cost is taken at the same offered rate as the mix it
# predicts: the reads, holds and polls alone at the whole rate, the buy run at a fifth of
# it, where its holds, intents and commits a second equal the mix's (2 steps in 10 there,
# every step here). The sizing uses the highest load's costs.
#
# Environment (defaults): LOADS="3000 6000" RUN_S=10 SERVER_CPU=0 LOAD_CPU=1 BUILD=1
#   OUT_DIR=perf/results REDIS_PORT=16492 EDGE_PORT=18392 QUIET_PCT=30 QUIET_MAX_WAIT_S=120
set -euo pipefail
NAME=capacity
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOADS=${LOADS:-3000 6000}
RUN_S=${RUN_S:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT_DIR=${OUT_DIR:-perf/results}
REDIS_PORT=${REDIS_PORT:-16492}
EDGE_PORT=${EDGE_PORT:-18392}
QUIET_PCT=${QUIET_PCT:-30}
QUIET_MAX_WAIT_S=${QUIET_MAX_WAIT_S:-120}
SECTIONS=A,B,C,D,E
SEATS=200000
ROUTES="summary room-status hold buy status mixed"

release_binaries
local_stack_env
PG_PID=$(head -n 1 .run/pg/postmaster.pid)
curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$EDGE_PORT/" && die "port $EDGE_PORT is taken"
private_redis "$REDIS_PORT" "$SERVER_CPU"
"$SCRATCH/worker" migrate >/dev/null

EDGE_ADDR=127.0.0.1:$EDGE_PORT EDGE_THREADS=1 EDGE_DRIVER=uring EDGE_LOG=warn \
    taskset -c "$SERVER_CPU" "$SCRATCH/edge" >"$SCRATCH/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
wait_port "$EDGE_PORT" "$EDGE_PID" edge
WORKER_EVENT_REFRESH_MS=500 WORKER_LOG=warn taskset -c "$SERVER_CPU" "$SCRATCH/worker" run \
    >"$SCRATCH/worker.log" 2>&1 &
WORKER_PID=$!
PIDS+=("$WORKER_PID")

mkdir -p "$OUT_DIR/capacity"
for load in $LOADS; do # word splitting wanted: a list of numbers
    # One event a load: the buying runs sell into it (5 x 200,000 seats, never sold out).
    event=cap-$load-$(date +%s)
    "$SCRATCH/worker" seed "$event" --sections "$SECTIONS" --seats-per-section "$SEATS" \
        --open-in-secs -3600 --rate 1000000 >/dev/null
    for route in $ROUTES; do
        rate=$load
        [[ $route == buy ]] && rate=$((load / 5))
        log "$route at $rate/s"
        wait_quiet
        taskset -c "$LOAD_CPU" "$SCRATCH/loadgen" "$route" --target "127.0.0.1:$EDGE_PORT" \
            --name edge --cpu "edge=$EDGE_PID" --cpu "redis=$REDIS_PID" \
            --cpu "worker=$WORKER_PID" --cpu "postgres=$PG_PID" --event "$event" \
            --sections "$SECTIONS" --seats-per-section "$SEATS" --rate "$rate" \
            --duration "$RUN_S" --quiet --out "$OUT_DIR/capacity/$route-$load" >/dev/null &
        pid=$!
        PIDS+=("$pid")
        wait "$pid" || die "loadgen $route at $rate/s failed (report: $OUT_DIR/capacity/$route-$load.md)"
        PIDS=("${PIDS[@]:0:${#PIDS[@]}-1}")
    done
done
read -ra loads <<<"$LOADS"
python3 perf/capacity.py "$OUT_DIR/capacity" "${loads[@]}" >"$OUT_DIR/capacity.md"
cat "$OUT_DIR/capacity.md"
log "written: $OUT_DIR/capacity.md"
