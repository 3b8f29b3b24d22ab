# shellcheck shell=bash
# infra/lib.sh: what every infra/NN_*.sh step shares. Sourced, never run.
#
#   region      AWS_REGION, else AWS_DEFAULT_REGION (required; the seed deploys to
#               ap-northeast-1 and ap-northeast-2, one run of every step per region)
#   endpoint    AWS_ENDPOINT_URL, passed to every call as --endpoint-url, because awscli v1
#               ignores the variable for sqs, rds and others (moto's server in tests)
#   names       PROJECT (default max-tps-ecs) prefixes every name; everything is tagged
#               Project=$PROJECT and Name=<name>, and found again by those
#   state       infra/out/<region>/*.json (ids for the next step), infra/out/<region>/env
#               (KEY=value, no secrets) and infra/out/.env.generated (a copy of the env of
#               the region last worked on); INFRA_OUT_DIR moves infra/out elsewhere
#   output      one line per resource on stderr: created / exists / updated / set /
#               SKIPPED, so a re-run shows at a glance that it created nothing
#
# Helpers: awscli SERVICE ARGS... (JSON on stdout), aws_try (same, but the failure is
# the caller's: its message is in aws_error, its code in aws_error_code), local_gap
# (a known moto gap: skipped on a local endpoint, fatal anywhere else).

# Command substitutions ($(step ...)) fail the step as a plain command would.
shopt -s inherit_errexit

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT_DIR="$(dirname "$INFRA_DIR")"
PROJECT="${PROJECT:-max-tps-ecs}"
STEP="${STEP:-$(basename "$0" .sh)}"

# The edge's port in its container and the defaults the task definition, the target
# group and the load balancer are checked against (README: EDGE_KEEPALIVE_MS,
# EDGE_SHUTDOWN_GRACE_MS).
# shellcheck disable=SC2034 # used by the steps that source this file
EDGE_PORT=8080
EDGE_KEEPALIVE_MS="${EDGE_KEEPALIVE_MS:-75000}"
EDGE_SHUTDOWN_GRACE_MS="${EDGE_SHUTDOWN_GRACE_MS:-20000}"

