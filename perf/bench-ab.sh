#!/usr/bin/env bash
# perf/bench-ab.sh: two edge binaries under the same loadgen runs, for a before/after
# ratio of one change on a noisy machine (the rule: measure both in the same run).
#
# A (the baseline, e.g. built from a worktree of the previous commit) and B (default:
# this tree's release build) each run one thread pinned to SERVER_CPU beside one private
# Redis, loadgen on LOAD_CPU. `loadgen max --of SCENARIO --compare` runs every trial
# against B, then A; for hold every trial starts on an empty event (FLUSHALL, re-seed).
# Writes OUT_DIR/SCENARIO.md/.json/.svg (perf/results/ab/).
#
#   git worktree add /tmp/base HEAD~1 && (cd /tmp/base && cargo build --release -p edge)
#   A=/tmp/base/target/release/edge SCENARIOS="summary hold" perf/bench-ab.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

A=${A:?A=path of the baseline edge binary}
B=${B:-${CARGO_TARGET_DIR:-target}/release/edge}
SCENARIOS=${SCENARIOS:-summary hold}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
P99_MS=${P99_MS:-50}
DRIVER=${DRIVER:-uring}
OUT_DIR=${OUT_DIR:-perf/results/ab}
REDIS_PORT=${REDIS_PORT:-16499}
A_PORT=${A_PORT:-18398}
B_PORT=${B_PORT:-18399}

log() { echo "bench-ab: $*" >&2; }
PIDS=()
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/bench-ab.XXXXXX")
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
wait_port() {
    local i
    for ((i = 0; i < 300; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.05
    done
    log "nothing listens on $1"
    exit 1
}

cp "$A" "$SCRATCH/edge-a"
cp "$B" "$SCRATCH/edge-b"
cp "${CARGO_TARGET_DIR:-target}"/release/{worker,loadgen} "$SCRATCH/"
infra/local/stack.sh up >/dev/null
eval "$(infra/local/stack.sh env)"
export DATABASE_URL REDIS_URL=redis://127.0.0.1:$REDIS_PORT

taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$SCRATCH" >"$SCRATCH/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT"
SEED=("$SCRATCH/worker" seed perf --seats-per-section 200000 --open-in-secs -3600 --rate 1000000)
"$SCRATCH/worker" migrate >/dev/null
"${SEED[@]}" >/dev/null

declare -A EDGE_PID
for side in a b; do
    port=$A_PORT
    [[ $side == b ]] && port=$B_PORT
    EDGE_ADDR=127.0.0.1:$port EDGE_THREADS=1 EDGE_DRIVER=$DRIVER EDGE_LOG=warn \
        taskset -c "$SERVER_CPU" "$SCRATCH/edge-$side" >"$SCRATCH/edge-$side.log" 2>&1 &
    EDGE_PID[$side]=$!
    PIDS+=("$!")
    wait_port "$port"
done

for scenario in $SCENARIOS; do
    reset=()
    [[ $scenario == hold ]] &&
        reset=(--reset-cmd "redis-cli -p $REDIS_PORT flushall >/dev/null && ${SEED[*]} >/dev/null")
    log "$scenario: B (this tree) vs A (baseline), $DRIVER"
    taskset -c "$LOAD_CPU" "$SCRATCH/loadgen" max --of "$scenario" --event perf \
        --seats-per-section 200000 --connections 256 --driver "$DRIVER" --p99-ms "$P99_MS" \
        --target "127.0.0.1:$B_PORT" --name B --cpu "edge=${EDGE_PID[b]}" --cpu "redis=$REDIS_PID" \
        --compare "127.0.0.1:$A_PORT" --compare-name A --compare-cpu "edge=${EDGE_PID[a]}" \
        --compare-cpu "redis=$REDIS_PID" "${reset[@]}" --quiet --out "$OUT_DIR/$scenario"
done
