#!/usr/bin/env bash
# Start/stop the edge binary in the background, for `make start|stop` and `make openapi-test`.
#
#   infra/local/edge.sh start  [--addr HOST:PORT] [--pidfile FILE] [--log FILE] [--bin PATH]
#   infra/local/edge.sh stop   [--pidfile FILE]
#   infra/local/edge.sh status [--pidfile FILE]
#
# Defaults: --addr $EDGE_ADDR or 127.0.0.1:8080, --pidfile .run/edge.pid, --log .run/edge.log,
# --bin $EDGE_BIN or target/release/edge. REDIS_URL/DATABASE_URL come from the environment,
# else from `infra/local/stack.sh env`. Before starting the edge, `start` runs
# infra/local/seed.sh (worker migrate, worker seed demo; $WORKER_BIN or
# target/release/worker). `start` returns once GET /public/health answers 200
# (at most EDGE_START_TIMEOUT seconds, 60 by default); `stop` sends SIGTERM, waits up to
# EDGE_STOP_TIMEOUT seconds (30) and then sends SIGKILL.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
STACK="$ROOT/infra/local/stack.sh"
SEED="$ROOT/infra/local/seed.sh"

log() { printf 'edge: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

pid_alive() {
	local pid=${1:-} state=""
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	state="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || true
	[[ "$state" != Z ]]
}

read_pid() {
	local pid=""
	if [[ -f "$PIDFILE" ]]; then
		read -r pid <"$PIDFILE" || true
	fi
	if [[ "$pid" =~ ^[0-9]+$ ]]; then
		printf '%s' "$pid"
	fi
}

healthy() {
	local code
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$ADDR/public/health" 2>/dev/null)" || true
	[[ "$code" == 200 ]]
}

tail_log() {
	if [[ -r "$LOG" ]]; then
		log "last lines of $LOG:"
		tail -n 40 "$LOG" >&2 || true
	fi
}

cmd_start() {
	local pid
	pid="$(read_pid)"
	if pid_alive "$pid"; then
		log "already running (pid $pid, $PIDFILE)"
	else
		[[ -x "$BIN" ]] || die "$BIN not found or not executable (build it: make build)"
		if [[ -z "${REDIS_URL:-}" || -z "${DATABASE_URL:-}" ]]; then
			eval "$("$STACK" env)"
		fi
		export REDIS_URL DATABASE_URL
		"$SEED" || die "worker migrate/seed failed; the edge was not started"
		mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOG")"
		: >"$LOG"
		# setsid: its own session, so a Ctrl-C or hang-up of the shell that started it
		# does not reach it; stdin/stdout/stderr detached from the caller.
		EDGE_ADDR="$ADDR" setsid "$BIN" </dev/null >>"$LOG" 2>&1 &
		pid=$!
		printf '%s\n' "$pid" >"$PIDFILE"
		log "started $BIN on $ADDR (pid $pid, log $LOG)"
	fi
	local deadline=$((SECONDS + ${EDGE_START_TIMEOUT:-60}))
	until healthy; do
		if ! pid_alive "$pid"; then
			tail_log
			rm -f "$PIDFILE"
			die "edge (pid $pid) exited before GET http://$ADDR/public/health answered 200"
		fi
		if ((SECONDS >= deadline)); then
			tail_log
			cmd_stop
			die "GET http://$ADDR/public/health did not answer 200 within ${EDGE_START_TIMEOUT:-60} s"
		fi
		sleep 0.25
	done
	pid_alive "$pid" || die "something answers on $ADDR, but it is not the edge we started (pid $pid exited)"
	log "ready: http://$ADDR/public/health is 200"
}

cmd_stop() {
	local pid
	pid="$(read_pid)"
	if ! pid_alive "$pid"; then
		rm -f "$PIDFILE"
		return 0
	fi
	# The edge leads its own process group (setsid): signal the group, so nothing it
	# spawned stays behind.
	local target=$pid pgid
	pgid="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f3)" || true
	if [[ "$pgid" == "$pid" ]]; then
		target="-$pid"
	fi
	kill -TERM -- "$target" 2>/dev/null || true
	local deadline=$((SECONDS + ${EDGE_STOP_TIMEOUT:-30}))
	while pid_alive "$pid"; do
		if ((SECONDS >= deadline)); then
			log "pid $pid still running after ${EDGE_STOP_TIMEOUT:-30} s, sending SIGKILL"
			kill -KILL -- "$target" 2>/dev/null || true
			break
		fi
		sleep 0.2
	done
	local n=0
	while pid_alive "$pid" && ((n < 50)); do
		sleep 0.1
		n=$((n + 1))
	done
	rm -f "$PIDFILE"
	log "stopped (pid $pid)"
}

cmd_status() {
	local pid
	pid="$(read_pid)"
	if pid_alive "$pid"; then
		printf 'edge      running  pid %-7s (%s)\n' "$pid" "$PIDFILE"
	else
		printf 'edge      stopped  (%s)\n' "$PIDFILE"
		return 3
	fi
}

CMD="${1:-}"
[[ $# -gt 0 ]] && shift
ADDR="${EDGE_ADDR:-127.0.0.1:8080}"
# Local load comes from one address: no rate limits unless the environment asks.
export RATE_LIMITS="${RATE_LIMITS:-off}"
PIDFILE="$ROOT/.run/edge.pid"
LOG="$ROOT/.run/edge.log"
BIN="${EDGE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/edge}"
while [[ $# -gt 0 ]]; do
	case "$1" in
	--addr) ADDR="$2" ;;
	--pidfile) PIDFILE="$2" ;;
	--log) LOG="$2" ;;
	--bin) BIN="$2" ;;
	*) die "unknown option $1" ;;
	esac
	shift 2
done

case "$CMD" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
	sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
