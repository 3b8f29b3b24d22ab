#!/usr/bin/env bash
# 04: the task definitions $PROJECT-edge and $PROJECT-worker (Fargate, awsvpc).
#
#   edge    PROFILE=aws, the queue and table from infra/out/<region>/env, EDGE_THREADS =
#           the task's vCPUs, EDGE_KEEPALIVE_MS (75 s, above the ALB's 60 s idle timeout),
#           EDGE_SHUTDOWN_GRACE_MS (20 s); ROOM_TOKEN_SECRET, REDIS_URL (rediss://) and
#           DATABASE_URL (status look-ups, payment callbacks) as ECS secrets, and with
#           PAYMENT_MODE=provider PAYMENT_WEBHOOK_SECRET (and _PREVIOUS while a rotation
#           lasts) from step 03's $PROJECT/payment-webhook; nofile ulimit EDGE_NOFILE; health check GET /public/health
#           (infra/docker/edge-health.sh); stopTimeout = the drain grace + 10 s, so ECS's
#           SIGKILL never cuts a drain short
#   worker  PROFILE=aws, the queue, PAYMENT_MODE (and PAYMENT_TIMEOUT_MS as the edge's);
#           DATABASE_URL and REDIS_URL as ECS secrets; liveness
#           check; stopTimeout WORKER_STOP_TIMEOUT (the batch in hand is finished)
#
# Both: read-only root filesystem, an init process (reaps the health checks' children),
# non-blocking awslogs to the log groups of step 02. A new revision is registered only
# when the definition differs from the latest one (compared by a spec-sha256 tag), so a
# re-run registers nothing. Writes infra/out/<region>/taskdefs.json.
#
# Environment: EDGE_CPU (2048), EDGE_MEMORY (4096), EDGE_NOFILE (1048576, Fargate's
# maximum; soft = hard, and the edge raises its soft limit to the hard one at start
# anyway and logs it), CORS_ALLOWED_ORIGINS (the ticket site's origins, for the edge;
# empty: no CORS), WORKER_CPU (1024), WORKER_MEMORY (2048), WORKER_CONCURRENCY (8),
# WORKER_STOP_TIMEOUT (60), CPU_ARCH (X86_64 | ARM64), EDGE_KEEPALIVE_MS,
# EDGE_SHUTDOWN_GRACE_MS, TRUSTED_PROXY_HOPS (2), PURCHASE_LIMIT (0: none).
# The door's identity (README "Identity"): IDENTITY (none | jwt | alb-oidc; none, the
# default, believes the body's userId and the edge warns at start), IDENTITY_ISSUER and
# IDENTITY_AUDIENCE when set; jwt: IDENTITY_JWKS_FILE (required: the IdP's JWKS, a path
# in the edge image; an HS256 secret is not offered here, it would be one more secret);
# alb-oidc: IDENTITY_ALB_KEY_DIR (required: ALB's PEM keys in the image) and
# IDENTITY_ALB_ARN (default: step 05's load balancer, so run 04 again after 05).
# Payments (README "Payment callback"): PAYMENT_MODE (instant | provider; instant, the
# default, confirms orders as they are stored and passes nothing else); provider:
# PAYMENT_TIMEOUT_MS (600000, the same to the edge and the worker), the webhook key from
# step 03 (required: run 03 with PAYMENT_WEBHOOK_SECRET first), and when set
# PAYMENT_WEBHOOK_TOLERANCE_MS (edge) and PAYMENT_POLL_MS (worker). The key is named by
# its version, so a rotation in 03 registers a new revision and 05 rolls the tasks to it.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EDGE_CPU="${EDGE_CPU:-2048}"
EDGE_MEMORY="${EDGE_MEMORY:-4096}"
EDGE_NOFILE="${EDGE_NOFILE:-1048576}"
WORKER_CPU="${WORKER_CPU:-1024}"
WORKER_MEMORY="${WORKER_MEMORY:-2048}"
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-8}"
WORKER_STOP_TIMEOUT="${WORKER_STOP_TIMEOUT:-60}"
CPU_ARCH="${CPU_ARCH:-X86_64}"
# The edge sits behind CloudFront and the ALB, both appending to X-Forwarded-For (the
# ALB admits CloudFront's origin-facing prefix list only, step 00): the client is the
# second entry from the right. PURCHASE_LIMIT goes to the edge and the worker alike.
TRUSTED_PROXY_HOPS="${TRUSTED_PROXY_HOPS:-2}"
PURCHASE_LIMIT="${PURCHASE_LIMIT:-0}"
IDENTITY="${IDENTITY:-none}"
identity_env=("IDENTITY=$IDENTITY")
case "$IDENTITY" in
none) ;;
jwt)
	[[ -n "${IDENTITY_JWKS_FILE:-}" ]] || die "IDENTITY=jwt: set IDENTITY_JWKS_FILE (the IdP's JWKS document, a path in the edge image)"
	identity_env+=("IDENTITY_JWKS_FILE=$IDENTITY_JWKS_FILE")
	;;
