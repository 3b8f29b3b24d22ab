#!/usr/bin/env bash
# 05: the load balancer and the ECS services.
#
#   ALB       $PROJECT-alb, internet-facing in the public subnets; idle timeout
#             ALB_IDLE_TIMEOUT (60 s), below the edge's keep-alive (EDGE_KEEPALIVE_MS,
#             75 s), so the ALB, not the edge, closes idle connections and never sends
#             on one the edge just closed; invalid header fields dropped
#   target    $PROJECT-edge: IP targets on EDGE_PORT, health check GET /public/health
#   group     (200 only; 503 while draining takes a task out at once), deregistration
#             delay DEREGISTRATION_DELAY (25 s), below the edge task's stopTimeout;
#             least-outstanding-requests balancing
#   listener  HTTP on 80, or HTTPS on 443 with ALB_CERT_ARN, forwarding to the group
#   sign-in   optional (ALB_OIDC_ISSUER set; needs ALB_CERT_ARN): a listener rule sends
#             ALB_OIDC_PATHS (/public/enter) through the OIDC provider's sign-in
#             (authenticate-oidc) before forwarding; the ALB then adds x-amzn-oidc-data,
#             which the edge verifies with IDENTITY=alb-oidc and IDENTITY_ALB_ARN = this
#             balancer's ARN (alb.json albArn). Unset, a rule left by an earlier run is
#             removed.
#   services  edge (behind the group) and worker, Fargate in the private subnets, no
#             public IPs, rolling deployments with the circuit breaker and rollback
#
# A re-run changes a service only when its task definition changed (the desired count
# belongs to autoscaling, step 06, once the service exists). Waits for the services to
# be stable, except on a local endpoint, where tasks never run. Writes
# infra/out/<region>/alb.json.
#
# Environment: ALB_IDLE_TIMEOUT (60), DEREGISTRATION_DELAY (25), EDGE_DESIRED (2),
# WORKER_DESIRED (2), ALB_CERT_ARN (unset), ALB_SSL_POLICY
# (ELBSecurityPolicy-TLS13-1-2-2021-06); sign-in: ALB_OIDC_ISSUER,
# ALB_OIDC_AUTHORIZATION_ENDPOINT, ALB_OIDC_TOKEN_ENDPOINT, ALB_OIDC_USER_INFO_ENDPOINT,
# ALB_OIDC_CLIENT_ID, ALB_OIDC_CLIENT_SECRET (all required when the issuer is set),
# ALB_OIDC_PATHS (/public/enter, comma-separated), ALB_OIDC_ON_UNAUTHENTICATED
# (authenticate: redirect to sign in; deny: 401), ALB_OIDC_SESSION_TIMEOUT (3600 s),
# ALB_OIDC_PRIORITY (10).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALB_IDLE_TIMEOUT="${ALB_IDLE_TIMEOUT:-60}"
DEREGISTRATION_DELAY="${DEREGISTRATION_DELAY:-25}"
EDGE_DESIRED="${EDGE_DESIRED:-2}"
WORKER_DESIRED="${WORKER_DESIRED:-2}"
ALB_SSL_POLICY="${ALB_SSL_POLICY:-ELBSecurityPolicy-TLS13-1-2-2021-06}"
ALB_OIDC_PATHS="${ALB_OIDC_PATHS:-/public/enter}"
ALB_OIDC_ON_UNAUTHENTICATED="${ALB_OIDC_ON_UNAUTHENTICATED:-authenticate}"
ALB_OIDC_SESSION_TIMEOUT="${ALB_OIDC_SESSION_TIMEOUT:-3600}"
ALB_OIDC_PRIORITY="${ALB_OIDC_PRIORITY:-10}"
if [[ -n "${ALB_OIDC_ISSUER:-}" ]]; then
	[[ -n "${ALB_CERT_ARN:-}" ]] || die "ALB_OIDC_ISSUER needs an HTTPS listener: set ALB_CERT_ARN (authenticate-oidc works on HTTPS only)"
	for var in ALB_OIDC_AUTHORIZATION_ENDPOINT ALB_OIDC_TOKEN_ENDPOINT ALB_OIDC_USER_INFO_ENDPOINT \
		ALB_OIDC_CLIENT_ID ALB_OIDC_CLIENT_SECRET; do
		[[ -n "${!var:-}" ]] || die "ALB_OIDC_ISSUER is set: $var is required too"
	done
	[[ "$ALB_OIDC_ON_UNAUTHENTICATED" =~ ^(authenticate|deny|allow)$ ]] ||
		die "ALB_OIDC_ON_UNAUTHENTICATED=$ALB_OIDC_ON_UNAUTHENTICATED: expected authenticate, deny or allow"
