#!/usr/bin/env bash
# edge/fuzz/run.sh SECONDS [TARGET...]: runs each fuzz target (all by default) for
# SECONDS with libFuzzer, from the committed seeds (edge/fuzz/seeds/TARGET) and a working
# corpus under .run/fuzz/TARGET (kept between runs, git-ignored). A crash fails the run
# and leaves its input in .run/fuzz/artifacts/TARGET/. `make fuzz` runs it long,
# `make test` a few seconds a target, so a new crash fails CI.
#
# cargo-fuzz is installed from crates.io when missing. libFuzzer builds need nightly
# flags: the nightly toolchain when installed, else stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
FUZZ="$ROOT/edge/fuzz"
SECONDS_EACH=${1:?usage: run.sh SECONDS [TARGET...]}
shift
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(http_head json_bodies resp_replies room_token commit_message identity)

log() { printf 'fuzz: %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
	log "installing cargo-fuzz (crates.io)"
	cargo install cargo-fuzz --locked --quiet
fi
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
	toolchain=(+nightly)
else
	log "no nightly toolchain: stable with RUSTC_BOOTSTRAP=1"
	export RUSTC_BOOTSTRAP=1
fi

cd "$FUZZ"
log "building the targets (the first build takes minutes)"
cargo "${toolchain[@]}" fuzz build

for t in "${TARGETS[@]}"; do
	corpus="$ROOT/.run/fuzz/$t"
	artifacts="$ROOT/.run/fuzz/artifacts/$t/"
	mkdir -p "$corpus" "$artifacts"
	log "$t: ${SECONDS_EACH}s"
	cargo "${toolchain[@]}" fuzz run "$t" "$corpus" "$FUZZ/seeds/$t" -- \
		-max_total_time="$SECONDS_EACH" -artifact_prefix="$artifacts" -print_final_stats=1 \
		2>"$ROOT/.run/fuzz/$t.log" || {
		tail -n 30 "$ROOT/.run/fuzz/$t.log" >&2
		log "$t: FAILED (input in $artifacts)"
		exit 1
	}
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$ROOT/.run/fuzz/$t.log")
	log "$t: ${runs:-?} inputs, no crash"
done
