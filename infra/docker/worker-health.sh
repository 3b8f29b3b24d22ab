#!/bin/sh
# The worker container's health check: the worker process is alive (it serves no HTTP).
# It need not be PID 1: with ECS's initProcessEnabled, an init process is. busybox's
# pidof matches the process name.
exec pidof worker >/dev/null
