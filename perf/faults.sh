#!/usr/bin/env bash
# perf/faults.sh: the fault suite (issue 14, section 2). For each FAULT, on services of
# its own (a private Redis with infra/local/redis.conf's AOF, two edges sharing one port
# with SO_REUSEPORT, `worker run`, the local stack's PostgreSQL): `loadgen mixed` with
# its audit and a --trace runs, and mid-run the fault is injected, held FAULT_S seconds
# and ended. perf/faults.py then judges the run:
#
#   - the audit passed: no seat sold twice, every accepted commit (202) final;
#   - no 500 (or other 5xx but 503), no 503 without Retry-After, no request unanswered
#     (timeout, dropped unsent) and no answer slower than DEADLINE_MS, anywhere in the run;
#   - 503s only from the fault's start (less REDIS_TIMEOUT_MS: requests already in
#     flight) to RECOVERY_LIMIT_S after its end; I/O errors only for edge-kill, at the
#     kill (the killed edge's connections: what an ALB would answer 502 for);
#   - service back within RECOVERY_LIMIT_S of the fault's end (the last failed request
#     was sent by then), with at least a second of clean load seen after it;
#   - the fault bit: errors during it, or commits held back (commit-to-final), or
#     connections re-opened, or answers slowed, depending on the fault.
#
# Faults (FAULTS, in this order by default):
#   worker-kill      kill -9 `worker run`; a new one after FAULT_S
#   edge-kill        kill -9 one of the two edges; a new one on the port after FAULT_S
#   redis-kill       kill -9 Redis; restarted on its AOF after FAULT_S; `worker rebuild-redis`
#   pg-restart       PostgreSQL stopped with `pg_ctl -m immediate` (a crash: recovery on
#                    start); started again (infra/local/stack.sh up) after FAULT_S
#   redis-stop       SIGSTOP Redis for STOP_S (> REDIS_TIMEOUT_MS), then SIGCONT
#   proxy-latency    faultproxy.py between the edges and Redis adds LATENCY_MS each way
#                    (below REDIS_TIMEOUT_MS: slower, no errors expected)
#   proxy-slow       ... adds SLOW_MS each way (above REDIS_TIMEOUT_MS: every call times out)
#   proxy-reset      ... resets every edge-Redis connection, and every new one, for FAULT_S
#   proxy-blackhole  ... forwards nothing either way for FAULT_S (a partition), then heals
#
#   MODE=long  perf/faults.sh      (make fault: writes perf/results/faults.md and
#                                   perf/results/faults/FAULT.{md,svg,trace.csv})
#   MODE=short perf/faults.sh      (make fault-short: seconds per fault; the same files in
#                                   OUT_DIR, a temporary folder by default; table on stdout)
#   FAULTS="redis-kill redis-stop" MODE=short perf/faults.sh
#
# Environment (long / short defaults): RATE (1000 / 300) requests/s, CONNECTIONS (256 /
# 128), PRE_S (10 / 2) s of load before the fault (buyers need a few slots each to reach
# their commit: commits flow from about 3 s on), FAULT_S (5 / 2), STOP_S (5 / 2), POST_S
# (15 / 6) s after it (more than RECOVERY_LIMIT_S: a recovery that takes as long as
# allowed must still be followed by the clean second that shows it), WORKER_VISIBILITY_MS (30000, the worker's default / 2000),
# AUDIT_WAIT_S (120 / 30), REDIS_TIMEOUT_MS (1000, the edge's default), DEADLINE_MS
# (REDIS_TIMEOUT_MS + 1000), RECOVERY_LIMIT_S (5), LATENCY_MS (50), SLOW_MS
# (REDIS_TIMEOUT_MS + 500), BUILD (1), OUT_DIR, and ports FAULT_REDIS_PORT (61410),
# FAULT_PROXY_PORT (61411), FAULT_PROXY_CTL (61412): above the kernel's ephemeral range
# (32768-60999), so no outgoing connection holds them when a process restarts on them.
# The first edge binds port 0 (FAULT_EDGE_PORT) and the others the port it got. PostgreSQL
# is the local stack's (REDIS_PORT/PG_PORT choose it, as for infra/local/stack.sh).
set -euo pipefail
NAME=faults
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
set -E
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR
# On failure, the services' logs (edges, worker, Redis, proxy, loadgen) are kept in
# OUT_DIR/faults/logs before SCRATCH goes.
save_logs() {
    [[ -n ${OUT_DIR:-} ]] || return 0
    mkdir -p "$OUT_DIR/faults/logs"
    find "$SCRATCH" -maxdepth 2 \( -name '*.log' -o -name '*.err' \) -exec cp --backup=numbered {} "$OUT_DIR/faults/logs/" \; 2>/dev/null || true
    log "logs kept in $OUT_DIR/faults/logs"
}
trap 'rc=$?; if ((rc != 0)); then save_logs; fi; cleanup' EXIT

