#!/usr/bin/env bash
# 08: the schema. Runs `worker migrate` as a one-off Fargate task of the worker's task
# definition (its image, its DATABASE_URL secret, its security group: the only one
# Aurora admits), waits for it to stop and checks its exit code. `worker migrate`
# applies only what the database lacks, under an advisory lock, so this step is safe to
# re-run at any time. With DB_SEED set (for example "demo", or
# "perf --seats-per-section 200000"), a second task runs `worker seed $DB_SEED`, which
# upserts the event and projects it into Redis (also re-runnable).
#
# DB_INIT_MODE=local runs the same commands on this machine instead (target/release/worker,
# DATABASE_URL and REDIS_URL read from the secrets), for an operator whose machine
# reaches the VPC (VPN, bastion).
#
# On a local endpoint (moto) the task is started but never runs: the wait and the exit
# code check are skipped, and said so.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DB_INIT_MODE="${DB_INIT_MODE:-ecs}"
DB_SEED="${DB_SEED:-}"

commands=("migrate")
[[ -n "$DB_SEED" ]] && commands+=("seed $DB_SEED")

# A standby region's database is a read-only secondary of the global database (03): the
# schema and the events arrive from the primary by replication, and a migration or a
# seed there could only fail.
if ! is_primary; then
	log "done: nothing to run in $REGION, a standby: its database replicates $PRIMARY_REGION's schema and data"
	exit 0
fi

if [[ "$DB_INIT_MODE" == local ]]; then
	worker="${CARGO_TARGET_DIR:-$ROOT_DIR/target}/release/worker"
	[[ -x "$worker" ]] || die "$worker not found: cargo build --release -p worker"
	secret() { awscli secretsmanager get-secret-value --secret-id "$1" | jq -r .SecretString | jq -r .url; }
	DATABASE_URL="$(secret "$(state_get data databaseSecretArn)")"
	REDIS_URL="$(secret "$(state_get data redisSecretArn)")"
	export DATABASE_URL REDIS_URL
	for cmd in "${commands[@]}"; do
		read -r -a argv <<<"$cmd"
		log "running worker $cmd (locally)"
		"$worker" "${argv[@]}"
		setting "worker $cmd: done"
	done
	exit 0
fi
[[ "$DB_INIT_MODE" == ecs ]] || die "DB_INIT_MODE must be ecs or local"

cluster="$(state_get cluster clusterName)"
taskdef="$(state_get taskdefs worker)"
network="$(jq -cn --arg sg "$(state_get network sg_worker)" --argjson subnets "$(state_get network privateSubnets)" \
	'{awsvpcConfiguration: {subnets: $subnets, securityGroups: [$sg], assignPublicIp: "DISABLED"}}')"

for cmd in "${commands[@]}"; do
	overrides="$(jq -cn --arg cmd "$cmd" '{containerOverrides: [{name: "worker", command: ($cmd | split(" ") | map(select(. != "")))}]}')"
	task="$(awscli ecs run-task --cluster "$cluster" --task-definition "$taskdef" --count 1 \
		--launch-type FARGATE --platform-version LATEST --network-configuration "$network" \
		--overrides "$overrides" --started-by "$STEP" --propagate-tags TASK_DEFINITION)"
	failures="$(jq -c '.failures // []' <<<"$task")"
	[[ "$failures" == "[]" ]] || die "run-task worker $cmd: $failures"
	task_arn="$(jq -r '.tasks[0].taskArn' <<<"$task")"
	log "ran      one-off task worker $cmd: $task_arn"
	if skip_local "waiting for task worker $cmd to stop and checking its exit code (moto never runs it)"; then
		continue
	fi
	log "waiting for worker $cmd to finish"
	awscli ecs wait tasks-stopped --cluster "$cluster" --tasks "$task_arn"
	result="$(awscli ecs describe-tasks --cluster "$cluster" --tasks "$task_arn" |
		jq -c '.tasks[0] | {stopCode, stoppedReason, exitCode: .containers[0].exitCode, reason: .containers[0].reason}')"
	[[ "$(jq -r .exitCode <<<"$result")" == 0 ]] ||
		die "worker $cmd failed: $result (logs: $(state_get cluster logGroup_worker), stream worker/worker/${task_arn##*/})"
	setting "worker $cmd: exit 0"
done
log "done: ${commands[*]}"
