#!/usr/bin/env bash
# tests/browser/run.sh (`make e2e`): the buyer page (tests/browser/buyer.html) driven in
# headless Chromium against a real edge and worker on the local services.
#
# Installs what is missing: Debian's chromium (apt-get) and playwright-core (npm ci
# here, from package-lock.json; no browser download). Starts an edge on E2E_EDGE_PORT
# with CORS_ALLOWED_ORIGINS=http://localhost:E2E_PAGE_PORT and a worker, runs
# buyer.test.mjs (node's test runner), then stops both. The release binaries must be
# built (the Makefile's e2e target builds them) and the services up (make services).
#
# Output in OUT_DIR (default .run/e2e): report.html, confirmed.png, edge.log, worker.log.
# EDGE_BIN and WORKER_BIN (default: the release builds of CARGO_TARGET_DIR or target/).
#
#   E2E_EDGE_PORT=18480 E2E_PAGE_PORT=18481 OUT_DIR=.run/e2e tests/browser/run.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
HERE="$ROOT/tests/browser"
EDGE_PORT=${E2E_EDGE_PORT:-18480}
PAGE_PORT=${E2E_PAGE_PORT:-18481}
OUT_DIR=$(mkdir -p "${OUT_DIR:-$ROOT/.run/e2e}" && cd "${OUT_DIR:-$ROOT/.run/e2e}" && pwd -P)
BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

log() { printf 'e2e: %s\n' "$*" >&2; }

if [[ ! -x "$CHROMIUM" ]]; then
	log "installing Debian's chromium"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
command -v node >/dev/null || {
	log "installing nodejs and npm"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
}
if [[ ! -f "$HERE/node_modules/.package-lock.json" || "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]]; then
	log "npm ci (playwright-core; no browser download)"
	(cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

eval "$("$ROOT/infra/local/stack.sh" env)"
export REDIS_URL DATABASE_URL
export WORKER_BIN="${WORKER_BIN:-$BIN_DIR/worker}" EDGE_BIN="${EDGE_BIN:-$BIN_DIR/edge}"

# shellcheck disable=SC2317 # called by the trap
stop() {
	"$ROOT/infra/local/edge.sh" stop --pidfile "$OUT_DIR/edge.pid" || true
	"$ROOT/infra/local/worker.sh" stop --pidfile "$OUT_DIR/worker.pid" || true
}
trap stop EXIT

rm -f "$OUT_DIR"/{report.html,confirmed.png,failed.png,edge.log,worker.log}
CORS_ALLOWED_ORIGINS="http://localhost:$PAGE_PORT" \
	"$ROOT/infra/local/edge.sh" start --addr "127.0.0.1:$EDGE_PORT" \
	--pidfile "$OUT_DIR/edge.pid" --log "$OUT_DIR/edge.log"
"$ROOT/infra/local/worker.sh" start --pidfile "$OUT_DIR/worker.pid" --log "$OUT_DIR/worker.log"

status=0
API="http://127.0.0.1:$EDGE_PORT" PAGE_PORT=$PAGE_PORT OUT_DIR=$OUT_DIR \
	node --test --test-reporter=spec "$HERE/buyer.test.mjs" || status=$?
log "report: $OUT_DIR/report.html"
exit "$status"