alb-oidc)
	[[ -n "${IDENTITY_ALB_KEY_DIR:-}" ]] || die "IDENTITY=alb-oidc: set IDENTITY_ALB_KEY_DIR (ALB's public keys, a directory in the edge image)"
	identity_env+=("IDENTITY_ALB_ARN=${IDENTITY_ALB_ARN:-$(state_get alb albArn)}" "IDENTITY_ALB_KEY_DIR=$IDENTITY_ALB_KEY_DIR")
	;;
*) die "IDENTITY=$IDENTITY: expected none, jwt or alb-oidc" ;;
esac
[[ -z "${IDENTITY_ISSUER:-}" ]] || identity_env+=("IDENTITY_ISSUER=$IDENTITY_ISSUER")
[[ -z "${IDENTITY_AUDIENCE:-}" ]] || identity_env+=("IDENTITY_AUDIENCE=$IDENTITY_AUDIENCE")
PAYMENT_MODE="${PAYMENT_MODE:-instant}"
payment_env=("PAYMENT_MODE=$PAYMENT_MODE")
worker_payment_env=("PAYMENT_MODE=$PAYMENT_MODE")
payment_secrets='[]'
case "$PAYMENT_MODE" in
instant) ;;
provider)
	PAYMENT_TIMEOUT_MS="${PAYMENT_TIMEOUT_MS:-600000}"
	if ! [[ "$PAYMENT_TIMEOUT_MS" =~ ^[0-9]{1,9}$ ]] || ((PAYMENT_TIMEOUT_MS < 1000 || PAYMENT_TIMEOUT_MS > 86400000)); then
		die "PAYMENT_TIMEOUT_MS=$PAYMENT_TIMEOUT_MS: expected milliseconds, 1000-86400000 (the edge's range)"
	fi
	payment_env+=("PAYMENT_TIMEOUT_MS=$PAYMENT_TIMEOUT_MS")
	worker_payment_env+=("PAYMENT_TIMEOUT_MS=$PAYMENT_TIMEOUT_MS")
	[[ -z "${PAYMENT_WEBHOOK_TOLERANCE_MS:-}" ]] || payment_env+=("PAYMENT_WEBHOOK_TOLERANCE_MS=$PAYMENT_WEBHOOK_TOLERANCE_MS")
	[[ -z "${PAYMENT_POLL_MS:-}" ]] || worker_payment_env+=("PAYMENT_POLL_MS=$PAYMENT_POLL_MS")
	payment_arn="$(state_opt data paymentWebhookSecretArn)"
	[[ -n "$payment_arn" ]] || die "PAYMENT_MODE=provider: no $NAME_SECRET_PAYMENT: run 03 with PAYMENT_WEBHOOK_SECRET (the provider's key) first"
	# Its version and whether a previous key is kept (the values go no further than jq).
	payment_secrets="$(awscli secretsmanager get-secret-value --secret-id "$payment_arn" | jq -c --arg arn "$payment_arn" '
		[{name: "PAYMENT_WEBHOOK_SECRET", valueFrom: "\($arn):current::\(.VersionId)"}]
		+ if .SecretString | fromjson | has("previous")
		  then [{name: "PAYMENT_WEBHOOK_SECRET_PREVIOUS", valueFrom: "\($arn):previous::\(.VersionId)"}] else [] end')"
	;;
