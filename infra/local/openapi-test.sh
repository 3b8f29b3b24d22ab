#!/usr/bin/env bash
# `make openapi-test`: property-based tests of the edge against openapi/ticketing.yaml with
# schemathesis (from .run/venv, see `stack.sh deps`). Starts the release edge on its own
# port and pid file (edge.sh start, which first runs `worker migrate` and `worker seed
# demo`, so the demo event exists), enters the demo event's room as the spec's example
# buyer and sends that room token on every request, runs schemathesis with its default
# checks, stops that edge whatever the outcome, and exits with schemathesis' status.
#
# Environment (the Makefile passes its variables of the same names):
#   SCHEMATHESIS_OPS           operationIds to test, space-separated ("ping health");
#                              empty = every operation of the spec
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (50)
#   SCHEMATHESIS_ARGS          extra arguments for `schemathesis run` (e.g. "--seed 1")
#   OPENAPI_ADDR               where that edge listens (127.0.0.1:18080)
#   OPENAPI_SPEC               the spec (openapi/ticketing.yaml)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
STACK="$ROOT/infra/local/stack.sh"
EDGE="$ROOT/infra/local/edge.sh"
ADDR="${OPENAPI_ADDR:-127.0.0.1:18080}"
SPEC="${OPENAPI_SPEC:-$ROOT/openapi/ticketing.yaml}"
OPS="${SCHEMATHESIS_OPS-ping health}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
PIDFILE="$ROOT/.run/edge-openapi.pid"
LOG="$ROOT/.run/edge-openapi.log"
REPORT_DIR="$ROOT/.run/schemathesis"
ST="$ROOT/.run/venv/bin/schemathesis"

log() { printf 'openapi-test: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[[ -f "$SPEC" ]] || die "$SPEC not found"
SPEC="$(cd "$(dirname "$SPEC")" && pwd -P)/$(basename "$SPEC")"
[[ -x "$ST" ]] || die "$ST not found; run: make deps"

log "validating $SPEC"
"$ROOT/.run/venv/bin/openapi-spec-validator" "$SPEC"

"$STACK" up
eval "$("$STACK" env)"
export REDIS_URL DATABASE_URL

trap '"$EDGE" stop --pidfile "$PIDFILE"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Its metrics on a port of its own: a `make start` edge may hold the default.
METRICS_ADDR=127.0.0.1:0 "$EDGE" start --addr "$ADDR" --pidfile "$PIDFILE" --log "$LOG"

# A room token for the user and event of the spec's examples, so that every operation
# behind `x-room-token` is exercised past its authentication, not only refused 401/403.
# Sent on every request; schemathesis still generates the other headers and bodies.
enter='{"userId":"u-000123","eventId":"demo"}'
token="$(curl -fsS -H 'content-type: application/json' -d "$enter" "http://$ADDR/public/enter" |
	"$ROOT/.run/venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["roomToken"])')" ||
	die "could not enter the demo event's room for a token"

filters=()
for op in $OPS; do
	filters+=(--include-operation-id "$op")
done
# shellcheck disable=SC2206 # SCHEMATHESIS_ARGS is meant to be word-split
extra=(${SCHEMATHESIS_ARGS:-})

log "schemathesis $("$ST" --version | sed 's/.*version //') on $SPEC, base URL http://$ADDR, operations: ${OPS:-all}"
rc=0
(cd "$ROOT/.run" && "$ST" run "$SPEC" \
	--url "http://$ADDR" \
	--header "x-room-token: $token" \
	"${filters[@]}" \
	--max-examples "$MAX_EXAMPLES" \
	--request-timeout 10 \
	--generation-database none \
	--report junit --report-dir "$REPORT_DIR" \
	"${extra[@]}") || rc=$?
log "schemathesis exit status $rc (JUnit report in $REPORT_DIR)"
exit "$rc"
