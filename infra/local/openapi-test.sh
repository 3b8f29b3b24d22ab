#!/usr/bin/env bash
# `make openapi-test`: property-based tests of the edge against openapi/ticketing.yaml with
# schemathesis (from .run/venv, see `stack.sh deps`). Starts the release edge on its own
# port and pid file (edge.sh start, which first runs `worker migrate` and `worker seed
# demo`, so the demo event exists), enters the demo event's room as the spec's example
# buyer and sends that room token on every request, runs schemathesis with its default
# checks, stops that edge whatever the outcome, and exits with schemathesis' status.
# Then a second pass over the operator's operations (SCHEMATHESIS_ADMIN_OPS) with the
# edge's ADMIN_TOKEN as the bearer: after the first, because revoking the examples' buyer
# (the `revokeBuyer` example) ends the room token every buyer operation is sent with.
#
# Environment (the Makefile passes its variables of the same names):
#   SCHEMATHESIS_OPS           operationIds to test, space-separated ("ping health");
#                              empty = every operation of the spec
#   SCHEMATHESIS_ADMIN_OPS     operator operationIds for the second pass ("revokeBuyer");
#                              empty = no second pass
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (50)
#   SCHEMATHESIS_ARGS          extra arguments for `schemathesis run` (e.g. "--seed 1")
#   OPENAPI_ADDR               where that edge listens (127.0.0.1:18080)
#   OPENAPI_SPEC               the spec (openapi/ticketing.yaml)
#   OPENAPI_IDENTITY           the edge's IDENTITY: none (default) or jwt; with jwt the edge
#                              gets a local HS256 secret and every request a bearer JWT
#                              for the example buyer, so enter runs with valid credentials
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
STACK="$ROOT/infra/local/stack.sh"
EDGE="$ROOT/infra/local/edge.sh"
ADDR="${OPENAPI_ADDR:-127.0.0.1:18080}"
SPEC="${OPENAPI_SPEC:-$ROOT/openapi/ticketing.yaml}"
OPS="${SCHEMATHESIS_OPS-ping health}"
ADMIN_OPS="${SCHEMATHESIS_ADMIN_OPS-revokeBuyer}"
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

# IDENTITY=jwt: a local-only HS256 secret, and a token for the examples' buyer.
auth=()
case "${OPENAPI_IDENTITY:-none}" in
none) ;;
jwt)
	export IDENTITY=jwt IDENTITY_JWT_SECRET=openapi-test-local-only-jwt-secret
	jwt="$("$ROOT/.run/venv/bin/python" -c '
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "u-000123", "exp": int(time.time()) + 3600}).encode())
mac = hmac.new(os.environ["IDENTITY_JWT_SECRET"].encode(), head + b"." + body, hashlib.sha256)
print((head + b"." + body + b"." + b64(mac.digest())).decode())')"
	auth=(-H "authorization: Bearer $jwt")
	;;
*) die "OPENAPI_IDENTITY=$OPENAPI_IDENTITY: expected none or jwt" ;;
esac

trap '"$EDGE" stop --pidfile "$PIDFILE"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Its metrics on a port of its own: a `make start` edge may hold the default. The admin
# routes exist only with an ADMIN_TOKEN: a local-only one, the bearer of the second pass.
export ADMIN_TOKEN=openapi-test-local-only-admin-token
METRICS_ADDR=127.0.0.1:0 "$EDGE" start --addr "$ADDR" --pidfile "$PIDFILE" --log "$LOG"

# A room token for the user and event of the spec's examples, so that every operation
# behind `x-room-token` is exercised past its authentication, not only refused 401/403.
# Sent on every request; schemathesis still generates the other headers and bodies.
enter='{"userId":"u-000123","eventId":"demo"}'
token="$(curl -fsS "${auth[@]}" -H 'content-type: application/json' -d "$enter" "http://$ADDR/public/enter" |
	"$ROOT/.run/venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["roomToken"])')" ||
	die "could not enter the demo event's room for a token"

headers=()
[[ ${#auth[@]} -eq 0 ]] || headers=(--header "${auth[1]}")
# shellcheck disable=SC2206 # SCHEMATHESIS_ARGS is meant to be word-split
extra=(${SCHEMATHESIS_ARGS:-})

# The operator's bearer as the spec's `adminBearer` scheme (not a header on every
# request), so that schemathesis also checks that the admin routes refuse a request
# without it. Revocations go to an event of their own: a revoked buyer stays revoked,
# and the examples' buyer of `demo` is the one every buyer operation runs as.
"$ROOT/infra/local/seed.sh" openapi-admin >/dev/null
config="$ROOT/.run/schemathesis.toml"
cat >"$config" <<'TOML'
[auth.openapi.adminBearer]
bearer = "${ADMIN_TOKEN}"

[[operations]]
include-operation-id = "revokeBuyer"
parameters = { eventId = "openapi-admin" }

# schemathesis 4.32's coverage phase counts a request that only adds an undeclared
# header as invalid, and the stream's 200 as accepting it: a false positive of the kind
# its PR #4762 fixes (a server ignores header fields it does not know, RFC 9110 section
# 5.1). The stream's refusals are checked in edge/tests/line.rs.
[[operations]]
include-operation-id = "roomEvents"
checks.negative_data_rejection.enabled = false
TOML

# run_pass NAME OPS HEADER...: schemathesis over the operations OPS (all when empty), with
# the HEADERs on every request; its exit status.
run_pass() {
	local name=$1 ops=$2 op filters=()
	shift 2
	for op in $ops; do
		filters+=(--include-operation-id "$op")
	done
	log "schemathesis $("$ST" --version | sed 's/.*version //') on $SPEC, base URL http://$ADDR, IDENTITY=${OPENAPI_IDENTITY:-none}, $name operations: ${ops:-all}"
	(cd "$ROOT/.run" && "$ST" --config-file "$config" run "$SPEC" \
		--url "http://$ADDR" \
		"$@" \
		"${filters[@]}" \
		--max-examples "$MAX_EXAMPLES" \
		--request-timeout 10 \
		--generation-database none \
		--report junit --report-dir "$REPORT_DIR/$name" \
		"${extra[@]}")
}

rc=0
run_pass buyer "$OPS" --header "x-room-token: $token" "${headers[@]}" || rc=$?
if [[ -n $ADMIN_OPS ]]; then
	run_pass admin "$ADMIN_OPS" || rc=$?
fi
log "schemathesis exit status $rc (JUnit reports in $REPORT_DIR)"
exit "$rc"
