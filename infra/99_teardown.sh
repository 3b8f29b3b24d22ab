#!/usr/bin/env bash
# 99: delete everything steps 00-09 made in this region, in reverse order, found by
# name and tag (not by infra/out, which may be gone). Re-runnable: what is already
# gone is reported "absent". Then removes infra/out/<region>/.
#
# Against AWS it asks for the region's name to be typed, or CONFIRM=yes. It waits for
# what blocks the next deletion (the CloudFront distribution to be disabled, Aurora and
# Redis to be deleted, NAT gateways, ENIs released by tasks and load balancers), which
# takes 15-30 minutes.
#
# Two regions (lib.sh: REGIONS): tear down the standby first. Its teardown takes its ALB
# out of the shared CloudFront distribution and its cluster out of the global database;
# the primary's refuses while a standby cluster is still there, then deletes the
# distribution and the global database with the last cluster.
#
# Data: the Aurora cluster leaves a final snapshot $PROJECT-final-<time> unless
# SKIP_FINAL_SNAPSHOT=yes (the snapshot is kept, and billed, until deleted by hand);
# secrets are deleted without the 7-30 day recovery window (SECRET_RECOVERY_DAYS keeps
# one), since a re-deploy would otherwise find their names taken.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SKIP_FINAL_SNAPSHOT="${SKIP_FINAL_SNAPSHOT:-no}"
SECRET_RECOVERY_DAYS="${SECRET_RECOVERY_DAYS:-}"
TEARDOWN_TIMEOUT="${TEARDOWN_TIMEOUT:-2400}"
poll=15
is_local_endpoint && poll=1

if ! is_local_endpoint && [[ "${CONFIRM:-}" != yes ]]; then
	[[ -t 0 ]] || die "refusing to delete $PROJECT in $REGION without CONFIRM=yes"
	read -r -p "Delete every $PROJECT resource in $REGION (data included)? Type the region to confirm: " answer
	[[ "$answer" == "$REGION" ]] || die "not confirmed"
fi

# try_delete WHAT CMD...: deleted, or absent already; anything else stops the teardown.
try_delete() {
	local what=$1
	shift
	if aws_try "$@" >/dev/null; then
		deleted "$what"
	elif aws_not_found; then
		absent "$what"
	else
		die "deleting $what: $(aws_error)"
	fi
}

# try_delete_gap WHAT CMD...: as try_delete, for a deletion moto's server lacks.
try_delete_gap() {
	local what=$1
	shift
	if aws_try "$@" >/dev/null; then
		deleted "$what"
	elif aws_not_found; then
		absent "$what"
	else
		local_gap "deleting $what"
	fi
}

# retry_delete WHAT CMD...: as try_delete, but retried while something still depends on
# the resource (ENIs of stopped tasks and deleted load balancers linger for minutes).
retry_delete() {
	local what=$1 deadline=$((SECONDS + TEARDOWN_TIMEOUT))
	shift
	until aws_try "$@" >/dev/null; do
		if aws_not_found; then
			absent "$what"
			return 0
		fi
		[[ "$(aws_error_code)" =~ DependencyViolation|InUse|Invalid[A-Za-z]*State|InvalidParameterValue|ClusterContains ]] ||
			die "deleting $what: $(aws_error)"
		((SECONDS < deadline)) || die "deleting $what: still in use after ${TEARDOWN_TIMEOUT}s: $(aws_error)"
		log "waiting   $what is still in use ($(aws_error_code)); retrying in ${poll}s"
		sleep "$poll"
	done
	deleted "$what"
}

# wait_gone WHAT CMD...: until CMD (a describe) says not found. moto's server keeps
# some resources "deleting" for ever: there, a few seconds, then a printed skip.
wait_gone() {
	local what=$1 deadline=$((SECONDS + TEARDOWN_TIMEOUT))
	shift
	is_local_endpoint && deadline=$((SECONDS + 3))
	while aws_try "$@" >/dev/null; do
		if ((SECONDS >= deadline)); then
			skip_local "waiting for $what to be deleted (still listed)" && return 0
			die "$what still there after ${TEARDOWN_TIMEOUT}s"
		fi
		log "waiting   for $what to be deleted"
		sleep "$poll"
	done
	aws_not_found || die "waiting for $what: $(aws_error)"
}