MODE=${MODE:-long}
case $MODE in
long) d_rate=1000 d_conns=256 d_pre=10 d_fault=5 d_post=15 d_vis=30000 d_audit=120 ;;
short) d_rate=300 d_conns=128 d_pre=2 d_fault=2 d_post=6 d_vis=2000 d_audit=30 ;;
*) die "MODE=$MODE: long or short" ;;
esac
ALL_FAULTS="worker-kill edge-kill redis-kill pg-restart redis-stop proxy-latency proxy-slow proxy-reset proxy-blackhole"
FAULTS=${FAULTS:-$ALL_FAULTS}
RATE=${RATE:-$d_rate}
CONNECTIONS=${CONNECTIONS:-$d_conns}
PRE_S=${PRE_S:-$d_pre}
FAULT_S=${FAULT_S:-$d_fault}
STOP_S=${STOP_S:-$d_fault}
POST_S=${POST_S:-$d_post}
WARMUP_S=1
WORKER_VISIBILITY_MS=${WORKER_VISIBILITY_MS:-$d_vis}
AUDIT_WAIT_S=${AUDIT_WAIT_S:-$d_audit}
REDIS_TIMEOUT_MS=${REDIS_TIMEOUT_MS:-1000}
DEADLINE_MS=${DEADLINE_MS:-$((REDIS_TIMEOUT_MS + 1000))}
RECOVERY_LIMIT_S=${RECOVERY_LIMIT_S:-5}
LATENCY_MS=${LATENCY_MS:-50}
SLOW_MS=${SLOW_MS:-$((REDIS_TIMEOUT_MS + 500))}
FAULT_REDIS_PORT=${FAULT_REDIS_PORT:-61410}
FAULT_PROXY_PORT=${FAULT_PROXY_PORT:-61411}
FAULT_PROXY_CTL=${FAULT_PROXY_CTL:-61412}
FAULT_EDGE_PORT=${FAULT_EDGE_PORT:-0}
SEATS=50000 # a section; five sections
COMMIT_SHARDS=4
if [[ $MODE == long ]]; then
    OUT_DIR=${OUT_DIR:-perf/results}
else
    OUT_DIR=${OUT_DIR:-$SCRATCH/out}
fi
for f in $FAULTS; do
    [[ " $ALL_FAULTS " == *" $f "* ]] || die "unknown fault $f (known: $ALL_FAULTS)"
done
((STOP_S * 1000 > REDIS_TIMEOUT_MS)) || die "STOP_S=$STOP_S must exceed REDIS_TIMEOUT_MS=$REDIS_TIMEOUT_MS"
BEGAN=$SECONDS

release_binaries
local_stack_env
"$SCRATCH/worker" migrate >/dev/null
mkdir -p "$OUT_DIR"
mkdir -p "$OUT_DIR/faults"
ROWS=$SCRATCH/rows.jsonl
# What loadgen --trace writes first: an empty trace when loadgen wrote none.
TRACE_HEADER=ms,sent,ok,client_4xx,unavailable_503,no_retry_after_503,other_5xx,connect,io,timeout,other,max_service_us
: >"$ROWS"

now_ms() { date +%s%3N; }

# wait_log FILE TEXT PID NAME [SECONDS]: until FILE has a line with TEXT; fails when PID
# exits first or after SECONDS (30).
wait_log() {
    local file=$1 text=$2 pid=$3 what=$4 limit=${5:-30} deadline
    deadline=$((SECONDS + limit))
    until grep -qF -- "$text" "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "$what exited (see $file): $(tail -n 5 "$file")"
        ((SECONDS < deadline)) || die "$what: no \"$text\" in $file within $limit s: $(tail -n 5 "$file")"
        sleep 0.02
    done
}

