# shellcheck shell=bash
# perf/lib.sh: what the perf scripts share. Set NAME, then source it:
#
#   NAME=profile
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It moves to the repository root and gives: log and die (prefixed with NAME); SCRATCH,
# a folder removed on exit, and PIDS, processes stopped (stop_pid) on exit; wait_port; the
# usual set-up steps release_binaries, local_stack_env and private_redis.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
# Load from one machine is not abuse: the edges these scripts start have no rate limits
# unless the environment asks (README "Abuse limits").
export RATE_LIMITS="${RATE_LIMITS:-off}"

log() { echo "$NAME: $*" >&2; }
die() {
    log "$*"
    exit 1
}

PIDS=()
# The edges and workers these scripts start serve their metrics on ports of their own
# (a `make start` edge and worker may hold the defaults 127.0.0.1:9100 and :9101).
export METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:0} WORKER_METRICS_ADDR=${WORKER_METRICS_ADDR:-127.0.0.1:0}
REDIS_WRAPPER=()
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXX")
stop_pid() { # stop_pid PID: SIGTERM, SIGKILL after 10 s, reaped and out of PIDS
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
            sleep 0.05
        done
        # It may exit, and bash reap it, between these checks: a KILL that finds no
        # process then is no failure, and must not end a `set -e` caller silently.
        kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] &&
            { kill -KILL "$pid" 2>/dev/null || true; }
    fi
    wait "$pid" 2>/dev/null || true
    local kept=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_port PORT [PID NAME]: until something listens on 127.0.0.1:PORT (30 s at most);
# fails at once when PID exits first.
wait_port() {
    local i
    for ((i = 0; i < 600; i++)); do
        [[ -n ${2:-} ]] && ! kill -0 "$2" 2>/dev/null && die "${3:-$2} exited during start-up"
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.05
    done
    die "nothing listens on $1"
}

# release_binaries: builds edge, worker and loadgen in release mode (unless BUILD=0) and
# copies them into SCRATCH, so a rebuild of target/ meanwhile changes nothing measured.
release_binaries() {
    [[ ${BUILD:-1} == 1 ]] &&
        nice -n 10 cargo build --release -j2 -p edge --bin edge -p worker --bin worker -p perf --bin loadgen
    cp "${CARGO_TARGET_DIR:-target}"/release/{edge,worker,loadgen} "$SCRATCH/"
}

# local_stack_env: the local PostgreSQL (and Redis) up; exports DATABASE_URL. Before
# private_redis, whose REDIS_URL it would overwrite. The stack's Redis port is
# STACK_REDIS_PORT (default 16379), never this script's REDIS_PORT (its private Redis).
local_stack_env() {
    REDIS_PORT=${STACK_REDIS_PORT:-16379} infra/local/stack.sh up >/dev/null
    eval "$(REDIS_PORT=${STACK_REDIS_PORT:-16379} infra/local/stack.sh env)"
    export DATABASE_URL
}

# private_redis PORT [CPU [ARG...]]: a redis-server of this run only (no persistence
# unless ARGs, which come last and so win, turn it on), pinned to CPU when given (may be
# ""), run under the command in the array REDIS_WRAPPER when set (valgrind); sets
# REDIS_PID and exports REDIS_URL.
private_redis() {
    local port=$1 pin=()
    [[ -n ${2:-} ]] && pin=(taskset -c "$2")
    shift $(($# < 2 ? $# : 2))
    "${pin[@]}" "${REDIS_WRAPPER[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$SCRATCH" "$@" >"$SCRATCH/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_port "$port" "$REDIS_PID" redis-server
    export REDIS_URL=redis://127.0.0.1:$port
}

# wait_quiet: until the other processes use less than QUIET_PCT% (30) of the CPUs, at most
# QUIET_MAX_WAIT_S (300) s; each report shows what others used during a run either way.
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
wait_quiet() {
    local waited=0 b0 b1 pct
    while :; do
        b0=$(busy_ticks)
        sleep 1
        b1=$(busy_ticks)
        pct=$(((b1 - b0) * 100 / $(getconf CLK_TCK)))
        ((pct < ${QUIET_PCT:-30})) && return
        waited=$((waited + 1))
        ((waited >= ${QUIET_MAX_WAIT_S:-300})) && {
            log "others still use ${pct}% of the CPUs after ${waited}s: measuring anyway"
            return
        }
        ((waited % 30 == 1)) && log "others use ${pct}% of the CPUs: waiting (up to ${QUIET_MAX_WAIT_S:-300}s)"
    done
}
