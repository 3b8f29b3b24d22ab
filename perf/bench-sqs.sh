#!/usr/bin/env bash
# perf/bench-sqs.sh: how full the edge's SendMessageBatch calls are under load (issue 5).
#
# The edge in the aws profile (one thread, pinned to SERVER_CPU), loadgen's `buy`
# scenario (hold, payment-intent, commit: a third of the slots are commits) at each of
# RATES slots/s for SECONDS_PER_RATE, on LOAD_CPU. After each rate the edge is stopped;
# its "side thread totals" line gives batches and messages, checked against what the
# backend received and the 202s loadgen counted. A batch leaves when it has 10 entries
# or its first entry waited SQS_LINGER_MS (2), so the fill follows the commit rate.
#
# BACKEND=sink (default): perf/sqs-sink.py, which accepts every entry at once; moto's
# server takes ~20 batches/s (FIELD-NOTES.md), so under load it measures moto, not the
# edge. BACKEND=moto: a FIFO queue on moto, for rates it can take (RATES="30 90").
# Writes OUT (perf/results/sqs-batches.md).
#
#   RATES="300 1500 6000 12000" SECONDS_PER_RATE=10 SQS_LINGER_MS=2 perf/bench-sqs.sh
set -euo pipefail
NAME=bench-sqs
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BACKEND=${BACKEND:-sink}
RATES=${RATES:-300 1500 6000 12000}
SECS=${SECONDS_PER_RATE:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SQS_LINGER_MS=${SQS_LINGER_MS:-2}
BUILD=${BUILD:-1}
OUT=${OUT:-perf/results/sqs-batches.md}
REDIS_PORT=${REDIS_PORT:-16489}
EDGE_PORT=${EDGE_PORT:-18389}
MOTO_PORT=${MOTO_PORT:-18390}

[[ -x .run/venv/bin/moto_server ]] || infra/local/stack.sh deps >/dev/null
command -v redis-server >/dev/null || die "redis-server missing: make deps"
release_binaries
# The catalog comes from `worker seed`, which needs PostgreSQL.
local_stack_env
private_redis "$REDIS_PORT" "$SERVER_CPU"
"$SCRATCH/worker" migrate >/dev/null

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_EC2_METADATA_DISABLED=true
aws() { .run/venv/bin/aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"; }
backend_start() { # the backend for one rate, on MOTO_PORT
    if [[ $BACKEND == moto ]]; then
        .run/venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$SCRATCH/moto.log" 2>&1 &
    else
        python3 perf/sqs-sink.py "$MOTO_PORT" >"$SCRATCH/sink.out" 2>&1 &
    fi
    BACKEND_PID=$!
    PIDS+=("$BACKEND_PID")
    wait_port "$MOTO_PORT" "$BACKEND_PID" "$BACKEND"
    if [[ $BACKEND == moto ]]; then
        aws dynamodb create-table --table-name holds --billing-mode PAY_PER_REQUEST \
            --attribute-definitions AttributeName=pk,AttributeType=S \
            --key-schema AttributeName=pk,KeyType=HASH >/dev/null
        url=$(aws sqs create-queue --queue-name commits.fifo \
            --attributes FifoQueue=true,DeduplicationScope=messageGroup,FifoThroughputLimit=perMessageGroupId \
            --query QueueUrl --output text)
    else
        url=http://127.0.0.1:$MOTO_PORT/123456789012/commits.fifo
    fi
}
backend_received() { # messages the backend holds or received; stops it
    if [[ $BACKEND == moto ]]; then
        aws sqs get-queue-attributes --queue-url "$url" --attribute-names ApproximateNumberOfMessages \
            --query Attributes.ApproximateNumberOfMessages --output text
        stop_pid "$BACKEND_PID"
    else
        stop_pid "$BACKEND_PID"
        awk '{print $2}' "$SCRATCH/sink.out"
    fi
}


{
    echo "# SQS FIFO: messages per SendMessageBatch under load (moto)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) CPUs; commit $(git rev-parse --short HEAD)"
    echo "- command: \`RATES=\"$RATES\" SECONDS_PER_RATE=$SECS SQS_LINGER_MS=$SQS_LINGER_MS perf/bench-sqs.sh\`"
    echo "- edge: PROFILE=aws, one thread on CPU $SERVER_CPU; loadgen \`buy\` on CPU $LOAD_CPU; backend: $BACKEND (unpinned)"
    echo
    echo "| steps/s offered | commits accepted (202) | commits/s | SendMessageBatch calls | messages | messages per batch | received by $BACKEND | commit p50 / p99 |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---|"
} >"$SCRATCH/out.md"

for rate in $RATES; do
    event=sqs$rate-$(date +%s)
    backend_start
    "$SCRATCH/worker" seed "$event" --seats-per-section 200000 --open-in-secs -3600 --rate 1000000 >/dev/null
    PROFILE=aws SQS_QUEUE_URL=$url SQS_LINGER_MS=$SQS_LINGER_MS HOLD_MIRROR_TABLE=holds \
        EDGE_ADDR=127.0.0.1:$EDGE_PORT EDGE_THREADS=1 EDGE_SHUTDOWN_GRACE_MS=2000 \
        taskset -c "$SERVER_CPU" "$SCRATCH/edge" >"$SCRATCH/edge-$rate.log" 2>&1 &
    edge=$!
    PIDS+=("$edge")
    wait_port "$EDGE_PORT" "$edge" edge
    log "buy at $rate steps/s for ${SECS}s on $event"
    taskset -c "$LOAD_CPU" "$SCRATCH/loadgen" buy --target "127.0.0.1:$EDGE_PORT" --event "$event" \
        --seats-per-section 200000 --rate "$rate" --duration "$SECS" --connections 256 \
        --no-audit --quiet --out "$SCRATCH/buy-$rate" >"$SCRATCH/loadgen-$rate.log" 2>&1 ||
        log "loadgen exited with $? (see below)"
    stop_pid "$edge"
    totals=$(grep "side thread totals" "$SCRATCH/edge-$rate.log" || true)
    [[ -n $totals ]] || {
        cat "$SCRATCH/edge-$rate.log" >&2
        die "no side thread totals from the edge"
    }
    field() { sed -E "s/.*$1=([0-9]+).*/\1/" <<<"$totals"; }
    batches=$(field sqs_batches)
    messages=$(field sqs_messages)
    queued=$(backend_received)
    python3 - "$SCRATCH/buy-$rate.json" "$rate" "$batches" "$messages" "$queued" "$SECS" >>"$SCRATCH/out.md" <<'EOF'
import json, sys
path, rate, batches, messages, queued, secs = sys.argv[1:]
report = json.load(open(path))
commit = [e for run in report["runs"] for s in run["stages"] if s["measured"]
          for e in s["endpoints"] if e["endpoint"] == "commit"]
accepted = sum(e["statuses"].get("202", 0) for e in commit)
fill = int(messages) / max(int(batches), 1)
lat = "-"
if commit:
    l = commit[0]["latency"]
    lat = f"{l['p50'] / 1000:.2f} / {l['p99'] / 1000:.2f} ms"
print(f"| {rate} | {accepted} | {accepted / float(secs):.0f} | {batches} | {messages} | {fill:.2f} | {queued} | {lat} |")
EOF
    tail -n 1 "$SCRATCH/out.md" >&2
done
{
    echo
    echo "\"received\" is what the backend got (moto: the queue's ApproximateNumberOfMessages;"
    echo "nothing consumed it): at least every commit answered 202. SendMessageBatch calls"
    echo "count retries too. Commits whose seat was already taken are refused before SQS,"
    echo "hence fewer commits than a third of the steps. \"commits accepted\" counts the"
    echo "measured seconds; the edge's totals and the backend also saw the warm-up's."
} >>"$SCRATCH/out.md"
mkdir -p "$(dirname "$OUT")"
cp "$SCRATCH/out.md" "$OUT"
cat "$OUT"