fi

stop_timeout="$(state_get taskdefs edgeStopTimeout)"
((ALB_IDLE_TIMEOUT * 1000 < EDGE_KEEPALIVE_MS)) ||
	die "ALB_IDLE_TIMEOUT=${ALB_IDLE_TIMEOUT}s must stay below EDGE_KEEPALIVE_MS=${EDGE_KEEPALIVE_MS}ms"
((DEREGISTRATION_DELAY < stop_timeout)) ||
	die "DEREGISTRATION_DELAY=${DEREGISTRATION_DELAY}s must stay below the edge's stopTimeout (${stop_timeout}s)"
((${#NAME_ALB} <= 32 && ${#NAME_TG} <= 32)) || die "PROJECT=$PROJECT is too long for load balancer names (32 characters)"

vpc_id="$(state_get network vpcId)"
mapfile -t public_subnets < <(state_get network publicSubnets | jq -r '.[]')
mapfile -t private_subnets < <(state_get network privateSubnets | jq -r '.[]')
listener_port="$(state_get network listenerPort)"
cluster="$(state_get cluster clusterName)"

# converge_attributes KIND ARN DESIRED_JSON(key -> value): sets the attributes that differ.
converge_attributes() {
	local kind=$1 arn=$2 want=$3 current diff
	if [[ "$kind" == lb ]]; then
		current="$(awscli elbv2 describe-load-balancer-attributes --load-balancer-arn "$arn")"
	else
		current="$(awscli elbv2 describe-target-group-attributes --target-group-arn "$arn")"
	fi
	diff="$(jq -c --argjson cur "$(jq -c '[.Attributes[] | {(.Key): .Value}] | add // {}' <<<"$current")" \
		'to_entries | map(select($cur[.key] != .value)) | map({Key: .key, Value: .value})' <<<"$want")"
	[[ "$diff" != "[]" ]] || return 0
	if [[ "$kind" == lb ]]; then
		awscli elbv2 modify-load-balancer-attributes --load-balancer-arn "$arn" --attributes "$diff" >/dev/null
	else
		awscli elbv2 modify-target-group-attributes --target-group-arn "$arn" --attributes "$diff" >/dev/null
	fi
	setting "$kind attributes $(jq -c 'map("\(.Key)=\(.Value)")' <<<"$diff")"
}

# --- load balancer
if lb="$(aws_try elbv2 describe-load-balancers --names "$NAME_ALB")"; then
	lb="$(jq -c '.LoadBalancers[0]' <<<"$lb")"
	exists "load balancer $(jq -r .LoadBalancerArn <<<"$lb")"
else
	aws_not_found || die "describe-load-balancers: $(aws_error)"
	lb="$(awscli elbv2 create-load-balancer --name "$NAME_ALB" --type application --scheme internet-facing \
		--ip-address-type ipv4 --subnets "${public_subnets[@]}" --security-groups "$(state_get network sg_alb)" \
		--tags "$(tags_kv "$NAME_ALB")" | jq -c '.LoadBalancers[0]')"
	created "load balancer $(jq -r .LoadBalancerArn <<<"$lb")"
fi
lb_arn="$(jq -r .LoadBalancerArn <<<"$lb")"
lb_dns="$(jq -r .DNSName <<<"$lb")"
converge_attributes lb "$lb_arn" "$(jq -cn --arg idle "$ALB_IDLE_TIMEOUT" '{
	"idle_timeout.timeout_seconds": $idle,
	"routing.http.drop_invalid_header_fields.enabled": "true"
}')"

# --- target group
want_hc="$(jq -cn --argjson port "$EDGE_PORT" '{
	HealthCheckProtocol: "HTTP", HealthCheckPath: "/public/health", HealthCheckPort: ($port | tostring),
	HealthCheckIntervalSeconds: 10, HealthCheckTimeoutSeconds: 5,
	HealthyThresholdCount: 2, UnhealthyThresholdCount: 2, Matcher: {HttpCode: "200"}
}')"
if tg="$(aws_try elbv2 describe-target-groups --names "$NAME_TG")"; then
	tg="$(jq -c '.TargetGroups[0]' <<<"$tg")"
	tg_arn="$(jq -r .TargetGroupArn <<<"$tg")"
	exists "target group $tg_arn"
	if ! jq -e --argjson w "$want_hc" '. as $t | $w | to_entries | all(.value == $t[.key])' <<<"$tg" >/dev/null; then
		awscli elbv2 modify-target-group --target-group-arn "$tg_arn" --health-check-protocol HTTP \
			--health-check-path /public/health --health-check-port "$EDGE_PORT" --health-check-interval-seconds 10 \
			--health-check-timeout-seconds 5 --healthy-threshold-count 2 --unhealthy-threshold-count 2 \
			--matcher HttpCode=200 >/dev/null
		updated "target group $NAME_TG health check"
	fi
else
	aws_not_found || die "describe-target-groups: $(aws_error)"
	tg="$(awscli elbv2 create-target-group --name "$NAME_TG" --protocol HTTP --protocol-version HTTP1 \
		--port "$EDGE_PORT" --vpc-id "$vpc_id" --target-type ip \
		--health-check-protocol HTTP --health-check-path /public/health --health-check-port "$EDGE_PORT" \
		--health-check-interval-seconds 10 --health-check-timeout-seconds 5 \
		--healthy-threshold-count 2 --unhealthy-threshold-count 2 --matcher HttpCode=200 \
		--tags "$(tags_kv "$NAME_TG")" | jq -c '.TargetGroups[0]')"
	tg_arn="$(jq -r .TargetGroupArn <<<"$tg")"
	created "target group $tg_arn (health /public/health)"
fi
converge_attributes tg "$tg_arn" "$(jq -cn --arg d "$DEREGISTRATION_DELAY" '{
	"deregistration_delay.timeout_seconds": $d,
	"load_balancing.algorithm.type": "least_outstanding_requests"
}')"

