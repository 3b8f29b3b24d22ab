#!/usr/bin/env bash
# Local services for max-tps-ecs: Redis and PostgreSQL on private loopback ports,
# with their data under .run/ in the repository (git-ignored). No Docker, no systemd.
#
#   infra/local/stack.sh deps     install what is missing (Debian packages, .run/venv)
#   infra/local/stack.sh up       start Redis and PostgreSQL (idempotent), wait until ready
#   infra/local/stack.sh down     stop both, leave no process behind
#   infra/local/stack.sh status   print what runs (exit 0 when both run, 3 otherwise)
#   infra/local/stack.sh env      print export lines: eval "$(infra/local/stack.sh env)"
#   infra/local/stack.sh clean    down, then delete the service data (keeps .run/venv)
#   infra/local/stack.sh cluster-up      a Redis Cluster: 3 primaries + 3 replicas (idempotent)
#   infra/local/stack.sh cluster-down    stop its six nodes (their data stays)
#   infra/local/stack.sh cluster-status  its nodes and roles (exit 0 when its state is ok, 3 otherwise)
#   infra/local/stack.sh cluster-env     export REDIS_URL=redis-cluster://...: eval it
#   infra/local/stack.sh cluster-clean   cluster-down, then delete the cluster's data
#
# Environment: REDIS_PORT (16379), PG_PORT (15432), PG_BIN (a PostgreSQL bin directory,
# found automatically otherwise), CLUSTER_PORT (17001: the cluster's nodes listen on
# CLUSTER_PORT .. CLUSTER_PORT+5, their cluster bus 10000 above), CLUSTER_NODE_TIMEOUT_MS
# (2000: how long a primary may be silent before its replica takes over).
#
# Redis runs with infra/local/redis.conf: AOF on, fsynced before every reply, so a kill -9
# of Redis loses no accepted commit (the local commit queue is a Redis Stream). Its data
# is .run/redis/appendonlydir; `up` after a crash loads it again.
#
# PostgreSQL refuses to run as root: as root, initdb/pg_ctl run as the system user
# `maxtps` (created if absent). If that user cannot reach .run/ (a clone under /root,
# say), the cluster lives in /var/lib/maxtps/<hash of the repo path> and .run/pg is a
# symlink to it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
RUN_DIR="$ROOT/.run"
VENV="$RUN_DIR/venv"
# Pinned: the Makefile's openapi-test uses this version's CLI flags.
PY_REQS="$ROOT/infra/local/requirements.txt"

REDIS_PORT="${REDIS_PORT:-16379}"
REDIS_PIDFILE="$RUN_DIR/redis.pid"
REDIS_LOG="$RUN_DIR/redis.log"
REDIS_CONF="$ROOT/infra/local/redis.conf"

PG_PORT="${PG_PORT:-15432}"
PG_ROLE=ticket
PG_PASSWORD=ticket
PG_DATABASE=ticket
PG_OS_USER=maxtps
PG_OS_HOME=/var/lib/maxtps

