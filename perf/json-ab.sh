#!/usr/bin/env bash
# perf/json-ab.sh: instructions per parse of the edge's request bodies and the worker's
# commit message, serde_json against simd-json (issue 18: simd-json is a named
# dependency; measured, not assumed). Each of `perf/src/bin/json_ab.rs`'s modes runs under
# callgrind for N parses of one body; the `copy` mode (the fresh copy of the body that
# simd-json needs, since it parses in place) is subtracted from both, so the figures are
# the parse alone. Writes OUT_DIR/json-ab.md.
#
#   perf/json-ab.sh                 N (20000) OUT_DIR (perf/results) BUILD (1)
set -euo pipefail
NAME=json-ab
# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-20000}
OUT_DIR=${OUT_DIR:-perf/results}
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
[[ ${BUILD:-1} == 1 ]] && nice -n 10 cargo build --release -j2 -p perf --bin json_ab --features json-ab
cp "${CARGO_TARGET_DIR:-target}/release/json_ab" "$SCRATCH/"

# instructions MODE KIND: the whole run's instruction count.
instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$SCRATCH/out" "$SCRATCH/json_ab" "$1" "$2" "$N" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

mkdir -p "$OUT_DIR"
out=$OUT_DIR/json-ab.md
{
    echo "# JSON parsing: serde_json vs simd-json (callgrind)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(valgrind --version); $(rustc --version)"
    echo "- command: \`perf/json-ab.sh\` ($N parses of each body; the copy of the body each parse gets is subtracted)"
    echo "- simd-json $(sed -n '/^name = "simd-json"/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock) with its default features (runtime CPU detection); serde_json $(sed -n '/^name = "serde_json"/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock)"
    echo
    echo "| body | bytes | serde_json instructions/parse | simd-json instructions/parse | simd/serde |"
    echo "|---|---:|---:|---:|---:|"
} >"$out"
for kind in enter hold intent commit message; do
    base=$(instructions copy "$kind")
    serde=$(instructions serde "$kind")
    simd=$(instructions simd "$kind")
    bytes=$(grep -m 1 "^const ${kind^^}: &str" perf/src/bin/json_ab.rs | sed 's/^[^"]*"//; s/"#;$//' | wc -c)
    awk -v k="$kind" -v b="$((bytes - 1))" -v base="$base" -v s="$serde" -v m="$simd" -v n="$N" 'BEGIN {
        ps = (s - base) / n; pm = (m - base) / n
        printf "| %s | %d | %.0f | %.0f | %.2fx |\n", k, b, ps, pm, pm / ps }' >>"$out"
    log "$kind done"
done
cat "$out"
