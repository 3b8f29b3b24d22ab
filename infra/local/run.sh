#!/usr/bin/env bash
# `make run`: the local services, the schema and the demo event (infra/local/seed.sh:
# worker migrate, worker seed demo), then the edge and `worker run` in the foreground. Ctrl-C (or SIGTERM)
# stops every process started here and then the services, unless they were already
# running before (then they are left running, as found). If one process exits on its
# own, the others are stopped too and its exit status is returned.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
STACK="$ROOT/infra/local/stack.sh"
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
export EDGE_ADDR="${EDGE_ADDR:-127.0.0.1:8080}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"

log() { printf 'run: %s\n' "$*" >&2; }

# A live process; an exited one not reaped yet (a zombie) is not.
pid_alive() {
	local pid=$1 state=""
	kill -0 "$pid" 2>/dev/null || return 1
	state="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || true
	[[ "$state" != Z ]]
}

names=()
pids=()
services_started=""

# start_proc NAME COMMAND [ARGS...]: start a process in the background, tracked for shutdown.
start_proc() {
	local name=$1
	shift
	if [[ ! -x "$1" ]]; then
		log "error: $1 not found or not executable (build it: make build)"
		exit 1
	fi
	"$@" &
	pids+=("$!")
	names+=("$name")
	log "started $name (pid $!): $*"
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
	local rc=$?
	trap '' INT TERM
	local i pid deadline
	for i in "${!pids[@]}"; do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
	done
	deadline=$((SECONDS + STOP_TIMEOUT))
	for i in "${!pids[@]}"; do
		pid=${pids[$i]}
		while pid_alive "$pid" && ((SECONDS < deadline)); do
			sleep 0.2
		done
		if pid_alive "$pid"; then
			log "${names[$i]} (pid $pid) did not stop within ${STOP_TIMEOUT} s, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n "$services_started" ]]; then
		"$STACK" down || true
	else
		log "services were already running before; left running (make services-stop stops them)"
	fi
	exit "$rc"
}

if ! "$STACK" status >/dev/null 2>&1; then
	services_started=1
fi
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$STACK" up
eval "$("$STACK" env)"
export REDIS_URL DATABASE_URL

WORKER_BIN="$BIN_DIR/worker" "$ROOT/infra/local/seed.sh"

# One line per process.
start_proc edge "$BIN_DIR/edge"
start_proc worker "$BIN_DIR/worker" run

cat >&2 <<EOF

  edge:      http://$EDGE_ADDR
  metrics:   http://${METRICS_ADDR:-127.0.0.1:9100}/metrics (edge), http://${WORKER_METRICS_ADDR:-127.0.0.1:9101}/metrics (worker)
  worker:    draining the commit streams into PostgreSQL (worker run)
  try:       curl -s http://$EDGE_ADDR/public/ping
  redis:     $REDIS_URL
  postgres:  $DATABASE_URL
  stop:      Ctrl-C

EOF

# Wait for the first process to exit (or for Ctrl-C, which runs the traps above).
rc=0
wait -n "${pids[@]}" || rc=$?
for i in "${!pids[@]}"; do
	if ! pid_alive "${pids[$i]}"; then
		log "${names[$i]} (pid ${pids[$i]}) exited with status $rc; stopping the rest"
	fi
done
exit "$rc"
