#!/usr/bin/env bash
# perf/bench-ping.sh: `GET /public/ping` requests/s and server CPU-µs per request of
#   nginx (static 200, perf/nginx/static200.conf), the edge on io_uring, the edge on
#   epoll, and the monoio-http yardstick (src/bin/monoio_http_ping.rs),
# in ONE run, each server alone on one core (taskset -c SERVER_CPU, one thread or
# worker) and wrk on the other (taskset -c LOAD_CPU). The set is repeated ROUNDS times,
# interleaved (and rotated each round) so machine noise hits every server alike.
# Writes a markdown report to OUT and prints it.
#
# Usage: perf/bench-ping.sh
# Environment (defaults):
#   ROUNDS=3 DURATION=10s WARMUP=2s CONNS=64 WRK_THREADS=1 SERVER_CPU=0 LOAD_CPU=1
#   PORT_BASE=18180 (one port per server: PORT_BASE, +1, ...)
#   SERVERS="nginx edge-uring edge-epoll monoio-http"  (also: edge-auto, edge-uring-nocoop, monoio-http-epoll,
#     monoio-http-coop / monoio-http-defer: io_uring with COOP_TASKRUN / DEFER_TASKRUN)
#   OUT=perf/results/ping.md  BUILD=1 (0: use the binaries already in target/release)
#   CARGO_JOBS=2
#   QUIET_PCT=25 QUIET_MAX_WAIT_S=300: before each run, wait (up to the limit) until other
#   processes use less than QUIET_PCT% of the two CPUs over a 1 s sample (the machine
#   is shared); the report shows what they used during each run either way.
# wrk is closed-loop: these are throughput ceilings, not latency figures.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${PORT_BASE:-18180}
SERVERS=${SERVERS:-nginx edge-uring edge-epoll monoio-http}
OUT=${OUT:-perf/results/ping.md}
BUILD=${BUILD:-1}
CARGO_JOBS=${CARGO_JOBS:-2}
QUIET_PCT=${QUIET_PCT:-25}
QUIET_MAX_WAIT_S=${QUIET_MAX_WAIT_S:-300}
# Polls of the port before a server counts as failed to start (0.05 s apart).
READY_POLLS=200
# Seconds a server gets to exit after SIGTERM before SIGKILL.
STOP_GRACE_S=10
PING_PATH=/public/ping

COMMAND="ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS WRK_THREADS=$WRK_THREADS SERVER_CPU=$SERVER_CPU LOAD_CPU=$LOAD_CPU SERVERS=\"$SERVERS\" perf/bench-ping.sh"

die() {
    echo "bench-ping: $*" >&2
    exit 1
}
log() { echo "bench-ping: $*" >&2; }

# ---- processes we started: stopped by PID on every exit path ----------------------
PIDS=()
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/bench-ping.XXXXXX")

