#!/usr/bin/env bash
# 00: the network. A VPC over two availability zones: a public and a private subnet in
# each, an internet gateway, NAT gateway(s) for the private subnets, S3 and DynamoDB
# gateway endpoints (free; ECR layers and the hold mirror skip the NAT), and the
# security groups, each allowing only what its job needs:
#
#   alb     in:  LISTENER_PORT from CloudFront's origin-facing prefix list (ALB_INGRESS)
#           out: EDGE_PORT to edge
#   edge    in:  EDGE_PORT from alb        out: 443 (AWS APIs), 6379 to redis, 5432 to db
#   worker  in:  nothing                   out: 443 (AWS APIs), 6379 to redis, 5432 to db
#   redis   in:  6379 from edge, worker    out: nothing
#   db      in:  5432 from edge, worker    out: nothing
#
# Rules not in that list are revoked (the default allow-all egress among them), so a
# re-run converges. Writes infra/out/<region>/network.json.
#
# Environment: VPC_CIDR (10.40.0.0/16), PUBLIC_CIDRS ("10.40.0.0/24 10.40.1.0/24"),
# PRIVATE_CIDRS ("10.40.64.0/18 10.40.128.0/18"), AZS (the region's first two),
# NAT_GATEWAYS (2: one per AZ; 1 saves a gateway's hourly cost and loses egress with
# its AZ), ALB_INGRESS (cloudfront, or a CIDR such as 0.0.0.0/0 to reach the ALB
# directly), ALB_CERT_ARN (set: the listener is HTTPS on 443, else HTTP on 80).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VPC_CIDR="${VPC_CIDR:-10.40.0.0/16}"
read -r -a PUBLIC_CIDRS <<<"${PUBLIC_CIDRS:-10.40.0.0/24 10.40.1.0/24}"
read -r -a PRIVATE_CIDRS <<<"${PRIVATE_CIDRS:-10.40.64.0/18 10.40.128.0/18}"
NAT_GATEWAYS="${NAT_GATEWAYS:-2}"
ALB_INGRESS="${ALB_INGRESS:-cloudfront}"
[[ "$NAT_GATEWAYS" == 1 || "$NAT_GATEWAYS" == 2 ]] || die "NAT_GATEWAYS must be 1 or 2"
((${#PUBLIC_CIDRS[@]} == 2 && ${#PRIVATE_CIDRS[@]} == 2)) || die "PUBLIC_CIDRS and PRIVATE_CIDRS need two CIDRs each"

account_id >/dev/null

# --- availability zones: the ones chosen first stay chosen
read -r -a AZS <<<"${AZS:-}"
if ((${#AZS[@]} == 0)); then
	mapfile -t AZS < <(state_opt network azs | jq -r '.[]?')
fi
if ((${#AZS[@]} == 0)); then
	mapfile -t AZS < <(awscli ec2 describe-availability-zones \
		--filters Name=state,Values=available Name=zone-type,Values=availability-zone |
		jq -r '.AvailabilityZones | sort_by(.ZoneName) | .[:2][].ZoneName')
fi
((${#AZS[@]} == 2)) || die "need two availability zones, got: ${AZS[*]:-none}"
state_set_json network azs "$(printf '%s\n' "${AZS[@]}" | jq -R . | jq -cs .)"

# --- VPC
vpc_name="$PROJECT-vpc"
vpc_id="$(awscli ec2 describe-vpcs --filters "Name=tag:Name,Values=$vpc_name" "Name=tag:Project,Values=$PROJECT" |
	jq -r '.Vpcs[0].VpcId // empty')"
if [[ -z "$vpc_id" ]]; then
	vpc="$(awscli ec2 create-vpc --cidr-block "$VPC_CIDR" --tag-specifications "$(ec2_tags vpc "$vpc_name")")"
	vpc_id="$(jq -r .Vpc.VpcId <<<"$vpc")"
	if [[ "$(jq -r .Vpc.State <<<"$vpc")" != available ]]; then
		awscli ec2 wait vpc-available --vpc-ids "$vpc_id"
	fi
	# Interface endpoints and ElastiCache/Aurora names resolve through the VPC's DNS.
	awscli ec2 modify-vpc-attribute --vpc-id "$vpc_id" --enable-dns-hostnames '{"Value":true}'
	created "vpc $vpc_id $vpc_name $VPC_CIDR"
else
	exists "vpc $vpc_id $vpc_name"
	if [[ "$(awscli ec2 describe-vpc-attribute --vpc-id "$vpc_id" --attribute enableDnsHostnames |
		jq -r .EnableDnsHostnames.Value)" != true ]]; then
		awscli ec2 modify-vpc-attribute --vpc-id "$vpc_id" --enable-dns-hostnames '{"Value":true}'
		updated "vpc $vpc_id: DNS hostnames enabled"
	fi
fi
state_set network vpcId "$vpc_id"

# --- subnets: public-<az> and private-<az>
subnets_json="$(awscli ec2 describe-subnets --filters "Name=vpc-id,Values=$vpc_id")"
find_or_create_subnet() { # NAME CIDR AZ -> id
	local name=$1 cidr=$2 az=$3 id
	id="$(jq -r --arg n "$name" '.Subnets[] | select(any(.Tags[]?; .Key == "Name" and .Value == $n)) | .SubnetId' <<<"$subnets_json" | head -n1)"
	if [[ -z "$id" ]]; then
		id="$(awscli ec2 create-subnet --vpc-id "$vpc_id" --cidr-block "$cidr" --availability-zone "$az" \
			--tag-specifications "$(ec2_tags subnet "$name")" | jq -r .Subnet.SubnetId)"
		created "subnet $id $name $cidr"
	else
		exists "subnet $id $name"
	fi
	printf '%s' "$id"
}
public_subnets=() private_subnets=()
for i in 0 1; do
	public_subnets+=("$(find_or_create_subnet "$PROJECT-public-${AZS[$i]}" "${PUBLIC_CIDRS[$i]}" "${AZS[$i]}")")
	private_subnets+=("$(find_or_create_subnet "$PROJECT-private-${AZS[$i]}" "${PRIVATE_CIDRS[$i]}" "${AZS[$i]}")")
done
state_set_json network publicSubnets "$(printf '%s\n' "${public_subnets[@]}" | jq -R . | jq -cs .)"
state_set_json network privateSubnets "$(printf '%s\n' "${private_subnets[@]}" | jq -R . | jq -cs .)"

# --- internet gateway
igw_name="$PROJECT-igw"
igw_json="$(awscli ec2 describe-internet-gateways --filters "Name=tag:Name,Values=$igw_name" "Name=tag:Project,Values=$PROJECT")"
igw_id="$(jq -r '.InternetGateways[0].InternetGatewayId // empty' <<<"$igw_json")"
if [[ -z "$igw_id" ]]; then
	igw_id="$(awscli ec2 create-internet-gateway --tag-specifications "$(ec2_tags internet-gateway "$igw_name")" |
		jq -r .InternetGateway.InternetGatewayId)"
	created "internet gateway $igw_id"
	igw_json='{"InternetGateways":[{"Attachments":[]}]}'
else
	exists "internet gateway $igw_id"
fi
if ! jq -e --arg v "$vpc_id" '.InternetGateways[0].Attachments | any(.VpcId == $v)' <<<"$igw_json" >/dev/null; then
	awscli ec2 attach-internet-gateway --internet-gateway-id "$igw_id" --vpc-id "$vpc_id"
	updated "internet gateway $igw_id attached to $vpc_id"
fi
state_set network internetGatewayId "$igw_id"

# --- NAT gateways (each with its Elastic IP), in the public subnets
nat_json="$(awscli ec2 describe-nat-gateways --filter "Name=vpc-id,Values=$vpc_id" "Name=state,Values=pending,available")"
eips_json="$(awscli ec2 describe-addresses --filters "Name=tag:Project,Values=$PROJECT")"
nat_ids=()
nat_pending=""
for ((i = 0; i < NAT_GATEWAYS; i++)); do
	name="$PROJECT-nat-${AZS[$i]}"
	id="$(jq -r --arg n "$name" '.NatGateways[] | select(any(.Tags[]?; .Key == "Name" and .Value == $n)) | .NatGatewayId' <<<"$nat_json" | head -n1)"
	if [[ -z "$id" ]]; then
		# An address left by an interrupted run is reused, not leaked.
		alloc="$(jq -r --arg n "$name-eip" '.Addresses[] | select(.AssociationId == null) | select(any(.Tags[]?; .Key == "Name" and .Value == $n)) | .AllocationId' <<<"$eips_json" | head -n1)"
		if [[ -z "$alloc" ]]; then
			alloc="$(awscli ec2 allocate-address --domain vpc --tag-specifications "$(ec2_tags elastic-ip "$name-eip")" | jq -r .AllocationId)"
			created "elastic ip $alloc $name-eip"
		fi
		nat="$(awscli ec2 create-nat-gateway --subnet-id "${public_subnets[$i]}" --allocation-id "$alloc" \
			--tag-specifications "$(ec2_tags natgateway "$name")")"
		id="$(jq -r .NatGateway.NatGatewayId <<<"$nat")"
		[[ "$(jq -r .NatGateway.State <<<"$nat")" == available ]] || nat_pending=1
		created "nat gateway $id $name"
	else
		jq -e --arg id "$id" '.NatGateways[] | select(.NatGatewayId == $id) | .State == "available"' <<<"$nat_json" >/dev/null ||
			nat_pending=1
		exists "nat gateway $id $name"
	fi
	nat_ids+=("$id")
done
if [[ -n "$nat_pending" ]]; then
	log "waiting for NAT gateway(s) ${nat_ids[*]} to become available (a minute or two)"
	awscli ec2 wait nat-gateway-available --nat-gateway-ids "${nat_ids[@]}"
fi
state_set_json network natGateways "$(printf '%s\n' "${nat_ids[@]}" | jq -R . | jq -cs .)"

# --- route tables: one public (to the IGW), one private per AZ (to its NAT)
rts_json="$(awscli ec2 describe-route-tables --filters "Name=vpc-id,Values=$vpc_id")"
route_table() { # NAME TARGET_KIND(gateway|nat) TARGET SUBNET... -> id
	local name=$1 kind=$2 target=$3 id rt current
	shift 3
	rt="$(jq -c --arg n "$name" '[.RouteTables[] | select(any(.Tags[]?; .Key == "Name" and .Value == $n))][0] // empty' <<<"$rts_json")"
	if [[ -z "$rt" ]]; then
		rt="$(awscli ec2 create-route-table --vpc-id "$vpc_id" --tag-specifications "$(ec2_tags route-table "$name")" | jq -c .RouteTable)"
		created "route table $(jq -r .RouteTableId <<<"$rt") $name"
	else
		exists "route table $(jq -r .RouteTableId <<<"$rt") $name"
	fi
	id="$(jq -r .RouteTableId <<<"$rt")"
	current="$(jq -r '.Routes[]? | select(.DestinationCidrBlock == "0.0.0.0/0") | (.GatewayId // .NatGatewayId // "")' <<<"$rt")"
	local -a to=(--gateway-id "$target")
	[[ "$kind" == nat ]] && to=(--nat-gateway-id "$target")
	if [[ -z "$current" ]]; then
		awscli ec2 create-route --route-table-id "$id" --destination-cidr-block 0.0.0.0/0 "${to[@]}" >/dev/null
		created "route $id 0.0.0.0/0 -> $target"
	elif [[ "$current" != "$target" ]]; then
		awscli ec2 replace-route --route-table-id "$id" --destination-cidr-block 0.0.0.0/0 "${to[@]}"
		updated "route $id 0.0.0.0/0 -> $target (was $current)"
	fi
	local s
	for s in "$@"; do
		if ! jq -e --arg s "$s" 'any(.Associations[]?; .SubnetId == $s)' <<<"$rt" >/dev/null; then
			awscli ec2 associate-route-table --route-table-id "$id" --subnet-id "$s" >/dev/null
			created "route table association $id <-> $s"
		fi
	done
	printf '%s' "$id"
}
public_rt="$(route_table "$PROJECT-public" gateway "$igw_id" "${public_subnets[@]}")"
private_rts=()
for i in 0 1; do
	nat="${nat_ids[$((i < NAT_GATEWAYS ? i : 0))]}"
	private_rts+=("$(route_table "$PROJECT-private-${AZS[$i]}" nat "$nat" "${private_subnets[$i]}")")
done
state_set network publicRouteTable "$public_rt"
state_set_json network privateRouteTables "$(printf '%s\n' "${private_rts[@]}" | jq -R . | jq -cs .)"

# --- gateway endpoints: S3 (ECR image layers) and DynamoDB (the hold mirror), no NAT
# data charge for either
eps_json="$(awscli ec2 describe-vpc-endpoints --filters "Name=vpc-id,Values=$vpc_id")"
for svc in s3 dynamodb; do
	service="com.amazonaws.$REGION.$svc"
	endpoint_id="$(jq -r --arg s "$service" '.VpcEndpoints[] | select(.ServiceName == $s and (.State | ascii_downcase) != "deleted") | .VpcEndpointId' <<<"$eps_json" | head -n1)"
	if [[ -z "$endpoint_id" ]]; then
		endpoint_id="$(awscli ec2 create-vpc-endpoint --vpc-id "$vpc_id" --vpc-endpoint-type Gateway --service-name "$service" \
			--route-table-ids "${private_rts[@]}" --tag-specifications "$(ec2_tags vpc-endpoint "$PROJECT-$svc")" |
			jq -r .VpcEndpoint.VpcEndpointId)"
		created "vpc endpoint $endpoint_id $service"
	else
		exists "vpc endpoint $endpoint_id $service"
	fi
done

# --- security groups
sgs_json="$(awscli ec2 describe-security-groups --filters "Name=vpc-id,Values=$vpc_id")"
declare -A SG
sg_made=""
for role in alb edge worker redis db; do
	name="$PROJECT-$role"
	id="$(jq -r --arg n "$name" '.SecurityGroups[] | select(.GroupName == $n) | .GroupId' <<<"$sgs_json")"
	if [[ -z "$id" ]]; then
		id="$(awscli ec2 create-security-group --vpc-id "$vpc_id" --group-name "$name" \
			--description "$PROJECT $role" --tag-specifications "$(ec2_tags security-group "$name")" | jq -r .GroupId)"
		created "security group $id $name"
		sg_made=1
	else
		exists "security group $id $name"
	fi
	SG[$role]="$id"
done
if [[ -n "$sg_made" ]]; then
	sgs_json="$(awscli ec2 describe-security-groups --filters "Name=vpc-id,Values=$vpc_id")"
fi

listener_port=80
[[ -n "${ALB_CERT_ARN:-}" ]] && listener_port=443
if [[ "$ALB_INGRESS" == cloudfront ]]; then
	# CloudFront's origin-facing addresses: the ALB answers CloudFront only. The list
	# counts as ~55 rules against the group's quota of 60, so one port only.
	pl="$(awscli ec2 describe-managed-prefix-lists \
		--filters Name=prefix-list-name,Values=com.amazonaws.global.cloudfront.origin-facing |
		jq -r '.PrefixLists[0].PrefixListId // empty')"
	[[ -n "$pl" ]] || die "no CloudFront origin-facing prefix list in $REGION: set ALB_INGRESS to a CIDR"
	alb_source="$(jq -cn --arg v "$pl" '{k: "pl", v: $v}')"
else
	alb_source="$(jq -cn --arg v "$ALB_INGRESS" '{k: "cidr", v: $v}')"
fi

# rule PORT SOURCE_KIND SOURCE: one desired rule (flat form, compared with jq).
rule() { jq -cn --argjson p "$1" --arg k "$2" --arg v "$3" '{proto: "tcp", from: $p, to: $p, k: $k, v: $v}'; }
rules() { jq -cs . <<<"$*"; }

# Flattens IpPermissions to one entry per source; perm turns an entry back.
# shellcheck disable=SC2016 # jq, not shell
JQ_RULES='
def flat: map(. as $p
  | ((($p.IpRanges // []) | map({k: "cidr", v: .CidrIp}))
   + (($p.Ipv6Ranges // []) | map({k: "cidr6", v: .CidrIpv6}))
   + (($p.UserIdGroupPairs // []) | map({k: "sg", v: .GroupId}))
   + (($p.PrefixListIds // []) | map({k: "pl", v: .PrefixListId})))
  | map({proto: ($p.IpProtocol | tostring),
         from: (if $p.IpProtocol == "-1" then -1 else ($p.FromPort // -1) end),
         to: (if $p.IpProtocol == "-1" then -1 else ($p.ToPort // -1) end)} + .))
  | add // [];
def perm: {IpProtocol: .proto}
  + (if .proto == "-1" then {} else {FromPort: .from, ToPort: .to} end)
  + (if .k == "cidr" then {IpRanges: [{CidrIp: .v}]}
     elif .k == "cidr6" then {Ipv6Ranges: [{CidrIpv6: .v}]}
     elif .k == "sg" then {UserIdGroupPairs: [{GroupId: .v}]}
     else {PrefixListIds: [{PrefixListId: .v}]} end);
'

# converge ROLE DIRECTION(ingress|egress) DESIRED_JSON
converge() {
	local role=$1 dir=$2 desired=$3 id=${SG[$1]} field current missing extra
	field=IpPermissions
	[[ "$dir" == egress ]] && field=IpPermissionsEgress
	current="$(jq -c --arg id "$id" --arg f "$field" "$JQ_RULES"' [.SecurityGroups[] | select(.GroupId == $id)][0][$f] // [] | flat' <<<"$sgs_json")"
	missing="$(jq -c --argjson cur "$current" "$JQ_RULES"' [.[] | select(. as $r | $cur | index([$r]) | not) | perm]' <<<"$desired")"
	extra="$(jq -c --argjson want "$desired" "$JQ_RULES"' [.[] | select(. as $r | $want | index([$r]) | not) | perm]' <<<"$current")"
	if [[ "$missing" != "[]" ]]; then
		awscli ec2 "authorize-security-group-$dir" --group-id "$id" --ip-permissions "$missing" >/dev/null
		created "$dir rules on $PROJECT-$role: $(jq -c '[.[] | "\(.IpProtocol)/\(.FromPort // "all") from \((.IpRanges // [])[0].CidrIp // (.UserIdGroupPairs // [])[0].GroupId // (.PrefixListIds // [])[0].PrefixListId)"]' <<<"$missing")"
	fi
	if [[ "$extra" != "[]" ]]; then
		awscli ec2 "revoke-security-group-$dir" --group-id "$id" --ip-permissions "$extra" >/dev/null
		updated "$dir rules on $PROJECT-$role: revoked $(jq -c '[.[] | "\(.IpProtocol)/\(.FromPort // "all")"]' <<<"$extra")"
	fi
}

any_443="$(rule 443 cidr 0.0.0.0/0)"
converge alb ingress "$(rules "$(jq -c --argjson p "$listener_port" '{proto: "tcp", from: $p, to: $p} + .' <<<"$alb_source")")"
converge alb egress "$(rules "$(rule "$EDGE_PORT" sg "${SG[edge]}")")"
converge edge ingress "$(rules "$(rule "$EDGE_PORT" sg "${SG[alb]}")")"
converge edge egress "$(rules "$any_443" "$(rule 6379 sg "${SG[redis]}")" "$(rule 5432 sg "${SG[db]}")")"
converge worker ingress '[]'
converge worker egress "$(rules "$any_443" "$(rule 6379 sg "${SG[redis]}")" "$(rule 5432 sg "${SG[db]}")")"
converge redis ingress "$(rules "$(rule 6379 sg "${SG[edge]}")" "$(rule 6379 sg "${SG[worker]}")")"
converge redis egress '[]'
converge db ingress "$(rules "$(rule 5432 sg "${SG[edge]}")" "$(rule 5432 sg "${SG[worker]}")")"
converge db egress '[]'

for role in alb edge worker redis db; do
	state_set network "sg_$role" "${SG[$role]}"
done
state_set network listenerPort "$listener_port"
env_set VPC_ID "$vpc_id"
log "done: vpc $vpc_id, AZs ${AZS[*]}, $NAT_GATEWAYS NAT gateway(s), listener port $listener_port -> $(state_path network)"
