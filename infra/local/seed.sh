#!/usr/bin/env bash
# Make PostgreSQL and Redis ready for the edge: `worker migrate`, then `worker seed` of
# each event (DESIGN.md's `demo` by default: sections A to E, 10,000 seats each, open
# now). Both are idempotent, so this runs before every edge start: run.sh (`make run`)
# and edge.sh start (`make start`, `make openapi-test`).
#
#   infra/local/seed.sh [EVENT...]
#
# Environment: WORKER_BIN (target/release/worker), REDIS_URL and DATABASE_URL (from
# `infra/local/stack.sh env` when unset). The services must be up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
STACK="$ROOT/infra/local/stack.sh"
BIN="${WORKER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/worker}"

log() { printf 'seed: %s\n' "$*" >&2; }

if [[ ! -x "$BIN" ]]; then
	log "error: $BIN not found or not executable (build it: make build)"
	exit 1
fi
if [[ -z "${REDIS_URL:-}" || -z "${DATABASE_URL:-}" ]]; then
	eval "$("$STACK" env)"
fi
export REDIS_URL DATABASE_URL

events=("$@")
if ((${#events[@]} == 0)); then
	events=(demo)
fi

"$BIN" migrate
for event in "${events[@]}"; do
	"$BIN" seed "$event"
done