# hold_until MS: the fault lasts until this wall-clock time (its duration is the
# experiment's, not a guess at when something is ready).
hold_until() {
    local left
    left=$(($1 - $(now_ms)))
    if ((left > 0)); then sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"; fi
}

redis_ping() { [[ $(timeout 1 redis-cli -p "$FAULT_REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

# start_redis DIR: a Redis on FAULT_REDIS_PORT with the local stack's persistence
# (AOF, fsync always) and its data in DIR; returns once it answers PONG (its AOF loaded).
start_redis() {
    redis-server --port "$FAULT_REDIS_PORT" --bind 127.0.0.1 --include "$ROOT/infra/local/redis.conf" \
        --dir "$1" >>"$1/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    local deadline=$((SECONDS + 60))
    until redis_ping; do
        kill -0 "$REDIS_PID" 2>/dev/null || die "redis-server exited: $(tail -n 5 "$1/redis.log")"
        ((SECONDS < deadline)) || die "Redis did not answer within 60 s"
        sleep 0.02
    done
}

# start_edge NAME: an edge (one core) on EDGE_PORT beside any other; EDGE_PIDS[NAME].
# With EDGE_PORT 0 it binds a free port and sets EDGE_PORT to it.
declare -A EDGE_PIDS
start_edge() {
    local log
    log=$SCRATCH/$FAULT-edge-$1-$(now_ms).log
    EDGE_ADDR=127.0.0.1:$EDGE_PORT EDGE_THREADS=1 EDGE_LOG=info REDIS_URL=$EDGE_REDIS_URL \
        REDIS_TIMEOUT_MS=$REDIS_TIMEOUT_MS "$SCRATCH/edge" >"$log" 2>&1 &
    EDGE_PIDS[$1]=$!
    PIDS+=("$!")
    wait_log "$log" " listening " "$!" "edge $1"
    if [[ $EDGE_PORT == 0 ]]; then
        EDGE_PORT=$(grep -m 1 -oE ' listening addr=127\.0\.0\.1:[0-9]+' "$log" | grep -oE '[0-9]+$')
        [[ $EDGE_PORT =~ ^[0-9]+$ && $EDGE_PORT != 0 ]] || die "edge $1: no port in $log"
    fi
}

start_worker() {
    local log=$SCRATCH/$FAULT-worker.log
    WORKER_EVENTS=$EVENT WORKER_LOG=info WORKER_VISIBILITY_MS=$WORKER_VISIBILITY_MS \
        COMMIT_SHARDS=$COMMIT_SHARDS "$SCRATCH/worker" run >>"$log" 2>&1 &
    WORKER_PID=$!
    PIDS+=("$WORKER_PID")
    # Each start logs this line once: count them.
    local want=$(($(grep -cF "consuming Redis Streams" "$log" || true) + 1)) deadline=$((SECONDS + 30))
    until (($(grep -cF "consuming Redis Streams" "$log" || true) >= want)); do
        kill -0 "$WORKER_PID" 2>/dev/null || die "worker exited: $(tail -n 5 "$log")"
        ((SECONDS < deadline)) || die "worker: not consuming within 30 s: $(tail -n 5 "$log")"
        sleep 0.02
    done
}

# stop_timed NAME PID: stop_pid (SIGTERM, SIGKILL after 10 s), saying so when it took
# more than 2 s (a graceful stop that hangs is worth knowing about).
stop_timed() {
    local t
    t=$(now_ms)
    stop_pid "$2"
    t=$(($(now_ms) - t))
    if ((t > 2000)); then log "$FAULT: $1 (pid $2) took $((t / 1000)) s to stop after SIGTERM"; fi
}

kill9() { # kill9 PID: SIGKILL, reaped, out of PIDS
    kill -KILL "$1" 2>/dev/null || true
    stop_pid "$1"
}

proxy_ctl() { # proxy_ctl COMMAND...: its one-line answer
    local reply
    exec 3<>"/dev/tcp/127.0.0.1/$FAULT_PROXY_CTL"
    echo "$*" >&3
    read -r -t 5 reply <&3 || die "fault proxy: no answer to $*"
    exec 3<&-
    [[ $reply != error* ]] || die "fault proxy: $* -> $reply"
    echo "$reply"
}

# pg_owner_ctl ARGS...: pg_ctl of the stack's cluster, as the user owning its data.
pg_owner_ctl() {
    local data owner bin
    data=$(infra/local/stack.sh status 2>/dev/null | awk '/^postgres/ {print $NF}')
    [[ -d $data ]] || die "cannot find the local stack's PostgreSQL data directory"
    owner=$(stat -c %U "$data")
    bin=/usr/lib/postgresql/$(cat "$data/PG_VERSION")/bin
    if [[ $(id -un) == "$owner" ]]; then
        "$bin/pg_ctl" -D "$data" "$@"
    else
        (cd / && runuser -u "$owner" -- "$bin/pg_ctl" -D "$data" "$@")
    fi
}

# backlog: entries in the event's commit streams (their length is the backlog: the
# worker deletes what it acknowledges); empty if Redis does not answer.
backlog() {
    local n total=0 shard
    for ((shard = 0; shard < COMMIT_SHARDS; shard++)); do
        n=$(timeout 1 redis-cli -p "$FAULT_REDIS_PORT" xlen "ev:{$EVENT}:commits:$shard" 2>/dev/null) || return 0
        [[ $n =~ ^[0-9]+$ ]] || return 0
        total=$((total + n))
    done
    echo "$total"
}

# drain_time: seconds from the fault's end until the commit backlog is down to what it
# was before the fault (the streams hold what is not acknowledged yet, pending entries of a
# dead consumer included), polled every 50 ms, at most twice the
# visibility timeout + 30 s; "never" if it was not.
drain_time() {
    local limit=$((2 * WORKER_VISIBILITY_MS + 30000)) n
    local floor=${BACKLOG_BEFORE:-0}
    while (($(now_ms) - T1 < limit)); do
        n=$(backlog)
        if [[ -n $n ]] && ((n <= floor)); then
            echo "$((($(now_ms) - T1) / 100))" | awk '{printf "%.1f", $1 / 10}'
            return
        fi
        sleep 0.05
    done
    echo never
}

# inject: the fault, held FAULT_S; sets T0/T1 (its start and end, epoch ms) and NOTE.
inject() {
    local stats
    case $FAULT in
    worker-kill)
        kill9 "$WORKER_PID"
        T0=$(now_ms)
        hold_until $((T0 + FAULT_S * 1000))
        BACKLOG_AT_END=$(backlog)
        start_worker
        T1=$(now_ms)
        NOTE="kill -9 of \`worker run\`; a new one after ${FAULT_S} s (visibility timeout ${WORKER_VISIBILITY_MS} ms)"
        ;;
    edge-kill)
        kill9 "${EDGE_PIDS[a]}"
        T0=$(now_ms)
        hold_until $((T0 + FAULT_S * 1000))
        start_edge a
        T1=$(now_ms)
        NOTE="kill -9 of edge a (edge b shares the port); a new edge a after ${FAULT_S} s"
        ;;
    redis-kill)
        kill9 "$REDIS_PID"
        T0=$(now_ms)
        hold_until $((T0 + FAULT_S * 1000))
        start_redis "$REDIS_DIR"
        T1=$(now_ms)
        local t=$SECONDS
        REDIS_URL=redis://127.0.0.1:$FAULT_REDIS_PORT "$SCRATCH/worker" rebuild-redis "$EVENT" \
            >>"$SCRATCH/$FAULT-rebuild.log" 2>&1 || die "rebuild-redis failed: $(tail -n 5 "$SCRATCH/$FAULT-rebuild.log")"
        NOTE="kill -9 of Redis; restarted on its AOF after ${FAULT_S} s, then \`worker rebuild-redis\` ($((SECONDS - t)) s)"
        ;;
    pg-restart)
        pg_owner_ctl -m immediate -w -t 30 -s stop
        T0=$(now_ms)
        hold_until $((T0 + FAULT_S * 1000))
        BACKLOG_AT_END=$(backlog)
        infra/local/stack.sh up >>"$SCRATCH/$FAULT-stack.log" 2>&1 || die "stack.sh up failed"
        T1=$(now_ms)
        NOTE="PostgreSQL stopped with \`pg_ctl -m immediate\`; started again (crash recovery) after ${FAULT_S} s"
        ;;
    redis-stop)
        kill -STOP "$REDIS_PID"
        T0=$(now_ms)
        hold_until $((T0 + STOP_S * 1000))
        kill -CONT "$REDIS_PID"
        T1=$(now_ms)
        NOTE="SIGSTOP of Redis for ${STOP_S} s (REDIS_TIMEOUT_MS=${REDIS_TIMEOUT_MS}), then SIGCONT"
        ;;
    proxy-latency | proxy-slow)
        local ms=$LATENCY_MS
        [[ $FAULT == proxy-slow ]] && ms=$SLOW_MS
        proxy_ctl latency "$ms" >/dev/null
        T0=$(now_ms)
        hold_until $((T0 + FAULT_S * 1000))
        proxy_ctl pass >/dev/null
        T1=$(now_ms)
        NOTE="fault proxy adds ${ms} ms each way between the edges and Redis for ${FAULT_S} s"
        ;;
    proxy-reset)
        proxy_ctl reset >/dev/null
        T0=$(now_ms)
        hold_until $((T0 + FAULT_S * 1000))
        stats=$(proxy_ctl stats)
        proxy_ctl pass >/dev/null
        T1=$(now_ms)
        PROXY_RESETS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["resets"])' "$stats")
        NOTE="fault proxy resets (RST) every edge-Redis connection, and each new one, for ${FAULT_S} s ($PROXY_RESETS resets)"
        ;;
    proxy-blackhole)
        proxy_ctl blackhole >/dev/null
        T0=$(now_ms)
        hold_until $((T0 + FAULT_S * 1000))
        proxy_ctl pass >/dev/null
        T1=$(now_ms)
        NOTE="fault proxy forwards nothing between the edges and Redis for ${FAULT_S} s, then delivers what waited"
        ;;
    esac
}

