#!/usr/bin/env bash
# perf/compression.sh: what gzip of the cached seat map saves and costs, identity and gzip
# side by side in the same runs. Writes OUT_DIR/compression.md.
#
# An event of the demo's size (5 sections x 10,000 seats: a 50 KB seat map) on a private
# Redis, then `GET /public/seats/perf` hits, without and with `Accept-Encoding: gzip`:
#   1. bytes of each answer (curl);
#   2. instructions per hit: one edge (one thread, epoll, a cache that outlives the run, so
#      no rendering is counted in) under callgrind, REQUESTS hits of each coding at RATE/s,
#      collected apart (instrumentation on, loadgen, off, dump);
#   3. the rendering: a second edge under callgrind with PUBLIC_CACHE_MS=1 and RENDERS
#      requests one at a time, 200 ms apart, so each renders anew: a rendering is the
#      instructions per request less an identity hit's, and gzip's share is what
#      edge::encoding::gzip, miniz_oxide, flate2 and crc32fast spent;
#   4. CPU-µs per hit natively: the edge (one thread, epoll) under loadgen at CPU_RATE/s for
#      CPU_SECS s per coding, its CPU time read by loadgen (--cpu).
#
#   REQUESTS=2000 RATE=200 CPU_RATE=4000 CPU_SECS=5 perf/compression.sh
set -euo pipefail
NAME=compression
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQUESTS=${REQUESTS:-2000}
RATE=${RATE:-200}
RENDERS=${RENDERS:-30}
CPU_RATE=${CPU_RATE:-4000}
CPU_SECS=${CPU_SECS:-5}
OUT_DIR=${OUT_DIR:-perf/results}
# Not REDIS_PORT: that one is the local stack's.
PRIVATE_REDIS_PORT=${PRIVATE_REDIS_PORT:-16484}
EDGE_PORT=${EDGE_PORT:-18384}
GZIP='Accept-Encoding: gzip, deflate, br, zstd'
PATH_SEATS=/public/seats/perf

command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
command -v redis-server >/dev/null || die "redis-server missing: make deps"

release_binaries
local_stack_env
private_redis "$PRIVATE_REDIS_PORT"
"$SCRATCH/worker" migrate >/dev/null
"$SCRATCH/worker" seed perf --open-in-secs -3600 --rate 1000000 >/dev/null

evalsha_calls() {
    redis-cli -p "$PRIVATE_REDIS_PORT" INFO commandstats | tr -d '\r' |
        sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p'
}

# start_edge CACHE_MS [valgrind]: an edge of one thread on EDGE_PORT; sets EDGE_PID.
start_edge() {
    local cache_ms=$1 wrap=()
    [[ ${2:-} == valgrind ]] && wrap=(valgrind --tool=callgrind --instr-atstart=no
        "--callgrind-out-file=$SCRATCH/cg-$cache_ms.out")
    EDGE_ADDR=127.0.0.1:$EDGE_PORT EDGE_THREADS=1 EDGE_DRIVER=epoll EDGE_LOG=warn \
        EDGE_SHUTDOWN_GRACE_MS=2000 PUBLIC_CACHE_MS=$cache_ms EVENT_REFRESH_MS=3600000 \
        "${wrap[@]}" "$SCRATCH/edge" >"$SCRATCH/edge-$cache_ms.log" 2>&1 &
    EDGE_PID=$!
    PIDS+=("$EDGE_PID")
    wait_port "$EDGE_PORT" "$EDGE_PID" edge
}

# hits LABEL [HEADER]: REQUESTS seat-map requests at RATE/s.
hits() {
    local extra=()
    [[ -n ${2:-} ]] && extra=(--header "$2")
    "$SCRATCH/loadgen" ping --path "$PATH_SEATS" --target "127.0.0.1:$EDGE_PORT" \
        --rate "$RATE" --duration "$(awk -v n="$REQUESTS" -v r="$RATE" 'BEGIN{printf "%.3f", n / r}')" \
        --warmup 0 --connections "${CONNS:-16}" --quiet --out "$SCRATCH/load-$1" "${extra[@]}" >"$SCRATCH/loadgen-$1.log" 2>&1
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
ok = sum(s["answered"] - s["errors"] for run in r["runs"] for s in run["stages"])
print(ok)' "$SCRATCH/load-$1.json"
}

# collect LABEL [HEADER]: instructions of one batch of hits, collected alone.
collect() {
    local n
    callgrind_control -i on "$EDGE_PID" >/dev/null 2>&1
    n=$(hits "$@")
    callgrind_control -i off "$EDGE_PID" >/dev/null 2>&1
    callgrind_control -d "$1" "$EDGE_PID" >/dev/null 2>&1
    echo "$n"
}

