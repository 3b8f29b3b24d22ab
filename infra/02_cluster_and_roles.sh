#!/usr/bin/env bash
# 02: the ECS cluster (Fargate and Fargate Spot capacity providers, Container Insights),
# the log groups /ecs/$PROJECT/{edge,worker} with retention, and four IAM roles, each
# with one inline policy naming exactly what it may touch:
#
#   edge-exec    pull the edge image, write the edge log group, read the room-token,
#                Redis, database and payment webhook secrets (ECS injects them as
#                ROOM_TOKEN_SECRET, REDIS_URL, DATABASE_URL: status look-ups when Redis
#                has no record, and PAYMENT_WEBHOOK_SECRET(_PREVIOUS) in provider mode)
#   worker-exec  pull the worker image, write the worker log group, read the database
#                and Redis secrets (DATABASE_URL, REDIS_URL)
#   edge-task    sqs:SendMessage (SendMessageBatch) on the commit queue and
#                dynamodb:BatchWriteItem on the seat-lock (hold mirror) table
#   worker-task  sqs:ReceiveMessage, DeleteMessage(Batch), ChangeMessageVisibility(Batch)
#                on the commit queue
#
# The queue, table and secrets are made in step 03; their ARNs are known from their
# names, so the policies can be written first. Secrets Manager appends six random
# characters to a secret's ARN, hence the "-??????" patterns. Writes
# infra/out/<region>/cluster.json.
#
# Environment: LOG_RETENTION_DAYS (30), CONTAINER_INSIGHTS (enabled | disabled).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOG_RETENTION_DAYS="${LOG_RETENTION_DAYS:-30}"
CONTAINER_INSIGHTS="${CONTAINER_INSIGHTS:-enabled}"
account="$(account_id)"

# --- cluster
cluster_json="$(awscli ecs describe-clusters --clusters "$NAME_CLUSTER")"
cluster_arn="$(jq -r '.clusters[] | select(.status == "ACTIVE") | .clusterArn' <<<"$cluster_json")"
if [[ -z "$cluster_arn" ]]; then
	cluster_arn="$(awscli ecs create-cluster --cluster-name "$NAME_CLUSTER" \
		--settings "name=containerInsights,value=$CONTAINER_INSIGHTS" \
		--capacity-providers FARGATE FARGATE_SPOT \
		--default-capacity-provider-strategy capacityProvider=FARGATE,weight=1 \
		--tags "key=Name,value=$NAME_CLUSTER" "key=Project,value=$PROJECT" | jq -r .cluster.clusterArn)"
	created "ecs cluster $cluster_arn"
else
	exists "ecs cluster $cluster_arn"
fi
state_set cluster clusterArn "$cluster_arn"
state_set cluster clusterName "$NAME_CLUSTER"
env_set ECS_CLUSTER "$NAME_CLUSTER"

# --- log groups
groups_json="$(awscli logs describe-log-groups --log-group-name-prefix "/ecs/$PROJECT/")"
for svc in edge worker; do
	group="$(log_group "$svc")"
	current="$(jq -r --arg g "$group" '.logGroups[] | select(.logGroupName == $g) | (.retentionInDays // "never")' <<<"$groups_json")"
	if [[ -z "$current" ]]; then
		awscli logs create-log-group --log-group-name "$group" --tags "Name=$group,Project=$PROJECT"
		created "log group $group"
	else
		exists "log group $group"
	fi
	if [[ "$current" != "$LOG_RETENTION_DAYS" ]]; then
		awscli logs put-retention-policy --log-group-name "$group" --retention-in-days "$LOG_RETENTION_DAYS"
		setting "retention of $group: $LOG_RETENTION_DAYS days"
	fi
	state_set cluster "logGroup_$svc" "$group"
done

# --- IAM roles
arn_queue="arn:aws:sqs:$REGION:$account:$NAME_QUEUE"
arn_table="arn:aws:dynamodb:$REGION:$account:table/$NAME_TABLE"
arn_secret() { printf 'arn:aws:secretsmanager:%s:%s:secret:%s-??????' "$REGION" "$account" "$1"; }
arn_repo() { printf 'arn:aws:ecr:%s:%s:repository/%s' "$REGION" "$account" "$(repo_name "$1")"; }
arn_logs() { printf 'arn:aws:logs:%s:%s:log-group:%s:*' "$REGION" "$account" "$(log_group "$1")"; }

