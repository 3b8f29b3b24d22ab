#!/usr/bin/env bash
# perf/bench-ab.sh: two edge binaries under the same loadgen runs, for a before/after
# ratio of one change on a noisy machine (the rule: measure both in the same run).
#
# A (the baseline, e.g. built from a worktree of the previous commit) and B (default:
# this tree's release build) each run one thread pinned to SERVER_CPU beside one private
# Redis, loadgen on LOAD_CPU. `loadgen max --of SCENARIO --compare` runs every trial
# against B, then A; for hold and enter every trial starts on an empty event
# (FLUSHALL, re-seed).
# Writes OUT_DIR/SCENARIO.md/.json/.svg (perf/results/ab/).
#
#   git worktree add /tmp/base HEAD~1 && (cd /tmp/base && cargo build --release -p edge)
#   A=/tmp/base/target/release/edge SCENARIOS="summary hold" perf/bench-ab.sh
set -euo pipefail
NAME=bench-ab
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

BUILD=0 release_binaries
cp "$A" "$SCRATCH/edge-a"
cp "$B" "$SCRATCH/edge-b"
local_stack_env
private_redis "$REDIS_PORT" "$SERVER_CPU"
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
    wait_port "$port" "$!" "edge $side"
done

for scenario in $SCENARIOS; do
    reset=()
    [[ $scenario == hold || $scenario == enter ]] &&
        reset=(--reset-cmd "redis-cli -p $REDIS_PORT flushall >/dev/null && ${SEED[*]} >/dev/null")
    log "$scenario: B (this tree) vs A (baseline), $DRIVER"
    taskset -c "$LOAD_CPU" "$SCRATCH/loadgen" max --of "$scenario" --event perf \
        --seats-per-section 200000 --connections 256 --driver "$DRIVER" --p99-ms "$P99_MS" \
        --target "127.0.0.1:$B_PORT" --name B --cpu "edge=${EDGE_PID[b]}" --cpu "redis=$REDIS_PID" \
        --compare "127.0.0.1:$A_PORT" --compare-name A --compare-cpu "edge=${EDGE_PID[a]}" \
        --compare-cpu "redis=$REDIS_PID" "${reset[@]}" --quiet --out "$OUT_DIR/$scenario"
done
