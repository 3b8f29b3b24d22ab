#!/usr/bin/env bash
# 07: the CloudFront distribution in front of the regions' ALBs. CloudFront is global:
# one distribution for the project (found again by its comment "$PROJECT"), which every
# region's run of this step converges to the same configuration, built from the ALBs
# that exist in REGIONS (asked of each region's API, so a region's run needs no other
# region's infra/out).
#
#   writes     everything that changes state (/confirm/*, /public/enter, hold, release,
#              the room's reads) goes to PRIMARY_REGION's ALB only: the region that
#              holds the database's writer and the Redis that holds the seats
#   seat reads /public/summary/* and /public/seats/* (GET) go to an origin group: the
#              primary's ALB, and on a 500/502/503/504 or a connection failure the
#              first standby region's ALB (CloudFront fails over GET, HEAD and OPTIONS
#              requests only; these behaviours allow nothing else)
#   /public/*  managed cache policy UseOriginCacheControlHeaders-QueryStrings: the edge's
#              Cache-Control decides (summary and seat maps carry a short s-maxage, the
#              rest no-store), query strings in the cache key; compression (gzip, brotli)
#   default    (/confirm/* and the rest) managed cache policy CachingDisabled
#   all        managed origin request policy AllViewerExceptHostHeader (x-room-token,
#              Idempotency-Key, query strings reach the edge); HTTPS to viewers (HTTP
#              redirected); HTTP/2 and HTTP/3
#   errors     500, 502, 503, 504 cached for 0 s (CloudFront's default is 10 s, which
#              would repeat a 503 + Retry-After to every buyer for 10 s)
#   origins    the ALBs over HTTP (HTTPS with ALB_CERT_ARN: set it in every region),
#              keep-alive 50 s, below the ALB's 60 s idle timeout
#
# Managed policies are referenced by their fixed ids (no cache-policy API calls, which
# moto's server lacks). Creating or changing a distribution takes CloudFront 5-15 minutes
# to deploy; this step does not wait for it. Writes infra/out/<region>/cloudfront.json.
#
# Environment: CF_PRICE_CLASS (PriceClass_200: includes Japan and Korea).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CF_PRICE_CLASS="${CF_PRICE_CLASS:-PriceClass_200}"
# Managed policy ids (the same in every account).
CACHE_USE_ORIGIN_HEADERS_QS=4cc15a8a-d715-48a4-82b8-cc0b614638fe # UseOriginCacheControlHeaders-QueryStrings
CACHE_DISABLED=4135ea2d-6df8-44a3-9df3-4b5a84be39ad              # CachingDisabled
ORIGIN_ALL_VIEWER_EXCEPT_HOST=b689b0a8-53d0-40ab-baf2-68738e2966ac # AllViewerExceptHostHeader

origin_protocol=http-only
[[ "$(state_get network listenerPort)" == 443 ]] && origin_protocol=https-only
comment="$PROJECT"

# The ALBs, the primary's first: [{region, dns}].
albs="[]"
for r in "$PRIMARY_REGION" "${ALL_REGIONS[@]}"; do
	jq -e --arg r "$r" 'any(.[]; .region == $r)' <<<"$albs" >/dev/null && continue
	if lb="$(aws_try_in "$r" elbv2 describe-load-balancers --names "$NAME_ALB")"; then
		albs="$(jq -c --arg r "$r" --argjson lb "$lb" '. + [{region: $r, dns: $lb.LoadBalancers[0].DNSName}]' <<<"$albs")"
	else
		aws_not_found || die "describe-load-balancers in $r: $(aws_error)"
	fi
done
[[ "$(jq -r '.[0].region // empty' <<<"$albs")" == "$PRIMARY_REGION" ]] ||
	die "no ALB $NAME_ALB in $PRIMARY_REGION, which takes every write: run 05 there first"

desired="$(jq -cn --arg ref "$PROJECT" --arg comment "$comment" --argjson albs "$albs" \
	--arg proto "$origin_protocol" --arg price "$CF_PRICE_CLASS" --arg public "$CACHE_USE_ORIGIN_HEADERS_QS" \
	--arg disabled "$CACHE_DISABLED" --arg orp "$ORIGIN_ALL_VIEWER_EXCEPT_HOST" '
($albs | map("alb-" + .region)) as $ids
| (if ($ids | length) > 1 then "seat-reads" else $ids[0] end) as $reads
| def all_methods: {Quantity: 7, Items: ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"],
                    CachedMethods: {Quantity: 2, Items: ["GET", "HEAD"]}};