log() { printf '%s [%s] %s\n' "$STEP" "${REGION:-?}" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
created() { log "created  $*"; }
exists() { log "exists   $*"; }
updated() { log "updated  $*"; }
setting() { log "set      $*"; }
deleted() { log "deleted  $*"; }
absent() { log "absent   $*"; }

REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
[[ -n "$REGION" ]] || die "set AWS_REGION (e.g. AWS_REGION=ap-northeast-1 make all)"

# The deployment's regions (infra/README.md, "Two regions"): PRIMARY_REGION (the first
# of REGIONS unless set) is the only one that writes: it holds the Aurora global
# database's writer and CloudFront sends it every request that changes something. The
# others are warm standbys: the same stack, a read-only secondary of the database, and
# CloudFront's failover origin for the public seat reads. Steps that need another
# region's resources ask that region's API (awscli_in), never its infra/out directory:
# CI deploys each region in a job of its own.
read -r -a ALL_REGIONS <<<"${REGIONS:-ap-northeast-1 ap-northeast-2}"
PRIMARY_REGION="${PRIMARY_REGION:-${ALL_REGIONS[0]}}"
[[ " ${ALL_REGIONS[*]} " == *" $REGION "* && " ${ALL_REGIONS[*]} " == *" $PRIMARY_REGION "* ]] ||
	die "AWS_REGION $REGION and PRIMARY_REGION $PRIMARY_REGION must both be in REGIONS (${ALL_REGIONS[*]})"
is_primary() { [[ "$REGION" == "$PRIMARY_REGION" ]]; }
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION" AWS_PAGER=""

command -v jq >/dev/null 2>&1 || die "jq not found (Debian: apt-get install jq)"
if [[ -n "${AWS_CLI:-}" ]]; then
	AWS_BIN="$AWS_CLI"
elif command -v aws >/dev/null 2>&1; then
	AWS_BIN="aws"
elif [[ -x "$ROOT_DIR/.run/venv/bin/aws" ]]; then
	AWS_BIN="$ROOT_DIR/.run/venv/bin/aws"
else
	die "aws CLI not found: install AWS CLI v2, or v1 with pip, or run infra/local/stack.sh deps (.run/venv/bin/aws)"
fi

OUT_DIR="${INFRA_OUT_DIR:-$INFRA_DIR/out}"
REGION_DIR="$OUT_DIR/$REGION"
mkdir -p "$REGION_DIR"

AWS_ERR_FILE="$(mktemp "${TMPDIR:-/tmp}/infra-aws-err.XXXXXX")"
cleanup_lib() { rm -f "$AWS_ERR_FILE" "$AWS_ERR_FILE".*; }
trap cleanup_lib EXIT

# ----------------------------------------------------------------------------- aws

# A loopback endpoint (moto's server in `make infra-test`): the only place where an API
# moto lacks, or a waiter it never satisfies, may be skipped.
is_local_endpoint() {
	[[ "${AWS_ENDPOINT_URL:-}" =~ ^https?://(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?(/.*)?$ ]]
}

# awscli SERVICE ARGS...: the call, with region, JSON output and the endpoint made
# explicit. Fails the step (set -e) on error, after printing the CLI's message.
awscli() {
	local svc=$1
	shift
	local -a ep=()
	if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
		ep=(--endpoint-url "$AWS_ENDPOINT_URL")
	fi
	"$AWS_BIN" --region "$REGION" --output json "${ep[@]}" "$svc" "$@"
}

# aws_try SERVICE ARGS...: as awscli, but a failure is returned, not printed; the
# message is then in aws_error and its code (ResourceNotFoundException, ...) in
# aws_error_code.
aws_try() {
	awscli "$@" 2>"$AWS_ERR_FILE"
}

# awscli_in / aws_try_in REGION SERVICE ARGS...: the same, in another region of REGIONS.
awscli_in() {
	local REGION=$1
	shift
	awscli "$@"
}
aws_try_in() {
	local REGION=$1
	shift
	aws_try "$@"
}

aws_error() { tr '\n' ' ' <"$AWS_ERR_FILE" | sed 's/  */ /g; s/ $//'; }

aws_error_code() { sed -n 's/.*An error occurred (\([^)]*\)).*/\1/p' "$AWS_ERR_FILE" | head -n1; }

# The last aws_try failed because the resource is not there (any service's spelling).
aws_not_found() {
	[[ "$(aws_error_code)" =~ NotFound|NoSuchEntity|NonExistent|DoesNotExist|^404$ ]] ||
		grep -qiE 'does not exist|not found|no [a-z ]+ found' "$AWS_ERR_FILE"
}

# After a failed aws_try: an API or a setting moto's server lacks. On a local endpoint
# the step goes on and says what it skipped (infra/out/<region>/skipped.txt keeps the
# list); against AWS it is an error like any other. Only errors that look like a
# missing implementation qualify, so a wrong argument still fails the test.
local_gap() {
	local what=$1 err why
	err="$(aws_error)"
	if is_local_endpoint && [[ "$err" =~ Internal\ Server\ Error|NotImplemented|not\ (yet\ )?implemented|\(404\)|Not\ Found|InvalidAction|UnknownOperation ]]; then
		why="${err:0:160}"
		[[ "$err" =~ 500\ Internal\ Server\ Error ]] && why="HTTP 500: not implemented there"
		log "SKIPPED  $what [local endpoint: $why]"
		printf '%s: %s\n' "$STEP" "$what" >>"$REGION_DIR/skipped.txt"
		return 0
	fi
	die "$what: $err"
}

# skip_local WHAT: a waiter (or other step) that cannot succeed against the local
# endpoint; returns 0 (skip) on a local endpoint, 1 otherwise.
skip_local() {
	if is_local_endpoint; then
		log "SKIPPED  $1 [local endpoint $AWS_ENDPOINT_URL]"
		printf '%s: %s\n' "$STEP" "$1" >>"$REGION_DIR/skipped.txt"
		return 0
	fi
	return 1
}

# The account id, asked once per region directory.
account_id() {
	local f="$REGION_DIR/account"
	if [[ ! -s "$f" ]]; then
		awscli sts get-caller-identity --query Account --output text >"$f"
	fi
	cat "$f"
}

# EC2 --tag-specifications for RESOURCE_TYPE NAME.
ec2_tags() {
	printf 'ResourceType=%s,Tags=[{Key=Name,Value=%s},{Key=Project,Value=%s}]' "$1" "$2" "$PROJECT"
}

# Tags as [{"Key":..,"Value":..}] (most services) for NAME.
tags_kv() { jq -cn --arg n "$1" --arg p "$PROJECT" '[{Key:"Name",Value:$n},{Key:"Project",Value:$p}]'; }

# The Aurora global database $NAME_GLOBAL_DB as {GlobalClusters: [it]}, or with none.
# Listed and picked by name: moto's server ignores --global-cluster-identifier.
global_db() {
	awscli rds describe-global-clusters |
		jq -c --arg g "$NAME_GLOBAL_DB" '{GlobalClusters: [.GlobalClusters[] | select(.GlobalClusterIdentifier == $g)]}'
}

# ----------------------------------------------------------------------------- state

state_path() { printf '%s/%s.json' "$REGION_DIR" "$1"; }

# state_set_json FILE KEY JSON: sets one key of infra/out/<region>/FILE.json.
state_set_json() {
	local f
	f="$(state_path "$1")"
	[[ -s "$f" ]] || printf '{}\n' >"$f"
	jq --arg k "$2" --argjson v "$3" '.[$k] = $v' "$f" >"$f.tmp"
	mv "$f.tmp" "$f"
}

state_set() { state_set_json "$1" "$2" "$(jq -cn --arg v "$3" '$v')"; }

# state_get FILE KEY: the value (arrays and objects as JSON); dies when absent, naming
# the step to run first.
state_get() {
	local f v
	f="$(state_path "$1")"
	[[ -s "$f" ]] || die "$f is missing: run the step that writes $1.json first (make all runs them in order)"
	v="$(jq -r --arg k "$2" '.[$k] // empty | if type == "array" or type == "object" then tojson else tostring end' "$f")"
	[[ -n "$v" ]] || die "$2 is missing from $f: run the step that writes it first"
	printf '%s' "$v"
}

# state_opt FILE KEY: the value, or nothing.
state_opt() {
	local f
	f="$(state_path "$1")"
	[[ -s "$f" ]] || return 0
	jq -r --arg k "$2" '.[$k] // empty | if type == "array" or type == "object" then tojson else tostring end' "$f"
}

# env_set KEY VALUE: infra/out/<region>/env, then infra/out/.env.generated. Never a
# secret: those stay in Secrets Manager and reach the tasks as ECS secrets.
env_set() {
	local f="$REGION_DIR/env"
	touch "$f"
	{
		grep -v "^$1=" "$f" || true
		printf '%s=%s\n' "$1" "$2"
	} | sort >"$f.tmp"
	mv "$f.tmp" "$f"
	{
		printf '# Written by infra/NN_*.sh (last: %s): the %s deployment of %s.\n' "$STEP" "$REGION" "$PROJECT"
		printf '# Every region keeps its own copy in infra/out/<region>/env. No secrets here.\n'
		printf 'AWS_REGION=%s\n' "$REGION"
		cat "$f"
	} >"$OUT_DIR/.env.generated"
}

env_get() {
	local v
	v="$(sed -n "s/^$1=//p" "$REGION_DIR/env" 2>/dev/null | tail -n1)"
	[[ -n "$v" ]] || die "$1 is missing from $REGION_DIR/env: run the step that writes it first"
	printf '%s' "$v"
}

# ----------------------------------------------------------------------------- names

# Names every step agrees on (IAM names carry the region: IAM is global, the policies
# are not).
# shellcheck disable=SC2034 # used by the steps that source this file
{
NAME_CLUSTER="$PROJECT"
NAME_QUEUE="$PROJECT-commits.fifo"
NAME_DLQ="$PROJECT-commits-dlq.fifo"
NAME_TABLE="$PROJECT-holds"
NAME_REDIS="$PROJECT-redis"
NAME_DB="$PROJECT-db"
NAME_GLOBAL_DB="$PROJECT-global"
NAME_SECRET_ROOM="$PROJECT/room-token"
NAME_SECRET_REDIS="$PROJECT/redis"
NAME_SECRET_DB="$PROJECT/database"
NAME_SECRET_PAYMENT="$PROJECT/payment-webhook"
NAME_ALB="$PROJECT-alb"
NAME_TG="$PROJECT-edge"
IAM_PATH="/$PROJECT/"
}
iam_role_name() { printf '%s-%s-%s' "$PROJECT" "$REGION" "$1"; }
log_group() { printf '/ecs/%s/%s' "$PROJECT" "$1"; }
repo_name() { printf '%s/%s' "$PROJECT" "$1"; }

# A jq function: covers($want) is true when the input has every field of $want with the
# same value (arrays whole), so a describe answer can be compared with a put's input.
# shellcheck disable=SC2016 # jq, not shell
JQ_COVERS='def covers($want): . as $have
  | if ($want | type) == "object" then all($want | keys[]; . as $k | $have[$k] | covers($want[$k]))
    elif ($want | type) == "array" then ($have | length) == ($want | length)
      and all(range($want | length); . as $i | $have[$i] | covers($want[$i]))
    else . == $want end;'

# put_alarm STATE NAME SPEC_JSON: the CloudWatch alarm $PROJECT-NAME (put-metric-alarm
# fields), written only when ALARMS_JSON (the caller's describe-alarms answer) has no
# alarm that covers it; its name recorded in STATE.
put_alarm() {
	local name="$PROJECT-$2" spec
	spec="$(jq -c --arg n "$name" '{AlarmName: $n, TreatMissingData: "notBreaching"} + .' <<<"$3")"
	if jq -e --argjson want "$spec" "$JQ_COVERS"' any(.MetricAlarms[]; covers($want))' <<<"$ALARMS_JSON" >/dev/null; then
		exists "alarm $name"
	else
		awscli cloudwatch put-metric-alarm --cli-input-json "$spec" --tags "$(tags_kv "$name")"
		setting "alarm $name"
	fi
	state_set "$1" "alarm_$2" "$name"
}