log() { printf 'stack: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as root: directly, or through sudo when there is one.
as_root() {
	if is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

hash_of_root() { printf '%s' "$ROOT" | sha1sum | cut -c1-12; }

# Wait until "$@" succeeds, at most $1 seconds (polling every 0.2 s).
wait_for() {
	local secs=$1
	shift
	local deadline=$((SECONDS + secs))
	until "$@"; do
		if ((SECONDS >= deadline)); then
			return 1
		fi
		sleep 0.2
	done
}

# A live process; a zombie (daemons are reparented to pid 1, which may reap late) is not.
pid_alive() {
	local pid=${1:-} state=""
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
	state="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || true
	[[ "$state" != Z ]]
}

pid_gone() { ! pid_alive "$1"; }

read_pid() {
	local f=$1 pid=""
	if [[ -f "$f" ]]; then
		read -r pid <"$f" || true
	fi
	if [[ "$pid" =~ ^[0-9]+$ ]]; then
		printf '%s' "$pid"
	fi
}

# Send TERM, wait up to $2 seconds, then KILL.
stop_pid() {
	local pid=$1 secs=$2
	pid_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_for "$secs" pid_gone "$pid"; then
		log "pid $pid still alive after ${secs}s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		wait_for 5 pid_gone "$pid" || true
	fi
}

tail_log() {
	local f=$1
	if [[ -r "$f" ]]; then
		log "last lines of $f:"
		tail -n 40 "$f" >&2 || true
	fi
}

# ----------------------------------------------------------------------------- deps

APT_UPDATED=""
POLICY_RC_MADE=""

cleanup_policy_rc() {
	if [[ -n "$POLICY_RC_MADE" ]]; then
		as_root rm -f /usr/sbin/policy-rc.d || true
		POLICY_RC_MADE=""
	fi
}

apt_install() {
	mkdir -p "$RUN_DIR"
	local aptlog="$RUN_DIR/apt.log"
	log "installing Debian packages: $*"
	if ! is_root && ! command -v sudo >/dev/null 2>&1; then
		die "not root and no sudo: install these Debian packages by hand: $*"
	fi
	if [[ -z "$APT_UPDATED" ]]; then
		if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$aptlog" 2>&1; then
			tail_log "$aptlog"
			die "apt-get update failed"
		fi
		APT_UPDATED=1
	fi
	# Debian's redis-server and postgresql packages start system daemons (a Redis on
	# 6379, a cluster 15/main on 5432) from their postinst. We run our own on private
	# ports, so keep the package scripts from starting anything while we install.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# temporary, from max-tps-ecs infra/local/stack.sh deps\nexit 101\n' |
			as_root tee /usr/sbin/policy-rc.d >/dev/null
		as_root chmod 0755 /usr/sbin/policy-rc.d
		POLICY_RC_MADE=1
		trap cleanup_policy_rc EXIT
	fi
	local rc=0
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
		>>"$aptlog" 2>&1 || rc=$?
	cleanup_policy_rc
	if ((rc != 0)); then
		tail_log "$aptlog"
		die "apt-get install $* failed"
	fi
}

# Print the bin directory of a PostgreSQL installation (initdb, pg_ctl, postgres, psql).
pg_bin_dir() {
	local d c ver
	local -a cands=()
	if [[ -n "${PG_BIN:-}" ]]; then
		cands+=("$PG_BIN")
	fi
	# An existing cluster wants the binaries of its own major version.
	if [[ -r "$RUN_DIR/pg/PG_VERSION" ]]; then
		read -r ver <"$RUN_DIR/pg/PG_VERSION" || true
		cands+=("/usr/lib/postgresql/${ver:-none}/bin")
	fi
	for c in initdb pg_ctl; do
		if d="$(command -v "$c" 2>/dev/null)"; then
			cands+=("$(dirname "$(readlink -f "$d")")")
		fi
	done
	cands+=(/usr/lib/postgresql/15/bin)
	while IFS= read -r d; do
		cands+=("$d")
	done < <(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -rV)
	for d in "${cands[@]}"; do
		if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" && -x "$d/psql" && -x "$d/pg_isready" ]]; then
			printf '%s\n' "$d"
			return 0
		fi
	done
	return 1
}

python_has_venv() { python3 -c 'import venv, ensurepip' >/dev/null 2>&1; }

# The venv is current when it was built from this very requirements file.
venv_ok() {
	[[ -x "$VENV/bin/python" ]] && cmp -s "$PY_REQS" "$VENV/.requirements.txt"
}

cmd_deps() {
	local -a pkgs=()
	command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
	command -v redis-cli >/dev/null 2>&1 || pkgs+=(redis-tools)
	pg_bin_dir >/dev/null || pkgs+=(postgresql)
	command -v curl >/dev/null 2>&1 || pkgs+=(curl ca-certificates)
	command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
	if ! command -v python3 >/dev/null 2>&1; then
		pkgs+=(python3 python3-venv)
	elif ! venv_ok && ! python_has_venv; then
		pkgs+=(python3-venv)
	fi
	if ((${#pkgs[@]} > 0)); then
		apt_install "${pkgs[@]}"
	fi
	pg_bin_dir >/dev/null || die "PostgreSQL installed, but no initdb/pg_ctl found (set PG_BIN)"

	if ! venv_ok; then
		mkdir -p "$RUN_DIR"
		if [[ -e "$VENV" ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
			log "removing broken venv $VENV"
			rm -rf "$VENV"
		fi
		if [[ ! -x "$VENV/bin/python" ]]; then
			log "creating Python venv $VENV"
			python3 -m venv "$VENV"
		fi
		log "installing $PY_REQS into $VENV"
		local piplog="$RUN_DIR/pip.log"
		if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$PY_REQS" >"$piplog" 2>&1; then
			tail_log "$piplog"
			die "pip install -r $PY_REQS failed"
		fi
		cp "$PY_REQS" "$VENV/.requirements.txt"
	fi
}

# ----------------------------------------------------------------------------- redis

redis_cli() { timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

redis_ping() {
	[[ "$(redis_cli ping 2>/dev/null)" == PONG ]]
}

redis_pid() {
	local pid
	pid="$(read_pid "$REDIS_PIDFILE")"
	if pid_alive "$pid"; then
		printf '%s' "$pid"
	fi
}

# A directive's value in redis.conf.
redis_conf() { awk -v k="$1" '$1 == k {print $2}' "$REDIS_CONF"; }

redis_config_get() { redis_cli config get "$1" 2>/dev/null | tail -n 1; }

# The AOF is on and written (no rewrite pending): what Redis acknowledges is on disk.
redis_aof_on() {
	local info
	info="$(redis_cli info persistence 2>/dev/null | tr -d '\r')" || return 1
	grep -qx 'aof_enabled:1' <<<"$info" &&
		grep -qx 'aof_rewrite_in_progress:0' <<<"$info" &&
		grep -qx 'aof_rewrite_scheduled:0' <<<"$info"
}

# A Redis started by an older stack.sh runs without the AOF: switch it on in place (an
# AOF rewrite writes down what it holds) rather than restart it and lose its data.
redis_make_durable() {
	local fsync
	fsync="$(redis_conf appendfsync)"
	if [[ "$(redis_config_get appendonly)" != yes || "$(redis_config_get appendfsync)" != "$fsync" ]]; then
		log "Redis on 127.0.0.1:$REDIS_PORT runs without the persistence of $REDIS_CONF: setting appendonly yes, appendfsync $fsync"
		[[ "$(redis_cli config set appendfsync "$fsync")" == OK ]] || die "CONFIG SET appendfsync $fsync refused"
		[[ "$(redis_cli config set appendonly yes)" == OK ]] || die "CONFIG SET appendonly yes refused"
	fi
	if ! wait_for 120 redis_aof_on; then
		tail_log "$REDIS_LOG"
		die "Redis on 127.0.0.1:$REDIS_PORT did not finish writing its AOF within 120 s"
	fi
}

redis_up() {
	if redis_ping; then
		redis_make_durable
		return 0
	fi
	command -v redis-server >/dev/null 2>&1 || die "redis-server not found; run: infra/local/stack.sh deps"
	mkdir -p "$RUN_DIR/redis"
	if [[ -f "$REDIS_PIDFILE" && -z "$(redis_pid)" ]]; then
		rm -f "$REDIS_PIDFILE"
	fi
	: >>"$REDIS_LOG"
	redis-server "$REDIS_CONF" --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
		--daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" \
		--dir "$RUN_DIR/redis" ||
		{
			tail_log "$REDIS_LOG"
			die "redis-server failed to start"
		}
	# After a crash, Redis answers only once it has loaded its AOF again.
	if ! wait_for 120 redis_ping; then
		tail_log "$REDIS_LOG"
		die "Redis did not answer on 127.0.0.1:$REDIS_PORT within 120 s"
	fi
	redis_make_durable
	log "Redis up on 127.0.0.1:$REDIS_PORT (pid $(redis_pid), AOF appendfsync $(redis_config_get appendfsync) in $RUN_DIR/redis)"
}

redis_down() {
	local pid
	pid="$(redis_pid)"
	if [[ -n "$pid" ]]; then
		# nosave: no RDB snapshot; Redis fsyncs the AOF on shutdown all the same.
		redis_cli shutdown nosave >/dev/null 2>&1 || true
		wait_for 10 pid_gone "$pid" || stop_pid "$pid" 10
		log "Redis stopped (pid $pid)"
	elif redis_ping; then
		log "warning: something answers on 127.0.0.1:$REDIS_PORT but $REDIS_PIDFILE names no live process; left alone"
	fi
	rm -f "$REDIS_PIDFILE"
}

# ----------------------------------------------------------------------------- redis cluster

# Six nodes on consecutive ports; `redis-cli --cluster create` makes the first three
# primaries and gives each a replica. Each node has its own directory under
# .run/cluster/ (AOF and nodes.conf, the node's view of the cluster), so `cluster-up`
# after `cluster-down` brings back the same cluster with its data.
CLUSTER_PORT="${CLUSTER_PORT:-17001}"
CLUSTER_NODE_TIMEOUT_MS="${CLUSTER_NODE_TIMEOUT_MS:-2000}"
CLUSTER_DIR="$RUN_DIR/cluster"

cluster_ports() { seq "$CLUSTER_PORT" $((CLUSTER_PORT + 5)); }

node_cli() {
	local port=$1
	shift
	timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

node_ping() { [[ "$(node_cli "$1" ping 2>/dev/null)" == PONG ]]; }

node_pid() {
	local pid
	pid="$(read_pid "$CLUSTER_DIR/$1/redis.pid")"
	if pid_alive "$pid"; then
		printf '%s' "$pid"
	fi
}

# A field of CLUSTER INFO on one node.
node_info() { node_cli "$1" cluster info 2>/dev/null | tr -d '\r' | awk -F: -v k="$2" '$1 == k {print $2}'; }

cluster_ok() {
	local port
	for port in $(cluster_ports); do
		[[ "$(node_info "$port" cluster_state)" == ok ]] || return 1
	done
}

# Every node knows all six: the gossip after a create or a restart has settled.
cluster_settled() {
	local port
	for port in $(cluster_ports); do
		[[ "$(node_info "$port" cluster_known_nodes)" == 6 ]] || return 1
	done
	cluster_ok
}

node_up() {
	local port=$1 dir="$CLUSTER_DIR/$1"
	node_ping "$port" && return 0
	mkdir -p "$dir"
	: >>"$dir/redis.log"
	redis-server "$REDIS_CONF" --bind 127.0.0.1 --port "$port" --protected-mode yes \
		--cluster-enabled yes --cluster-config-file nodes.conf \
		--cluster-node-timeout "$CLUSTER_NODE_TIMEOUT_MS" \
		--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" ||
		{
			tail_log "$dir/redis.log"
			die "redis-server (cluster node $port) failed to start"
		}
}

cmd_cluster_up() {
	command -v redis-server >/dev/null 2>&1 || die "redis-server not found; run: infra/local/stack.sh deps"
	local port
	local -a addrs=()
	for port in $(cluster_ports); do
		node_up "$port"
		addrs+=("127.0.0.1:$port")
	done
	for port in $(cluster_ports); do
		if ! wait_for 120 node_ping "$port"; then
			tail_log "$CLUSTER_DIR/$port/redis.log"
			die "cluster node 127.0.0.1:$port did not answer within 120 s"
		fi
	done
	# A node that owns no slot and knows no other node is new: make the cluster.
	if [[ "$(node_info "$CLUSTER_PORT" cluster_known_nodes)" == 1 ]]; then
		log "creating the cluster on ${addrs[*]}"
		local clog="$CLUSTER_DIR/create.log"
		if ! timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 \
			--cluster-yes >"$clog" 2>&1; then
			tail_log "$clog"
			die "redis-cli --cluster create failed"
		fi
	fi
	if ! wait_for 60 cluster_settled; then
		cmd_cluster_status >&2 || true
		die "the cluster on 127.0.0.1:$CLUSTER_PORT.. did not reach state ok within 60 s"
	fi
	log "Redis Cluster up on 127.0.0.1:$CLUSTER_PORT-$((CLUSTER_PORT + 5)) (3 primaries, 3 replicas, data in $CLUSTER_DIR)"
}

cmd_cluster_down() {
	local port pid
	for port in $(cluster_ports); do
		pid="$(node_pid "$port")"
		if [[ -n "$pid" ]]; then
			node_cli "$port" shutdown nosave >/dev/null 2>&1 || true
			wait_for 10 pid_gone "$pid" || stop_pid "$pid" 10
			log "cluster node $port stopped (pid $pid)"
		elif node_ping "$port"; then
			log "warning: something answers on 127.0.0.1:$port but $CLUSTER_DIR/$port/redis.pid names no live process; left alone"
		fi
		rm -f "$CLUSTER_DIR/$port/redis.pid"
	done
}

cmd_cluster_status() {
	local port pid role
	for port in $(cluster_ports); do
		if node_ping "$port"; then
			pid="$(node_pid "$port")"
			role="$(node_cli "$port" role 2>/dev/null | head -n 1)"
			printf 'node %s  running  pid %-7s %-7s cluster_state %s\n' "$port" "${pid:-?}" "$role" \
				"$(node_info "$port" cluster_state)"
		else
			printf 'node %s  stopped\n' "$port"
		fi
	done
	cluster_ok || return 3
}

cluster_url() {
	local port sep="" url="redis-cluster://"
	for port in $(cluster_ports); do
		url+="${sep}127.0.0.1:$port"
		sep=,
	done
	printf '%s' "$url"
}

cmd_cluster_env() {
	printf 'export REDIS_URL=%q\n' "$(cluster_url)"
	printf 'export DATABASE_URL=%q\n' "$(database_url)"
}

cmd_cluster_clean() {
	cmd_cluster_down
	rm -rf "$CLUSTER_DIR"
	log "cluster data removed ($CLUSTER_DIR)"
}

# ----------------------------------------------------------------------------- postgres

PGBIN=""
PGBASE=""
PGDATA_DIR=""
PGSOCK=""
PGLOG=""

# Run a PostgreSQL server tool as the user that owns the cluster.
as_pg() {
	if is_root; then
		if command -v runuser >/dev/null 2>&1; then
			(cd / && runuser -u "$PG_OS_USER" -- "$@")
		else
			local cmd
			printf -v cmd '%q ' "$@"
			(cd / && su -s /bin/sh "$PG_OS_USER" -c "$cmd")
		fi
	else
		"$@"
	fi
}

ensure_pg_os_user() {
	is_root || return 0
	if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
		log "creating system user $PG_OS_USER (PostgreSQL will not run as root)"
		useradd --system --user-group --no-create-home --home-dir "$PG_OS_HOME" \
			--shell /usr/sbin/nologin "$PG_OS_USER"
	fi
}

# Decide where the cluster lives; sets PGBASE, PGDATA_DIR, PGSOCK, PGLOG.
pg_paths() {
	local base="$RUN_DIR"
	if [[ -L "$RUN_DIR/pg" ]]; then
		base="$(dirname "$(readlink -f "$RUN_DIR/pg")")"
	elif [[ ! -d "$RUN_DIR/pg" ]] && is_root && id -u "$PG_OS_USER" >/dev/null 2>&1 &&
		! (cd / && runuser -u "$PG_OS_USER" -- test -x "$RUN_DIR") 2>/dev/null; then
		# maxtps cannot traverse the path to the repository (e.g. a clone under /root).
		base="$PG_OS_HOME/$(hash_of_root)"
	fi
	PGBASE="$base"
	PGDATA_DIR="$base/pg"
	PGLOG="$base/postgresql.log"
	PGSOCK="$base/pgsock"
	# A Unix socket path must fit in sun_path (108 bytes).
	if ((${#PGSOCK} + ${#PG_PORT} + 12 > 100)); then
		PGSOCK="/tmp/maxtps-pgsock-$(hash_of_root)"
	fi
}

pg_isready_rc() {
	local rc=0
	"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 3 >/dev/null 2>&1 || rc=$?
	printf '%s' "$rc"
}

pg_ready() { [[ "$(pg_isready_rc)" == 0 ]]; }

pg_pid() {
	local pid
	pid="$(read_pid "$PGDATA_DIR/postmaster.pid" 2>/dev/null)"
	if pid_alive "$pid"; then
		printf '%s' "$pid"
	fi
}

pg_prepare_dirs() {
	mkdir -p "$RUN_DIR"
	if [[ "$PGBASE" != "$RUN_DIR" ]]; then
		mkdir -p "$PGBASE"
		chmod 0755 "$PG_OS_HOME" "$PGBASE" 2>/dev/null || true
		ln -sfn "$PGDATA_DIR" "$RUN_DIR/pg"
		ln -sfn "$PGLOG" "$RUN_DIR/postgresql.log"
	fi
	mkdir -p "$PGDATA_DIR" "$PGSOCK"
	chmod 0700 "$PGDATA_DIR"
	chmod 0755 "$PGSOCK"
	touch "$PGLOG"
	if is_root; then
		if [[ "$(stat -c %U "$PGDATA_DIR")" != "$PG_OS_USER" ]] ||
			[[ -n "$(find "$PGDATA_DIR" ! -user "$PG_OS_USER" -print -quit)" ]]; then
			chown -R "$PG_OS_USER:$PG_OS_USER" "$PGDATA_DIR"
		fi
		chown "$PG_OS_USER:$PG_OS_USER" "$PGSOCK" "$PGLOG"
		if ! (cd / && runuser -u "$PG_OS_USER" -- test -w "$PGDATA_DIR"); then
			die "user $PG_OS_USER cannot write $PGDATA_DIR (check the permissions of its parents)"
		fi
	fi
}

pg_initdb() {
	[[ -s "$PGDATA_DIR/PG_VERSION" ]] && return 0
	# A half-made cluster from an interrupted initdb: start over (it is ours, under .run/).
	if [[ -n "$(find "$PGDATA_DIR" -mindepth 1 -print -quit)" ]]; then
		log "removing incomplete cluster in $PGDATA_DIR"
		find "$PGDATA_DIR" -mindepth 1 -delete
	fi
	log "initdb $PGDATA_DIR"
	local initlog="$RUN_DIR/initdb.log"
	if ! as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --no-locale \
		--auth-local=trust --auth-host=scram-sha-256 >"$initlog" 2>&1; then
		tail_log "$initlog"
		die "initdb failed"
	fi
	printf '\n# max-tps-ecs local stack (infra/local/stack.sh)\ninclude_if_exists = '"'"'maxtps.conf'"'"'\n' \
		>>"$PGDATA_DIR/postgresql.conf"
}

# Settings that follow the environment (port, socket dir) are rewritten at every start.
pg_write_conf() {
	cat >"$PGDATA_DIR/maxtps.conf" <<EOF
# Written by infra/local/stack.sh at each start; edits are lost.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGSOCK'
max_connections = 200
shared_buffers = 256MB
EOF
	if is_root; then
		chown "$PG_OS_USER:$PG_OS_USER" "$PGDATA_DIR/maxtps.conf"
	fi
}

pg_ensure_db() {
	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -p "$PG_PORT" -U postgres -d postgres \
		>/dev/null <<EOF
SELECT format('CREATE ROLE %I LOGIN CREATEDB', '$PG_ROLE')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE') \gexec
ALTER ROLE $PG_ROLE WITH LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_DATABASE', '$PG_ROLE')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE') \gexec
EOF
}

database_url() { printf 'postgres://%s:%s@127.0.0.1:%s/%s' "$PG_ROLE" "$PG_PASSWORD" "$PG_PORT" "$PG_DATABASE"; }

pg_up() {
	PGBIN="$(pg_bin_dir)" || die "PostgreSQL binaries not found; run: infra/local/stack.sh deps"
	local rc
	rc="$(pg_isready_rc)"
	if [[ "$rc" == 1 ]]; then # starting up or shutting down: give it time
		wait_for 60 pg_ready || true
		rc="$(pg_isready_rc)"
	fi
	if [[ "$rc" == 0 ]]; then
		return 0
	fi
	ensure_pg_os_user
	mkdir -p "$RUN_DIR"
	pg_paths
	pg_prepare_dirs
	pg_initdb
	pg_write_conf
	if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t 60 -s start; then
		tail_log "$PGLOG"
		die "PostgreSQL failed to start"
	fi
	if ! wait_for 60 pg_ready; then
		tail_log "$PGLOG"
		die "PostgreSQL did not answer on 127.0.0.1:$PG_PORT within 60 s"
	fi
	if ! pg_ensure_db; then
		tail_log "$PGLOG"
		die "could not create role/database $PG_DATABASE"
	fi
	if ! "$PGBIN/psql" -X -q -At -d "$(database_url)" -c 'SELECT 1' >/dev/null; then
		tail_log "$PGLOG"
		die "cannot connect with $(database_url)"
	fi
	log "PostgreSQL up on 127.0.0.1:$PG_PORT (pid $(pg_pid), data $PGDATA_DIR)"
}

pg_down() {
	PGBIN="$(pg_bin_dir)" || return 0
	pg_paths
	local pid
	pid="$(pg_pid)"
	if [[ -n "$pid" ]]; then
		if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 -s stop; then
			as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 30 -s stop || stop_pid "$pid" 5
		fi
		# Backends notice the postmaster is gone and exit on their own; make sure.
		wait_for 10 pid_gone "$pid" || stop_pid "$pid" 5
		log "PostgreSQL stopped (pid $pid)"
	elif pg_ready; then
		log "warning: something answers on 127.0.0.1:$PG_PORT but is not the cluster in $PGDATA_DIR; left alone"
	fi
}

# ----------------------------------------------------------------------------- commands

cmd_up() {
	redis_up
	pg_up
}

cmd_down() {
	redis_down
	pg_down
}

cmd_status() {
	local ok=0 pid
	if redis_ping; then
		pid="$(redis_pid)"
		printf 'redis     running  pid %-7s redis://127.0.0.1:%s  appendonly %s, appendfsync %s\n' \
			"${pid:-?}" "$REDIS_PORT" "$(redis_config_get appendonly)" "$(redis_config_get appendfsync)"
	else
		printf 'redis     stopped  (127.0.0.1:%s)\n' "$REDIS_PORT"
		ok=3
	fi
	if PGBIN="$(pg_bin_dir)"; then
		pg_paths
		if pg_ready; then
			pid="$(pg_pid)"
			printf 'postgres  running  pid %-7s postgres://%s:***@127.0.0.1:%s/%s  data %s\n' \
				"${pid:-?}" "$PG_ROLE" "$PG_PORT" "$PG_DATABASE" "$PGDATA_DIR"
		else
			printf 'postgres  stopped  (127.0.0.1:%s)\n' "$PG_PORT"
			ok=3
		fi
	else
		printf 'postgres  not installed (run: infra/local/stack.sh deps)\n'
		ok=3
	fi
	return "$ok"
}

cmd_env() {
	printf 'export REDIS_URL=%q\n' "redis://127.0.0.1:$REDIS_PORT"
	printf 'export DATABASE_URL=%q\n' "$(database_url)"
}

cmd_clean() {
	cmd_down
	cmd_cluster_down
	local ext=""
	if [[ -L "$RUN_DIR/pg" ]]; then
		ext="$(dirname "$(readlink -f "$RUN_DIR/pg")")"
	fi
	if [[ -d "$RUN_DIR" ]]; then
		find "$RUN_DIR" -mindepth 1 -maxdepth 1 ! -name venv -exec rm -rf {} +
	fi
	if [[ -n "$ext" && "$ext" == "$PG_OS_HOME"/* ]]; then
		rm -rf "$ext"
	fi
	rm -rf "/tmp/maxtps-pgsock-$(hash_of_root)"
	log "service data removed (kept $VENV)"
}

usage() {
	sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
	local cmd="${1:-}"
	case "$cmd" in
	deps) cmd_deps ;;
	up) cmd_up ;;
	down) cmd_down ;;
	status) cmd_status ;;
	env) cmd_env ;;
	clean) cmd_clean ;;
	cluster-up) cmd_cluster_up ;;
	cluster-down) cmd_cluster_down ;;
	cluster-status) cmd_cluster_status ;;
	cluster-env) cmd_cluster_env ;;
	cluster-clean) cmd_cluster_clean ;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