# totals FILE: program total Ir of a callgrind dump.
totals() { callgrind_annotate --inclusive=no "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen++ {gsub(",", "", $1); print $1}'; }

# 1 and 2: a cache that outlives the run: hits only.
start_edge 3600000 valgrind
curl -sf -o /dev/null "http://127.0.0.1:$EDGE_PORT$PATH_SEATS" # the first rendering
bytes_identity=$(curl -sf -o /dev/null -w '%{size_download} %{size_header}' "http://127.0.0.1:$EDGE_PORT$PATH_SEATS")
bytes_gzip=$(curl -sf -o /dev/null -w '%{size_download} %{size_header}' -H "$GZIP" "http://127.0.0.1:$EDGE_PORT$PATH_SEATS")
n_identity=$(collect identity)
n_gzip=$(collect gzip "$GZIP")
stop_pid "$EDGE_PID"
dumps=("$SCRATCH"/cg-3600000.out.*)
((${#dumps[@]} >= 2)) || die "expected two callgrind dumps, found: ${dumps[*]}"
ir_identity=$(totals "${dumps[0]}")
ir_gzip=$(totals "${dumps[1]}")

# 3: a cache that lives 1 ms: every hit renders.
start_edge 1 valgrind
curl -sf -o /dev/null "http://127.0.0.1:$EDGE_PORT$PATH_SEATS"
before=$(evalsha_calls)
n_render=$(REQUESTS=$RENDERS RATE=5 CONNS=1 collect render)
evalsha=$(($(evalsha_calls) - before))
stop_pid "$EDGE_PID"
render_dumps=("$SCRATCH"/cg-1.out.*)
render_dump=${render_dumps[0]}
ir_render=$(totals "$render_dump")
# Self instructions of the functions (the part after the file name) that are gzip's.
ir_deflate=$(callgrind_annotate --inclusive=no --threshold=100 "$render_dump" 2>/dev/null |
    awk '$2 ~ /^\(/ { f = $3; sub(/^[^:]*:/, "", f)
        if (f ~ /^edge::encoding::gzip|miniz_oxide|flate2|crc32fast|adler/) { gsub(",", "", $1); s += $1 } }
        END {print s + 0}')

# 4: natively, CPU time per hit.
start_edge 3600000
curl -sf -o /dev/null "http://127.0.0.1:$EDGE_PORT$PATH_SEATS"
cpu_run() {
    local extra=()
    [[ -n ${2:-} ]] && extra=(--header "$2")
    "$SCRATCH/loadgen" ping --path "$PATH_SEATS" --target "127.0.0.1:$EDGE_PORT" --cpu "edge=$EDGE_PID" \
        --rate "$CPU_RATE" --duration "$CPU_SECS" --warmup 1 --connections 32 --quiet \
        --out "$SCRATCH/cpu-$1" "${extra[@]}" >"$SCRATCH/cpu-$1.log" 2>&1
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
s = [s for run in r["runs"] for s in run["stages"] if s["measured"]][-1]
cpu = [c for c in s["cpu"] if c["name"] == "edge"][0]
print("%.2f %.0f %d" % (cpu["us_per_request"], s["achieved_rate"], s["errors"]))' "$SCRATCH/cpu-$1.json"
}
cpu_identity=$(cpu_run identity)
cpu_gzip=$(cpu_run gzip "$GZIP")
stop_pid "$EDGE_PID"

[[ -n ${KEEP_DIR:-} ]] && mkdir -p "$KEEP_DIR" && cp "$SCRATCH"/cg-*.out* "$KEEP_DIR/"

per() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.0f", a / b}'; }
hit_identity=$(per "$ir_identity" "$n_identity")
hit_gzip=$(per "$ir_gzip" "$n_gzip")
render=$(awk -v all="$ir_render" -v n="$n_render" -v hit="$hit_identity" 'BEGIN{printf "%.0f", all / n - hit}')
deflate=$(per "$ir_deflate" "$n_render")

mkdir -p "$OUT_DIR"
out=$OUT_DIR/compression.md
{
    echo "# Seat map hits: identity vs gzip (one run)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); commit $(git rev-parse --short HEAD); $(valgrind --version); kernel $(uname -r)"
    echo "- command: \`REQUESTS=$REQUESTS RATE=$RATE CPU_RATE=$CPU_RATE CPU_SECS=$CPU_SECS perf/compression.sh\`"
    echo "- event: 5 sections x 10,000 seats (the demo's size), nothing held or sold"
    echo "- edge: one thread, epoll; gzip is \`$GZIP\` (what Chromium sends)"
    echo
    echo "| | identity | gzip | gzip / identity |"
    echo "|---|---:|---:|---:|"
    echo "| body bytes (head bytes) | ${bytes_identity% *} (${bytes_identity#* }) | ${bytes_gzip% *} (${bytes_gzip#* }) | $(awk -v a="${bytes_gzip% *}" -v b="${bytes_identity% *}" 'BEGIN{printf "%.4f", a / b}') |"
    echo "| instructions per hit (callgrind; $n_identity and $n_gzip hits) | $hit_identity | $hit_gzip | $(awk -v a="$hit_gzip" -v b="$hit_identity" 'BEGIN{printf "%.2f", a / b}') |"
    echo "| edge CPU-µs per hit, native (at achieved req/s, errors) | ${cpu_identity} | ${cpu_gzip} | $(awk -v a="${cpu_gzip%% *}" -v b="${cpu_identity%% *}" 'BEGIN{printf "%.2f", a / b}') |"
    echo
    echo "Rendering (PUBLIC_CACHE_MS=1, $n_render requests one at a time, each a rendering; Redis"
    echo "ran $evalsha EVALSHA for them): **$render instructions per rendering** beyond a hit, of"
    echo "which gzip (edge::encoding::gzip, miniz_oxide, flate2, crc32fast) **$deflate**. A core"
    echo "renders a seat map once per PUBLIC_CACHE_MS (1 s by default) and event, whatever the"
    echo "number of hits: per second, the instructions of $(awk -v r="$render" -v h="$hit_identity" 'BEGIN{printf "%.0f", r / h}') identity hits, gzip's share those of"
    echo "$(awk -v r="$deflate" -v h="$hit_identity" 'BEGIN{printf "%.0f", r / h}'), repaid by every $(awk -v r="$deflate" -v a="$hit_identity" -v b="$hit_gzip" 'BEGIN{printf "%.0f", r / (a - b)}') hits that take gzip."
    echo
    echo "Instruction counts ignore cache misses and the kernel's copy of the bytes to the"
    echo "socket, which the CPU-µs include: a 50 KB answer is mostly that copy."
} >"$out"
cat "$out"