# --- listener
listeners="$(awscli elbv2 describe-listeners --load-balancer-arn "$lb_arn")"
listener="$(jq -c --argjson p "$listener_port" '[.Listeners[] | select(.Port == $p)][0] // empty' <<<"$listeners")"
action="Type=forward,TargetGroupArn=$tg_arn"
tls=()
if [[ -n "${ALB_CERT_ARN:-}" ]]; then
	tls=(--protocol HTTPS --certificates "CertificateArn=$ALB_CERT_ARN" --ssl-policy "$ALB_SSL_POLICY")
else
	tls=(--protocol HTTP)
fi
if [[ -z "$listener" ]]; then
	listener_arn="$(awscli elbv2 create-listener --load-balancer-arn "$lb_arn" --port "$listener_port" "${tls[@]}" \
		--default-actions "$action" --tags "$(tags_kv "$NAME_ALB-$listener_port")" | jq -r '.Listeners[0].ListenerArn')"
	created "listener $listener_arn (port $listener_port -> $NAME_TG)"
else
	listener_arn="$(jq -r .ListenerArn <<<"$listener")"
	exists "listener $listener_arn"
	if [[ "$(jq -r '.DefaultActions[0].TargetGroupArn // ""' <<<"$listener")" != "$tg_arn" ]]; then
		awscli elbv2 modify-listener --listener-arn "$listener_arn" "${tls[@]}" --default-actions "$action" >/dev/null
		updated "listener $listener_arn -> $NAME_TG"
	fi
