#!/usr/bin/env bash
# Start/stop `worker run` (the commit-queue consumer) in the background, for
# `make start|stop`.
#
#   infra/local/worker.sh start  [--pidfile FILE] [--log FILE] [--bin PATH]
#   infra/local/worker.sh stop   [--pidfile FILE]
#   infra/local/worker.sh status [--pidfile FILE]
#
# Defaults: --pidfile .run/worker.pid, --log .run/worker.log, --bin $WORKER_BIN or
# ${CARGO_TARGET_DIR:-target}/release/worker, as edge.sh. REDIS_URL/DATABASE_URL come
# from the environment, else from `infra/local/stack.sh env`; the schema must be
# migrated (infra/local/seed.sh, which `edge.sh start` runs). `start` returns once the
# worker consumes (its log says "consuming", at most WORKER_START_TIMEOUT seconds, 30 by
# default; with WORKER_LOG=warn or error, once it is alive after 1 s); `stop` sends
# SIGTERM (the worker finishes and acks the batch in hand), waits up to
# WORKER_STOP_TIMEOUT seconds (30) and then sends SIGKILL.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
STACK="$ROOT/infra/local/stack.sh"

log() { printf 'worker: %s\n' "$*" >&2; }
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
		return 0
	fi
	[[ -x "$BIN" ]] || die "$BIN not found or not executable (build it: make build)"
	if [[ -z "${REDIS_URL:-}" || -z "${DATABASE_URL:-}" ]]; then
		eval "$("$STACK" env)"
	fi
	export REDIS_URL DATABASE_URL
	mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOG")"
	: >"$LOG"
	# setsid: its own session, out of reach of the starting shell's Ctrl-C and hang-up.
	setsid "$BIN" run </dev/null >>"$LOG" 2>&1 &
	pid=$!
	printf '%s\n' "$pid" >"$PIDFILE"
	log "started $BIN run (pid $pid, log $LOG)"
	local deadline=$((SECONDS + ${WORKER_START_TIMEOUT:-30})) ready=(grep -q 'consuming' "$LOG")
	case "${WORKER_LOG:-info}" in
	error | warn) ready=(sleep 1) ;; # no info lines to wait for: alive after 1 s will do
	esac
	until "${ready[@]}" 2>/dev/null; do
		if ! pid_alive "$pid"; then
			tail_log
			rm -f "$PIDFILE"
			die "worker (pid $pid) exited before it started consuming"
		fi
		if ((SECONDS >= deadline)); then
			tail_log
			cmd_stop
			die "the worker did not start consuming within ${WORKER_START_TIMEOUT:-30} s"
		fi
		sleep 0.2
	done
	log "ready: consuming the commit queue"
}

cmd_stop() {
	local pid
	pid="$(read_pid)"
	if ! pid_alive "$pid"; then
		rm -f "$PIDFILE"
		return 0
	fi
	# The worker leads its own process group (setsid): signal the group.
	local target=$pid pgid
	pgid="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f3)" || true
	if [[ "$pgid" == "$pid" ]]; then
		target="-$pid"
	fi
	kill -TERM -- "$target" 2>/dev/null || true
	local deadline=$((SECONDS + ${WORKER_STOP_TIMEOUT:-30}))
	while pid_alive "$pid"; do
		if ((SECONDS >= deadline)); then
			log "pid $pid still running after ${WORKER_STOP_TIMEOUT:-30} s, sending SIGKILL"
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
		printf 'worker    running  pid %-7s (%s)\n' "$pid" "$PIDFILE"
	else
		printf 'worker    stopped  (%s)\n' "$PIDFILE"
		return 3
	fi
}

CMD="${1:-}"
[[ $# -gt 0 ]] && shift
PIDFILE="$ROOT/.run/worker.pid"
LOG="$ROOT/.run/worker.log"
BIN="${WORKER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/worker}"
while [[ $# -gt 0 ]]; do
	case "$1" in
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
	sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
