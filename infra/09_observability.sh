#!/usr/bin/env bash
# 09: what an operator watches during a sale: the CloudWatch dashboard $PROJECT (the
# edge's and the worker's EMF metrics, namespace max-tps-ecs, beside the ALB, ECS, SQS,
# ElastiCache and Aurora ones) and the alarms the seed's operations need. Each alarm
# notifies ALARM_TOPIC_ARN (an SNS topic) when set; scaling alarms are step 06's.
#
#   ops-alb-5xx              the target group's 5XX above ALB_5XX_PER_MIN (50) a minute,
#                            2 of 3 minutes
#   ops-target-p99           TargetResponseTime p99 above EDGE_P99_MS (500) ms, 3 of 5
#   ops-{edge,worker}-cpu    the service's CPU above ECS_CPU_HIGH (85) %, 5 minutes
#   ops-{edge,worker}-memory the service's memory above ECS_MEMORY_HIGH (85) %, 5 minutes
#   ops-queue-age            the oldest commit older than QUEUE_AGE_HIGH_SECS (300)
#   ops-dlq-not-empty        a message in the dead-letter queue
#   ops-redis-cpu            ElastiCache engine CPU above REDIS_CPU_HIGH (80) %
#   ops-redis-memory         ElastiCache memory above REDIS_MEMORY_HIGH (80) %
#   ops-redis-evictions      any eviction (holds and the waiting room must not be evicted)
#   ops-aurora-acu           Aurora ACU utilisation above AURORA_ACU_HIGH (90) %
#   ops-aurora-connections   Aurora connections above AURORA_CONNECTIONS_HIGH (800)
#
# Alarms are compared first and written only where they differ; the dashboard is put
# only when its body differs. Writes infra/out/<region>/observability.json.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALARM_TOPIC_ARN="${ALARM_TOPIC_ARN:-}"
ALB_5XX_PER_MIN="${ALB_5XX_PER_MIN:-50}"
EDGE_P99_MS="${EDGE_P99_MS:-500}"
ECS_CPU_HIGH="${ECS_CPU_HIGH:-85}"
ECS_MEMORY_HIGH="${ECS_MEMORY_HIGH:-85}"
QUEUE_AGE_HIGH_SECS="${QUEUE_AGE_HIGH_SECS:-300}"
REDIS_CPU_HIGH="${REDIS_CPU_HIGH:-80}"
REDIS_MEMORY_HIGH="${REDIS_MEMORY_HIGH:-80}"
AURORA_ACU_HIGH="${AURORA_ACU_HIGH:-90}"
AURORA_CONNECTIONS_HIGH="${AURORA_CONNECTIONS_HIGH:-800}"

cluster="$(state_get cluster clusterName)"
lb_full="$(state_get alb albFullName)"
tg_full="$(state_get alb targetGroupFullName)"
queue_name="$(state_get data queueName)"
dlq_name="$NAME_DLQ"
redis_node="$NAME_REDIS-001"

ALARMS_JSON="$(awscli cloudwatch describe-alarms --alarm-name-prefix "$PROJECT-ops-")"
actions="$(jq -cn --arg t "$ALARM_TOPIC_ARN" 'if $t == "" then [] else [$t] end')"