stop_pid() {
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_GRACE_S * 20; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            # A zombie child passes kill -0 until reaped: reap it as soon as it exits.
            [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
            log "pid $pid ignored SIGTERM for ${STOP_GRACE_S}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    local kept=() p
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools ---------------------------------------------------------------------------
need() { # need COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 && return
    log "$1 missing: apt-get install $2"
    local sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}
need nginx nginx
need wrk wrk
need curl curl
need taskset util-linux

CPUS=$(nproc)
((SERVER_CPU < CPUS && LOAD_CPU < CPUS)) || die "SERVER_CPU=$SERVER_CPU / LOAD_CPU=$LOAD_CPU: only $CPUS CPUs"
[[ $SERVER_CPU != "$LOAD_CPU" ]] || log "warning: server and wrk share CPU $SERVER_CPU"
CLK_TCK=$(getconf CLK_TCK)

# ---- build ---------------------------------------------------------------------------
EDGE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/edge
MONOIO_HTTP_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/monoio_http_ping
if [[ $BUILD == 1 ]]; then
    log "building the release edge and monoio_http_ping"
    nice -n 10 cargo build --release -j"$CARGO_JOBS" -p edge --bin edge -p perf --bin monoio_http_ping
fi
[[ -x $EDGE_BIN ]] || die "$EDGE_BIN missing (BUILD=1 builds it)"
[[ -x $MONOIO_HTTP_BIN ]] || die "$MONOIO_HTTP_BIN missing (BUILD=1 builds it)"
# Others rebuild target/release while this runs: every round must run the same binaries.
mkdir -p "$SCRATCH/bin"
cp "$EDGE_BIN" "$MONOIO_HTTP_BIN" "$SCRATCH/bin/"
EDGE_BIN=$SCRATCH/bin/edge
MONOIO_HTTP_BIN=$SCRATCH/bin/monoio_http_ping
EDGE_SHA=$(sha256sum "$EDGE_BIN" | cut -c1-12)
MONOIO_HTTP_SHA=$(sha256sum "$MONOIO_HTTP_BIN" | cut -c1-12)

# ---- servers -------------------------------------------------------------------------
SERVER_PID=
port_of() { # port_of SERVER_NAME
    local i=0 s
    for s in $SERVERS; do
        [[ $s == "$1" ]] && {
            echo $((PORT_BASE + i))
            return
        }
        i=$((i + 1))
    done
    die "unknown server $1"
}

start_server() { # start_server NAME PORT LOGFILE; sets SERVER_PID
    local name=$1 port=$2 logfile=$3
    local url=http://127.0.0.1:$port$PING_PATH
    if curl -s -o /dev/null --max-time 1 "$url"; then
        die "something already answers on port $port; set PORT_BASE"
    fi
    case $name in
    nginx)
        local prefix=$SCRATCH/nginx-$port
        mkdir -p "$prefix"
        sed -e "s#__PORT__#$port#g" -e "s#__PREFIX__#$prefix#g" \
            perf/nginx/static200.conf >"$prefix/nginx.conf"
        taskset -c "$SERVER_CPU" nginx -p "$prefix" -c "$prefix/nginx.conf" -e stderr \
            >"$logfile" 2>&1 &
        ;;
    edge-uring-nocoop)
        EDGE_ADDR=127.0.0.1:$port EDGE_THREADS=1 EDGE_DRIVER=uring EDGE_URING_COOP_TASKRUN=false \
            EDGE_LOG=${EDGE_LOG:-info} EDGE_SHUTDOWN_GRACE_MS=2000 \
            taskset -c "$SERVER_CPU" "$EDGE_BIN" >"$logfile" 2>&1 &
        ;;
    edge-uring | edge-epoll | edge-auto)
        EDGE_ADDR=127.0.0.1:$port EDGE_THREADS=1 EDGE_DRIVER=${name#edge-} \
            EDGE_LOG=${EDGE_LOG:-info} EDGE_SHUTDOWN_GRACE_MS=2000 \
            taskset -c "$SERVER_CPU" "$EDGE_BIN" >"$logfile" 2>&1 &
        ;;
    monoio-http | monoio-http-epoll | monoio-http-coop | monoio-http-defer)
        local driver=uring setup=none
        case $name in
        monoio-http-epoll) driver=epoll ;;
        monoio-http-coop) setup=coop ;;
        monoio-http-defer) setup=defer ;;
        esac
        MONOIO_HTTP_ADDR=127.0.0.1:$port MONOIO_HTTP_DRIVER=$driver MONOIO_HTTP_URING_SETUP=$setup \
            taskset -c "$SERVER_CPU" "$MONOIO_HTTP_BIN" >"$logfile" 2>&1 &
        ;;
    *) die "unknown server $name (nginx, edge-uring, edge-uring-nocoop, edge-epoll, edge-auto, monoio-http, monoio-http-epoll, monoio-http-coop, monoio-http-defer)" ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for ((i = 0; i < READY_POLLS; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || {
            cat "$logfile" >&2
            die "$name exited during start-up"
        }
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true) == 200 ]]; then
            return
        fi
        sleep 0.05
    done
    cat "$logfile" >&2
    die "$name: no 200 on $url after $READY_POLLS polls"
}

