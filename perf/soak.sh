#!/usr/bin/env bash
# perf/soak.sh: the soak of issue 14, section 4 (the seed's >= 30-minute run). One edge
# (EDGE_THREADS, all cores by default), `worker run`, a private Redis with the local
# stack's persistence (infra/local/redis.conf: AOF, fsync always) and the stack's
# PostgreSQL; `loadgen soak` (the mixed scenario: 7 reads, 2 buying steps, 1 status poll
# in 10) at a steady RATE for DURATION seconds with the audit on. The edge's and the
# worker's RSS and open file descriptors are sampled every SAMPLE_S seconds and judged
# (perf/src/soak.rs: mean RSS of the last quarter within RSS_GROWTH_PCT of the second
# quarter's, open files likewise, both alive throughout); Redis is sampled and drawn but
# not judged (it keeps every order's status and idempotency record for a day: its data
# grows by design). Writes OUT_DIR/soak.{md,json,svg} and OUT_DIR/soak-resources.svg;
# exits 1 when the soak fails.
#
#   perf/soak.sh                                  (make soak: 30 minutes at 800/s)
#   DURATION=120 RATE=500 OUT_DIR=/tmp/soak perf/soak.sh
#
# Environment (defaults): DURATION (1800) RATE (800) CONNECTIONS (64) SAMPLE_S (10)
# RSS_GROWTH_PCT (10) EDGE_THREADS (all cores) BUILD (1) OUT_DIR (perf/results/soak)
# SOAK_REDIS_PORT (61430); REDIS_PORT/PG_PORT choose the local stack (its PostgreSQL).
set -euo pipefail
NAME=soak
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-1800}
RATE=${RATE:-800}
CONNECTIONS=${CONNECTIONS:-64}
SAMPLE_S=${SAMPLE_S:-10}
RSS_GROWTH_PCT=${RSS_GROWTH_PCT:-10}
OUT_DIR=${OUT_DIR:-perf/results/soak}
SOAK_REDIS_PORT=${SOAK_REDIS_PORT:-61430}
# Seats enough for every commit of the run (a fifth of the slots are buying steps, a
# third of those commits) three times over, in five sections.
SEATS=$((RATE * DURATION * 3 / 75 + 10000))

release_binaries
local_stack_env
"$SCRATCH/worker" migrate >/dev/null
mkdir -p "$OUT_DIR" "$SCRATCH/redis"
private_redis "$SOAK_REDIS_PORT" "" --include "$ROOT/infra/local/redis.conf" --dir "$SCRATCH/redis"
EVENT=soak-$(date +%s)
"$SCRATCH/worker" seed "$EVENT" --seats-per-section "$SEATS" --open-in-secs -3600 --rate 1000000 >/dev/null

# EDGE_THREADS, when set, comes from the environment.
EDGE_ADDR=127.0.0.1:0 EDGE_LOG=info "$SCRATCH/edge" >"$SCRATCH/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
EDGE_PORT=""
for ((i = 0; i < 600; i++)); do
    kill -0 "$EDGE_PID" 2>/dev/null || die "edge exited: $(tail -n 5 "$SCRATCH/edge.log")"
    EDGE_PORT=$(grep -m 1 -oE ' listening addr=127\.0\.0\.1:[0-9]+' "$SCRATCH/edge.log" | grep -oE '[0-9]+$') || true
    [[ -n $EDGE_PORT ]] && break
    sleep 0.05
done
[[ -n $EDGE_PORT ]] || die "the edge listens nowhere after 30 s"
WORKER_EVENTS=$EVENT WORKER_LOG=warn "$SCRATCH/worker" run >"$SCRATCH/worker.log" 2>&1 &
WORKER_PID=$!
PIDS+=("$WORKER_PID")
log "edge pid $EDGE_PID on 127.0.0.1:$EDGE_PORT, worker pid $WORKER_PID, redis pid $REDIS_PID; event $EVENT"
log "loadgen soak at $RATE/s for $DURATION s (a sample every $SAMPLE_S s)"

rc=0
"$SCRATCH/loadgen" soak --target "127.0.0.1:$EDGE_PORT" --event "$EVENT" --seats-per-section "$SEATS" \
    --rate "$RATE" --duration "$DURATION" --warmup 10 --connections "$CONNECTIONS" \
    --cpu "edge=$EDGE_PID" --cpu "worker=$WORKER_PID" --cpu "redis=$REDIS_PID" \
    --watch "edge=$EDGE_PID" --watch "worker=$WORKER_PID" --observe "redis=$REDIS_PID" \
    --sample-s "$SAMPLE_S" --rss-growth-pct "$RSS_GROWTH_PCT" --audit-wait-s 120 --quiet \
    --out "$OUT_DIR/soak" || rc=$?
# Still alive after the run and its audit (a crash at the end would not show in samples).
for p in "edge:$EDGE_PID" "worker:$WORKER_PID"; do
    kill -0 "${p#*:}" 2>/dev/null || {
        log "${p%%:*} died during the soak"
        rc=1
    }
done
grep -E '^\| (edge|worker|redis) ' "$OUT_DIR/soak.md" || true
log "report: $OUT_DIR/soak.md ($([[ $rc == 0 ]] && echo passed || echo FAILED))"
exit "$rc"
