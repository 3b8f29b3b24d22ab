#!/usr/bin/env bash
# Installs shellcheck (Debian package) where it is missing: make lint-sh and
# make infra-test call it. Needs root or sudo.
set -euo pipefail
command -v shellcheck >/dev/null 2>&1 && exit 0
sudo=()
[[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
echo "installing shellcheck (apt)" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends shellcheck >/dev/null
