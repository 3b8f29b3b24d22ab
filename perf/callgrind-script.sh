#!/usr/bin/env bash
# perf/callgrind-script.sh: redis-server's instructions per hold of the hold script, fed
# directly (no edge): the script as codec builds it (codec/lua/now.lua, hold_value.lua,
# hold.lua), HOLDS holds in batches of BATCH (perf/hold_calls.py: the edge's keys and
# arguments, 4 holds a buyer spread out, after WARM holds that fill the zsets), under
# `valgrind --tool=callgrind` with instrumentation on only while they are sent
# (`redis-cli --pipe`). Deterministic: compare script variants by it, then confirm
# with `TARGET=redis SCENARIO=hold perf/callgrind.sh` (the edge's own batches).
#
#   BATCHES="1 8 32" perf/callgrind-script.sh
#   SCRIPT=/tmp/variant.lua perf/callgrind-script.sh   (a whole script instead)
set -euo pipefail
NAME=callgrind-script
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOLDS=${HOLDS:-3200}
WARM=${WARM:-3000}
BATCHES=${BATCHES:-1 8 32}
REDIS_PORT=${REDIS_PORT:-16590}
command -v valgrind >/dev/null || die "valgrind missing: apt-get install valgrind"
if [[ -n ${SCRIPT:-} ]]; then
    cp "$SCRIPT" "$SCRATCH/hold.lua"
else
    cat codec/lua/now.lua codec/lua/hold_value.lua codec/lua/hold.lua >"$SCRATCH/hold.lua"
fi
REDIS_WRAPPER=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$SCRATCH/callgrind.out")
for batch in $BATCHES; do
    private_redis "$REDIS_PORT"
    sha=$(redis-cli -p "$REDIS_PORT" script load "$(cat "$SCRATCH/hold.lua")")
    python3 perf/hold_calls.py "$sha" "$WARM" 32 7 | redis-cli -p "$REDIS_PORT" --pipe >/dev/null
    python3 perf/hold_calls.py "$sha" "$HOLDS" "$batch" 1 >"$SCRATCH/calls.resp"
    callgrind_control -i on "$REDIS_PID" >/dev/null 2>&1
    redis-cli -p "$REDIS_PORT" --pipe <"$SCRATCH/calls.resp" >"$SCRATCH/pipe.log"
    callgrind_control -i off "$REDIS_PID" >/dev/null 2>&1
    grep -q 'errors: 0' "$SCRATCH/pipe.log" || die "script errors: $(cat "$SCRATCH/pipe.log")"
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    wait "$REDIS_PID" || true
    PIDS=()
    ir=$(callgrind_annotate "$SCRATCH/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !ir {gsub(",", "", $1); ir = $1} END {print ir}')
    echo "batch $batch: $((ir / HOLDS)) instructions a hold ($HOLDS holds, $ir in all)"
done
