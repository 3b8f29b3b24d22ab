#!/usr/bin/env bash
# The worker's throughput into PostgreSQL on this machine: `worker bench` fills a fresh
# event's commit streams (ORDERS commits for distinct seats of a SEATS-seat event),
# drains them with the `worker run` consumers and prints orders/s, once for each
# WORKER_BATCH in BATCHES (messages per PostgreSQL transaction), so the figures show
# what batching buys. The services come from infra/local/stack.sh (started if needed,
# left as found).
#
#   worker/bench.sh                         # ORDERS=50000 SEATS=1000000 BATCHES="1 10 100 250"
#   ORDERS=20000 BATCHES=100 worker/bench.sh
#
# Other WORKER_* variables (WORKER_CONCURRENCY, WORKER_PG_CONNECTIONS, ...) pass through.
# The machine is shared with PostgreSQL and Redis: read the figures as this machine's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
STACK="$ROOT/infra/local/stack.sh"
BIN="${WORKER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/worker}"
ORDERS="${ORDERS:-50000}"
SEATS="${SEATS:-1000000}"
BATCHES="${BATCHES:-1 10 100 250}"

log() { printf 'bench: %s\n' "$*" >&2; }

if [[ -z "${WORKER_BIN:-}" ]]; then
	log "building the worker (release)"
	cargo build --release -j"${JOBS:-2}" -p worker --bin worker >&2
fi
started=""
if ! "$STACK" status >/dev/null 2>&1; then
	started=1
	"$STACK" up
fi
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	if [[ -n "$started" ]]; then
		"$STACK" down || true
	fi
}
trap cleanup EXIT
eval "$("$STACK" env)"
export REDIS_URL DATABASE_URL
export WORKER_LOG="${WORKER_LOG:-warn}"

"$BIN" migrate >&2
log "$(nproc) cores; $(uptime | sed 's/.*load/load/')"
for batch in $BATCHES; do
	# A one-message batch is slow (one commit, one fsync each): fewer orders suffice.
	orders=$ORDERS
	if ((batch < 10 && orders > 10000)); then
		orders=10000
	fi
	WORKER_BATCH=$batch "$BIN" bench --orders "$orders" --seats "$SEATS"
done