fi

# --- optional sign-in rule (authenticate-oidc, then forward) on ALB_OIDC_PATHS
rules="$(awscli elbv2 describe-rules --listener-arn "$listener_arn")"
rule="$(jq -c --arg p "$ALB_OIDC_PRIORITY" '[.Rules[] | select(.Priority == $p)][0] // empty' <<<"$rules")"
oidc_rule_arn=""
if [[ -n "${ALB_OIDC_ISSUER:-}" ]]; then
	# What describe-rules shows (the client secret is write-only), then the secret.
	want_oidc="$(jq -cn --arg iss "$ALB_OIDC_ISSUER" --arg auth "$ALB_OIDC_AUTHORIZATION_ENDPOINT" \
		--arg token "$ALB_OIDC_TOKEN_ENDPOINT" --arg info "$ALB_OIDC_USER_INFO_ENDPOINT" \
		--arg id "$ALB_OIDC_CLIENT_ID" --arg on "$ALB_OIDC_ON_UNAUTHENTICATED" \
		--argjson timeout "$ALB_OIDC_SESSION_TIMEOUT" '{
	Issuer: $iss, AuthorizationEndpoint: $auth, TokenEndpoint: $token, UserInfoEndpoint: $info,
	ClientId: $id, OnUnauthenticatedRequest: $on, Scope: "openid", SessionTimeout: $timeout}')"
	actions="$(jq -cn --argjson oidc "$want_oidc" --arg secret "$ALB_OIDC_CLIENT_SECRET" --arg tg "$tg_arn" '[
	{Type: "authenticate-oidc", Order: 1, AuthenticateOidcConfig: ($oidc + {ClientSecret: $secret})},
	{Type: "forward", Order: 2, TargetGroupArn: $tg}]')"
	conditions="$(jq -cn --arg paths "$ALB_OIDC_PATHS" \
		'[{Field: "path-pattern", PathPatternConfig: {Values: ($paths | split(","))}}]')"
	if [[ -z "$rule" ]]; then
		oidc_rule_arn="$(awscli elbv2 create-rule --listener-arn "$listener_arn" --priority "$ALB_OIDC_PRIORITY" \
			--conditions "$conditions" --actions "$actions" | jq -r '.Rules[0].RuleArn')"
		created "sign-in rule $oidc_rule_arn ($ALB_OIDC_PATHS: authenticate-oidc with $ALB_OIDC_ISSUER, then $NAME_TG)"
	else
		oidc_rule_arn="$(jq -r .RuleArn <<<"$rule")"
		if jq -e --argjson w "$want_oidc" --arg tg "$tg_arn" --arg paths "$ALB_OIDC_PATHS" '
			([.Actions[] | select(.Type == "authenticate-oidc") | .AuthenticateOidcConfig
			  | with_entries(select(.key as $k | $w | has($k)))][0] == $w)
			and ([.Actions[] | select(.Type == "forward") | .TargetGroupArn][0] == $tg)
			and ([.Conditions[] | select(.Field == "path-pattern") | (.PathPatternConfig.Values // .Values)][0]
			  == ($paths | split(",")))' <<<"$rule" >/dev/null; then
			exists "sign-in rule $oidc_rule_arn"
		else
			awscli elbv2 modify-rule --rule-arn "$oidc_rule_arn" --conditions "$conditions" --actions "$actions" >/dev/null
			updated "sign-in rule $oidc_rule_arn ($ALB_OIDC_PATHS: authenticate-oidc with $ALB_OIDC_ISSUER)"
		fi
	fi
elif [[ -n "$rule" ]] && jq -e '[.Actions[] | select(.Type == "authenticate-oidc")] | length > 0' <<<"$rule" >/dev/null; then
	awscli elbv2 delete-rule --rule-arn "$(jq -r .RuleArn <<<"$rule")" >/dev/null
	deleted "sign-in rule $(jq -r .RuleArn <<<"$rule") (ALB_OIDC_ISSUER unset)"
fi

# CloudWatch names the balancer and the group by the tails of their ARNs.
lb_full="${lb_arn#*:loadbalancer/}"
tg_full="${tg_arn##*:}"
state_set alb albArn "$lb_arn"
state_set alb albDns "$lb_dns"
state_set alb albFullName "$lb_full"
state_set alb targetGroupArn "$tg_arn"
state_set alb targetGroupFullName "$tg_full"
state_set alb listenerArn "$listener_arn"
state_set alb oidcRuleArn "$oidc_rule_arn"
env_set ALB_DNS "$lb_dns"

# --- services
services="$(awscli ecs describe-services --cluster "$cluster" --services edge worker)"
network() {
	jq -cn --arg sg "$(state_get network "sg_$1")" --args '{awsvpcConfiguration: {
		subnets: $ARGS.positional, securityGroups: [$sg], assignPublicIp: "DISABLED"}}' "${private_subnets[@]}"
}
deployment='deploymentCircuitBreaker={enable=true,rollback=true},maximumPercent=200,minimumHealthyPercent=100'

