#!/usr/bin/env bash
# perf/callgrind.sh: instructions per request of the edge, or of its Redis, for a fixed
# batch of requests (`make callgrind`): repeatable on a noisy machine where time is not.
#
# TARGET=edge (default): the edge (one thread, epoll: valgrind does not run io_uring)
# under `valgrind --tool=callgrind --instr-atstart=no` with a private Redis. TARGET=redis:
# the private redis-server under callgrind, the edge (one thread) native. Collection is
# instrumentation switched on (callgrind_control -i on) just before loadgen sends
# REQUESTS requests of SCENARIO (summary, ping, enter or hold; hold's batch includes
# entering its buyers) at RATE/s, and off right after. Writes
# OUT_DIR/callgrind-SCENARIO.md (callgrind-redis-SCENARIO.md): instructions (Ir) per
# request and the functions that spend them; for Redis also its script calls (EVALSHA)
# per request from INFO commandstats, as the edge shares one script call among the
# requests that arrive together.
#
#   SCENARIO=summary REQUESTS=5000 RATE=500 perf/callgrind.sh
#   TARGET=redis SCENARIO=hold perf/callgrind.sh
#   KEEP_OUT=/tmp/summary.callgrind (keeps the raw profile, for callgrind_annotate --tree=caller)
#   HEADER='Origin: https://tickets.example.test' (one more header on every summary/ping
#   request; the edge gets this script's environment, CORS_ALLOWED_ORIGINS included)
set -euo pipefail
NAME=callgrind
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCENARIO=${SCENARIO:-summary}
TARGET=${TARGET:-edge}
[[ $TARGET == edge || $TARGET == redis ]] || die "TARGET=$TARGET: edge or redis"
REQUESTS=${REQUESTS:-5000}
RATE=${RATE:-500}
OUT_DIR=${OUT_DIR:-perf/results}
# Not REDIS_PORT: that one is the local stack's (infra/local/stack.sh, which local_stack_env runs).
CALLGRIND_REDIS_PORT=${CALLGRIND_REDIS_PORT:-16482}
EDGE_PORT=${EDGE_PORT:-18383}
BUILD=${BUILD:-1}
HEADER=${HEADER:-}
extra=()
[[ -n $HEADER ]] && extra=(--header "$HEADER")

command -v valgrind >/dev/null || {
    log "valgrind missing: apt-get install valgrind"
    apt-get install -y -qq valgrind >/dev/null
}
command -v redis-server >/dev/null || die "redis-server missing: make deps"

VALGRIND=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$SCRATCH/callgrind.out")
EDGE_WRAPPER=()
if [[ $TARGET == redis ]]; then REDIS_WRAPPER=("${VALGRIND[@]}"); else EDGE_WRAPPER=("${VALGRIND[@]}"); fi

release_binaries
local_stack_env
private_redis "$CALLGRIND_REDIS_PORT"
"$SCRATCH/worker" migrate >/dev/null
"$SCRATCH/worker" seed perf --seats-per-section 200000 --open-in-secs -3600 --rate 1000000 >/dev/null

EDGE_ADDR=127.0.0.1:$EDGE_PORT EDGE_THREADS=1 EDGE_DRIVER=epoll EDGE_LOG=warn EDGE_SHUTDOWN_GRACE_MS=2000 \
    "${EDGE_WRAPPER[@]}" "$SCRATCH/edge" >"$SCRATCH/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
wait_port "$EDGE_PORT" "$EDGE_PID" edge
MEASURED=$EDGE_PID
[[ $TARGET == redis ]] && MEASURED=$REDIS_PID
redis_cli() { redis-cli -p "$CALLGRIND_REDIS_PORT" "$@"; }
# Script calls (EVALSHA, and EVAL of a script not yet loaded) so far.
script_calls() {
    redis_cli info commandstats | awk -F'[:=,]' '/^cmdstat_eval(sha)?:/ {n += $3} END {print n + 0}'
}

