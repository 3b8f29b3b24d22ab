#!/usr/bin/env bash
# perf/profile.sh: where the edge's CPU goes under load (`make profile`).
#
# A private Redis and the edge (one thread, DRIVER) pinned to SERVER_CPU, loadgen on
# LOAD_CPU offering RATE requests/s of SCENARIO (summary or hold, on the 1,000,000-seat
# event `perf`) for SECONDS; meanwhile `perf record -e cpu-clock` samples the edge
# (call graphs: CALL_GRAPH, `dwarf` by default, since release builds keep no frame
# pointers; `fp` for `-g`). The stacks are folded and drawn with inferno
# (`cargo install inferno` when missing) into OUT_DIR/flamegraph-SCENARIO-DRIVER.svg;
# the folded stacks stay beside it (.folded.gz) for inferno-diff-folded.
#
#   SCENARIO=summary RATE=30000 SECONDS=5 DRIVER=uring SERVER_CPU=0 LOAD_CPU=1 perf/profile.sh
set -euo pipefail
NAME=profile
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCENARIO=${SCENARIO:-summary}
RATE=${RATE:-30000}
SECONDS_=${SECONDS:-5}
DRIVER=${DRIVER:-uring}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CALL_GRAPH=${CALL_GRAPH:-dwarf}
FREQ=${FREQ:-499}
OUT_DIR=${OUT_DIR:-perf/results}
REDIS_PORT=${REDIS_PORT:-16481}
EDGE_PORT=${EDGE_PORT:-18382}
BUILD=${BUILD:-1}

command -v perf >/dev/null || die "perf missing: apt-get install linux-perf"
command -v redis-server >/dev/null || die "redis-server missing: make deps"
if ! command -v inferno-flamegraph >/dev/null; then
    export PATH=$HOME/.cargo/bin:$PATH
    command -v inferno-flamegraph >/dev/null || {
        log "inferno missing: cargo install inferno"
        nice cargo install --locked -j2 inferno
    }
fi

release_binaries
local_stack_env
private_redis "$REDIS_PORT" "$SERVER_CPU"
"$SCRATCH/worker" migrate >/dev/null
"$SCRATCH/worker" seed perf --seats-per-section 200000 --open-in-secs -3600 --rate 1000000 >/dev/null

EDGE_ADDR=127.0.0.1:$EDGE_PORT EDGE_THREADS=1 EDGE_DRIVER=$DRIVER EDGE_LOG=warn \
    taskset -c "$SERVER_CPU" "$SCRATCH/edge" >"$SCRATCH/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
wait_port "$EDGE_PORT" "$EDGE_PID" edge

taskset -c "$LOAD_CPU" "$SCRATCH/loadgen" "$SCENARIO" --target "127.0.0.1:$EDGE_PORT" --event perf \
    --seats-per-section 200000 --rate "$RATE" --duration "$((SECONDS_ + 2))" --warmup 1 \
    --cpu "edge=$EDGE_PID" --out "$SCRATCH/load" >"$SCRATCH/loadgen.log" 2>&1 &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
# Sample once buyers have entered and the measured stage runs (its first progress line).
for ((i = 0; i < 1200; i++)); do
    grep -q "stage 2/2" "$SCRATCH/loadgen.log" && break
    kill -0 "$LOAD_PID" 2>/dev/null || die "loadgen exited: $(tail -3 "$SCRATCH/loadgen.log")"
    sleep 0.1
done
log "sampling edge pid $EDGE_PID for ${SECONDS_}s at ${FREQ} Hz ($CALL_GRAPH call graphs) under $SCENARIO at $RATE/s"
perf record -e cpu-clock -F "$FREQ" --call-graph "$CALL_GRAPH" -p "$EDGE_PID" -o "$SCRATCH/perf.data" \
    -- sleep "$SECONDS_" 2>"$SCRATCH/perf.log" >/dev/null
wait "$LOAD_PID" || true
mkdir -p "$OUT_DIR"
name=flamegraph-$SCENARIO-$DRIVER
perf script -i "$SCRATCH/perf.data" 2>/dev/null | inferno-collapse-perf >"$SCRATCH/$name.folded"
inferno-flamegraph --title "edge ($DRIVER), $SCENARIO at $RATE req/s, cpu-clock" \
    <"$SCRATCH/$name.folded" >"$OUT_DIR/$name.svg"
gzip -9 -c "$SCRATCH/$name.folded" >"$OUT_DIR/$name.folded.gz"
grep -E "^\| $SCENARIO" "$SCRATCH/load.md" | head -1 >&2 || true
log "wrote $OUT_DIR/$name.svg ($(wc -l <"$SCRATCH/$name.folded") distinct stacks; folded: $name.folded.gz)"