# The primary region goes last: its Aurora cluster is the global database's writer,
# which cannot leave the global database while a secondary is attached to it.
if is_primary; then
	for r in "${ALL_REGIONS[@]}"; do
		[[ "$r" != "$REGION" ]] || continue
		if aws_try_in "$r" rds describe-db-clusters --db-cluster-identifier "$NAME_DB" >/dev/null; then
			die "$r still has aurora cluster $NAME_DB (a secondary of $NAME_GLOBAL_DB): tear down $r first (AWS_REGION=$r make teardown)"
		fi
		aws_not_found || die "describe-db-clusters in $r: $(aws_error)"
	done
fi

# ----------------------------------------------------------------------------- 07 CloudFront
# One distribution for every region (07): a standby's teardown only takes its ALB out
# (the seat reads' origin group goes with it, their behaviours point at the primary's
# ALB again); the last region's deletes it.
comment="$PROJECT"
origin="alb-$REGION"
dist_id="$(awscli cloudfront list-distributions |
	jq -r --arg c "$comment" '.DistributionList.Items[]? | select(.Comment == $c) | .Id' | head -n1)"
if [[ -n "$dist_id" ]]; then
	cfg="$(awscli cloudfront get-distribution-config --id "$dist_id")"
	others="$(jq -c --arg o "$origin" '[.DistributionConfig.Origins.Items[] | select(.Id != $o) | .Id]' <<<"$cfg")"
fi
if [[ -n "$dist_id" && "$others" != "[]" ]]; then
	if jq -e --arg o "$origin" 'any(.DistributionConfig.Origins.Items[]; .Id == $o)' <<<"$cfg" >/dev/null; then
		awscli cloudfront update-distribution --id "$dist_id" --if-match "$(jq -r .ETag <<<"$cfg")" \
			--distribution-config "$(jq -c --arg o "$origin" --argjson others "$others" '.DistributionConfig
				| ([.OriginGroups.Items[]?.Id] + [$o]) as $gone
				| .Origins.Items |= map(select(.Id != $o)) | .Origins.Quantity = (.Origins.Items | length)
				| .OriginGroups = {Quantity: 0}
				| .DefaultCacheBehavior.TargetOriginId |= (if IN($gone[]) then $others[0] else . end)
				| if .CacheBehaviors.Items then .CacheBehaviors.Items[].TargetOriginId |= (if IN($gone[]) then $others[0] else . end) else . end' <<<"$cfg")" >/dev/null
		updated "cloudfront distribution $dist_id: without $origin (origins left: $(jq -r 'join(", ")' <<<"$others"))"
	else
		absent "cloudfront origin $origin (distribution $dist_id)"
	fi
elif [[ -n "$dist_id" ]]; then
	if [[ "$(jq -r .DistributionConfig.Enabled <<<"$cfg")" == true ]]; then
		awscli cloudfront update-distribution --id "$dist_id" --if-match "$(jq -r .ETag <<<"$cfg")" \
			--distribution-config "$(jq -c '.DistributionConfig | .Enabled = false' <<<"$cfg")" >/dev/null
		updated "cloudfront distribution $dist_id disabled"
	fi
	if ! skip_local "cloudfront wait distribution-deployed"; then
		log "waiting for cloudfront $dist_id to finish disabling (5-15 minutes)"
		awscli cloudfront wait distribution-deployed --id "$dist_id"
	fi
	etag="$(awscli cloudfront get-distribution-config --id "$dist_id" | jq -r .ETag)"
	try_delete "cloudfront distribution $dist_id" cloudfront delete-distribution --id "$dist_id" --if-match "$etag"
else
	absent "cloudfront distribution ($comment)"
fi

