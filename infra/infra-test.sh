#!/usr/bin/env bash
# `make infra-test`: the deploy scripts against moto's server on loopback.
#
#   1. installs what is missing (infra/local/stack.sh deps: moto and awscli in .run/venv;
#      jq and shellcheck from Debian), shellchecks infra/, starts moto_server on a free
#      127.0.0.1 port
#   2. runs make 00-network .. 09-observability (DB_SEED=demo) in ap-northeast-1, the
#      primary region, then in ap-northeast-2, the standby (as CI's deploy does); then
#      both again. The second run must ask moto to create nothing (read from moto's
#      request recorder, so nothing can hide behind the scripts' own output; 08's
#      one-off tasks aside), print no "created" line and find the very ids the first one
#      wrote to infra/out/<region>/*.json
#   3. checks with aws describe/get calls that every resource has the settings the
#      steps promise (in the primary), that the standby has the same inventory, and
#      what crosses regions: the Aurora global database (one writer), the shared
#      secrets, the one CloudFront distribution with its seat-read origin group
#   3b. payments: instant by default; then 03 with an operator's webhook key in both
#      regions and 04 with PAYMENT_MODE=provider (the key stored alike, the task
#      definitions carrying it), a rotation, the refusals, and no key in any output
#   4. runs 99_teardown.sh: in the primary first, which must refuse (the standby's
#      cluster is still attached), then in the standby, then in the primary; and
#      checks that nothing of the project is left in either region
#
# Everything it writes goes to a temporary directory (INFRA_TEST_KEEP=1 keeps it);
# moto_server is stopped by its pid on every exit. Ends with "infra-test: N passed,
# M failed"; exits non-zero on any failure.
# shellcheck disable=SC2016 # the single-quoted programs are jq's, not the shell's
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$ROOT/.run/venv"
REGION=ap-northeast-1 # the primary
REGION2=ap-northeast-2 # the standby
start_s=$SECONDS

say() { printf 'infra-test: %s\n' "$*"; }
die() {
	say "error: $*"
	exit 1
}

# ----------------------------------------------------------------------------- deps
"$ROOT/infra/local/stack.sh" deps
if ! command -v jq >/dev/null 2>&1; then
	say "installing jq (apt)"
	as_root=()
	[[ "$(id -u)" -eq 0 ]] || as_root=(sudo)
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
	"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends jq >/dev/null
