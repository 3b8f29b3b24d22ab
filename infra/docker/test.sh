#!/usr/bin/env bash
# `make images-test`: the images of `make images` run, under podman, against the local
# Redis and PostgreSQL (REDIS_URL, DATABASE_URL; else `infra/local/stack.sh env`).
#
# - Both images: user 10001, a health check, the entrypoint, this machine's
#   architecture (podman image inspect).
# - worker: `migrate`, `seed` of a fresh event, then `run` (health check healthy).
# - edge, once per seccomp profile, each start-up log naming its driver and
#   /public/health answering 200 (and the image's health check healthy):
#   podman's default profile (io_uring_setup refused with ENOSYS) -> epoll; a profile
#   that allows everything but refuses io_uring_* with EPERM, as Docker's and
#   containerd's defaults do (what Fargate runs) -> epoll; unconfined -> io_uring.
# - A buyer's journey through the edge and worker containers: enter, hold, intent,
#   commit, status CONFIRMED.
# - An edge whose Redis does not answer: health 503 and the health check unhealthy.
# - SIGTERM (`podman stop`): the edge drains and exits 0; the worker exits 0.
#
# Containers use the host's network (`--network host`, edges on IMAGES_TEST_PORT..+3,
# default 18460) and runc (crun fails on this machine's cgroup v1/v2 hybrid), with
# ulimits no higher than this shell's (podman's defaults raise RLIMIT_NOFILE and
# RLIMIT_NPROC, which the sandbox these machines run in refuses). Prints
# `images-test: N passed, M failed`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
IMAGE_TAG="${IMAGE_TAG:-local}"
EDGE_IMAGE="${EDGE_IMAGE:-max-tps-ecs/edge:$IMAGE_TAG}"
WORKER_IMAGE="${WORKER_IMAGE:-max-tps-ecs/worker:$IMAGE_TAG}"
PORT="${IMAGES_TEST_PORT:-18460}"
# How long a container may take to log that it is up, or an order to be CONFIRMED.
WAIT_S="${IMAGES_TEST_WAIT_S:-30}"
APP_USER=10001:10001

