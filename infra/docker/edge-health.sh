#!/bin/sh
# The edge container's health check (the Dockerfile's HEALTHCHECK and the ECS task
# definition's healthCheck): GET PATH (default /public/health) on the edge's own port
# must answer 200. The image's busybox wget exits 1 on any other status; -Y off: a
# proxy in the task's environment must not answer for the edge. No -T: busybox 1.35's
# wget crashes with it (SIGSEGV); HEALTHCHECK's and ECS's timeout bound the check.
set -eu
path="${1:-/public/health}"
addr="${EDGE_ADDR:-0.0.0.0:8080}"
port="${addr##*:}"
exec wget -q -Y off -O /dev/null "http://127.0.0.1:$port$path"