*) die "PAYMENT_MODE=$PAYMENT_MODE: expected instant or provider" ;;
esac

# Fargate's stopTimeout is at most 120 s; the drain must fit with room to spare.
grace_s=$(((EDGE_SHUTDOWN_GRACE_MS + 999) / 1000))
edge_stop_timeout=$((grace_s + 10))
((edge_stop_timeout <= 120)) || die "EDGE_SHUTDOWN_GRACE_MS=$EDGE_SHUTDOWN_GRACE_MS needs a stopTimeout of ${edge_stop_timeout}s; Fargate allows 120"
((EDGE_KEEPALIVE_MS > 60000)) || die "EDGE_KEEPALIVE_MS=$EDGE_KEEPALIVE_MS must exceed the ALB's 60 s idle timeout"
edge_threads=$(((EDGE_CPU + 1023) / 1024))

edge_image="$(state_get images edge)"
worker_image="$(state_get images worker)"
room_arn="$(state_get data roomTokenSecretArn)"
redis_arn="$(state_get data redisSecretArn)"
db_arn="$(state_get data databaseSecretArn)"

# env_list NAME=VALUE...: the containerDefinitions environment array.
env_list() { printf '%s\n' "$@" | jq -R 'capture("^(?<name>[^=]+)=(?<value>.*)$")' | jq -cs .; }

edge_env="$(env_list \
	PROFILE=aws \
	"AWS_REGION=$REGION" \
	"EDGE_ADDR=0.0.0.0:$EDGE_PORT" \
	"EDGE_THREADS=$edge_threads" \
	EDGE_DRIVER=auto \
	"EDGE_KEEPALIVE_MS=$EDGE_KEEPALIVE_MS" \
	"EDGE_SHUTDOWN_GRACE_MS=$EDGE_SHUTDOWN_GRACE_MS" \
	EDGE_LOG=info \
	"TRUSTED_PROXY_HOPS=$TRUSTED_PROXY_HOPS" \
	"PURCHASE_LIMIT=$PURCHASE_LIMIT" \
	"CORS_ALLOWED_ORIGINS=${CORS_ALLOWED_ORIGINS:-}" \
	"${identity_env[@]}" \
	"${payment_env[@]}" \
	"SQS_QUEUE_URL=$(env_get SQS_QUEUE_URL)" \
	"HOLD_MIRROR_TABLE=$(env_get HOLD_MIRROR_TABLE)")"
worker_env="$(env_list \
	PROFILE=aws \
	"AWS_REGION=$REGION" \
	"SQS_QUEUE_URL=$(env_get SQS_QUEUE_URL)" \
	SQS_WAIT_SECS=20 \
	"WORKER_CONCURRENCY=$WORKER_CONCURRENCY" \
	"PURCHASE_LIMIT=$PURCHASE_LIMIT" \
	"${worker_payment_env[@]}" \
	WORKER_LOG=info)"

# taskdef SERVICE CPU MEMORY CONTAINER_JSON: the register-task-definition input.
taskdef() {
	jq -cn --arg family "$PROJECT-$1" --arg cpu "$2" --arg mem "$3" --argjson c "$4" --arg arch "$CPU_ARCH" \
		--arg exec "$(state_get cluster "role_$1-exec")" --arg task "$(state_get cluster "role_$1-task")" \
		--arg project "$PROJECT" '{
  family: $family,
  taskRoleArn: $task,
  executionRoleArn: $exec,
  networkMode: "awsvpc",
  requiresCompatibilities: ["FARGATE"],
  cpu: $cpu,
  memory: $mem,
  runtimePlatform: {cpuArchitecture: $arch, operatingSystemFamily: "LINUX"},
  containerDefinitions: [$c],
  tags: [{key: "Name", value: $family}, {key: "Project", value: $project}]
}'
}

# logs SERVICE: awslogs, non-blocking so a slow CloudWatch never stalls a request.
logs() {
	jq -cn --arg g "$(state_get cluster "logGroup_$1")" --arg r "$REGION" --arg p "$1" '{
  logDriver: "awslogs",
  options: {"awslogs-group": $g, "awslogs-region": $r, "awslogs-stream-prefix": $p,
            "mode": "non-blocking", "max-buffer-size": "25m"}
}'
}