log() { printf 'images-test: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

pkgs=()
command -v podman >/dev/null 2>&1 || pkgs+=(podman)
command -v runc >/dev/null 2>&1 || pkgs+=(runc)
command -v jq >/dev/null 2>&1 || pkgs+=(jq)
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
if ((${#pkgs[@]} > 0)); then
	if ((EUID != 0)) || ! command -v apt-get >/dev/null 2>&1; then
		die "install these first (Debian package names): ${pkgs[*]}"
	fi
	log "installing ${pkgs[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >/dev/null; } ||
		die "apt-get install ${pkgs[*]} failed"
fi
for image in "$EDGE_IMAGE" "$WORKER_IMAGE"; do
	podman image exists "$image" || die "no image $image: run make images first"
done
if [[ -z "${REDIS_URL:-}" || -z "${DATABASE_URL:-}" ]]; then
	eval "$("$ROOT/infra/local/stack.sh" env)"
fi

passed=0
failed=0
pass() {
	passed=$((passed + 1))
	log "ok    $*"
}
fail() {
	failed=$((failed + 1))
	log "FAIL  $*"
}
check() { # DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}

work="$(mktemp -d "${TMPDIR:-/tmp}/max-tps-ecs-images-test.XXXXXX")"
prefix="mte-images-$$"
containers=()
cleanup() {
	if ((${#containers[@]} > 0)); then
		podman rm -f -t 0 "${containers[@]}" >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

nofile="$(ulimit -Hn)"
[[ "$nofile" == unlimited ]] && nofile=1048576
RUN=(podman run --runtime runc --network host
	--ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096)

start() { # NAME IMAGE [podman run options...] -- [ARGS...]
	local name="$prefix-$1" image=$2
	shift 2
	local -a opts=()
	while (($# > 0)) && [[ "$1" != -- ]]; do
		opts+=("$1")
		shift
	done
	shift
	containers+=("$name")
	# Where there is no systemd, podman says on stderr that it cannot add a timer for
	# the health check: the test runs the check itself (`podman healthcheck run`).
	if ! "${RUN[@]}" -d --name "$name" "${opts[@]}" "$image" "$@" >/dev/null 2>"$work/$name.err"; then
		cat "$work/$name.err" >&2
		return 1
	fi
}

# Polls until the container's log has PATTERN (grep -E); fails at once if it exited.
# Not grep -q: it stops reading at the first match, podman logs then dies of SIGPIPE
# and pipefail turns the match into a failure.
wait_log() { # NAME PATTERN
	local name="$prefix-$1" deadline=$((SECONDS + WAIT_S))
	while ! podman logs "$name" 2>&1 | grep -E -- "$2" >/dev/null; do
		if [[ "$(podman inspect --format '{{.State.Running}}' "$name")" != true ]] || ((SECONDS >= deadline)); then
			log "$name: no '$2' in its log; the last lines:"
			podman logs --tail 20 "$name" >&2 || true
			return 1
		fi
		sleep 0.1
	done
}

healthy() { # NAME: the image's health check passes, run once now
	podman healthcheck run "$prefix-$1" >/dev/null 2>&1
}
unhealthy() { # NAME: the image's health check ran and failed
	[[ "$(podman healthcheck run "$prefix-$1" 2>/dev/null)" == unhealthy ]]
}

# --- the images' configuration
arch="$(podman info --format '{{.Host.Arch}}')"
for image in "$EDGE_IMAGE" "$WORKER_IMAGE"; do
	config="$(podman image inspect "$image" | jq '.[0]')"
	check "$image: user $APP_USER" test "$(jq -r .Config.User <<<"$config")" == "$APP_USER"
	check "$image: a health check" test "$(jq -r '.Healthcheck.Test[1] // ""' <<<"$config")" != ""
	check "$image: architecture $arch" test "$(jq -r .Architecture <<<"$config")" == "$arch"
	log "      $image: $(jq -r '.Config.Entrypoint | join(" ")' <<<"$config"), $(numfmt --to=iec-i --suffix=B "$(jq -r .Size <<<"$config")")"
done

# --- worker: migrate, seed, run
event="img$(date +%s)$$"
worker_env=(-e "REDIS_URL=$REDIS_URL" -e "DATABASE_URL=$DATABASE_URL")
out="$("${RUN[@]}" --rm "${worker_env[@]}" "$WORKER_IMAGE" migrate 2>&1)" && rc=0 || rc=$?
check "worker migrate exits 0" test "$rc" == 0
check "worker migrate reports the schema version" grep -Eq 'schema at version [0-9]+' <<<"$out"
"${RUN[@]}" --rm "${worker_env[@]}" "$WORKER_IMAGE" seed "$event" --sections A --seats-per-section 10 \
	--price 50000 --open-in-secs -60 --rate 1000000 >"$work/seed.log" 2>&1 && rc=0 || rc=$?
check "worker seed $event exits 0" test "$rc" == 0
start worker "$WORKER_IMAGE" "${worker_env[@]}" -e "WORKER_EVENTS=$event" -e WORKER_BLOCK_MS=100 -- run
check "worker run: consuming" wait_log worker 'consuming'
check "worker run: health check healthy" healthy worker

# --- edge under three seccomp profiles
printf '%s\n' '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["io_uring_setup", "io_uring_enter", "io_uring_register"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}' \
	>"$work/no-io-uring.json"
edge_env=(-e "REDIS_URL=$REDIS_URL" -e "DATABASE_URL=$DATABASE_URL" -e ROOM_TOKEN_SECRET=images-test
	-e PUBLIC_CACHE_MS=1 -e METRICS_ADDR=off)
edge() { # NAME PORT SECCOMP-OPTION... : starts an edge, waits for its "listening" line
	local name=$1 port=$2
	shift 2
	start "$name" "$EDGE_IMAGE" "${edge_env[@]}" -e "EDGE_ADDR=127.0.0.1:$port" "$@" -- &&
		wait_log "$name" ' listening addr='
}
drivers() { # NAME -> the drivers of its "listening" line, e.g. ["epoll", "epoll"]
	podman logs "$prefix-$1" 2>&1 | sed -n 's/.* listening addr=[^ ]* drivers=\(.*\)$/\1/p' | tail -n 1
}
logged() { # NAME PATTERN: the container's log (running or not) has PATTERN
	podman logs "$prefix-$1" 2>&1 | grep -E -- "$2" >/dev/null
}
not_logged() { # NAME PATTERN
	! logged "$@"
}
health_200() { # PORT
	[[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/public/health")" == 200 ]]
}
only() { # WORD LIST: every entry of the JSON list LIST is WORD, and there is one
	jq -e --arg w "$1" 'length > 0 and all(. == $w)' <<<"$2" >/dev/null
}
uring_possible=true
[[ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" == 0 ]] || uring_possible=false

profiles=(default no-io-uring unconfined)
declare -A seccomp=([default]="" [no-io-uring]="--security-opt=seccomp=$work/no-io-uring.json"
	[unconfined]="--security-opt=seccomp=unconfined")
declare -A expect=([default]=epoll [no-io-uring]=epoll [unconfined]=io_uring)
declare -A errno=([default]='os error 38' [no-io-uring]='os error 1')
i=0
for profile in "${profiles[@]}"; do
	port=$((PORT + i))
	i=$((i + 1))
	name="edge-$profile"
	# shellcheck disable=SC2086 # an empty option is no option
	if ! edge "$name" "$port" ${seccomp[$profile]}; then
		fail "edge ($profile seccomp profile) starts"
		continue
	fi
	got="$(drivers "$name")"
	log "      edge ($profile seccomp profile): $(podman logs "$prefix-$name" 2>&1 | grep -E 'io_uring|listening addr=' | sed 's/^[^ ]* *//' | tr '\n' '|')"
	if [[ "$profile" == unconfined && "$uring_possible" != true ]]; then
		log "      io_uring is disabled on this host (kernel.io_uring_disabled): no io_uring check"
	else
		check "edge ($profile seccomp profile) runs ${expect[$profile]}: $got" only "${expect[$profile]}" "$got"
	fi
	if [[ -n "${errno[$profile]:-}" ]]; then
		check "edge ($profile seccomp profile) says why: io_uring refused (${errno[$profile]})" \
			wait_log "$name" "io_uring unavailable, falling back to epoll.*${errno[$profile]}"
		# A refused io_uring_setup is not a kernel before 5.19 (EINVAL for the flags).
		check "edge ($profile seccomp profile) does not blame the kernel" not_logged "$name" 'COOP_TASKRUN'
	fi
	check "edge ($profile seccomp profile): /public/health 200" health_200 "$port"
	check "edge ($profile seccomp profile): health check healthy" healthy "$name"
done

# --- a buyer's journey through both containers (the default-profile edge)
base="http://127.0.0.1:$PORT"
status=""
body=""
http() { # METHOD PATH [BODY [HEADER...]] -> $status, $body
	local method=$1 path=$2 data=${3:-}
	shift 3 || shift $#
	local -a args=(-s -o "$work/body" -w '%{http_code}' -X "$method" -H 'content-type: application/json')
	local h
	for h in "$@"; do args+=(-H "$h"); done
	[[ -n "$data" ]] && args+=(--data-binary "$data")
	status="$(curl "${args[@]}" "$base$path")" || status=000
	body="$(cat "$work/body")"
}
journey() {
	http POST /public/enter "{\"userId\":\"alice\",\"eventId\":\"$event\"}"
	[[ "$status" == 200 ]] || { log "enter: $status $body" && return 1; }
	local token intent deadline
	token="$(jq -r .roomToken <<<"$body")"
	http POST /public/hold "{\"eventId\":\"$event\",\"seatId\":\"A-3\"}" "x-room-token: $token"
	[[ "$status" == 201 ]] || { log "hold: $status $body" && return 1; }
	http POST /confirm/payment-intent "{\"userId\":\"alice\",\"eventId\":\"$event\",\"seatIds\":[\"A-3\"]}" \
		"x-room-token: $token" 'Idempotency-Key: intent-1'
	[[ "$status" == 201 ]] || { log "payment-intent: $status $body" && return 1; }
	intent="$(jq -r .intentId <<<"$body")"
	http POST /confirm/commit "{\"intentId\":\"$intent\",\"eventId\":\"$event\",\"seatIds\":[\"A-3\"],\"userId\":\"alice\"}" \
		"x-room-token: $token" 'Idempotency-Key: order-1'
	[[ "$status" == 202 ]] || { log "commit: $status $body" && return 1; }
	deadline=$((SECONDS + WAIT_S))
	while :; do
		http GET '/confirm/status?idem=order-1' '' "x-room-token: $token"
		[[ "$status" == 200 ]] || { log "status: $status $body" && return 1; }
		case "$(jq -r .order.status <<<"$body")" in
		CONFIRMED) break ;;
		PENDING) ((SECONDS < deadline)) || { log "still PENDING after ${WAIT_S}s: $body" && return 1; } ;;
		*) log "status: $body" && return 1 ;;
		esac
		sleep 0.1
	done
	jq -e '.order.seatIds == ["A-3"] and .payment.status == "CAPTURED" and .payment.amount == 50000' \
		<<<"$body" >/dev/null || { log "status: $body" && return 1; }
}
check "journey through the edge and worker images: enter, hold, intent, commit, CONFIRMED" journey

# --- an edge whose Redis does not answer: the health check can fail
port=$((PORT + 3))
if start edge-noredis "$EDGE_IMAGE" "${edge_env[@]}" -e "EDGE_ADDR=127.0.0.1:$port" \
	-e REDIS_URL=redis://127.0.0.1:1 --; then
	wait_log edge-noredis ' listening addr=' || true
fi
code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/public/health")" || true
check "edge without Redis: /public/health 503 (got $code)" test "$code" == 503
check "edge without Redis: health check unhealthy" unhealthy edge-noredis

# --- SIGTERM
stopped() { # NAME: podman stop (SIGTERM, the image's STOPSIGNAL), then the exit code is 0
	podman stop -t 30 "$prefix-$1" >/dev/null 2>"$work/stop.err" &&
		[[ "$(podman inspect --format '{{.State.ExitCode}}' "$prefix-$1")" == 0 ]]
}
check "edge: SIGTERM drains and exits 0" stopped edge-default
check "edge: its log says it drained" logged edge-default 'draining: health is 503'

check "worker: SIGTERM exits 0" stopped worker

log "the images: $EDGE_IMAGE, $WORKER_IMAGE"
echo "images-test: $passed passed, $failed failed"
((failed == 0))