duration=$(awk -v n="$REQUESTS" -v r="$RATE" 'BEGIN{printf "%.3f", n / r}')
calls_before=$(script_calls)
callgrind_control -i on "$MEASURED" >/dev/null
"$SCRATCH/loadgen" "$SCENARIO" --target "127.0.0.1:$EDGE_PORT" --event perf --seats-per-section 200000 \
    --rate "$RATE" --duration "$duration" --warmup 0 --connections 16 --quiet --out "$SCRATCH/load" "${extra[@]}" \
    >"$SCRATCH/loadgen.log" 2>&1
callgrind_control -i off "$MEASURED" >/dev/null
calls=$(($(script_calls) - calls_before))
kill -TERM "$EDGE_PID"
wait "$EDGE_PID" || true
if [[ $TARGET == redis ]]; then
    redis_cli shutdown nosave >/dev/null 2>&1 || true
    wait "$REDIS_PID" || true
fi

answered=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(sum(s["answered"] for run in r["runs"] for s in run["stages"]))' "$SCRATCH/load.json")
entered=$(sed -n 's/.*setup: \([0-9]*\) buyers entered.*/\1/p' "$SCRATCH/loadgen.log")
entered=${entered:-0}
total=$((answered + entered))
callgrind_annotate --inclusive=no "$SCRATCH/callgrind.out" 2>/dev/null >"$SCRATCH/annotate.txt"
ir=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$SCRATCH/annotate.txt")
[[ -n $ir && $total -gt 0 ]] || die "no totals (answered $total): $(tail -5 "$SCRATCH/edge.log")"

mkdir -p "$OUT_DIR"
out=$OUT_DIR/callgrind-$SCENARIO.md
[[ $TARGET == redis ]] && out=$OUT_DIR/callgrind-redis-$SCENARIO.md
{
    echo "# Instructions per request: $TARGET, \`$SCENARIO\` (callgrind)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(valgrind --version); kernel $(uname -r); $(redis-server --version | cut -d' ' -f1-3)"
    # shellcheck disable=SC2016 # the single quotes are text inside double quotes
    echo "- command: \`TARGET=$TARGET SCENARIO=$SCENARIO REQUESTS=$REQUESTS RATE=$RATE${HEADER:+ HEADER='$HEADER'}${CORS_ALLOWED_ORIGINS:+ CORS_ALLOWED_ORIGINS=$CORS_ALLOWED_ORIGINS} perf/callgrind.sh\`"
    if [[ $TARGET == redis ]]; then
        echo "- redis-server under callgrind with instrumentation on only while loadgen ran; the edge native, one thread"
    else
        echo "- edge: one thread, epoll, under callgrind with instrumentation on only while loadgen ran"
    fi
    echo "- requests answered: $answered $SCENARIO + $entered enter (setup) = $total"
    echo "- script calls (EVALSHA) meanwhile: $calls, $(awk -v c="$calls" -v n="$total" 'BEGIN{printf "%.2f", n / (c ? c : 1)}') requests per call"
    echo
    echo "**$(awk -v i="$ir" -v n="$total" 'BEGIN{printf "%.0f", i / n}') instructions per request** ($ir in all)"
    echo
    echo "Instruction counts do not depend on the machine's load, so this is the figure to"
    echo "compare commits by; it ignores cache misses and syscall time in the kernel. Valgrind's"
    echo "virtual CPU lacks SHA-NI, so under it the sha2 crate takes its portable path: the"
    echo "HMAC of room tokens (hold, enter) costs more instructions here than natively."
    echo
    echo "## Functions by instructions (self)"
    echo
    echo '```'
    awk '/^Ir/ {on = 1} on && n++ < 40' "$SCRATCH/annotate.txt" | cut -c1-160
    echo '```'
} >"$out"
[[ -n ${KEEP_OUT:-} ]] && cp "$SCRATCH/callgrind.out" "$KEEP_OUT"
cat "$out"