# Each container's memory is its task's: a single-container task, said explicitly (moto's
# run-task also needs a container-level figure).
edge_container="$(jq -cn --arg image "$edge_image" --argjson env "$edge_env" --argjson port "$EDGE_PORT" \
	--argjson mem "$EDGE_MEMORY" \
	--argjson nofile "$EDGE_NOFILE" --argjson stop "$edge_stop_timeout" --argjson logs "$(logs edge)" \
	--arg room "$room_arn" --arg redis "$redis_arn:url::" --arg db "$db_arn:url::" --argjson payment "$payment_secrets" '{
  name: "edge",
  image: $image,
  essential: true,
  memory: $mem,
  portMappings: [{containerPort: $port, protocol: "tcp", name: "http"}],
  environment: $env,
  secrets: ([{name: "ROOM_TOKEN_SECRET", valueFrom: $room}, {name: "REDIS_URL", valueFrom: $redis},
             {name: "DATABASE_URL", valueFrom: $db}] + $payment),
  ulimits: [{name: "nofile", softLimit: $nofile, hardLimit: $nofile}],
  healthCheck: {command: ["CMD", "/usr/local/bin/edge-health", "/public/health"], interval: 10, timeout: 3, retries: 3, startPeriod: 15},
  stopTimeout: $stop,
  linuxParameters: {initProcessEnabled: true},
  readonlyRootFilesystem: true,
  logConfiguration: $logs
}')"

worker_container="$(jq -cn --arg image "$worker_image" --argjson env "$worker_env" --argjson mem "$WORKER_MEMORY" \
	--argjson stop "$WORKER_STOP_TIMEOUT" --argjson logs "$(logs worker)" \
	--arg db "$db_arn:url::" --arg redis "$redis_arn:url::" '{
  name: "worker",
  image: $image,
  essential: true,
  memory: $mem,
  command: ["run"],
  environment: $env,
  secrets: [{name: "DATABASE_URL", valueFrom: $db}, {name: "REDIS_URL", valueFrom: $redis}],
  ulimits: [{name: "nofile", softLimit: 65536, hardLimit: 65536}],
  healthCheck: {command: ["CMD", "/usr/local/bin/worker-health"], interval: 30, timeout: 3, retries: 3, startPeriod: 10},
  stopTimeout: $stop,
  linuxParameters: {initProcessEnabled: true},
  readonlyRootFilesystem: true,
  logConfiguration: $logs
}')"

# register SERVICE INPUT_JSON: registers a revision unless the latest carries the same
# spec-sha256 tag; records the revision's ARN.
register() {
	local svc=$1 input=$2 family="$PROJECT-$1" sha latest arn
	sha="$(jq -cS . <<<"$input" | sha256sum | cut -d' ' -f1)"
	input="$(jq -c --arg sha "$sha" '.tags += [{key: "spec-sha256", value: $sha}]' <<<"$input")"
	if latest="$(aws_try ecs describe-task-definition --task-definition "$family" --include TAGS)"; then
		if [[ "$(jq -r '.tags[]? | select(.key == "spec-sha256") | .value' <<<"$latest")" == "$sha" ]]; then
			arn="$(jq -r .taskDefinition.taskDefinitionArn <<<"$latest")"
			exists "task definition $arn"
			state_set taskdefs "$svc" "$arn"
			return
		fi
	elif ! grep -qiE 'unable to describe|not found|does not exist' "$AWS_ERR_FILE"; then
		die "describe-task-definition $family: $(aws_error)"
	fi
	arn="$(awscli ecs register-task-definition --cli-input-json "$input" | jq -r .taskDefinition.taskDefinitionArn)"
	created "task definition $arn (spec $sha)"
	state_set taskdefs "$svc" "$arn"
}

register edge "$(taskdef edge "$EDGE_CPU" "$EDGE_MEMORY" "$edge_container")"
register worker "$(taskdef worker "$WORKER_CPU" "$WORKER_MEMORY" "$worker_container")"
state_set taskdefs edgeStopTimeout "$edge_stop_timeout"
log "done: edge (stopTimeout ${edge_stop_timeout}s, nofile $EDGE_NOFILE, $edge_threads threads), worker -> $(state_path taskdefs)"