# ----------------------------------------------------------------------------- 09 observability
# (its alarms share the $PROJECT- prefix and go with 06's below)
try_delete "dashboard $PROJECT" cloudwatch delete-dashboards --dashboard-names "$PROJECT"

# ----------------------------------------------------------------------------- 06 autoscaling
alarms="$(awscli cloudwatch describe-alarms --alarm-name-prefix "$PROJECT-" | jq -r '.MetricAlarms[].AlarmName')"
if [[ -n "$alarms" ]]; then
	mapfile -t alarm_list <<<"$alarms"
	awscli cloudwatch delete-alarms --alarm-names "${alarm_list[@]}"
	deleted "alarms ${alarm_list[*]}"
fi
for svc in edge worker; do
	# Deregistering the target deletes its scaling policies (and their alarms).
	try_delete "scalable target service/$PROJECT/$svc" application-autoscaling deregister-scalable-target \
		--service-namespace ecs --resource-id "service/$NAME_CLUSTER/$svc" --scalable-dimension ecs:service:DesiredCount
done

# ----------------------------------------------------------------------------- 05, 08 services, tasks
services="$(awscli ecs describe-services --cluster "$NAME_CLUSTER" --services edge worker 2>/dev/null || echo '{}')"
for svc in edge worker; do
	if jq -e --arg n "$svc" 'any(.services[]?; .serviceName == $n and .status == "ACTIVE")' <<<"$services" >/dev/null; then
		awscli ecs update-service --cluster "$NAME_CLUSTER" --service "$svc" --desired-count 0 >/dev/null
		awscli ecs delete-service --cluster "$NAME_CLUSTER" --service "$svc" --force >/dev/null
		deleted "ecs service $svc"
	else
		absent "ecs service $svc"
	fi
done
if tasks="$(aws_try ecs list-tasks --cluster "$NAME_CLUSTER" --started-by 08_db_init --desired-status RUNNING)"; then
	for task in $(jq -r '.taskArns[]' <<<"$tasks"); do
		awscli ecs stop-task --cluster "$NAME_CLUSTER" --task "$task" --reason "$STEP" >/dev/null
		deleted "one-off task $task (stopped)"
	done
fi
if ! skip_local "ecs wait services-inactive"; then
	if jq -e 'any(.services[]?; .status != "INACTIVE")' <<<"$services" >/dev/null; then
		log "waiting for the services to drain and become inactive"
		awscli ecs wait services-inactive --cluster "$NAME_CLUSTER" --services edge worker || true
	fi
fi

# ----------------------------------------------------------------------------- 04 task definitions
for svc in edge worker; do
	for td in $(awscli ecs list-task-definitions --family-prefix "$PROJECT-$svc" --status ACTIVE | jq -r '.taskDefinitionArns[]'); do
		awscli ecs deregister-task-definition --task-definition "$td" >/dev/null
		deleted "task definition $td (deregistered)"
	done
done

# ----------------------------------------------------------------------------- 05 load balancer
if lb="$(aws_try elbv2 describe-load-balancers --names "$NAME_ALB")"; then
	lb_arn="$(jq -r '.LoadBalancers[0].LoadBalancerArn' <<<"$lb")"
	awscli elbv2 delete-load-balancer --load-balancer-arn "$lb_arn"
	deleted "load balancer $lb_arn (and its listeners)"
	awscli elbv2 wait load-balancers-deleted --load-balancer-arns "$lb_arn"
else
	aws_not_found || die "describe-load-balancers: $(aws_error)"
	absent "load balancer $NAME_ALB"
fi
if tg="$(aws_try elbv2 describe-target-groups --names "$NAME_TG")"; then
	retry_delete "target group $NAME_TG" elbv2 delete-target-group --target-group-arn "$(jq -r '.TargetGroups[0].TargetGroupArn' <<<"$tg")"
else
	absent "target group $NAME_TG"
fi

