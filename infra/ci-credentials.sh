#!/usr/bin/env bash
# infra/ci-credentials.sh: in a GitHub Actions job with `id-token: write`, trades the
# job's OIDC token for an hour of AWS credentials of ROLE_ARN
# (sts:AssumeRoleWithWebIdentity) and hands them to the job's later steps through
# GITHUB_ENV, masked in the log. No AWS key is ever stored in the repository settings.
# Used by .github/workflows/cicd.yml; needs curl, jq and the AWS CLI (the runner's, or
# .run/venv's after `make deps`).
set -euo pipefail

die() {
	printf 'ci-credentials: %s\n' "$*" >&2
	exit 1
}
[[ -n "${ROLE_ARN:-}" ]] || die "ROLE_ARN is empty: set the repository variable AWS_DEPLOY_ROLE_ARN"
[[ -n "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" && -n "${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-}" ]] ||
	die "no OIDC token request in this job: it needs 'permissions: id-token: write'"
[[ -n "${GITHUB_ENV:-}" ]] || die "GITHUB_ENV is unset: run inside GitHub Actions"
aws=aws
command -v aws >/dev/null 2>&1 || aws="$(dirname "${BASH_SOURCE[0]}")/../.run/venv/bin/aws"

token="$(curl -fsS -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
	"$ACTIONS_ID_TOKEN_REQUEST_URL&audience=sts.amazonaws.com" | jq -r .value)"
[[ -n "$token" && "$token" != null ]] || die "GitHub gave no OIDC token"
echo "::add-mask::$token"
creds="$("$aws" sts assume-role-with-web-identity --role-arn "$ROLE_ARN" \
	--role-session-name "cicd-${GITHUB_RUN_ID:-local}-${GITHUB_RUN_ATTEMPT:-1}" \
	--web-identity-token "$token" --duration-seconds 3600 --output json)"
for pair in AWS_ACCESS_KEY_ID:AccessKeyId AWS_SECRET_ACCESS_KEY:SecretAccessKey AWS_SESSION_TOKEN:SessionToken; do
	value="$(jq -r ".Credentials.${pair#*:}" <<<"$creds")"
	[[ -n "$value" && "$value" != null ]] || die "no ${pair#*:} in the STS answer"
	echo "::add-mask::$value"
	printf '%s=%s\n' "${pair%%:*}" "$value" >>"$GITHUB_ENV"
done
printf 'ci-credentials: assumed %s until %s\n' "$ROLE_ARN" "$(jq -r .Credentials.Expiration <<<"$creds")"