# service NAME DESIRED EXTRA_CREATE_ARGS...
service() {
	local name=$1 desired=$2 taskdef current
	shift 2
	taskdef="$(state_get taskdefs "$name")"
	current="$(jq -c --arg n "$name" '[.services[] | select(.serviceName == $n and .status == "ACTIVE")][0] // empty' <<<"$services")"
	if [[ -z "$current" ]]; then
		awscli ecs create-service --cluster "$cluster" --service-name "$name" --task-definition "$taskdef" \
			--desired-count "$desired" --launch-type FARGATE --platform-version LATEST \
			--network-configuration "$(network "$name")" --deployment-configuration "$deployment" \
			--propagate-tags SERVICE --enable-ecs-managed-tags \
			--tags "key=Name,value=$name" "key=Project,value=$PROJECT" "$@" >/dev/null
		created "ecs service $name ($desired tasks of ${taskdef##*/})"
	elif [[ "$(jq -r .taskDefinition <<<"$current")" != "$taskdef" ]]; then
		awscli ecs update-service --cluster "$cluster" --service "$name" --task-definition "$taskdef" \
			--deployment-configuration "$deployment" >/dev/null
		updated "ecs service $name -> ${taskdef##*/} (rolling deployment)"
	else
		exists "ecs service $name (${taskdef##*/}, $(jq -r .desiredCount <<<"$current") desired)"
	fi
}
service edge "$EDGE_DESIRED" --health-check-grace-period-seconds 30 \
	--load-balancers "targetGroupArn=$tg_arn,containerName=edge,containerPort=$EDGE_PORT"
service worker "$WORKER_DESIRED"
state_set alb services '["edge","worker"]'

if ! skip_local "ecs wait services-stable (moto never runs the tasks)"; then
	# Without its images (step 01 skipped for want of Docker) no task can start: say so
	# rather than wait ten minutes for a failure.
	missing=""
	for svc in edge worker; do
		image="$(state_get images "$svc")"
		repo="${image#*/}"
		aws_try ecr describe-images --repository-name "${repo%:*}" --image-ids "imageTag=${image##*:}" >/dev/null ||
			missing+=" $image"
	done
	if [[ -n "$missing" ]]; then
		log "WARNING  not in ECR:$missing. The services exist but cannot start tasks until these are pushed (see step 01); not waiting for them"
	else
		log "waiting for services edge and worker to be stable"
		awscli ecs wait services-stable --cluster "$cluster" --services edge worker
	fi
fi
log "done: http://$lb_dns (port $listener_port) -> edge; worker running -> $(state_path alb)"