trust="$(jq -cn --arg a "$account" --arg r "$REGION" '{
  Version: "2012-10-17",
  Statement: [{
    Effect: "Allow",
    Principal: {Service: "ecs-tasks.amazonaws.com"},
    Action: "sts:AssumeRole",
    Condition: {
      StringEquals: {"aws:SourceAccount": $a},
      ArnLike: {"aws:SourceArn": "arn:aws:ecs:\($r):\($a):*"}
    }
  }]
}')"

# exec_policy SERVICE SECRET_NAME...: what ECS needs to start SERVICE's task.
exec_policy() {
	local svc=$1 s
	shift
	local -a secrets=()
	for s in "$@"; do secrets+=("$(arn_secret "$s")"); done
	jq -cn --arg repo "$(arn_repo "$svc")" --arg logs "$(arn_logs "$svc")" \
		--argjson secrets "$(printf '%s\n' "${secrets[@]}" | jq -R . | jq -cs .)" '{
  Version: "2012-10-17",
  Statement: [
    {Sid: "EcrAuth", Effect: "Allow", Action: "ecr:GetAuthorizationToken", Resource: "*"},
    {Sid: "PullImage", Effect: "Allow",
     Action: ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
     Resource: $repo},
    {Sid: "WriteLogs", Effect: "Allow", Action: ["logs:CreateLogStream", "logs:PutLogEvents"], Resource: $logs},
    {Sid: "InjectSecrets", Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: $secrets}
  ]
}'
}

edge_task_policy="$(jq -cn --arg q "$arn_queue" --arg t "$arn_table" '{
  Version: "2012-10-17",
  Statement: [
    {Sid: "SendCommits", Effect: "Allow", Action: "sqs:SendMessage", Resource: $q},
    {Sid: "MirrorHolds", Effect: "Allow", Action: "dynamodb:BatchWriteItem", Resource: $t}
  ]
}')"
worker_task_policy="$(jq -cn --arg q "$arn_queue" '{
  Version: "2012-10-17",
  Statement: [
    {Sid: "ConsumeCommits", Effect: "Allow",
     Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
     Resource: $q}
  ]
}')"

roles_json="$(awscli iam list-roles --path-prefix "$IAM_PATH")"
# role KIND POLICY_JSON: find or create the role, then set its one inline policy where
# it is missing or differs.
role() {
	local kind=$1 policy=$2 name arn current said
	name="$(iam_role_name "$kind")"
	arn="$(jq -r --arg n "$name" '.Roles[] | select(.RoleName == $n) | .Arn' <<<"$roles_json")"
	if [[ -z "$arn" ]]; then
		arn="$(awscli iam create-role --role-name "$name" --path "$IAM_PATH" \
			--assume-role-policy-document "$trust" --max-session-duration 3600 \
			--description "$PROJECT $kind ($REGION)" --tags "$(tags_kv "$name")" | jq -r .Role.Arn)"
		created "iam role $arn"
	else
		exists "iam role $arn"
	fi
	if current="$(aws_try iam get-role-policy --role-name "$name" --policy-name least-privilege)"; then
		said=updated
	else
		aws_not_found || die "get-role-policy $name: $(aws_error)"
		current='{}' said=setting
	fi
	if [[ "$(jq -cS .PolicyDocument <<<"$current")" == "$(jq -cS . <<<"$policy")" ]]; then
		exists "inline policy least-privilege on $name"
	else
		awscli iam put-role-policy --role-name "$name" --policy-name least-privilege --policy-document "$policy"
		"$said" "inline policy least-privilege on $name: $(jq -c '[.Statement[].Action] | flatten' <<<"$policy")"
	fi
	state_set cluster "role_$kind" "$arn"
}
role edge-exec "$(exec_policy edge "$NAME_SECRET_ROOM" "$NAME_SECRET_REDIS" "$NAME_SECRET_DB" "$NAME_SECRET_PAYMENT")"
role worker-exec "$(exec_policy worker "$NAME_SECRET_DB" "$NAME_SECRET_REDIS")"
role edge-task "$edge_task_policy"
role worker-task "$worker_task_policy"

log "done: cluster $NAME_CLUSTER, log groups, 4 roles -> $(state_path cluster)"
