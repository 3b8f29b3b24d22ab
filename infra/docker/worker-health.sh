#!/usr/bin/env bash
# The worker container's health check: the worker process is alive (it serves no HTTP).
# It need not be PID 1: with ECS's initProcessEnabled, an init process is.
set -euo pipefail
for comm in /proc/[0-9]*/comm; do
	if [[ "$(cat "$comm" 2>/dev/null)" == worker ]]; then
		exit 0
	fi
done
exit 1
