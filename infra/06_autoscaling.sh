#!/usr/bin/env bash
# 06: autoscaling (Application Auto Scaling on the services' desired counts, CloudWatch
# alarms for the step policies).
#
#   edge    EDGE_MIN..EDGE_MAX tasks
#           edge-cpu-target        target tracking, average CPU EDGE_CPU_TARGET (60) %
#           edge-requests-target   target tracking, ALBRequestCountPerTarget
#                                  EDGE_REQUESTS_PER_TARGET (requests per target per
#                                  minute; 300000 = 5,000/s per task)
#           edge-p95-step          step scaling, +20% (at least one task) while the alarm
#                                  $PROJECT-edge-p95-over-200ms holds: the target group's
#                                  p95 TargetResponseTime above EDGE_P95_MS (200) ms in 2
#                                  of 3 minutes
#   worker  WORKER_MIN..WORKER_MAX tasks, on the commit queue
#           worker-backlog-out     +2 tasks (+5 past 10x the threshold) while the alarm
#                                  $PROJECT-worker-backlog-high holds: visible messages
#                                  above WORKER_DEPTH_HIGH (1000) for 2 minutes
#           worker-age-out         +2 tasks while $PROJECT-worker-age-high holds: the
#                                  oldest message older than WORKER_AGE_HIGH_SECS (30)
#           worker-backlog-in      -1 task while $PROJECT-worker-backlog-low holds: fewer
#                                  than WORKER_DEPTH_LOW (10) visible for 15 minutes
#
# Targets, policies and alarms are compared first and written only where they differ
# (each write is a put, which replaces: never a duplicate).
# Writes infra/out/<region>/autoscaling.json.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EDGE_MIN="${EDGE_MIN:-2}"
EDGE_MAX="${EDGE_MAX:-40}"
EDGE_CPU_TARGET="${EDGE_CPU_TARGET:-60}"
EDGE_REQUESTS_PER_TARGET="${EDGE_REQUESTS_PER_TARGET:-300000}"
EDGE_P95_MS="${EDGE_P95_MS:-200}"
WORKER_MIN="${WORKER_MIN:-1}"
WORKER_MAX="${WORKER_MAX:-20}"
WORKER_DEPTH_HIGH="${WORKER_DEPTH_HIGH:-1000}"
WORKER_AGE_HIGH_SECS="${WORKER_AGE_HIGH_SECS:-30}"
WORKER_DEPTH_LOW="${WORKER_DEPTH_LOW:-10}"

cluster="$(state_get cluster clusterName)"
lb_full="$(state_get alb albFullName)"
tg_full="$(state_get alb targetGroupFullName)"
queue_name="$(state_get data queueName)"

# What exists already: a re-run compares and writes only what differs.
targets_json="$(awscli application-autoscaling describe-scalable-targets --service-namespace ecs \
	--resource-ids "service/$cluster/edge" "service/$cluster/worker")"
policies_json="$(awscli application-autoscaling describe-scaling-policies --service-namespace ecs)"
ALARMS_JSON="$(awscli cloudwatch describe-alarms --alarm-name-prefix "$PROJECT-")"

target() { # SERVICE MIN MAX
	if jq -e --arg r "service/$cluster/$1" --argjson min "$2" --argjson max "$3" \
		'any(.ScalableTargets[]; .ResourceId == $r and .MinCapacity == $min and .MaxCapacity == $max)' \
		<<<"$targets_json" >/dev/null; then
		exists "scalable target service/$cluster/$1: $2..$3 tasks"
		return
	fi
	awscli application-autoscaling register-scalable-target --service-namespace ecs \
		--resource-id "service/$cluster/$1" --scalable-dimension ecs:service:DesiredCount \
		--min-capacity "$2" --max-capacity "$3" >/dev/null
	setting "scalable target service/$cluster/$1: $2..$3 tasks"
}

policy() { # SERVICE NAME TYPE CONFIG_JSON -> policy ARN
	local flag=--step-scaling-policy-configuration field=StepScalingPolicyConfiguration arn
	if [[ "$3" == TargetTrackingScaling ]]; then
		flag=--target-tracking-scaling-policy-configuration
		field=TargetTrackingScalingPolicyConfiguration
	fi
	arn="$(jq -r --arg r "service/$cluster/$1" --arg n "$2" --arg f "$field" --argjson want "$4" "$JQ_COVERS"'
		.ScalingPolicies[] | select(.ResourceId == $r and .PolicyName == $n)
		| select(.[$f] | covers($want)) | .PolicyARN' <<<"$policies_json")"
	if [[ -n "$arn" ]]; then
		exists "scaling policy $2 ($3)"
	else
		arn="$(awscli application-autoscaling put-scaling-policy --service-namespace ecs \
			--resource-id "service/$cluster/$1" --scalable-dimension ecs:service:DesiredCount \
			--policy-name "$2" --policy-type "$3" "$flag" "$4" | jq -r .PolicyARN)"
		setting "scaling policy $2 ($3)"
	fi
	state_set autoscaling "policy_$2" "$arn"
	printf '%s' "$arn"
}