fi
[[ -x "$VENV/bin/moto_server" && -x "$VENV/bin/aws" ]] || die "moto_server or aws missing from $VENV (infra/local/requirements.txt)"
command -v curl >/dev/null 2>&1 || die "curl missing (infra/local/stack.sh deps installs it)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/infra-test.XXXXXX")"
MOTO_PID="" FORK_PID=""
cleanup() {
	local rc=$? pid
	for pid in "$FORK_PID" "$MOTO_PID"; do
		if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
	if [[ -n "${INFRA_TEST_KEEP:-}" ]]; then
		say "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT

# ----------------------------------------------------------------------------- moto
port="${INFRA_TEST_MOTO_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
MOTO_RECORDER_FILEPATH="$WORK/recording.jsonl" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
endpoint="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
	curl -fsS -o /dev/null "$endpoint/moto-api/" 2>/dev/null && break
	kill -0 "$MOTO_PID" 2>/dev/null || {
		tail -n 20 "$WORK/moto.log"
		die "moto_server exited"
	}
	sleep 0.2
done
curl -fsS -o /dev/null "$endpoint/moto-api/" || die "moto_server did not answer on $endpoint"
say "moto_server pid $MOTO_PID on $endpoint"

# The steps' environment: moto, test credentials, nothing from the user's AWS config.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL_SQS AWS_ENDPOINT_URL_RDS
export AWS_ENDPOINT_URL="$endpoint" AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"
export REGIONS="$REGION $REGION2" PRIMARY_REGION="$REGION"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export AWS_MAX_ATTEMPTS=2 AWS_CLI="$VENV/bin/aws" INFRA_OUT_DIR="$WORK/out" IMAGE_TAG=infra-test DB_SEED=demo
OUT="$WORK/out/$REGION"
OUT2="$WORK/out/$REGION2"

# The same awscli, imported once and forked per call (infra/aws_forkserver.py): the
# ~400 calls of a run then skip ~0.6 s of imports each. INFRA_TEST_PLAIN_CLI=1, or a
# server that does not come up, means the plain aws command.
if [[ -z "${INFRA_TEST_PLAIN_CLI:-}" ]]; then
	"$VENV/bin/python" "$ROOT/infra/aws_forkserver.py" serve "$WORK/aws.sock" >"$WORK/forkserver.log" 2>&1 &
	FORK_PID=$!
	for _ in $(seq 1 100); do
		[[ -S "$WORK/aws.sock" ]] && break
		kill -0 "$FORK_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [[ -S "$WORK/aws.sock" ]] &&
		AWS_FORKSERVER_SOCKET="$WORK/aws.sock" "$ROOT/infra/aws_forkserver.py" --version >/dev/null 2>&1; then
		export AWS_CLI="$ROOT/infra/aws_forkserver.py" AWS_FORKSERVER_SOCKET="$WORK/aws.sock"
		say "aws CLI: forked per call from pid $FORK_PID (infra/aws_forkserver.py)"
	else
		say "aws CLI: the fork server did not come up ($(tail -n 2 "$WORK/forkserver.log" | tr '\n' ' ')); using $VENV/bin/aws"
	fi
fi

# (awscli prints nothing at all for some empty answers: those become {}.)
aws_() {
	local out
	out="$("$AWS_CLI" --endpoint-url "$endpoint" --region "$REGION" --output json "$@")"
	printf '%s\n' "${out:-{\}}"
}
aws2() { REGION="$REGION2" aws_ "$@"; }

# Every request moto receives, as "Service.Operation" lines (its recorder: JSON-protocol
# services name the operation in X-Amz-Target, query-protocol ones in Action=, CloudFront
# is REST); so what a pass did is read from moto's side, not from the scripts' output.
recorder() { curl -fsS -X POST -o /dev/null "$endpoint/moto-api/recorder/$1"; }
operations() { # RECORDING
	jq -r '
		(.headers["X-Amz-Target"] // .headers["x-amz-target"] // "") as $target
		| (if .body_encoded then (.body // "" | @base64d) else (.body // "") end) as $body
		| if $target != "" then ($target | split(".") | last)
		  elif ($body | test("(^|&)Action=")) then ($body | capture("(^|&)Action=(?<a>[A-Za-z]+)").a)
		  else "\(.method):\(.url | sub("^https?://[^/]+"; "") | sub("\\?.*$"; ""))" end' "$1"
}
# request_bodies RECORDING ACTION: the decoded bodies of the query-protocol calls ACTION.
request_bodies() {
	jq -r --arg a "$2" '(if .body_encoded then (.body // "" | @base64d) else (.body // "") end)
		| select(test("(^|&)Action=" + $a + "(&|$)"))' "$1"
}
# Calls that make something: a second pass must send none (08's RunTask aside).
CREATES='^(Create|Register|Allocate|Associate|Attach|Authorize|Import|Copy|Run)[A-Z]|^POST:/2020-05-31/distribution$'

# The Makefile's targets, as an operator runs them (make all is these in order).
STEPS=(00-network 01-ecr 02-cluster 03-dataplane 04-taskdefs 05-services 06-autoscaling 07-cloudfront 08-db-init 09-observability)
# run_step N REGION STEP: make STEP in REGION, its output in passN-REGION.log.
run_step() {
	AWS_REGION="$2" AWS_DEFAULT_REGION="$2" env -u MAKEFLAGS -u MFLAGS \
		make -C "$ROOT" --no-print-directory "$3" >>"$WORK/pass$1-$2.log" 2>&1
}
# run_pass N: both regions, the standby one step behind the primary, side by side. That
# keeps the order a deployment needs (the standby's 03 takes the primary's secrets and
# global database, its 07 the primary's ALB; the two 07s, which converge the one
# distribution, never run at once), in the time of about one region and a half.
run_pass() {
	local i t0=$SECONDS p1 p2 rc1 rc2
	say "---- pass $1: make 00-network .. 09-observability in $REGION, and one step behind in $REGION2"
	for ((i = 0; i <= ${#STEPS[@]}; i++)); do
		p1="" p2="" rc1=0 rc2=0
		if ((i < ${#STEPS[@]})); then
			run_step "$1" "$REGION" "${STEPS[i]}" &
			p1=$!
		fi
		if ((i > 0)); then
			run_step "$1" "$REGION2" "${STEPS[i - 1]}" &
			p2=$!
		fi
		[[ -z "$p1" ]] || wait "$p1" || rc1=$?
		[[ -z "$p2" ]] || wait "$p2" || rc2=$?
		if ((rc1 != 0)); then
			tail -n 30 "$WORK/pass$1-$REGION.log"
			die "pass $1, $REGION: ${STEPS[i]} failed (moto log: $(tail -n 3 "$WORK/moto.log" | tr '\n' ' '))"
		fi
		if ((rc2 != 0)); then
			tail -n 30 "$WORK/pass$1-$REGION2.log"
			die "pass $1, $REGION2: ${STEPS[i - 1]} failed (moto log: $(tail -n 3 "$WORK/moto.log" | tr '\n' ' '))"
		fi
	done
	say "pass $1: both regions ok ($((SECONDS - t0))s)"
}

passed=0 failed=0
ok() {
	passed=$((passed + 1))
	say "ok    $*"
}
fail() {
	failed=$((failed + 1))
	say "FAIL  $*"
}
# check DESCRIPTION JSON JQ_FILTER: the filter must yield true, and nothing else (jq 1.6
# -e calls an empty input a success, so the output is compared instead).
check() {
	if [[ "$(jq -c "$3" <<<"$2" 2>/dev/null)" == true ]]; then
		ok "$1"
	else
		fail "$1 (jq: $3; got: $(jq -c . <<<"$2" 2>/dev/null | cut -c1-300))"
	fi
}

# ----------------------------------------------------------------------------- lint
"$ROOT/infra/install-shellcheck.sh"
if shellcheck_out="$(cd "$ROOT" && shellcheck -x infra/*.sh infra/docker/*.sh infra/local/*.sh 2>&1)"; then
	ok "shellcheck: infra/*.sh infra/docker/*.sh infra/local/*.sh clean"
else
	fail "shellcheck: $shellcheck_out"
fi

# ----------------------------------------------------------------------------- two passes
recorder reset-recording
recorder start-recording
say "ready at ${SECONDS}s"
run_pass 1
operations "$WORK/recording.jsonl" >"$WORK/ops1.txt"
cp "$WORK/recording.jsonl" "$WORK/recording1.jsonl"
mkdir -p "$WORK/state1/$REGION" "$WORK/state1/$REGION2"
cp "$OUT"/*.json "$WORK/state1/$REGION/"
cp "$OUT2"/*.json "$WORK/state1/$REGION2/"
recorder reset-recording
run_pass 2
operations "$WORK/recording.jsonl" >"$WORK/ops2.txt"
recorder stop-recording

say "pass 1 sent $(wc -l <"$WORK/ops1.txt") requests; what made things: $(grep -E "$CREATES" "$WORK/ops1.txt" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}')"
say "pass 2 sent $(wc -l <"$WORK/ops2.txt") requests; writes: $(grep -vE '^(Describe|Get|List|GET:)' "$WORK/ops2.txt" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}')"
check "pass 1 made the resources (moto saw creates)" "$(grep -cE "$CREATES" "$WORK/ops1.txt" || true)" '. > 50'
check "pass 2 asked moto to create nothing (RunTask of 08 aside)" \
	"$(grep -E "$CREATES" "$WORK/ops2.txt" | grep -vx RunTask | jq -Rn '[inputs]')" '. == []'
check "pass 2 rewrote no role policy and no VPC attribute (compared first)" \
	"$(grep -xE 'PutRolePolicy|ModifyVpcAttribute' "$WORK/ops2.txt" | jq -Rn '[inputs]')" '. == []'
check "pass 2 ran 08's one-off tasks again (migrate, seed demo; in the primary only)" "$(grep -cx RunTask "$WORK/ops2.txt" || true)" '. == 2'
created_again="$(cat "$WORK"/pass2-*.log | grep -E '\] created ' || true)"
check "pass 2 printed no 'created' line" "$(jq -Rn --arg s "$created_again" '$s')" '. == ""'
same_ids=yes
for f in "$WORK"/state1/*/*.json; do
	now="$WORK/out/${f#"$WORK/state1/"}"
	cmp -s "$f" "$now" || {
		same_ids=no
		say "ids differ in ${f#"$WORK/state1/"}: $(diff <(jq -S . "$f") <(jq -S . "$now") | head -n 6 | tr '\n' ' ')"
	}
done
check "pass 2 found the same ids as pass 1 (infra/out/<region>/*.json unchanged)" "\"$same_ids\"" '. == "yes"'

# ----------------------------------------------------------------------------- settings
net="$(cat "$OUT/network.json")"
sg() { jq -r --arg r "$1" '.["sg_" + $r]' <<<"$net"; }
sgs="$(aws_ ec2 describe-security-groups --group-ids "$(sg alb)" "$(sg edge)" "$(sg worker)" "$(sg redis)" "$(sg db)")"
rules() { # ROLE FIELD -> sorted "proto/port<-source" strings
	jq -c --arg id "$(sg "$1")" --arg f "$2" '[.SecurityGroups[] | select(.GroupId == $id) | .[$f][]
		| . as $p | ((.UserIdGroupPairs // []) | map(.GroupId)) + ((.IpRanges // []) | map(.CidrIp))
		+ ((.PrefixListIds // []) | map(.PrefixListId)) | .[] | "\($p.IpProtocol)/\($p.FromPort // "all")<-\(.)"] | sort' <<<"$sgs"
}
check "vpc over two AZs, 2 public + 2 private subnets, 2 NAT gateways" "$net" \
	'(.azs | length == 2) and (.publicSubnets | length == 2) and (.privateSubnets | length == 2) and (.natGateways | length == 2)'
check "vpc: DNS hostnames on (ElastiCache and Aurora names resolve)" \
	"$(aws_ ec2 describe-vpc-attribute --vpc-id "$(jq -r .vpcId <<<"$net")" --attribute enableDnsHostnames)" \
	'.EnableDnsHostnames.Value == true'
check "alb: in only tcp/80 from CloudFront's prefix list; out only to edge:8080" \
	"$(jq -n --argjson i "$(rules alb IpPermissions)" --argjson o "$(rules alb IpPermissionsEgress)" '{i: $i, o: $o}')" \
	"(.i | length == 1 and (.[0] | startswith(\"tcp/80<-pl-\"))) and .o == [\"tcp/8080<-$(sg edge)\"]"
check "edge: in only from the alb on 8080; out 443, redis:6379 and db:5432 (status look-ups)" "$(jq -n --argjson i "$(rules edge IpPermissions)" --argjson o "$(rules edge IpPermissionsEgress)" '{i: $i, o: $o}')" \
	".i == [\"tcp/8080<-$(sg alb)\"] and .o == ([\"tcp/443<-0.0.0.0/0\", \"tcp/6379<-$(sg redis)\", \"tcp/5432<-$(sg db)\"] | sort)"
check "worker: no inbound; out 443, redis:6379, db:5432 only" \
	"$(jq -n --argjson i "$(rules worker IpPermissions)" --argjson o "$(rules worker IpPermissionsEgress)" '{i: $i, o: $o}')" \
	".i == [] and .o == ([\"tcp/443<-0.0.0.0/0\", \"tcp/6379<-$(sg redis)\", \"tcp/5432<-$(sg db)\"] | sort)"
check "redis: in 6379 from edge and worker only; no outbound" \
	"$(jq -n --argjson i "$(rules redis IpPermissions)" --argjson o "$(rules redis IpPermissionsEgress)" '{i: $i, o: $o}')" \
	".i == ([\"tcp/6379<-$(sg edge)\", \"tcp/6379<-$(sg worker)\"] | sort) and .o == []"
check "db: in 5432 from edge and worker only; no outbound" \
	"$(jq -n --argjson i "$(rules db IpPermissions)" --argjson o "$(rules db IpPermissionsEgress)" '{i: $i, o: $o}')" \
	".i == ([\"tcp/5432<-$(sg edge)\", \"tcp/5432<-$(sg worker)\"] | sort) and .o == []"

check "ecr: edge and worker repositories, scan on push, immutable tags" \
	"$(aws_ ecr describe-repositories --repository-names max-tps-ecs/edge max-tps-ecs/worker)" \
	'[.repositories[] | .imageScanningConfiguration.scanOnPush and .imageTagMutability == "IMMUTABLE"] == [true, true]'
check "log groups with 30-day retention" "$(aws_ logs describe-log-groups --log-group-name-prefix /ecs/max-tps-ecs/)" \
	'[.logGroups[].retentionInDays] == [30, 30]'
check "edge task role: sqs:SendMessage on the queue, dynamodb:BatchWriteItem on the table, nothing else" \
	"$(aws_ iam get-role-policy --role-name "max-tps-ecs-$REGION-edge-task" --policy-name least-privilege)" \
	'[.PolicyDocument.Statement[] | {a: .Action, r: .Resource}] == [
	   {a: "sqs:SendMessage", r: "arn:aws:sqs:'"$REGION"':123456789012:max-tps-ecs-commits.fifo"},
	   {a: "dynamodb:BatchWriteItem", r: "arn:aws:dynamodb:'"$REGION"':123456789012:table/max-tps-ecs-holds"}]'
check "worker task role: receive, delete, change visibility on the queue only" \
	"$(aws_ iam get-role-policy --role-name "max-tps-ecs-$REGION-worker-task" --policy-name least-privilege)" \
	'[.PolicyDocument.Statement[] | .Action, .Resource] == [["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
	   "arn:aws:sqs:'"$REGION"':123456789012:max-tps-ecs-commits.fifo"]'
check "worker execution role: reads only the database and Redis secrets" \
	"$(aws_ iam get-role-policy --role-name "max-tps-ecs-$REGION-worker-exec" --policy-name least-privilege)" \
	'[.PolicyDocument.Statement[] | select(.Sid == "InjectSecrets") | .Resource[] | test("secret:max-tps-ecs/(database|redis)-\\?{6}$")] == [true, true]'
check "edge execution role: reads only the room-token, Redis, database and payment webhook secrets" \
	"$(aws_ iam get-role-policy --role-name "max-tps-ecs-$REGION-edge-exec" --policy-name least-privilege)" \
	'[.PolicyDocument.Statement[] | select(.Sid == "InjectSecrets") | .Resource[] | test("secret:max-tps-ecs/(room-token|redis|database|payment-webhook)-\\?{6}$")] == [true, true, true, true]'

queue_url="$(jq -r .queueUrl "$OUT/data.json")"
check "queue: FIFO, high throughput, no content dedup, long polling, SSE, redrive to the DLQ after 5" \
	"$(aws_ sqs get-queue-attributes --queue-url "$queue_url" --attribute-names All)" \
	'.Attributes | .FifoQueue == "true" and .FifoThroughputLimit == "perMessageGroupId" and .DeduplicationScope == "messageGroup"
	 and .ContentBasedDeduplication == "false" and .ReceiveMessageWaitTimeSeconds == "20" and .SqsManagedSseEnabled == "true"
	 and (.RedrivePolicy | fromjson | (.deadLetterTargetArn | endswith(":max-tps-ecs-commits-dlq.fifo")) and (.maxReceiveCount | tostring) == "5")'
check "dlq: FIFO, 14-day retention" \
	"$(aws_ sqs get-queue-attributes --queue-url "$(jq -r .dlqUrl "$OUT/data.json")" --attribute-names All)" \
	'.Attributes | .FifoQueue == "true" and .MessageRetentionPeriod == "1209600"'
check "seat-lock table: pk string hash key, on demand" "$(aws_ dynamodb describe-table --table-name max-tps-ecs-holds)" \
	'.Table | .KeySchema == [{AttributeName: "pk", KeyType: "HASH"}] and .AttributeDefinitions == [{AttributeName: "pk", AttributeType: "S"}]
	 and .BillingModeSummary.BillingMode == "PAY_PER_REQUEST"'
check "seat-lock table: TTL on exp" "$(aws_ dynamodb describe-time-to-live --table-name max-tps-ecs-holds)" \
	'.TimeToLiveDescription == {TimeToLiveStatus: "ENABLED", AttributeName: "exp"}'
check "secrets: room token, redis (rediss:// url), database (postgres:// url)" \
	"$(jq -n --arg r "$(aws_ secretsmanager get-secret-value --secret-id max-tps-ecs/room-token | jq -r .SecretString)" \
		--argjson redis "$(aws_ secretsmanager get-secret-value --secret-id max-tps-ecs/redis | jq -r .SecretString)" \
		--argjson db "$(aws_ secretsmanager get-secret-value --secret-id max-tps-ecs/database | jq -r .SecretString)" \
		'{r: ($r | length), redis: $redis.url, db: $db.url}')" \
	'.r == 64 and (.redis | startswith("rediss://:")) and (.db | startswith("postgres://ticket:"))'
check "redis: in-transit and at-rest encryption, AUTH, automatic failover, multi-AZ" \
	"$(aws_ elasticache describe-replication-groups --replication-group-id max-tps-ecs-redis)" \
	'.ReplicationGroups[0] | .TransitEncryptionEnabled and .AtRestEncryptionEnabled and .AuthTokenEnabled
	 and .AutomaticFailover == "enabled" and .MultiAZ == "enabled"'
# moto makes one node whatever NumCacheClusters says, so the request is what is checked.
check "redis: asked for a primary and one replica (NumCacheClusters=2), cluster mode off, in each region" \
	"$(request_bodies "$WORK/recording1.jsonl" CreateReplicationGroup | jq -Rn '[inputs]')" \
	'length == 2 and all(.[]; test("(^|&)NumCacheClusters=2(&|$)") and (test("NumNodeGroups") | not))'
check "aurora: PostgreSQL Serverless v2 0.5-16 ACU, encrypted, 2 db.serverless instances" \
	"$(jq -n --argjson c "$(aws_ rds describe-db-clusters --db-cluster-identifier max-tps-ecs-db)" \
		--argjson i "$(aws_ rds describe-db-instances --filters Name=db-cluster-id,Values=max-tps-ecs-db)" '{c: $c.DBClusters[0], i: $i.DBInstances}')" \
	'(.c.Engine == "aurora-postgresql") and .c.StorageEncrypted and .c.ServerlessV2ScalingConfiguration.MinCapacity == 0.5
	 and .c.ServerlessV2ScalingConfiguration.MaxCapacity == 16 and ([.i[].DBInstanceClass] == ["db.serverless", "db.serverless"])'

edge_td="$(aws_ ecs describe-task-definition --task-definition max-tps-ecs-edge)"
check "edge task definition: stopTimeout 30 s covers the 20 s drain (<= 120)" "$edge_td" \
	'.taskDefinition.containerDefinitions[0].stopTimeout == 30'
check "edge task definition: nofile ulimit 1048576" "$edge_td" \
	'.taskDefinition.containerDefinitions[0].ulimits == [{name: "nofile", softLimit: 1048576, hardLimit: 1048576}]'
check "edge task definition: health check GET /public/health" "$edge_td" \
	'.taskDefinition.containerDefinitions[0].healthCheck.command == ["CMD", "/usr/local/bin/edge-health", "/public/health"]'
check "edge task definition: PROFILE=aws, keep-alive 75 s, drain 20 s, the queue and table" "$edge_td" \
	'(.taskDefinition.containerDefinitions[0].environment | from_entries) as $e | $e.PROFILE == "aws"
	 and $e.EDGE_KEEPALIVE_MS == "75000" and $e.EDGE_SHUTDOWN_GRACE_MS == "20000" and $e.EDGE_DRIVER == "auto"
	 and $e.SQS_QUEUE_URL == "'"$queue_url"'" and $e.HOLD_MIRROR_TABLE == "max-tps-ecs-holds"'
check "edge task definition: ROOM_TOKEN_SECRET, REDIS_URL and DATABASE_URL from Secrets Manager" "$edge_td" \
	'[.taskDefinition.containerDefinitions[0].secrets[].name] == ["ROOM_TOKEN_SECRET", "REDIS_URL", "DATABASE_URL"]'
check "edge task definition: Fargate, awsvpc, 2 vCPU, read-only root, non-blocking logs" "$edge_td" \
	'.taskDefinition | .requiresCompatibilities == ["FARGATE"] and .networkMode == "awsvpc" and .cpu == "2048"
	 and .containerDefinitions[0].readonlyRootFilesystem and .containerDefinitions[0].logConfiguration.options.mode == "non-blocking"'
worker_td="$(aws_ ecs describe-task-definition --task-definition max-tps-ecs-worker)"
check "worker task definition: DATABASE_URL and REDIS_URL secrets, PROFILE=aws, stopTimeout 60" "$worker_td" \
	'.taskDefinition.containerDefinitions[0] | ([.secrets[].name] == ["DATABASE_URL", "REDIS_URL"])
	 and ((.environment | from_entries).PROFILE == "aws") and .stopTimeout == 60'
check "worker task definition: nofile ulimit 65536" "$worker_td" \
	'.taskDefinition.containerDefinitions[0].ulimits == [{name: "nofile", softLimit: 65536, hardLimit: 65536}]'
check "worker task definition: health check worker-health every 30 s" "$worker_td" \
	'.taskDefinition.containerDefinitions[0].healthCheck | .command == ["CMD", "/usr/local/bin/worker-health"]
	 and .interval == 30 and .timeout == 3 and .retries == 3'
check "edge task definition: IDENTITY=none by default, nothing else of identity" "$edge_td" \
	'[.taskDefinition.containerDefinitions[0].environment[] | select(.name | startswith("IDENTITY"))] == [{name: "IDENTITY", value: "none"}]'
# The door behind ALB's sign-in: 04 again after 05 takes the load balancer's ARN.
if IDENTITY=alb-oidc IDENTITY_ALB_KEY_DIR=/etc/maxtps/alb-keys IDENTITY_AUDIENCE=tickets \
	env -u MAKEFLAGS -u MFLAGS make -C "$ROOT" --no-print-directory 04-taskdefs >>"$WORK/identity.log" 2>&1; then
	check "edge task definition: IDENTITY=alb-oidc takes step 05's ALB ARN, the key directory and the audience" \
		"$(aws_ ecs describe-task-definition --task-definition max-tps-ecs-edge)" \
		'(.taskDefinition.containerDefinitions[0].environment | from_entries) as $e | $e.IDENTITY == "alb-oidc"
		 and $e.IDENTITY_ALB_ARN == "'"$(jq -r .albArn "$OUT/alb.json")"'" and $e.IDENTITY_ALB_KEY_DIR == "/etc/maxtps/alb-keys"
		 and $e.IDENTITY_AUDIENCE == "tickets"'
else
	fail "04-taskdefs with IDENTITY=alb-oidc failed: $(tail -n 3 "$WORK/identity.log")"
fi
if IDENTITY=jwt env -u MAKEFLAGS -u MFLAGS make -C "$ROOT" --no-print-directory 04-taskdefs >"$WORK/identity-jwt.log" 2>&1; then
	fail "04-taskdefs with IDENTITY=jwt and no IDENTITY_JWKS_FILE succeeded"
else
	check "04-taskdefs refuses IDENTITY=jwt without IDENTITY_JWKS_FILE, naming it" \
		"$(jq -Rs . "$WORK/identity-jwt.log")" 'test("IDENTITY=jwt: set IDENTITY_JWKS_FILE")'
fi

# ----------------------------------------------------------------------------- payments
# Instant by default; PAYMENT_MODE=provider with the operator's webhook key, which 03
# stores (the standby copies the primary's) and 04 names by its version.
payment_env() { # TASKDEF_JSON -> what it says of payments, environment and secrets
	jq -c '[.taskDefinition.containerDefinitions[0] | (.environment[], (.secrets // [])[]) | select(.name | startswith("PAYMENT"))]'
}
check "edge and worker task definitions: PAYMENT_MODE=instant by default, nothing else of payments" \
	"$(jq -n --argjson e "$(payment_env <<<"$edge_td")" --argjson w "$(payment_env <<<"$worker_td")" '[$e, $w]')" \
	'. == [[{name: "PAYMENT_MODE", value: "instant"}], [{name: "PAYMENT_MODE", value: "instant"}]]'
check "instant: no payment webhook secret in either region" \
	"$(jq -n --argjson a "$(aws_ secretsmanager list-secrets)" --argjson b "$(aws2 secretsmanager list-secrets)" \
		'[$a, $b | .SecretList[].Name | select(test("payment"))]')" '. == []'
# step_with LOG REGION TARGET VAR=VALUE...: make TARGET there with those settings.
step_with() {
	local log=$1 r=$2 target=$3
	shift 3
	env -u MAKEFLAGS -u MFLAGS AWS_REGION="$r" AWS_DEFAULT_REGION="$r" "$@" \
		make -C "$ROOT" --no-print-directory "$target" >>"$WORK/$log" 2>&1
}
refused() { # DESCRIPTION LOG PATTERN REGION TARGET VAR=VALUE...: the step must fail, saying PATTERN
	local what=$1 log=$2 pattern=$3
	shift 3
	if step_with "$log" "$@"; then
		fail "$what: it succeeded"
	else
		check "$what" "$(jq -Rs . "$WORK/$log")" "test(\"$pattern\")"
	fi
}
refused "04 refuses PAYMENT_MODE=provider before 03 stored a webhook key, naming both" payment-no-key.log \
	"PAYMENT_MODE=provider: no max-tps-ecs/payment-webhook: run 03 with PAYMENT_WEBHOOK_SECRET" \
	"$REGION" 04-taskdefs PAYMENT_MODE=provider
refused "03 refuses a webhook key under 32 bytes, without printing it" payment-short.log \
	"PAYMENT_WEBHOOK_SECRET is 9 bytes: the edge needs at least 32" "$REGION" 03-dataplane PAYMENT_WEBHOOK_SECRET=short-key
key1=infra-test-webhook-key-one-0123456789abcdef key2=infra-test-webhook-key-two-0123456789abcdef
key3=infra-test-webhook-key-three-0123456789abcd
# deploy_provider KEY: 03 with KEY in the primary, then the standby; 04 in both.
deploy_provider() {
	step_with payment.log "$REGION" 03-dataplane "PAYMENT_WEBHOOK_SECRET=$1" || die "03 with a webhook key: $(tail -n 5 "$WORK/payment.log")"
	step_with payment.log "$REGION2" 03-dataplane "PAYMENT_WEBHOOK_SECRET=$1" || die "03 in $REGION2 with a webhook key: $(tail -n 5 "$WORK/payment.log")"
	for r in "$REGION" "$REGION2"; do
		step_with payment.log "$r" 04-taskdefs PAYMENT_MODE=provider PAYMENT_TIMEOUT_MS=900000 ||
			die "04 with PAYMENT_MODE=provider in $r: $(tail -n 5 "$WORK/payment.log")"
	done
}
# provider_state: per region, the stored key and the edge's and worker's payment settings
# (a valueFrom's secret ARN and version replaced by ARN and VERSION when they are that
# region's secret's current ones).
provider_state() {
	local r secret
	for r in "$REGION" "$REGION2"; do
		secret="$(REGION="$r" aws_ secretsmanager get-secret-value --secret-id max-tps-ecs/payment-webhook)"
		jq -n --argjson s "$secret" --argjson e "$(REGION="$r" aws_ ecs describe-task-definition --task-definition max-tps-ecs-edge | payment_env)" \
			--argjson w "$(REGION="$r" aws_ ecs describe-task-definition --task-definition max-tps-ecs-worker | payment_env)" '{key: ($s.SecretString | fromjson),
			edge: [$e[] | if .valueFrom then .valueFrom |= sub("^" + $s.ARN + ":"; "ARN:") | .valueFrom |= sub(":" + $s.VersionId + "$"; ":VERSION") else . end],
			worker: $w}'
	done | jq -cs .
}
provider_want() { # CURRENT [PREVIOUS]: provider_state as it should be
	jq -cn --arg c "$1" --arg p "${2:-}" '({current: $c} + if $p == "" then {} else {previous: $p} end) as $key
		| [{key: $key, edge: ([{name: "PAYMENT_MODE", value: "provider"}, {name: "PAYMENT_TIMEOUT_MS", value: "900000"},
		     {name: "PAYMENT_WEBHOOK_SECRET", valueFrom: "ARN:current::VERSION"}]
		    + if $p == "" then [] else [{name: "PAYMENT_WEBHOOK_SECRET_PREVIOUS", valueFrom: "ARN:previous::VERSION"}] end),
		   worker: [{name: "PAYMENT_MODE", value: "provider"}, {name: "PAYMENT_TIMEOUT_MS", value: "900000"}]}] | . + .'
}
say "payments: PAYMENT_MODE=provider with a webhook key, then a rotation (at ${SECONDS}s)"
deploy_provider "$key1"
check "provider: the operator's key in both regions; the edge gets it as a secret (its version), edge and worker the mode and the same timeout" \
	"$(provider_state)" ". == $(provider_want "$key1")"
deploy_provider "$key2"
check "provider, a new key: both regions keep the old one as previous; the edges get PAYMENT_WEBHOOK_SECRET_PREVIOUS, by the new version" \
	"$(provider_state)" ". == $(provider_want "$key2" "$key1")"
refused "03 in the standby refuses a key that is not the primary's" payment-standby.log \
	"PAYMENT_WEBHOOK_SECRET is not $REGION's key: run 03 there with it first" \
	"$REGION2" 03-dataplane "PAYMENT_WEBHOOK_SECRET=$key3"
# (The standby last, as a deployment ends: .env.generated is checked below as its.)
step_with payment.log "$REGION" 03-dataplane PAYMENT_WEBHOOK_DROP_PREVIOUS=yes || die "03 with PAYMENT_WEBHOOK_DROP_PREVIOUS=yes failed"
step_with payment.log "$REGION2" 03-dataplane || die "03 in $REGION2 after the primary dropped its previous key failed"
check "PAYMENT_WEBHOOK_DROP_PREVIOUS=yes ends the rotation: the primary keeps the current key only, and the standby follows" \
	"$(jq -n --argjson a "$(aws_ secretsmanager get-secret-value --secret-id max-tps-ecs/payment-webhook)" \
		--argjson b "$(aws2 secretsmanager get-secret-value --secret-id max-tps-ecs/payment-webhook)" \
		'[$a, $b | .SecretString | fromjson]')" \
	". == [{current: \"$key2\"}, {current: \"$key2\"}]"
leaked="$(grep -rlF -e "$key1" -e "$key2" -e "$key3" -e short-key "$WORK/out" "$WORK"/*.log || true)"
check "the webhook keys are in no step output and nowhere in infra/out" "$(jq -n --arg l "$leaked" '$l')" '. == ""'

alb="$(cat "$OUT/alb.json")"
tg_arn="$(jq -r .targetGroupArn <<<"$alb")"
check "target group: /public/health on 8080, IP targets, 200 only" \
	"$(aws_ elbv2 describe-target-groups --target-group-arns "$tg_arn")" \
	'.TargetGroups[0] | .HealthCheckPath == "/public/health" and .Port == 8080 and .TargetType == "ip" and .Matcher.HttpCode == "200"'
check "target group: deregistration delay 25 s, below the edge's 30 s stopTimeout" \
	"$(aws_ elbv2 describe-target-group-attributes --target-group-arn "$tg_arn")" \
	'[.Attributes[] | {(.Key): .Value}] | add | .["deregistration_delay.timeout_seconds"] == "25"'
check "load balancer: idle timeout 60 s, below the edge's 75 s keep-alive" \
	"$(aws_ elbv2 describe-load-balancer-attributes --load-balancer-arn "$(jq -r .albArn <<<"$alb")")" \
	'[.Attributes[] | {(.Key): .Value}] | add | .["idle_timeout.timeout_seconds"] == "60"'
check "listener: port 80 forwards to the edge group" \
	"$(aws_ elbv2 describe-listeners --load-balancer-arn "$(jq -r .albArn <<<"$alb")")" \
	'.Listeners | length == 1 and .[0].Port == 80 and .[0].DefaultActions[0].TargetGroupArn == "'"$tg_arn"'"'
check "services: edge behind the group and worker, Fargate, private, no public IP" \
	"$(aws_ ecs describe-services --cluster max-tps-ecs --services edge worker)" \
	'[.services[] | .status == "ACTIVE" and .launchType == "FARGATE"
	   and .networkConfiguration.awsvpcConfiguration.assignPublicIp == "DISABLED"] == [true, true]
	 and .services[0].loadBalancers[0].targetGroupArn == "'"$tg_arn"'" and .services[0].loadBalancers[0].containerPort == 8080'

check "scalable targets: edge 2..40, worker 1..20" \
	"$(aws_ application-autoscaling describe-scalable-targets --service-namespace ecs)" \
	'[.ScalableTargets[] | "\(.ResourceId) \(.MinCapacity)..\(.MaxCapacity)"] | sort == ["service/max-tps-ecs/edge 2..40", "service/max-tps-ecs/worker 1..20"]'
policies="$(aws_ application-autoscaling describe-scaling-policies --service-namespace ecs)"
check "edge: CPU 60% target tracking" "$policies" \
	'any(.ScalingPolicies[]; .PolicyName == "edge-cpu-target" and .TargetTrackingScalingPolicyConfiguration.TargetValue == 60
	   and .TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification.PredefinedMetricType == "ECSServiceAverageCPUUtilization")'
check "edge: ALBRequestCountPerTarget target tracking on the group" "$policies" \
	'any(.ScalingPolicies[]; .PolicyName == "edge-requests-target"
	   and .TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification.PredefinedMetricType == "ALBRequestCountPerTarget"
	   and (.TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification.ResourceLabel | test("^app/max-tps-ecs-alb/.+/targetgroup/max-tps-ecs-edge/")))'
# One line per step policy: service/name, adjustment, aggregation, cooldown, steps
# [lower..upper] (bounds relative to the alarm's threshold) and the change.
check "step policies: edge p95 +20% (at least 1); worker backlog out +2 (+5 from 10x), age out +2, backlog in -1" \
	"$(jq -c '[.ScalingPolicies[] | select(.PolicyType == "StepScaling") | (.ResourceId | sub("^service/max-tps-ecs/"; "")) as $svc
		| .PolicyName as $n | .StepScalingPolicyConfiguration
		| "\($svc)/\($n): \(.AdjustmentType)\(if .MinAdjustmentMagnitude then " min \(.MinAdjustmentMagnitude)" else "" end)"
		  + " \(.MetricAggregationType) cooldown \(.Cooldown)s"
		  + " \([.StepAdjustments[] | "[\(.MetricIntervalLowerBound // "-inf")..\(.MetricIntervalUpperBound // "inf")] \(.ScalingAdjustment)"] | join(", "))"]
		| sort' <<<"$policies")" \
	'. == ["edge/edge-p95-step: PercentChangeInCapacity min 1 Maximum cooldown 120s [0..inf] 20",
	       "worker/worker-age-out: ChangeInCapacity Maximum cooldown 60s [0..inf] 2",
	       "worker/worker-backlog-in: ChangeInCapacity Average cooldown 300s [-inf..0] -1",
	       "worker/worker-backlog-out: ChangeInCapacity Average cooldown 60s [0..9000] 2, [9000..inf] 5"]'
alarms="$(aws_ cloudwatch describe-alarms --alarm-name-prefix max-tps-ecs-)"
p95_arn="$(jq -r '.ScalingPolicies[] | select(.PolicyName == "edge-p95-step") | .PolicyARN' <<<"$policies")"
check "alarm: target group p95 TargetResponseTime > 0.2 s triggers the step policy" "$alarms" \
	'any(.MetricAlarms[]; .AlarmName == "max-tps-ecs-edge-p95-over-200ms" and .ExtendedStatistic == "p95"
	   and .MetricName == "TargetResponseTime" and .Threshold == 0.2 and .ComparisonOperator == "GreaterThanThreshold"
	   and .AlarmActions == ["'"$p95_arn"'"])'
# One line per queue alarm: statistic(metric dimension), comparison, threshold, periods,
# and the policies it triggers, by name.
check "alarms: queue depth high/low and oldest-message age on the commit queue, each triggering its worker policy" \
	"$(jq -c --argjson p "$policies" '($p.ScalingPolicies | map({(.PolicyARN): .PolicyName}) | add) as $policy
		| [.MetricAlarms[] | select(.Namespace == "AWS/SQS" and (.AlarmName | startswith("max-tps-ecs-ops-") | not))
		   | "\(.AlarmName): \(.Statistic)(\(.MetricName) \(.Dimensions | map("\(.Name)=\(.Value)") | join(" ")))"
		     + " \(.ComparisonOperator) \(.Threshold), \(.EvaluationPeriods) x \(.Period)s -> \(.AlarmActions | map($policy[.] // .) | join(" "))"]
		| sort' <<<"$alarms")" \
	'. == ["max-tps-ecs-worker-age-high: Maximum(ApproximateAgeOfOldestMessage QueueName=max-tps-ecs-commits.fifo) GreaterThanThreshold 30, 2 x 60s -> worker-age-out",
	       "max-tps-ecs-worker-backlog-high: Average(ApproximateNumberOfMessagesVisible QueueName=max-tps-ecs-commits.fifo) GreaterThanThreshold 1000, 2 x 60s -> worker-backlog-out",
	       "max-tps-ecs-worker-backlog-low: Average(ApproximateNumberOfMessagesVisible QueueName=max-tps-ecs-commits.fifo) LessThanThreshold 10, 15 x 60s -> worker-backlog-in"]'
# 09: one line per operations alarm: statistic(metric dimensions), comparison, threshold,
# datapoints of periods.
check "09: operations alarms on the ALB, ECS, the queue and its DLQ, ElastiCache and Aurora" \
	"$(jq -c '[.MetricAlarms[] | select(.AlarmName | startswith("max-tps-ecs-ops-"))
		| "\(.AlarmName | ltrimstr("max-tps-ecs-ops-")): \(.ExtendedStatistic // .Statistic)(\(.Namespace) \(.MetricName) \(.Dimensions | map(.Name) | join(",")))"
		  + " \(.ComparisonOperator) \(.Threshold), \(.DatapointsToAlarm) of \(.EvaluationPeriods) x \(.Period)s"] | sort' <<<"$alarms")" \
	'. == ["alb-5xx: Sum(AWS/ApplicationELB HTTPCode_Target_5XX_Count LoadBalancer,TargetGroup) GreaterThanThreshold 50, 2 of 3 x 60s",
	       "aurora-acu: Average(AWS/RDS ACUUtilization DBClusterIdentifier) GreaterThanThreshold 90, 5 of 5 x 60s",
	       "aurora-connections: Maximum(AWS/RDS DatabaseConnections DBClusterIdentifier) GreaterThanThreshold 800, 3 of 3 x 60s",
	       "dlq-not-empty: Maximum(AWS/SQS ApproximateNumberOfMessagesVisible QueueName) GreaterThanThreshold 0, 1 of 1 x 60s",
	       "edge-cpu: Average(AWS/ECS CPUUtilization ClusterName,ServiceName) GreaterThanThreshold 85, 5 of 5 x 60s",
	       "edge-memory: Average(AWS/ECS MemoryUtilization ClusterName,ServiceName) GreaterThanThreshold 85, 5 of 5 x 60s",
	       "queue-age: Maximum(AWS/SQS ApproximateAgeOfOldestMessage QueueName) GreaterThanThreshold 300, 2 of 2 x 60s",
	       "redis-cpu: Average(AWS/ElastiCache EngineCPUUtilization CacheClusterId) GreaterThanThreshold 80, 3 of 3 x 60s",
	       "redis-evictions: Sum(AWS/ElastiCache Evictions CacheClusterId) GreaterThanThreshold 0, 1 of 1 x 60s",
	       "redis-memory: Maximum(AWS/ElastiCache DatabaseMemoryUsagePercentage CacheClusterId) GreaterThanThreshold 80, 3 of 3 x 60s",
	       "target-p99: p99(AWS/ApplicationELB TargetResponseTime LoadBalancer,TargetGroup) GreaterThanThreshold 0.5, 3 of 5 x 60s",
	       "worker-cpu: Average(AWS/ECS CPUUtilization ClusterName,ServiceName) GreaterThanThreshold 85, 5 of 5 x 60s",
	       "worker-memory: Average(AWS/ECS MemoryUtilization ClusterName,ServiceName) GreaterThanThreshold 85, 5 of 5 x 60s"]'
check "09: the dlq alarm watches the dead-letter queue" "$alarms" \
	'any(.MetricAlarms[]; .AlarmName == "max-tps-ecs-ops-dlq-not-empty" and .Dimensions[0].Value == "max-tps-ecs-commits-dlq.fifo")'
check "09: dashboard max-tps-ecs: 11 widgets, the EMF namespace and every AWS service's" \
	"$(aws_ cloudwatch get-dashboard --dashboard-name max-tps-ecs | jq -c '.DashboardBody | fromjson')" \
	'(.widgets | length) == 11
	 and ([.widgets[].properties.metrics[][0]] | unique) == ["AWS/ApplicationELB", "AWS/ECS", "AWS/ElastiCache", "AWS/RDS", "AWS/SQS", "max-tps-ecs"]'

cf="$(aws_ cloudfront get-distribution-config --id "$(jq -r .distributionId "$OUT/cloudfront.json")")"
check "cloudfront /public/*: UseOriginCacheControlHeaders-QueryStrings, compressed" "$cf" \
	'[.DistributionConfig.CacheBehaviors.Items[] | .CachePolicyId == "4cc15a8a-d715-48a4-82b8-cc0b614638fe" and .Compress] == [true, true, true]'
check "cloudfront default behaviour: CachingDisabled, all viewer headers but Host" "$cf" \
	'.DistributionConfig.DefaultCacheBehavior | .CachePolicyId == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
	 and .OriginRequestPolicyId == "b689b0a8-53d0-40ab-baf2-68738e2966ac" and .AllowedMethods.Quantity == 7'
check "cloudfront: 500/502/503/504 cached 0 s" "$cf" \
	'[.DistributionConfig.CustomErrorResponses.Items[] | "\(.ErrorCode):\(.ErrorCachingMinTTL)"] == ["500:0", "502:0", "503:0", "504:0"]'

mapfile -t one_off < <(aws_ ecs list-tasks --cluster max-tps-ecs --started-by 08_db_init | jq -r '.taskArns[]')
check "08: worker migrate and seed demo ran as one-off tasks of the worker definition" \
	"$(aws_ ecs describe-tasks --cluster max-tps-ecs --tasks "${one_off[@]}")" \
	'[.tasks[].overrides.containerOverrides[0].command | join(" ")] | unique == ["migrate", "seed demo"]'
# (the standby's: the region deployed last)
check "infra/out/.env.generated: queue, table, ALB, CloudFront; no secret values" \
	"$(jq -Rn '[inputs | select(test("^[A-Z_]+=")) | capture("^(?<key>[^=]+)=(?<value>.*)$")] | from_entries' <"$WORK/out/.env.generated")" \
	'.SQS_QUEUE_URL and .HOLD_MIRROR_TABLE and .ALB_DNS and .CLOUDFRONT_DOMAIN and .AWS_REGION == "'"$REGION2"'"
	 and (to_entries | all(.value | test("rediss?://|postgres://") | not))'
# infra/RUNBOOK.md's commands, as written there, against what the steps made.
check "runbook (dead letters): the queue and DLQ ARNs its move task names are in data.json" \
	"$(cat "$OUT/data.json")" '(.queueArn | startswith("arn:aws:sqs:")) and (.dlqArn | startswith("arn:aws:sqs:"))'
if failover="$(aws_ rds failover-db-cluster --db-cluster-identifier max-tps-ecs-db 2>&1)"; then
	check "runbook (PostgreSQL failover): aws rds failover-db-cluster on step 03's cluster" \
		"$failover" '.DBCluster.DBClusterIdentifier == "max-tps-ecs-db"'
else
	fail "runbook (PostgreSQL failover): aws rds failover-db-cluster: $failover"
fi
say "settings checked (at ${SECONDS}s)"
say "skipped on the local endpoint (moto gaps):"
sort -u "$OUT/skipped.txt" "$OUT2/skipped.txt" | sed 's/^/infra-test:   /'

# ----------------------------------------------------------------------------- the standby, and what crosses regions
# inventory REGION: what every step made there, by name (region names taken out), so the
# standby is compared with the primary whole.
inventory() {
	local r=$1
	a() { REGION="$r" aws_ "$@"; }
	jq -n --arg r "$r" \
		--argjson vpc "$(a ec2 describe-vpcs --filters Name=tag:Project,Values=max-tps-ecs)" \
		--argjson sub "$(a ec2 describe-subnets --filters Name=tag:Project,Values=max-tps-ecs)" \
		--argjson nat "$(a ec2 describe-nat-gateways --filter Name=tag:Project,Values=max-tps-ecs)" \
		--argjson sg "$(a ec2 describe-security-groups --filters Name=tag:Project,Values=max-tps-ecs)" \
		--argjson ecr "$(a ecr describe-repositories)" \
		--argjson svc "$(a ecs list-services --cluster max-tps-ecs)" \
		--argjson td "$(a ecs list-task-definition-families --status ACTIVE)" \
		--argjson logs "$(a logs describe-log-groups --log-group-name-prefix /ecs/max-tps-ecs/)" \
		--argjson iam "$(a iam list-roles --path-prefix /max-tps-ecs/)" \
		--argjson sqs "$(a sqs list-queues --queue-name-prefix max-tps-ecs)" \
		--argjson ddb "$(a dynamodb list-tables)" \
		--argjson sec "$(a secretsmanager list-secrets)" \
		--argjson redis "$(a elasticache describe-replication-groups)" \
		--argjson db "$(a rds describe-db-instances)" \
		--argjson lb "$(a elbv2 describe-load-balancers)" \
		--argjson tg "$(a elbv2 describe-target-groups)" \
		--argjson aas "$(a application-autoscaling describe-scaling-policies --service-namespace ecs)" \
		--argjson cw "$(a cloudwatch describe-alarms --alarm-name-prefix max-tps-ecs-)" \
		--argjson dash "$(a cloudwatch list-dashboards --dashboard-name-prefix max-tps-ecs)" \
		'{vpcs: ($vpc.Vpcs | length), subnets: ($sub.Subnets | length), nats: ($nat.NatGateways | length),
		  groups: [$sg.SecurityGroups[].GroupName] | sort, repos: [$ecr.repositories[].repositoryName] | sort,
		  services: [$svc.serviceArns[] | split("/") | last] | sort, taskdefs: $td.families | sort,
		  logs: [$logs.logGroups[].logGroupName] | sort,
		  roles: [$iam.Roles[].RoleName | select(contains($r)) | sub($r; "R")] | sort,
		  queues: [$sqs.QueueUrls[] | split("/") | last] | sort, tables: $ddb.TableNames,
		  secrets: [$sec.SecretList[].Name] | sort, redis: [$redis.ReplicationGroups[].ReplicationGroupId],
		  aurora: [$db.DBInstances[] | "\(.DBClusterIdentifier)/\(.DBInstanceIdentifier) \(.DBInstanceClass)"] | sort,
		  albs: [$lb.LoadBalancers[].LoadBalancerName], tgs: [$tg.TargetGroups[].TargetGroupName],
		  scaling: [$aas.ScalingPolicies[].PolicyName] | sort, alarms: [$cw.MetricAlarms[].AlarmName] | sort,
		  dashboards: [$dash.DashboardEntries[].DashboardName]}'
}
inv1="$(inventory "$REGION")"
inv2="$(inventory "$REGION2")"
check "$REGION2 (standby): every step 00-09 made the same resources as in $REGION, and nothing is missing in either" \
	"$(jq -n --argjson a "$inv1" --argjson b "$inv2" '{a: $a, b: $b}')" \
	'.a == .b and (.a | [.[] | if type == "array" then length else . end] | all(. > 0))'
[[ "$inv1" == "$(inventory "$REGION2")" ]] || say "inventories: $REGION $(jq -c . <<<"$inv1"); $REGION2 $(jq -c . <<<"$inv2")"
check "$REGION2: its own VPC and network" \
	"$(jq -n --arg v1 "$(jq -r .vpcId "$OUT/network.json")" --arg v2 "$(jq -r .vpcId "$OUT2/network.json")" '[$v1, $v2]')" \
	'.[0] != .[1] and all(.[]; startswith("vpc-"))'

global="$(aws_ rds describe-global-clusters | jq -c '{GlobalClusters: [.GlobalClusters[] | select(.GlobalClusterIdentifier == "max-tps-ecs-global")]}')"
check "aurora global database: the primary's cluster its only writer, the standby's a reader" "$global" \
	'[.GlobalClusters[0].GlobalClusterMembers[] | "\(.DBClusterArn | split(":") | .[3] + " " + .[6]) writer=\(.IsWriter)"] | sort
	 == ["ap-northeast-1 max-tps-ecs-db writer=true", "ap-northeast-2 max-tps-ecs-db writer=false"]'
check "aurora global database: aurora-postgresql, encrypted" "$global" \
	'.GlobalClusters[0] | .Engine == "aurora-postgresql" and .StorageEncrypted'
check "$REGION2 aurora: a secondary (no master user or database of its own), Serverless v2 0.5-16 ACU, encrypted" \
	"$(aws2 rds describe-db-clusters --db-cluster-identifier max-tps-ecs-db)" \
	'.DBClusters[0] | .GlobalClusterIdentifier == "max-tps-ecs-global" and .MasterUsername == null and .DatabaseName == null
	 and .StorageEncrypted and .ServerlessV2ScalingConfiguration == {MinCapacity: 0.5, MaxCapacity: 16}'
secret() { "$1" secretsmanager get-secret-value --secret-id "$2" | jq -r .SecretString; }
check "secrets: one room key and one database user in both regions; each region its own database host and Redis token" \
	"$(jq -n --arg r1 "$(secret aws_ max-tps-ecs/room-token)" --arg r2 "$(secret aws2 max-tps-ecs/room-token)" \
		--argjson d1 "$(secret aws_ max-tps-ecs/database)" --argjson d2 "$(secret aws2 max-tps-ecs/database)" \
		--argjson k1 "$(secret aws_ max-tps-ecs/redis)" --argjson k2 "$(secret aws2 max-tps-ecs/redis)" \
		'{room: ($r1 == $r2 and ($r1 | length) == 64), user: ([$d1, $d2] | map({username, password, dbname}) | .[0] == .[1]),
		  hosts: [$d1.host, $d2.host | split(".")[2]], redis: ($k1.authToken != $k2.authToken)}')" \
	'. == {room: true, user: true, hosts: ["ap-northeast-1", "ap-northeast-2"], redis: true}'
check "$REGION2: 08 ran no one-off task (its database is a read-only secondary)" \
	"$(aws2 ecs list-tasks --cluster max-tps-ecs --started-by 08_db_init)" '.taskArns == []'

dists="$(aws_ cloudfront list-distributions)"
check "cloudfront: one distribution for both regions" "$dists" '[.DistributionList.Items[] | .Comment] == ["max-tps-ecs"]'
alb2_dns="$(jq -r .albDns "$OUT2/alb.json")"
check "cloudfront: origins the two ALBs, the primary's first; seat reads fail over to the standby on 500/502/503/504" "$cf" \
	'.DistributionConfig | [.Origins.Items[] | "\(.Id) \(.DomainName)"] == ["alb-'"$REGION $(jq -r .albDns <<<"$alb")"'", "alb-'"$REGION2 $alb2_dns"'"]
	 and .OriginGroups == {Quantity: 1, Items: [{Id: "seat-reads",
	   FailoverCriteria: {StatusCodes: {Quantity: 4, Items: [500, 502, 503, 504]}},
	   Members: {Quantity: 2, Items: [{OriginId: "alb-'"$REGION"'"}, {OriginId: "alb-'"$REGION2"'"}]}}]}'
check "cloudfront: summary and seat reads (GET, HEAD, OPTIONS) to the origin group; the rest of /public/* and the default (writes) to the primary only" "$cf" \
	'[.DistributionConfig | (.CacheBehaviors.Items[] | "\(.PathPattern) -> \(.TargetOriginId) \(.AllowedMethods.Items | sort | join(","))"),
	   "default -> \(.DefaultCacheBehavior.TargetOriginId) \(.DefaultCacheBehavior.AllowedMethods.Items | length)"]
	 == ["/public/summary/* -> seat-reads GET,HEAD,OPTIONS", "/public/seats/* -> seat-reads GET,HEAD,OPTIONS",
	     "/public/* -> alb-'"$REGION"' DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT", "default -> alb-'"$REGION"' 7"]'
check "cloudfront: both regions found the same distribution" \
	"$(jq -n --slurpfile a "$OUT/cloudfront.json" --slurpfile b "$OUT2/cloudfront.json" '[$a[0].distributionId, $b[0].distributionId]')" \
	'.[0] == .[1] and (.[0] | length) > 0'

# ----------------------------------------------------------------------------- teardown
# teardown REGION LOG: 99_teardown.sh there (as `AWS_REGION=... make teardown` does).
teardown() { AWS_REGION="$1" AWS_DEFAULT_REGION="$1" "$ROOT/infra/99_teardown.sh" >"$WORK/$2" 2>&1; }
say "---- teardown: $REGION first (must refuse), $REGION2, $REGION (at ${SECONDS}s)"
if teardown "$REGION" teardown-refused.log; then
	fail "99_teardown in $REGION succeeded while $REGION2's cluster is still a secondary of the global database"
else
	check "99_teardown in the primary first refuses, naming the standby, before deleting anything" \
		"$(jq -n --rawfile log "$WORK/teardown-refused.log" --argjson cf "$(aws_ cloudfront get-distribution-config --id "$(jq -r .distributionId "$OUT/cloudfront.json")")" \
			'{named: ($log | test("tear down ap-northeast-2 first")), deleted: ($log | test(" deleted |updated ")), origins: ($cf.DistributionConfig.Origins.Quantity)}')" \
		'. == {named: true, deleted: false, origins: 2}'
fi
if ! teardown "$REGION2" teardown2.log; then
	tail -n 30 "$WORK/teardown2.log"
	die "99_teardown in $REGION2 failed"
fi
check "after $REGION2's teardown: the distribution serves everything from $REGION's ALB, without the origin group" \
	"$(aws_ cloudfront get-distribution-config --id "$(jq -r .distributionId "$OUT/cloudfront.json")")" \
	'.DistributionConfig | [.Origins.Items[].Id] == ["alb-'"$REGION"'"] and .OriginGroups.Quantity == 0
	 and ([.DefaultCacheBehavior.TargetOriginId, .CacheBehaviors.Items[].TargetOriginId] | unique) == ["alb-'"$REGION"'"]'
check "after $REGION2's teardown: the global database kept for $REGION's cluster" \
	"$(jq -Rn --rawfile log "$WORK/teardown2.log" '$log')" 'test("exists   aurora global database max-tps-ecs-global: kept for arn:aws:rds:ap-northeast-1:")'
if ! teardown "$REGION" teardown.log; then
	tail -n 30 "$WORK/teardown.log"
	die "99_teardown in $REGION failed"
fi
# leftovers REGION: how many of each kind of resource is left there.
leftovers() {
	local REGION=$1
	jq -n \
		--argjson vpc "$(aws_ ec2 describe-vpcs --filters Name=tag:Project,Values=max-tps-ecs)" \
		--argjson eip "$(aws_ ec2 describe-addresses --filters Name=tag:Project,Values=max-tps-ecs)" \
		--argjson nat "$(aws_ ec2 describe-nat-gateways --filter Name=tag:Project,Values=max-tps-ecs Name=state,Values=pending,available)" \
		--argjson ecr "$(aws_ ecr describe-repositories)" \
		--argjson ecs "$(aws_ ecs describe-clusters --clusters max-tps-ecs)" \
		--argjson td "$(aws_ ecs list-task-definitions --status ACTIVE)" \
		--argjson logs "$(aws_ logs describe-log-groups --log-group-name-prefix /ecs/max-tps-ecs/)" \
		--argjson iam "$(aws_ iam list-roles --path-prefix /max-tps-ecs/)" \
		--argjson sqs "$(aws_ sqs list-queues --queue-name-prefix max-tps-ecs)" \
		--argjson ddb "$(aws_ dynamodb list-tables)" \
		--argjson sec "$(aws_ secretsmanager list-secrets)" \
		--argjson rds "$(aws_ rds describe-db-clusters)" \
		--argjson lb "$(aws_ elbv2 describe-load-balancers)" \
		--argjson tg "$(aws_ elbv2 describe-target-groups)" \
		--argjson aas "$(aws_ application-autoscaling describe-scalable-targets --service-namespace ecs)" \
		--argjson cw "$(aws_ cloudwatch describe-alarms --alarm-name-prefix max-tps-ecs-)" \
		--argjson dash "$(aws_ cloudwatch list-dashboards --dashboard-name-prefix max-tps-ecs)" \
		--argjson cf "$(aws_ cloudfront list-distributions)" \
		'{vpc: ($vpc.Vpcs | length), eip: ($eip.Addresses | length), nat: ($nat.NatGateways | length),
		  ecr: ($ecr.repositories | length), cluster: ([$ecs.clusters[] | select(.status == "ACTIVE")] | length),
		  taskdefs: ($td.taskDefinitionArns | length), logs: ($logs.logGroups | length), roles: ($iam.Roles | length),
		  queues: ($sqs.QueueUrls // [] | length), tables: ($ddb.TableNames | length), secrets: ($sec.SecretList | length),
		  aurora: ($rds.DBClusters | length), albs: ($lb.LoadBalancers | length), tgs: ($tg.TargetGroups | length),
		  scaling: ($aas.ScalableTargets | length), alarms: ($cw.MetricAlarms | length),
		  dashboards: ($dash.DashboardEntries // [] | length),
		  distributions: ($cf.DistributionList.Items // [] | length)}'
}
for r in "$REGION" "$REGION2"; do
	check "$r: teardown left none of: vpc, eips, nats, repos, cluster, task definitions, log groups, roles, queues, tables, secrets, aurora, albs, target groups, scaling, alarms, dashboards, distributions" \
		"$(leftovers "$r")" '[.[]] | all(. == 0)'
	check "$r: teardown: redis is being deleted (moto never finishes)" \
		"$(REGION="$r" aws_ elasticache describe-replication-groups)" '[.ReplicationGroups[] | .Status] | all(. == "deleting")'
	if [[ -e "$WORK/out/$r" ]]; then fail "teardown left $WORK/out/$r"; else ok "teardown removed infra/out/$r"; fi
done
# moto keeps a global cluster's members after their clusters are deleted, so it still
# lists the global database and refuses to delete it: the check is that every member
# is gone (then 99 deletes it on AWS) and that 99 said what it skipped.
members_left=()
for arn in $(aws_ rds describe-global-clusters | jq -r '.GlobalClusters[].GlobalClusterMembers[]?.DBClusterArn'); do
	if "$AWS_CLI" --endpoint-url "$endpoint" --region "$(cut -d: -f4 <<<"$arn")" rds describe-db-clusters \
		--db-cluster-identifier "$arn" >/dev/null 2>&1; then
		members_left+=("$arn")
	fi
done
check "teardown: no cluster of the aurora global database is left (moto keeps the global database itself: skipped and said so)" \
	"$(jq -n --rawfile log "$WORK/teardown.log" --arg left "${members_left[*]}" \
		'{left: $left, said: ($log | test("SKIPPED  deleting aurora global database max-tps-ecs-global") or test("deleted  aurora global database"))}')" \
	'. == {left: "", said: true}'

say "took $((SECONDS - start_s))s"
say "$passed passed, $failed failed"
((failed == 0))
