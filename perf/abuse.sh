#!/usr/bin/env bash
# perf/abuse.sh: what the door's rate limits stop and what they cost (issue 15, README
# "Abuse limits"). One edge (one thread, TRUSTED_PROXY_HOPS=1, so loadgen's
# X-Forwarded-For counts) on a private Redis, `loadgen enter` in these runs:
#   honest            honest buyers only: HONEST_RATE/s, each from one of 10,000 addresses
#   abusers           the same honest buyers plus ABUSERS addresses sending ABUSE_PCT% of
#                     all requests (each a made-up buyer), RATE_LIMITS=on
#   abusers-unlimited the same with RATE_LIMITS=off
#   flood-on/off      FLOOD_RATE/s from 1,000,000 addresses (every request a new address:
#                     the buckets' table churns), limits on and off: the limiter's cost
# Honest buyers' p99 and admission (share answered 200) per run -> OUT_DIR/abuse.md.
# Short runs: the machine is shared.
#
#   HONEST_RATE=1000 ABUSERS=4 ABUSE_PCT=50 DURATION=8 perf/abuse.sh
set -euo pipefail
NAME=abuse
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HONEST_RATE=${HONEST_RATE:-1000}
ABUSERS=${ABUSERS:-4}
ABUSE_PCT=${ABUSE_PCT:-50}
FLOOD_RATE=${FLOOD_RATE:-3000}
DURATION=${DURATION:-8}
OUT_DIR=${OUT_DIR:-perf/results}
ABUSE_REDIS_PORT=${ABUSE_REDIS_PORT:-16497}
ABUSE_EDGE_PORT=${ABUSE_EDGE_PORT:-18397}

release_binaries
local_stack_env
private_redis "$ABUSE_REDIS_PORT"
"$SCRATCH/worker" migrate >/dev/null
"$SCRATCH/worker" seed perf --open-in-secs -3600 --rate 1000000 >/dev/null

# run NAME RATE_LIMITS LOADGEN-ARGS...: one edge, one loadgen run, the edge stopped.
run() {
    local name=$1 limits=$2
    shift 2
    EDGE_ADDR=127.0.0.1:$ABUSE_EDGE_PORT EDGE_THREADS=1 EDGE_LOG=warn RATE_LIMITS=$limits \
        TRUSTED_PROXY_HOPS=1 "$SCRATCH/edge" >"$SCRATCH/edge-$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$ABUSE_EDGE_PORT" "$pid" edge
    log "$name: loadgen enter $*"
    "$SCRATCH/loadgen" enter --target "127.0.0.1:$ABUSE_EDGE_PORT" --event perf --duration "$DURATION" \
        --warmup 1 --connections 64 --quiet --cpu "edge=$pid" --cpu "redis=$REDIS_PID" --out "$SCRATCH/$name" "$@" \
        >"$SCRATCH/loadgen-$name.log" 2>&1 || log "$name: loadgen exited $? (see the table)"
    stop_pid "$pid"
}

run honest on --rate "$HONEST_RATE" --addresses 10000
total=$((HONEST_RATE * 100 / (100 - ABUSE_PCT)))
run abusers on --rate "$total" --addresses 10000 --abusers "$ABUSERS" --abuse-pct "$ABUSE_PCT"
run abusers-unlimited off --rate "$total" --addresses 10000 --abusers "$ABUSERS" --abuse-pct "$ABUSE_PCT"
run flood-on on --rate "$FLOOD_RATE" --addresses 1000000
run flood-off off --rate "$FLOOD_RATE" --addresses 1000000

mkdir -p "$OUT_DIR"
python3 - "$SCRATCH" "$HONEST_RATE" "$ABUSERS" "$FLOOD_RATE" "$DURATION" "$ABUSE_PCT" >"$OUT_DIR/${OUT_NAME:-abuse}.md" <<'PY'
import json, sys, os, subprocess
scratch, honest, abusers, flood, duration, pct = sys.argv[1:]
rows = []
for name in ["honest", "abusers", "abusers-unlimited", "flood-on", "flood-off"]:
    r = json.load(open(os.path.join(scratch, name + ".json")))
    stage = [s for s in r["runs"][0]["stages"] if s["measured"]][0]
    eps = {e["endpoint"]: e for e in stage["endpoints"]}
    cpus = {c["name"]: c for c in stage.get("cpu") or []}
    edge_cpu = (cpus.get("edge", {}), cpus.get("redis", {}))
    for ep in ["enter", "enter (abusers)"]:
        e = eps.get(ep)
        if not e:
            continue
        ok = e["statuses"].get("200", 0)
        limited = e["statuses"].get("429", 0)
        rows.append((name, ep, e["count"], 100.0 * ok / max(e["count"], 1), limited,
                     e["latency"]["p50"], e["latency"]["p99"], e["latency"]["p999"],
                     stage["offered_rate"], stage["achieved_rate"], edge_cpu))
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print("# Abuse limits: honest buyers with and without abusers (perf/abuse.sh)\n")
print(f"- commit {rev}; `HONEST_RATE={honest} ABUSERS={abusers} ABUSE_PCT={pct} FLOOD_RATE={flood} DURATION={duration} perf/abuse.sh`")
print("- one edge thread (`TRUSTED_PROXY_HOPS=1`), a private Redis, loadgen on the same 2-vCPU machine,")
print("  which four other engineers' builds shared during the run: short runs, read the ratios, not the absolutes.")
print("- honest: each request a new buyer from one of 10,000 addresses (`X-Forwarded-For: 10.x.y.z`);")
print(f"  abusers: {pct}% of all requests, from {abusers} addresses (`192.0.2.k`), each a made-up buyer.\n")
print("| run | requests | count | admitted (200) | 429 | p50 µs | p99 µs | p99.9 µs | offered/s | achieved/s | CPU µs/req edge / Redis |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (name, ep, count, ok, limited, p50, p99, p999, offered, achieved, cpu) in rows:
    c = " / ".join(f"{x['us_per_request']:.1f}" if "us_per_request" in x else "-" for x in cpu)
    print(f"| {name} | {ep} | {count} | {ok:.2f}% | {limited} | {p50} | {p99} | {p999} | {offered:.0f} | {achieved:.0f} | {c} |")
PY
log "wrote $OUT_DIR/${OUT_NAME:-abuse}.md"
