#!/usr/bin/env bash
# The edge container's health check (Dockerfile HEALTHCHECK and the ECS task
# definition's healthCheck): GET PATH (default /public/health) on the edge's own port
# must answer 200. Bash's /dev/tcp, so the slim image needs no curl.
set -euo pipefail
path="${1:-/public/health}"
addr="${EDGE_ADDR:-0.0.0.0:8080}"
port="${addr##*:}"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS=' ' read -r -t 2 _ status _ <&3
[[ "$status" == 200 ]]