# ----------------------------------------------------------------------------- 03 data plane
# Redis
if aws_try elasticache describe-replication-groups --replication-group-id "$NAME_REDIS" >/dev/null; then
	if aws_try elasticache delete-replication-group --replication-group-id "$NAME_REDIS" >/dev/null; then
		deleted "redis replication group $NAME_REDIS"
	elif [[ "$(aws_error_code)" != InvalidReplicationGroupState ]]; then # already deleting
		die "deleting redis $NAME_REDIS: $(aws_error)"
	fi
	wait_gone "redis $NAME_REDIS" elasticache describe-replication-groups --replication-group-id "$NAME_REDIS"
else
	absent "redis replication group $NAME_REDIS"
fi
try_delete_gap "cache subnet group $PROJECT-redis" elasticache delete-cache-subnet-group --cache-subnet-group-name "$PROJECT-redis"
redis_family="redis${REDIS_ENGINE_VERSION:-7.1}"
redis_family="${redis_family%%.*}"
try_delete_gap "cache parameter group $PROJECT-$redis_family" elasticache delete-cache-parameter-group \
	--cache-parameter-group-name "$PROJECT-$redis_family"

# Aurora: this region's cluster leaves the global database first (AWS deletes no member
# of one); the global database goes with the last region's cluster.
members_of() { jq -r '.GlobalClusters[0].GlobalClusterMembers[]?.DBClusterArn' <<<"$1"; }
if cluster="$(aws_try rds describe-db-clusters --db-cluster-identifier "$NAME_DB")"; then
	cluster_arn="$(jq -r '.DBClusters[0].DBClusterArn' <<<"$cluster")"
	global="$(global_db)"
	if members_of "$global" | grep -qxF "$cluster_arn"; then
		awscli rds remove-from-global-cluster --global-cluster-identifier "$NAME_GLOBAL_DB" \
			--db-cluster-identifier "$cluster_arn" >/dev/null
		updated "aurora cluster $NAME_DB: removed from global database $NAME_GLOBAL_DB"
	fi
	if [[ "$(jq -r '.DBClusters[0].DeletionProtection' <<<"$cluster")" == true ]]; then
		awscli rds modify-db-cluster --db-cluster-identifier "$NAME_DB" --no-deletion-protection --apply-immediately >/dev/null
		updated "aurora cluster $NAME_DB: deletion protection off"
	fi
	for id in $(jq -r '.DBClusters[0].DBClusterMembers[]?.DBInstanceIdentifier' <<<"$cluster"); do
		retry_delete "aurora instance $id" rds delete-db-instance --db-instance-identifier "$id"
	done
	for id in $(jq -r '.DBClusters[0].DBClusterMembers[]?.DBInstanceIdentifier' <<<"$cluster"); do
		wait_gone "aurora instance $id" rds describe-db-instances --db-instance-identifier "$id"
	done
	snapshot=(--skip-final-snapshot)
	if [[ "$SKIP_FINAL_SNAPSHOT" != yes ]]; then
		snapshot=(--final-db-snapshot-identifier "$PROJECT-final-$(date -u +%Y%m%d%H%M%S)")
	fi
	retry_delete "aurora cluster $NAME_DB (${snapshot[*]})" rds delete-db-cluster --db-cluster-identifier "$NAME_DB" "${snapshot[@]}"
	wait_gone "aurora cluster $NAME_DB" rds describe-db-clusters --db-cluster-identifier "$NAME_DB"
else
	absent "aurora cluster $NAME_DB"