# utime+stime clock ticks of PID and its direct children (nginx's worker).
cpu_ticks() {
    local total=0 pid stat fields
    for pid in "$1" $(pgrep -P "$1" || true); do
        stat=$(<"/proc/$pid/stat") || continue
        # Fields after "(comm) " start at field 3; utime is field 14, stime 15.
        read -ra fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# cutime+cstime ticks of this shell: grows by a child's CPU (wrk's) when it is reaped.
children_ticks() {
    local stat fields
    stat=$(<"/proc/$$/stat")
    read -ra fields <<<"${stat##*) }"
    echo $((fields[13] + fields[14]))
}

now_ns() { date +%s%N; }

# wrk on the load CPU, in the background and waited for, so a signal to this script is
# handled at once (bash runs traps only between foreground commands) and the trap can
# stop wrk too.
run_wrk() { # run_wrk DURATION URL OUTFILE
    taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$CONNS" -d"$1" --timeout 5s "$2" >"$3" &
    local pid=$!
    PIDS+=("$pid")
    local rc=0
    wait "$pid" || rc=$?
    local kept=() p
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
    ((rc == 0)) || die "wrk exited with status $rc"
}

# Busy ticks (user nice system irq softirq steal) of the server and load CPUs together.
busy_ticks() {
    awk -v a="cpu$SERVER_CPU" -v b="cpu$LOAD_CPU" \
        '$1 == a || $1 == b {t += $2 + $3 + $4 + $7 + $8 + $9} END{print t + 0}' /proc/stat
}

# Waits until other processes leave the two CPUs mostly idle (nothing of ours runs now).
wait_quiet() {
    local waited=0 b0 b1 pct
    while :; do
        b0=$(busy_ticks)
        sleep 1
        b1=$(busy_ticks)
        pct=$(((b1 - b0) * 100 / CLK_TCK))
        ((pct < QUIET_PCT)) && return
        waited=$((waited + 1))
        if ((waited >= QUIET_MAX_WAIT_S)); then
            log "others still use ${pct}% of CPUs $SERVER_CPU,$LOAD_CPU after ${waited}s: measuring anyway"
            return
        fi
        ((waited % 30 == 1)) && log "others use ${pct}% of CPUs $SERVER_CPU,$LOAD_CPU: waiting (up to ${QUIET_MAX_WAIT_S}s)"
    done
}

# Steal ticks of one CPU (/proc/stat: cpuN user nice system idle iowait irq softirq steal):
# time the hypervisor gave that virtual CPU to someone else.
steal_ticks() { awk -v cpu="cpu$1" '$1 == cpu {print $9}' /proc/stat; }

# ---- run -----------------------------------------------------------------------------
declare -A RPS CPU_US SERVER_BUSY WRK_BUSY STEAL OTHERS ERRORS RESPONSE_BYTES DRIVER_LINE
read -ra SERVER_LIST <<<"$SERVERS"
N=${#SERVER_LIST[@]}
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

for ((round = 1; round <= ROUNDS; round++)); do
    for ((k = 0; k < N; k++)); do
        name=${SERVER_LIST[$(((k + round - 1) % N))]}
        port=$(port_of "$name")
        url=http://127.0.0.1:$port$PING_PATH
        logfile=$SCRATCH/$name-$round.log
        start_server "$name" "$port" "$logfile"
        if [[ -z ${RESPONSE_BYTES[$name]:-} ]]; then
            RESPONSE_BYTES[$name]=$(curl -s -o /dev/null -w '%{size_header}+%{size_download}' "$url")
        fi
        if [[ $name == edge-* ]]; then
            DRIVER_LINE[$name]=$(grep -o 'drivers=.*' "$logfile" | head -n1 || true)
        elif [[ $name == monoio-http* ]]; then
            DRIVER_LINE[$name]=$(sed -n 's/.*(\(driver [^)]*\)).*/\1/p' "$logfile" | head -n1)
        fi
        run_wrk "$WARMUP" "$url" /dev/null
        wait_quiet
        wrk_out=$SCRATCH/wrk-$name-$round.txt
        cpu0=$(cpu_ticks "$SERVER_PID")
        kids0=$(children_ticks)
        busy0=$(busy_ticks)
        steal_s0=$(steal_ticks "$SERVER_CPU")
        steal_l0=$(steal_ticks "$LOAD_CPU")
        t0=$(now_ns)
        run_wrk "$DURATION" "$url" "$wrk_out"
        t1=$(now_ns)
        busy1=$(busy_ticks)
        steal_s1=$(steal_ticks "$SERVER_CPU")
        steal_l1=$(steal_ticks "$LOAD_CPU")
        kids1=$(children_ticks)
        cpu1=$(cpu_ticks "$SERVER_PID")
        stop_pid "$SERVER_PID"

        requests=$(awk '/ requests in /{print $1}' "$wrk_out")
        rps=$(awk '/^Requests\/sec:/{print $2}' "$wrk_out")
        [[ -n $requests && -n $rps && $requests -gt 0 ]] || {
            cat "$wrk_out" >&2
            die "$name round $round: no requests completed"
        }
        errors=$(awk '/Socket errors:/{gsub(",", ""); e += $4 + $6 + $8 + $10} /Non-2xx/{e += $5} END{print e + 0}' "$wrk_out")
        key=$name,$round
        # RPS and CPU_US are read through the nameref in column_values.
        # shellcheck disable=SC2034
        RPS[$key]=$rps
        ERRORS[$key]=$errors
        CPU_US[$key]=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN{printf "%.2f", t / hz * 1e6 / n}')
        SERVER_BUSY[$key]=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) 'BEGIN{printf "%.0f", 100 * t / hz / (ns / 1e9)}')
        WRK_BUSY[$key]=$(awk -v t=$((kids1 - kids0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) 'BEGIN{printf "%.0f", 100 * t / hz / (ns / 1e9)}')
        STEAL[$key]=$(awk -v s=$((steal_s1 - steal_s0)) -v l=$((steal_l1 - steal_l0)) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) 'BEGIN{printf "%.0f/%.0f", 100 * s / hz / (ns / 1e9), 100 * l / hz / (ns / 1e9)}')
        OTHERS[$key]=$(awk -v b=$((busy1 - busy0 - (cpu1 - cpu0) - (kids1 - kids0))) -v hz="$CLK_TCK" -v ns=$((t1 - t0)) 'BEGIN{v = 100 * b / hz / (ns / 1e9); printf "%.0f", v < 0 ? 0 : v}')
        log "round $round/$ROUNDS $name: $rps req/s, ${CPU_US[$key]} CPU-µs/req, server core ${SERVER_BUSY[$key]}%, wrk core ${WRK_BUSY[$key]}%, others ${OTHERS[$key]}%, steal ${STEAL[$key]}%, errors $errors"
    done