def read_methods: {Quantity: 3, Items: ["GET", "HEAD", "OPTIONS"], CachedMethods: {Quantity: 2, Items: ["GET", "HEAD"]}};
def behaviour($cache; $origin; $methods): {
  TargetOriginId: $origin,
  ViewerProtocolPolicy: "redirect-to-https",
  AllowedMethods: $methods,
  Compress: true,
  CachePolicyId: $cache,
  OriginRequestPolicyId: $orp,
  SmoothStreaming: false,
  FieldLevelEncryptionId: "",
  LambdaFunctionAssociations: {Quantity: 0},
  FunctionAssociations: {Quantity: 0}
};
{
  CallerReference: $ref,
  Comment: $comment,
  Enabled: true,
  HttpVersion: "http2and3",
  IsIPV6Enabled: true,
  PriceClass: $price,
  DefaultRootObject: "",
  Aliases: {Quantity: 0},
  Origins: {Quantity: ($albs | length), Items: [$albs[] | {
    Id: ("alb-" + .region),
    DomainName: .dns,
    OriginPath: "",
    CustomHeaders: {Quantity: 0},
    CustomOriginConfig: {
      HTTPPort: 80, HTTPSPort: 443, OriginProtocolPolicy: $proto,
      OriginSslProtocols: {Quantity: 1, Items: ["TLSv1.2"]},
      OriginReadTimeout: 30, OriginKeepaliveTimeout: 50
    },
    ConnectionAttempts: 3,
    ConnectionTimeout: 10
  }]},
  OriginGroups: (if ($ids | length) > 1 then {Quantity: 1, Items: [{
    Id: "seat-reads",
    FailoverCriteria: {StatusCodes: {Quantity: 4, Items: [500, 502, 503, 504]}},
    Members: {Quantity: 2, Items: [$ids[0:2][] | {OriginId: .}]}
  }]} else {Quantity: 0} end),
  DefaultCacheBehavior: behaviour($disabled; $ids[0]; all_methods),
  CacheBehaviors: {Quantity: 3, Items: [
    (behaviour($public; $reads; read_methods) + {PathPattern: "/public/summary/*"}),
    (behaviour($public; $reads; read_methods) + {PathPattern: "/public/seats/*"}),
    (behaviour($public; $ids[0]; all_methods) + {PathPattern: "/public/*"})]},
  CustomErrorResponses: {Quantity: 4, Items: [500, 502, 503, 504 | {ErrorCode: ., ErrorCachingMinTTL: 0}]},
  Restrictions: {GeoRestriction: {RestrictionType: "none", Quantity: 0}},
  ViewerCertificate: {CloudFrontDefaultCertificate: true}
}')"

# Every field we set, with the value we set (the service adds defaults of its own).
# Lists of plain values (methods, SSL protocols) are sets, which CloudFront returns in
# its own order (CachedMethods as HEAD, GET), so they are compared sorted; so are the
# error responses, by code. Other lists keep their order: cache behaviours' is their
# precedence.
# shellcheck disable=SC2016 # jq, not shell
JQ_COVERS='def covers($want): . as $have
  | if ($want | type) == "object" then all($want | keys[]; . as $k | $have[$k] | covers($want[$k]))
    elif ($want | type) == "array" and all($want[]; type != "object" and type != "array") then
      ($have | type) == "array" and ($have | sort) == ($want | sort)
    elif ($want | type) == "array" then ($have | length) == ($want | length)
      and all(range($want | length); . as $i | $have[$i] | covers($want[$i]))
    else . == $want end;
def errors_by_code: if .CustomErrorResponses.Items then .CustomErrorResponses.Items |= sort_by(.ErrorCode) else . end;'

dist_id="$(awscli cloudfront list-distributions |
	jq -r --arg c "$comment" '.DistributionList.Items[]? | select(.Comment == $c) | .Id' | head -n1)"
if [[ -z "$dist_id" ]]; then
	dist="$(awscli cloudfront create-distribution-with-tags --distribution-config-with-tags \
		"$(jq -cn --argjson d "$desired" --argjson t "$(tags_kv "$PROJECT")" '{DistributionConfig: $d, Tags: {Items: $t}}')" |
		jq -c .Distribution)"
	dist_id="$(jq -r .Id <<<"$dist")"
	created "cloudfront distribution $dist_id ($comment -> $(jq -r 'map(.region) | join(", ")' <<<"$albs"))"
else
	current="$(awscli cloudfront get-distribution-config --id "$dist_id")"
	if jq -e --argjson want "$desired" "$JQ_COVERS"' .DistributionConfig | errors_by_code | covers($want | errors_by_code)' <<<"$current" >/dev/null; then
		exists "cloudfront distribution $dist_id ($comment)"
	else
		awscli cloudfront update-distribution --id "$dist_id" --if-match "$(jq -r .ETag <<<"$current")" \
			--distribution-config "$desired" >/dev/null
		updated "cloudfront distribution $dist_id ($comment): configuration converged (origins: $(jq -r 'map(.region) | join(", ")' <<<"$albs"))"
	fi
	dist="$(awscli cloudfront get-distribution --id "$dist_id" | jq -c .Distribution)"
fi
domain="$(jq -r .DomainName <<<"$dist")"
state_set cloudfront distributionId "$dist_id"
state_set cloudfront domainName "$domain"
env_set CLOUDFRONT_DOMAIN "$domain"
log "done: https://$domain -> $(jq -r 'map(.dns) | join(", ")' <<<"$albs") (status $(jq -r .Status <<<"$dist"); deployment takes CloudFront 5-15 minutes) -> $(state_path cloudfront)"
