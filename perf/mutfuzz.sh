#!/usr/bin/env bash
# perf/mutfuzz.sh: the black-box mutation fuzzer (perf/mutfuzz.py, issue 20) against a
# stack of its own, then its audit. A private Redis, the local PostgreSQL
# (infra/local/stack.sh), the release edge and worker; a fresh event, so that the
# audit's sums start from zero. Exits non-zero when the fuzzer or the audit fails, or
# the edge or the worker panicked or died.
#
#   perf/mutfuzz.sh [SECONDS]          (10 by default; make mutfuzz-short, make mutfuzz)
#
# Environment: MUTFUZZ_SEED (random; printed), MUTFUZZ_THREADS (6), MUTFUZZ_ARGS (more
# fuzzer options, e.g. "--fault-every 5" to pause Redis now and then), MUTFUZZ_OUT
# (.run/mutfuzz: the report mutfuzz.json and the logs stay there), MUTFUZZ_REDIS_PORT
# (16491), MUTFUZZ_EDGE_ADDR (127.0.0.1:18491), BUILD=0 to take target/release as it is.
set -euo pipefail
NAME=mutfuzz
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN_SECONDS=${1:-${MUTFUZZ_SECONDS:-10}}
REDIS_PORT_=${MUTFUZZ_REDIS_PORT:-16491}
EDGE_ADDR_=${MUTFUZZ_EDGE_ADDR:-127.0.0.1:18491}
OUT=${MUTFUZZ_OUT:-.run/mutfuzz}
# The edge's deadline for a request to arrive whole: short, so that the mutants that
# leave a body unfinished (408) do not hold a thread for the default 10 s.
REQUEST_TIMEOUT_MS=3000
SECTIONS=A,B,C
SEATS=40000
ADMIN_TOKEN_=mutfuzz-admin-$$
PYTHON=python3
[[ -x .run/venv/bin/python ]] && PYTHON=.run/venv/bin/python

command -v redis-server >/dev/null || die "redis-server missing: make deps"
command -v psql >/dev/null || die "psql missing: make deps"
if [[ ${BUILD:-1} == 1 ]]; then
    nice -n 10 cargo build --release -j2 -p edge --bin edge -p worker --bin worker
fi
# Copies, so that a rebuild meanwhile changes nothing under test.
cp "${CARGO_TARGET_DIR:-target}"/release/{edge,worker} "$SCRATCH/"
mkdir -p "$OUT"

local_stack_env
private_redis "$REDIS_PORT_"
# Two fresh events: one for the buyers, one whose admission the admin mutants change
# (a mutant may close its room). "adm..." cannot be cut or bent into "mf...".
EVENT=mf$(date +%s)x$$
ADMIN_EVENT=adm$(date +%s)x$$
WORKER_LOG=warn "$SCRATCH/worker" migrate >/dev/null
# Open an hour ago at a rate that has admitted everyone: every buyer may hold at once.
WORKER_LOG=warn "$SCRATCH/worker" seed "$EVENT" --sections "$SECTIONS" --seats-per-section "$SEATS" \
    --open-in-secs -3600 --rate 1000000 >/dev/null
WORKER_LOG=warn "$SCRATCH/worker" seed "$ADMIN_EVENT" --sections A --seats-per-section 10 >/dev/null

WORKER_EVENTS="$EVENT,$ADMIN_EVENT" "$SCRATCH/worker" run >"$OUT/worker.log" 2>&1 &
WORKER_PID=$!
PIDS+=("$WORKER_PID")
EDGE_ADDR=$EDGE_ADDR_ EDGE_REQUEST_TIMEOUT_MS=$REQUEST_TIMEOUT_MS ADMIN_TOKEN=$ADMIN_TOKEN_ EDGE_LOG=warn \
    "$SCRATCH/edge" >"$OUT/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
wait_port "${EDGE_ADDR_##*:}" "$EDGE_PID" edge
# Ready means health 200 (Redis connected on every core) and the worker consuming.
for ((i = 0; ; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$EDGE_ADDR_/public/health" || true)
    [[ $code == 200 ]] && grep -q consuming "$OUT/worker.log" && break
    kill -0 "$EDGE_PID" 2>/dev/null || die "edge exited: $(tail -5 "$OUT/edge.log")"
    kill -0 "$WORKER_PID" 2>/dev/null || die "worker exited: $(tail -5 "$OUT/worker.log")"
    ((i < 300)) || die "not ready after 60 s (health $code)"
    sleep 0.2
done
log "edge pid $EDGE_PID on $EDGE_ADDR_, worker pid $WORKER_PID, event $EVENT; fuzzing ${RUN_SECONDS}s"

status=0
# shellcheck disable=SC2086 # MUTFUZZ_ARGS is a list of options
"$PYTHON" perf/mutfuzz.py --addr "$EDGE_ADDR_" --event "$EVENT" --sections "$SECTIONS" \
    --seats-per-section "$SEATS" --admin-event "$ADMIN_EVENT" --admin-token "$ADMIN_TOKEN_" \
    --request-timeout-ms "$REQUEST_TIMEOUT_MS" --seconds "$RUN_SECONDS" \
    --threads "${MUTFUZZ_THREADS:-6}" ${MUTFUZZ_SEED:+--seed "$MUTFUZZ_SEED"} \
    --edge-pid "$EDGE_PID" --database-url "$DATABASE_URL" --redis-url "$REDIS_URL" \
    --out "$OUT/mutfuzz.json" ${MUTFUZZ_ARGS:-} || status=1

# The worker's own view of the dead letters (the fuzzer counted them with XLEN).
"$SCRATCH/worker" dlq list "$EVENT" | head -n 20 >&2 || status=1
for p in edge:"$EDGE_PID" worker:"$WORKER_PID"; do
    kill -0 "${p#*:}" 2>/dev/null || {
        log "${p%%:*} (pid ${p#*:}) died during the run"
        status=1
    }
done
if grep -i -m 5 panic "$OUT/edge.log" "$OUT/worker.log" >&2; then
    log "a panic in the logs above"
    status=1
fi
stop_pid "$EDGE_PID"
stop_pid "$WORKER_PID"
if ((status == 0)); then
    log "passed (report $OUT/mutfuzz.json)"
else
    log "FAILED (report $OUT/mutfuzz.json, logs $OUT/)"
fi
exit "$status"
