#!/usr/bin/env bash
# The edge's pipelined Redis client (one core) against redis-benchmark, same command,
# same Redis, same run (issue 3):
#   SET key:<random> val NX PX 300000, the edge client with 256 concurrent callers,
#   redis-benchmark with -P 16 -c 50.
# A private redis-server runs pinned to CPU 1; each client runs pinned to CPU 0, one
# after the other, ROUNDS times interleaved. Writes perf/results/redis.md.
#
#   ROUNDS=3 SECONDS_PER_RUN=10 CALLERS=256 DRIVER=uring OUT=perf/results/redis.md perf/bench-redis.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CALLERS=${CALLERS:-256}
DRIVER=${DRIVER:-uring}
OUT=${OUT:-perf/results/redis.md}
REDIS_CPU=${REDIS_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}

die() {
    echo "bench-redis: $*" >&2
    exit 1
}
command -v redis-server >/dev/null || die "redis-server missing: run make deps"
command -v redis-benchmark >/dev/null || die "redis-benchmark missing: run make deps"

cargo build --release -j2 -p perf --bin redis_bench
SCRATCH=$(mktemp -d /tmp/bench-redis.XXXXXX)
cp "${CARGO_TARGET_DIR:-target}"/release/redis_bench "$SCRATCH/"
REDIS_PID=
cleanup() {
    [[ -n $REDIS_PID ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c "$REDIS_CPU" redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$SCRATCH" >"$SCRATCH/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -p "$PORT" ping >/dev/null || die "redis-server did not start"

declare -a EDGE_OPS BENCH_OPS DEPTHS
for round in $(seq "$ROUNDS"); do
    redis-cli -p "$PORT" flushall >/dev/null
    line=$(REDIS_URL="redis://127.0.0.1:$PORT" CALLERS=$CALLERS SECONDS=$SECONDS_PER_RUN DRIVER=$DRIVER \
        taskset -c "$CLIENT_CPU" "$SCRATCH/redis_bench")
    echo "round $round edge client: $line" >&2
    EDGE_OPS+=("$(sed -E 's/.*ops_per_sec=([0-9]+).*/\1/' <<<"$line")")
    DEPTHS+=("$(sed -E 's/.*mean_depth=([0-9.]+).*/\1/' <<<"$line")")
    redis-cli -p "$PORT" flushall >/dev/null
    # As many requests as the edge client did in its run, so both run about as long.
    n=$((EDGE_OPS[-1] * SECONDS_PER_RUN))
    out=$(taskset -c "$CLIENT_CPU" redis-benchmark -p "$PORT" -P 16 -c 50 -n "$n" -r 100000000 -q \
        SET 'key:__rand_int__' val NX PX 300000 | tr '\r' '\n' | grep -E 'requests per second' | tail -1)
    echo "round $round redis-benchmark: $out" >&2
    BENCH_OPS+=("$(sed -E 's/.*: ([0-9.]+) requests per second.*/\1/' <<<"$out" | cut -d. -f1)")
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
edge_median=$(median "${EDGE_OPS[@]}")
bench_median=$(median "${BENCH_OPS[@]}")
depth_median=$(median "${DEPTHS[@]}")
ratio=$(awk -v a="$edge_median" -v b="$bench_median" 'BEGIN {printf "%.2f", a / b}')

mkdir -p "$(dirname "$OUT")"
{
    echo "# Redis client: edge client (one core) vs redis-benchmark, same Redis, same run"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); machine: $(nproc) CPUs, kernel $(uname -r)"
    echo "- command: \`ROUNDS=$ROUNDS SECONDS_PER_RUN=$SECONDS_PER_RUN CALLERS=$CALLERS DRIVER=$DRIVER perf/bench-redis.sh\`"
    echo "- $(redis-server --version | cut -d' ' -f1-3) pinned to CPU $REDIS_CPU; each client pinned to CPU $CLIENT_CPU"
    echo "- command measured: \`SET key:<random in 1e8> val NX PX 300000\`"
    echo "- edge client: \`perf/src/bin/redis_bench.rs\`, $CALLERS concurrent callers on one monoio runtime ($DRIVER), one connection"
    echo "- redis-benchmark: \`-P 16 -c 50 -r 100000000\`"
    echo
    echo "| client | $(seq -s ' | ' -f 'round %g' "$ROUNDS") | median ops/s |"
    echo "|---|$(printf -- '---:|%.0s' $(seq "$ROUNDS"))---:|"
    row() { local IFS='|'; local cells="$*"; echo "${cells//|/ | }"; }
    echo "| edge client | $(row "${EDGE_OPS[@]}") | **$edge_median** |"
    echo "| redis-benchmark -P 16 -c 50 | $(row "${BENCH_OPS[@]}") | **$bench_median** |"
    echo
    echo "Ratio edge client / redis-benchmark: **${ratio}x** (target >= 0.5x)."
    echo "Mean commands per write of the edge client (median of rounds): **$depth_median**."
} >"$OUT"
cat "$OUT"