# wait_progress SECONDS: until loadgen's progress shows that many seconds of its run.
wait_progress() {
    local deadline=$((SECONDS + 120)) t
    while :; do
        t=$(grep -oE '^loadgen \[[^]]*\] +[0-9]+s' "$LG_ERR" 2>/dev/null | tail -n 1 | grep -oE '[0-9]+s$' | tr -d s) || true
        [[ -n $t ]] && ((t >= $1)) && return
        kill -0 "$LG_PID" 2>/dev/null || die "loadgen exited early: $(tail -n 5 "$LG_ERR")"
        ((SECONDS < deadline)) || die "loadgen: no progress past $1 s within 120 s"
        sleep 0.05
    done
}

run_fault() {
    FAULT=$1
    EVENT=f$(date +%s)-$FAULT
    REDIS_DIR=$SCRATCH/redis-$FAULT
    mkdir -p "$REDIS_DIR"
    PROXY_RESETS=""
    BACKLOG_AT_END=""
    log "$FAULT: services up (event $EVENT)"
    start_redis "$REDIS_DIR"
    export REDIS_URL=redis://127.0.0.1:$FAULT_REDIS_PORT
    "$SCRATCH/worker" seed "$EVENT" --seats-per-section "$SEATS" --open-in-secs -3600 --rate 1000000 >/dev/null
    EDGE_REDIS_URL=$REDIS_URL
    local proxy_pid=""
    if [[ $FAULT == proxy-* ]]; then
        python3 perf/faultproxy.py "$FAULT_PROXY_PORT" "$FAULT_REDIS_PORT" "$FAULT_PROXY_CTL" \
            2>"$SCRATCH/$FAULT-proxy.log" &
        proxy_pid=$!
        PIDS+=("$proxy_pid")
        wait_port "$FAULT_PROXY_CTL" "$proxy_pid" faultproxy
        EDGE_REDIS_URL=redis://127.0.0.1:$FAULT_PROXY_PORT
    fi
    EDGE_PORT=$FAULT_EDGE_PORT
    start_edge a
    start_edge b
    start_worker
    BACKLOG_BEFORE=0

    local duration=$((PRE_S + FAULT_S + POST_S + 2))
    [[ $FAULT == redis-stop ]] && duration=$((PRE_S + STOP_S + POST_S + 2))
    LG_ERR=$SCRATCH/$FAULT-loadgen.err
    local out=$SCRATCH/$FAULT
    "$SCRATCH/loadgen" mixed --target "127.0.0.1:$EDGE_PORT" --name "edges" --event "$EVENT" \
        --seats-per-section "$SEATS" --rate "$RATE" --duration "$duration" --warmup "$WARMUP_S" \
        --connections "$CONNECTIONS" --timeout-ms 10000 --audit-wait-s "$AUDIT_WAIT_S" \
        --trace "$out.trace.csv" --out "$out" >"$SCRATCH/$FAULT-loadgen.out" 2>"$LG_ERR" &
    LG_PID=$!
    PIDS+=("$LG_PID")
    wait_progress $((WARMUP_S + PRE_S))
    BACKLOG_BEFORE=$(backlog)
    log "$FAULT: injecting (backlog before: ${BACKLOG_BEFORE:-?})"
    inject
    log "$FAULT: ended after $(((T1 - T0) / 1000)).$(printf '%03d' $(((T1 - T0) % 1000))) s; $NOTE"
    local drained=""
    case $FAULT in worker-kill | redis-kill | pg-restart | redis-stop) drained=$(drain_time) ;; esac
    local rc=0
    wait "$LG_PID" || rc=$?
    stop_pid "$LG_PID"
    if ((rc != 0)); then
        log "$FAULT: loadgen exited with $rc:"
        grep -v '^loadgen \[' "$LG_ERR" | tail -n 5 >&2 || true
        cp "$LG_ERR" "$OUT_DIR/faults/$FAULT.loadgen.err" 2>/dev/null || true
    fi
    [[ -f $out.trace.csv ]] || echo "$TRACE_HEADER" >"$out.trace.csv"
    stop_timed worker "$WORKER_PID"
    stop_timed "edge a" "${EDGE_PIDS[a]}"
    stop_timed "edge b" "${EDGE_PIDS[b]}"
    if [[ -n $proxy_pid ]]; then stop_timed faultproxy "$proxy_pid"; fi
    stop_timed redis "$REDIS_PID"
    python3 perf/faults.py row --fault "$FAULT" --note "$NOTE" --t0 "$T0" --t1 "$T1" \
        --trace "$out.trace.csv" --report "$out.json" --loadgen-rc "$rc" --drained "$drained" \
        --redis-timeout-ms "$REDIS_TIMEOUT_MS" --deadline-ms "$DEADLINE_MS" \
        --recovery-limit-s "$RECOVERY_LIMIT_S" --fault-s "$FAULT_S" --latency-ms "$LATENCY_MS" \
        --connections "$CONNECTIONS" --proxy-resets "$PROXY_RESETS" \
        --backlog-before "$BACKLOG_BEFORE" --backlog-at-end "$BACKLOG_AT_END" >>"$ROWS"
    tail -n 1 "$ROWS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("faults: %s: %s%s" % (r["fault"], "PASS" if r["passed"] else "FAIL", "" if r["passed"] else ": " + "; ".join(r["problems"])))' >&2
    cp "$out.md" "$OUT_DIR/faults/$FAULT.md" 2>/dev/null || true
    cp "$out.svg" "$OUT_DIR/faults/$FAULT.svg" 2>/dev/null || true
    cp "$out.trace.csv" "$OUT_DIR/faults/$FAULT.trace.csv"
}

for f in $FAULTS; do
    run_fault "$f"
done

TABLE=$OUT_DIR/faults.md
python3 perf/faults.py table --rows "$ROWS" --mode "$MODE" --elapsed-s "$((SECONDS - BEGAN))" \
    --settings "RATE=$RATE CONNECTIONS=$CONNECTIONS PRE_S=$PRE_S FAULT_S=$FAULT_S STOP_S=$STOP_S POST_S=$POST_S WORKER_VISIBILITY_MS=$WORKER_VISIBILITY_MS REDIS_TIMEOUT_MS=$REDIS_TIMEOUT_MS DEADLINE_MS=$DEADLINE_MS RECOVERY_LIMIT_S=$RECOVERY_LIMIT_S LATENCY_MS=$LATENCY_MS SLOW_MS=$SLOW_MS" \
    --links faults/ >"$TABLE"
cat "$TABLE"
log "table written to $TABLE ($((SECONDS - BEGAN)) s)"
if ! python3 perf/faults.py verdict --rows "$ROWS"; then exit 1; fi