done

# ---- report --------------------------------------------------------------------------
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END{if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
column_values() { # column_values ARRAY_NAME SERVER
    local -n arr=$1
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        echo "${arr[$2,$r]}"
    done
}

nginx_median=
nginx_cpu_median=
if [[ " $SERVERS " == *" nginx "* ]]; then
    mapfile -t values < <(column_values RPS nginx)
    nginx_median=$(median "${values[@]}")
    mapfile -t values < <(column_values CPU_US nginx)
    nginx_cpu_median=$(median "${values[@]}")
fi

round_headers=""
round_rule=""
for ((r = 1; r <= ROUNDS; r++)); do
    round_headers+=" round $r |"
    round_rule+="---:|"
done

git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git status --porcelain -- edge codec perf Cargo.toml Cargo.lock 2>/dev/null | wc -l)

{
    echo "# /public/ping: edge vs nginx static 200 vs monoio-http"
    echo
    echo "- date: $STARTED_AT"
    echo "- machine: $CPUS CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
    echo "- command: \`$COMMAND\`"
    echo "- server pinned to CPU $SERVER_CPU (one thread / one nginx worker), wrk pinned to CPU $LOAD_CPU: \`wrk -t$WRK_THREADS -c$CONNS -d$DURATION\` after a $WARMUP warm-up, each server started fresh for each run"
    echo "- $(nginx -v 2>&1), $(wrk -v 2>&1 | head -n1 || true)"
    echo "- workspace: $git_rev, $git_dirty uncommitted paths under edge/ codec/ perf/ Cargo.*; binaries (sha256): edge $EDGE_SHA, monoio_http_ping $MONOIO_HTTP_SHA"
    echo
    echo "## Requests/s"
    echo
    echo "| server |$round_headers median | vs nginx | CPU-µs/req (median) | req/s per busy core | vs nginx |"
    echo "|---|$round_rule---:|---:|---:|---:|---:|"
    for name in "${SERVER_LIST[@]}"; do
        mapfile -t values < <(column_values RPS "$name")
        mapfile -t cpus < <(column_values CPU_US "$name")
        med=$(median "${values[@]}")
        row="| $name |"
        for v in "${values[@]}"; do
            row+=" $(printf '%.0f' "$v") |"
        done
        ratio="-"
        [[ -n $nginx_median ]] && ratio=$(awk -v a="$med" -v b="$nginx_median" 'BEGIN{printf "%.2fx", a / b}')
        cpu_med=$(median "${cpus[@]}")
        cap_ratio="-"
        [[ -n $nginx_cpu_median ]] && cap_ratio=$(awk -v a="$cpu_med" -v b="$nginx_cpu_median" 'BEGIN{printf "%.2fx", b / a}')
        row+=" **$(printf '%.0f' "$med")** | $ratio | $(printf '%.2f' "$cpu_med") | $(awk -v c="$cpu_med" 'BEGIN{printf "%.0f", 1e6 / c}') | $cap_ratio |"
        echo "$row"
    done
    echo
    echo "Req/s per busy core = 10^6 / CPU-µs per request: what one core fully given to the"
    echo "server would serve. Other tenants' load moves req/s from run to run far more than it"
    echo "moves CPU-µs per request, so this is the steadier comparison on a shared machine."
    echo
    echo "## Per run: server CPU-µs/request, server core busy / wrk core busy, others, steal, errors"
    echo
    echo "CPU-µs/request = server process CPU time (utime+stime from /proc/PID/stat, nginx"
    echo "master and worker) over the measured run, divided by the requests wrk completed."
    echo "Busy = process CPU time / wall time. A wrk core near 100% busy means the load tool,"
    echo "not the server, set the ceiling. Others = busy time on the two CPUs not charged to the"
    echo "server or wrk (other tenants of this shared machine, plus interrupt time the kernel"
    echo "charges to no process), in % of one CPU. Steal = % of wall time"
    echo "the hypervisor took from the server CPU / the wrk CPU (/proc/stat)."
    echo
    echo "| server |$round_headers"
    echo "|---|$round_rule"
    for name in "${SERVER_LIST[@]}"; do
        row="| $name |"
        for ((r = 1; r <= ROUNDS; r++)); do
            key=$name,$r
            row+=" ${CPU_US[$key]} µs, ${SERVER_BUSY[$key]}% / ${WRK_BUSY[$key]}%, others ${OTHERS[$key]}%, steal ${STEAL[$key]}%, err ${ERRORS[$key]} |"
        done
        echo "$row"
    done
    echo
    echo "## Response sizes (header+body bytes) and drivers"
    echo
    for name in "${SERVER_LIST[@]}"; do
        echo "- $name: ${RESPONSE_BYTES[$name]} bytes${DRIVER_LINE[$name]:+; ${DRIVER_LINE[$name]}}"
    done
} >"$SCRATCH/report.md"

mkdir -p "$(dirname "$OUT")"
cp "$SCRATCH/report.md" "$OUT"
cat "$OUT"
log "report written to $OUT"