fi
global="$(global_db)"
if [[ "$(jq '.GlobalClusters | length' <<<"$global")" == 1 ]]; then
	live=()
	for arn in $(members_of "$global"); do # a member still there, asked in its region (the ARN's 4th field)
		if aws_try_in "$(cut -d: -f4 <<<"$arn")" rds describe-db-clusters --db-cluster-identifier "$arn" >/dev/null; then
			live+=("$arn")
		fi
	done
	if ((${#live[@]} > 0)); then
		exists "aurora global database $NAME_GLOBAL_DB: kept for ${live[*]}"
	elif [[ -n "$(members_of "$global")" ]] && skip_local "deleting aurora global database $NAME_GLOBAL_DB (moto keeps deleted clusters as its members)"; then
		:
	else
		if [[ "$(jq -r '.GlobalClusters[0].DeletionProtection' <<<"$global")" == true ]]; then
			awscli rds modify-global-cluster --global-cluster-identifier "$NAME_GLOBAL_DB" --no-deletion-protection >/dev/null
			updated "aurora global database $NAME_GLOBAL_DB: deletion protection off"
		fi
		retry_delete "aurora global database $NAME_GLOBAL_DB" rds delete-global-cluster --global-cluster-identifier "$NAME_GLOBAL_DB"
	fi
else
	absent "aurora global database $NAME_GLOBAL_DB"
fi
retry_delete "db subnet group $PROJECT-db" rds delete-db-subnet-group --db-subnet-group-name "$PROJECT-db"
aurora_version="${AURORA_ENGINE_VERSION:-16.6}"
retry_delete "db cluster parameter group $PROJECT-aurora-postgresql${aurora_version%%.*}" rds delete-db-cluster-parameter-group \
	--db-cluster-parameter-group-name "$PROJECT-aurora-postgresql${aurora_version%%.*}"

# SQS, DynamoDB, secrets
for q in "$NAME_QUEUE" "$NAME_DLQ"; do
	if url="$(aws_try sqs get-queue-url --queue-name "$q" | jq -r .QueueUrl)"; then
		try_delete "queue $q" sqs delete-queue --queue-url "$url"
	else
		absent "queue $q"
	fi
done
try_delete "dynamodb table $NAME_TABLE" dynamodb delete-table --table-name "$NAME_TABLE"
recovery=(--force-delete-without-recovery)
[[ -n "$SECRET_RECOVERY_DAYS" ]] && recovery=(--recovery-window-in-days "$SECRET_RECOVERY_DAYS")
for s in "$NAME_SECRET_ROOM" "$NAME_SECRET_REDIS" "$NAME_SECRET_DB" "$NAME_SECRET_PAYMENT"; do
	if aws_try secretsmanager describe-secret --secret-id "$s" >/dev/null; then
		try_delete "secret $s" secretsmanager delete-secret --secret-id "$s" "${recovery[@]}"
	else
		absent "secret $s"
	fi
done

# ----------------------------------------------------------------------------- 02 cluster, roles, logs
for kind in edge-exec worker-exec edge-task worker-task; do
	role="$(iam_role_name "$kind")"
	if aws_try iam delete-role-policy --role-name "$role" --policy-name least-privilege >/dev/null || aws_not_found; then
		try_delete "iam role $role" iam delete-role --role-name "$role"
	else
		die "deleting the policy of $role: $(aws_error)"
	fi
done
for svc in edge worker; do
	try_delete "log group $(log_group "$svc")" logs delete-log-group --log-group-name "$(log_group "$svc")"
done
if jq -e '.clusters[]? | select(.status == "ACTIVE")' <<<"$(awscli ecs describe-clusters --clusters "$NAME_CLUSTER")" >/dev/null; then
	retry_delete "ecs cluster $NAME_CLUSTER" ecs delete-cluster --cluster "$NAME_CLUSTER"
else
	absent "ecs cluster $NAME_CLUSTER"
fi

# ----------------------------------------------------------------------------- 01 repositories
for svc in edge worker; do
	try_delete "ecr repository $(repo_name "$svc") (with its images)" ecr delete-repository \
		--repository-name "$(repo_name "$svc")" --force
done

# ----------------------------------------------------------------------------- 00 network
vpc_id="$(awscli ec2 describe-vpcs --filters "Name=tag:Name,Values=$PROJECT-vpc" "Name=tag:Project,Values=$PROJECT" |
	jq -r '.Vpcs[0].VpcId // empty')"
if [[ -n "$vpc_id" ]]; then
	for ep in $(awscli ec2 describe-vpc-endpoints --filters "Name=vpc-id,Values=$vpc_id" | jq -r '.VpcEndpoints[].VpcEndpointId'); do
		awscli ec2 delete-vpc-endpoints --vpc-endpoint-ids "$ep" >/dev/null
		deleted "vpc endpoint $ep"
	done
	nats="$(awscli ec2 describe-nat-gateways --filter "Name=vpc-id,Values=$vpc_id" "Name=state,Values=pending,available" |
		jq -r '.NatGateways[].NatGatewayId')"
	if [[ -n "$nats" ]]; then
		mapfile -t nat_list <<<"$nats"
		for nat in "${nat_list[@]}"; do
			awscli ec2 delete-nat-gateway --nat-gateway-id "$nat" >/dev/null
			deleted "nat gateway $nat"
		done
		awscli ec2 wait nat-gateway-deleted --nat-gateway-ids "${nat_list[@]}"
	fi
	for igw in $(awscli ec2 describe-internet-gateways --filters "Name=attachment.vpc-id,Values=$vpc_id" | jq -r '.InternetGateways[].InternetGatewayId'); do
		# Fails while deleted load balancers' addresses are still mapped: retried.
		retry_delete "internet gateway $igw attachment" ec2 detach-internet-gateway \
			--internet-gateway-id "$igw" --vpc-id "$vpc_id"
		try_delete "internet gateway $igw" ec2 delete-internet-gateway --internet-gateway-id "$igw"
	done
	rts="$(awscli ec2 describe-route-tables --filters "Name=vpc-id,Values=$vpc_id")"
	for assoc in $(jq -r '.RouteTables[].Associations[]? | select(.Main | not) | .RouteTableAssociationId' <<<"$rts"); do
		awscli ec2 disassociate-route-table --association-id "$assoc"
	done
	for rt in $(jq -r '.RouteTables[] | select(any(.Associations[]?; .Main) | not) | .RouteTableId' <<<"$rts"); do
		awscli ec2 delete-route-table --route-table-id "$rt"
		deleted "route table $rt"
	done
	# Groups refer to each other: empty them all first, then delete them.
	sgs="$(awscli ec2 describe-security-groups --filters "Name=vpc-id,Values=$vpc_id")"
	for sg in $(jq -r '.SecurityGroups[] | select(.GroupName != "default") | .GroupId' <<<"$sgs"); do
		in="$(jq -c --arg id "$sg" '.SecurityGroups[] | select(.GroupId == $id) | .IpPermissions' <<<"$sgs")"
		out="$(jq -c --arg id "$sg" '.SecurityGroups[] | select(.GroupId == $id) | .IpPermissionsEgress' <<<"$sgs")"
		[[ "$in" == "[]" ]] || awscli ec2 revoke-security-group-ingress --group-id "$sg" --ip-permissions "$in" >/dev/null
		[[ "$out" == "[]" ]] || awscli ec2 revoke-security-group-egress --group-id "$sg" --ip-permissions "$out" >/dev/null
	done
	for sg in $(jq -r '.SecurityGroups[] | select(.GroupName != "default") | .GroupId' <<<"$sgs"); do
		retry_delete "security group $sg" ec2 delete-security-group --group-id "$sg"
	done
	for subnet in $(awscli ec2 describe-subnets --filters "Name=vpc-id,Values=$vpc_id" | jq -r '.Subnets[].SubnetId'); do
		retry_delete "subnet $subnet" ec2 delete-subnet --subnet-id "$subnet"
	done
	retry_delete "vpc $vpc_id" ec2 delete-vpc --vpc-id "$vpc_id"
else
	absent "vpc $PROJECT-vpc"
fi
for alloc in $(awscli ec2 describe-addresses --filters "Name=tag:Project,Values=$PROJECT" | jq -r '.Addresses[].AllocationId'); do
	retry_delete "elastic ip $alloc" ec2 release-address --allocation-id "$alloc"
done

rm -rf "$REGION_DIR"
if [[ -f "$OUT_DIR/.env.generated" ]] && grep -qx "AWS_REGION=$REGION" "$OUT_DIR/.env.generated"; then
	rm -f "$OUT_DIR/.env.generated"
fi
log "done: $PROJECT removed from $REGION"