alarm() { put_alarm autoscaling "$@"; }

# --- edge
target edge "$EDGE_MIN" "$EDGE_MAX"
policy edge edge-cpu-target TargetTrackingScaling "$(jq -cn --argjson t "$EDGE_CPU_TARGET" '{
	TargetValue: $t,
	PredefinedMetricSpecification: {PredefinedMetricType: "ECSServiceAverageCPUUtilization"},
	ScaleOutCooldown: 60, ScaleInCooldown: 300
}')" >/dev/null
policy edge edge-requests-target TargetTrackingScaling "$(jq -cn --argjson t "$EDGE_REQUESTS_PER_TARGET" --arg rl "$lb_full/$tg_full" '{
	TargetValue: $t,
	PredefinedMetricSpecification: {PredefinedMetricType: "ALBRequestCountPerTarget", ResourceLabel: $rl},
	ScaleOutCooldown: 60, ScaleInCooldown: 300
}')" >/dev/null
p95_policy="$(policy edge edge-p95-step StepScaling '{
	"AdjustmentType": "PercentChangeInCapacity",
	"MinAdjustmentMagnitude": 1,
	"Cooldown": 120,
	"MetricAggregationType": "Maximum",
	"StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 20}]
}')"
alarm edge-p95-over-200ms "$(jq -cn --arg p "$p95_policy" --argjson ms "$EDGE_P95_MS" --arg lb "$lb_full" --arg tg "$tg_full" '{
	AlarmDescription: "edge p95 response time above \($ms) ms: scale out +20%",
	AlarmActions: [$p],
	Namespace: "AWS/ApplicationELB", MetricName: "TargetResponseTime", ExtendedStatistic: "p95",
	Dimensions: [{Name: "LoadBalancer", Value: $lb}, {Name: "TargetGroup", Value: $tg}],
	Period: 60, EvaluationPeriods: 3, DatapointsToAlarm: 2,
	Threshold: ($ms / 1000), ComparisonOperator: "GreaterThanThreshold"
}')"

# --- worker
target worker "$WORKER_MIN" "$WORKER_MAX"
out_policy="$(policy worker worker-backlog-out StepScaling "$(jq -cn --argjson h "$WORKER_DEPTH_HIGH" '{
	AdjustmentType: "ChangeInCapacity", Cooldown: 60, MetricAggregationType: "Average",
	StepAdjustments: [
		{MetricIntervalLowerBound: 0, MetricIntervalUpperBound: ($h * 9), ScalingAdjustment: 2},
		{MetricIntervalLowerBound: ($h * 9), ScalingAdjustment: 5}
	]
}')")"
age_policy="$(policy worker worker-age-out StepScaling '{
	"AdjustmentType": "ChangeInCapacity", "Cooldown": 60, "MetricAggregationType": "Maximum",
	"StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 2}]
}')"
in_policy="$(policy worker worker-backlog-in StepScaling '{
	"AdjustmentType": "ChangeInCapacity", "Cooldown": 300, "MetricAggregationType": "Average",
	"StepAdjustments": [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": -1}]
}')"
queue_alarm() { # NAME DESCRIPTION POLICY_ARN METRIC STATISTIC PERIODS THRESHOLD COMPARISON
	alarm "$1" "$(jq -cn --arg d "$2" --arg p "$3" --arg m "$4" --arg s "$5" --argjson n "$6" --argjson t "$7" \
		--arg c "$8" --arg q "$queue_name" '{
	AlarmDescription: $d, AlarmActions: [$p],
	Namespace: "AWS/SQS", MetricName: $m, Statistic: $s,
	Dimensions: [{Name: "QueueName", Value: $q}],
	Period: 60, EvaluationPeriods: $n, Threshold: $t, ComparisonOperator: $c
}')"
}
queue_alarm worker-backlog-high "commit queue above $WORKER_DEPTH_HIGH visible messages: add workers" "$out_policy" \
	ApproximateNumberOfMessagesVisible Average 2 "$WORKER_DEPTH_HIGH" GreaterThanThreshold
queue_alarm worker-age-high "oldest commit older than ${WORKER_AGE_HIGH_SECS}s: add workers" "$age_policy" \
	ApproximateAgeOfOldestMessage Maximum 2 "$WORKER_AGE_HIGH_SECS" GreaterThanThreshold
queue_alarm worker-backlog-low "commit queue below $WORKER_DEPTH_LOW for 15 minutes: remove a worker" "$in_policy" \
	ApproximateNumberOfMessagesVisible Average 15 "$WORKER_DEPTH_LOW" LessThanThreshold

log "done: edge $EDGE_MIN..$EDGE_MAX (cpu $EDGE_CPU_TARGET%, $EDGE_REQUESTS_PER_TARGET req/target/min, p95 > ${EDGE_P95_MS}ms), worker $WORKER_MIN..$WORKER_MAX -> $(state_path autoscaling)"
