#!/usr/bin/env bash
# perf/identity-cost.sh: instructions per identity check (callgrind), against the HMAC
# room-token check every hold pays (`make identity-cost` is not a target: run it by hand).
#
# Runs perf's `identity_cost CHECK N` under `valgrind --tool=callgrind` twice, with N=0
# and N=$CHECKS, for each CHECK (room, hs256, es256, rs256), and divides the difference
# of the program totals by N, so key set-up and signing fall out. Writes
# OUT_DIR/identity-callgrind.md. RS256 uses a 2048-bit key from the openssl CLI.
#
#   CHECKS=2000 perf/identity-cost.sh
set -euo pipefail
NAME=identity-cost
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHECKS=${CHECKS:-2000}
OUT_DIR=${OUT_DIR:-perf/results}
BUILD=${BUILD:-1}
command -v valgrind >/dev/null || die "valgrind missing: apt-get install valgrind"
command -v openssl >/dev/null || die "openssl missing"

[[ $BUILD == 1 ]] && nice -n 10 cargo build --release -j2 -p perf --bin identity_cost
cp "${CARGO_TARGET_DIR:-target}/release/identity_cost" "$SCRATCH/"
openssl genrsa -out "$SCRATCH/rsa.pem" 2048 2>/dev/null
openssl rsa -in "$SCRATCH/rsa.pem" -traditional -outform DER -out "$SCRATCH/rsa.der" 2>/dev/null

# total CHECK N: the program's instruction count.
total() {
    valgrind --tool=callgrind --callgrind-out-file="$SCRATCH/cg.$1.$2" \
        "$SCRATCH/identity_cost" "$1" "$2" "$SCRATCH/rsa.der" >/dev/null 2>"$SCRATCH/vg.$1.$2.log"
    callgrind_annotate "$SCRATCH/cg.$1.$2" 2>/dev/null |
        awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}'
}

declare -A per
for check in room hs256 es256 rs256; do
    base=$(total "$check" 0)
    all=$(total "$check" "$CHECKS")
    per[$check]=$(((all - base) / CHECKS))
    log "$check: ${per[$check]} instructions a check"
done

mkdir -p "$OUT_DIR"
out=$OUT_DIR/identity-callgrind.md
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a / b}'; }
{
    echo "# Instructions per identity check (callgrind)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(valgrind --version); kernel $(uname -r)"
    echo "- command: \`CHECKS=$CHECKS perf/identity-cost.sh\` (perf/src/bin/identity_cost.rs, release build)"
    echo "- each figure: (instructions of N=$CHECKS checks - instructions of N=0) / $CHECKS, so"
    echo "  key set-up and signing are not counted"
    echo
    echo "| check | instructions | x room token |"
    echo "|---|---:|---:|"
    echo "| room token (HMAC-SHA256, \`edge::token::Keys::verify\`) | ${per[room]} | 1.0 |"
    for check in hs256 es256 rs256; do
        echo "| $check JWT (\`edge::identity::jwt::verify\`, iss + aud + exp checked) | ${per[$check]} | $(ratio "${per[$check]}" "${per[room]}") |"
    done
    echo
    echo "Valgrind's virtual CPU has no SHA-NI, so sha2 takes its portable path here (the"
    echo "room token and HS256 both pay it); ring's P-256 and RSA code uses the same"
    echo "instructions it would natively. Instruction counts ignore cache misses."
} >"$out"
log "wrote $out"
cat "$out"