# ops NAME DESCRIPTION NAMESPACE METRIC STATISTIC DIMENSIONS_JSON PERIODS TO_ALARM THRESHOLD
#     COMPARISON: one alarm on one metric over 1-minute periods. STATISTIC p99 and the like
#     are extended statistics.
ops() {
	put_alarm observability "ops-$1" "$(jq -cn --arg d "$2" --arg ns "$3" --arg m "$4" --arg s "$5" \
		--argjson dims "$6" --argjson n "$7" --argjson k "$8" --argjson t "$9" --arg c "${10}" \
		--argjson a "$actions" '{
	AlarmDescription: $d, AlarmActions: $a, OKActions: $a,
	Namespace: $ns, MetricName: $m, Dimensions: $dims,
	Period: 60, EvaluationPeriods: $n, DatapointsToAlarm: $k,
	Threshold: $t, ComparisonOperator: $c
} + (if ($s | test("^p[0-9]")) then {ExtendedStatistic: $s} else {Statistic: $s} end)')"
}
dims() { # NAME VALUE [NAME VALUE]...
	local out='[]'
	while (($# >= 2)); do
		out="$(jq -c --arg n "$1" --arg v "$2" '. + [{Name: $n, Value: $v}]' <<<"$out")"
		shift 2
	done
	printf '%s' "$out"
}

alb="$(dims LoadBalancer "$lb_full" TargetGroup "$tg_full")"
ops alb-5xx "edge 5XX above $ALB_5XX_PER_MIN a minute" AWS/ApplicationELB HTTPCode_Target_5XX_Count Sum \
	"$alb" 3 2 "$ALB_5XX_PER_MIN" GreaterThanThreshold
ops target-p99 "edge p99 response time above $EDGE_P99_MS ms" AWS/ApplicationELB TargetResponseTime p99 \
	"$alb" 5 3 "$(jq -n --argjson ms "$EDGE_P99_MS" '$ms / 1000')" GreaterThanThreshold
for svc in edge worker; do
	service="$(dims ClusterName "$cluster" ServiceName "$svc")"
	ops "$svc-cpu" "$svc CPU above $ECS_CPU_HIGH%" AWS/ECS CPUUtilization Average "$service" 5 5 \
		"$ECS_CPU_HIGH" GreaterThanThreshold
	ops "$svc-memory" "$svc memory above $ECS_MEMORY_HIGH%" AWS/ECS MemoryUtilization Average "$service" 5 5 \
		"$ECS_MEMORY_HIGH" GreaterThanThreshold
done
ops queue-age "oldest commit older than ${QUEUE_AGE_HIGH_SECS}s: workers behind or stopped" AWS/SQS \
	ApproximateAgeOfOldestMessage Maximum "$(dims QueueName "$queue_name")" 2 2 "$QUEUE_AGE_HIGH_SECS" \
	GreaterThanThreshold
ops dlq-not-empty "a commit in the dead-letter queue: see infra/RUNBOOK.md" AWS/SQS \
	ApproximateNumberOfMessagesVisible Maximum "$(dims QueueName "$dlq_name")" 1 1 0 GreaterThanThreshold
redis="$(dims CacheClusterId "$redis_node")"
ops redis-cpu "Redis engine CPU above $REDIS_CPU_HIGH%" AWS/ElastiCache EngineCPUUtilization Average \
	"$redis" 3 3 "$REDIS_CPU_HIGH" GreaterThanThreshold
ops redis-memory "Redis memory above $REDIS_MEMORY_HIGH%" AWS/ElastiCache DatabaseMemoryUsagePercentage \
	Maximum "$redis" 3 3 "$REDIS_MEMORY_HIGH" GreaterThanThreshold
ops redis-evictions "Redis evicted keys: holds or the waiting room may be lost" AWS/ElastiCache Evictions \
	Sum "$redis" 1 1 0 GreaterThanThreshold
db="$(dims DBClusterIdentifier "$NAME_DB")"
ops aurora-acu "Aurora ACU utilisation above $AURORA_ACU_HIGH%" AWS/RDS ACUUtilization Average "$db" 5 5 \
	"$AURORA_ACU_HIGH" GreaterThanThreshold
ops aurora-connections "Aurora connections above $AURORA_CONNECTIONS_HIGH" AWS/RDS DatabaseConnections \
	Maximum "$db" 3 3 "$AURORA_CONNECTIONS_HIGH" GreaterThanThreshold

# --- the dashboard: one metric widget per line, three to a row.
widget() { # TITLE STAT METRICS_JSON (CloudWatch's [namespace, name, dim, value, ...] rows)
	jq -cn --arg t "$1" --arg s "$2" --argjson m "$3" --arg r "$REGION" \
		'{type: "metric", width: 8, height: 6,
		  properties: {title: $t, stat: $s, period: 60, region: $r, view: "timeSeries", metrics: $m}}'
}
ns=max-tps-ecs
widgets=(
	"$(widget "Edge requests by route (EMF)" Sum "$(jq -cn --arg n "$ns" '[["hold","enter","summary","seats","payment_intent","commit","status"][] as $r | [$n, "Requests", "Route", $r]]')")"
	"$(widget "Edge p99 by route, ms (EMF)" Maximum "$(jq -cn --arg n "$ns" '[["hold","enter","summary","commit"][] as $r | [$n, "LatencyP99", "Route", $r]]')")"
	"$(widget "Edge 5xx and Redis errors (EMF)" Sum "$(jq -cn --arg n "$ns" '[[$n, "Errors5xx"], [$n, "RedisErrors"], [$n, "RedisTimeouts"]]')")"
	"$(widget "Worker orders (EMF)" Sum "$(jq -cn --arg n "$ns" '[["Confirmed","Rejected","DeadLettered","Retries"][] as $m | [$n, $m, "Service", "worker"]]')")"
	"$(widget "Worker commit-to-final p99, ms (EMF)" Maximum "$(jq -cn --arg n "$ns" '[[$n, "CommitToFinalP99", "Service", "worker"], [$n, "TransactionP99", "Service", "worker"]]')")"
	"$(widget "ALB requests and 5XX" Sum "$(jq -cn --arg lb "$lb_full" '[["AWS/ApplicationELB", "RequestCount", "LoadBalancer", $lb], ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", $lb]]')")"
	"$(widget "ALB target p99, s" p99 "$(jq -cn --arg lb "$lb_full" --arg tg "$tg_full" '[["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", $lb, "TargetGroup", $tg]]')")"
	"$(widget "ECS CPU and memory %" Average "$(jq -cn --arg c "$cluster" '[["edge","worker"][] as $s | (["AWS/ECS", "CPUUtilization", "ClusterName", $c, "ServiceName", $s], ["AWS/ECS", "MemoryUtilization", "ClusterName", $c, "ServiceName", $s])]')")"
	"$(widget "Commit queue: visible, oldest age (s), DLQ" Maximum "$(jq -cn --arg q "$queue_name" --arg d "$dlq_name" '[["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", $q], ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", $q], ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", $d]]')")"
	"$(widget "ElastiCache CPU, memory %, evictions" Maximum "$(jq -cn --arg r "$redis_node" '[["AWS/ElastiCache", "EngineCPUUtilization", "CacheClusterId", $r], ["AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "CacheClusterId", $r], ["AWS/ElastiCache", "Evictions", "CacheClusterId", $r]]')")"
	"$(widget "Aurora ACU % and connections" Maximum "$(jq -cn --arg d "$NAME_DB" '[["AWS/RDS", "ACUUtilization", "DBClusterIdentifier", $d], ["AWS/RDS", "DatabaseConnections", "DBClusterIdentifier", $d]]')")"
)
body="$(printf '%s\n' "${widgets[@]}" | jq -cs '{widgets: [to_entries[] | .value + {x: ((.key % 3) * 8), y: ((.key / 3 | floor) * 6)}]}')"
dashboard="$PROJECT"
current="$(aws_try cloudwatch get-dashboard --dashboard-name "$dashboard" | jq -c '.DashboardBody | fromjson' 2>/dev/null || true)"
if [[ -n "$current" ]] && jq -e --argjson want "$body" '. == $want' <<<"$current" >/dev/null; then
	exists "dashboard $dashboard"
else
	awscli cloudwatch put-dashboard --dashboard-name "$dashboard" --dashboard-body "$body" >/dev/null
	setting "dashboard $dashboard (${#widgets[@]} widgets)"
fi
state_set observability dashboard "$dashboard"

log "done: dashboard $dashboard, $(jq '[to_entries[] | select(.key | startswith("alarm_"))] | length' "$(state_path observability)") alarms -> $(state_path observability)"
