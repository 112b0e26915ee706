#!/bin/sh
# Thread scaling of tokenroute on this machine, in one self-contained command:
#
#     benches/scaling.sh OUT_DIR [THREADS]
#
# Needs only cargo and a C compiler (cc). Builds the library and the bench command in
# release mode, checks bit-identity across thread counts through the C header
# (ffi-tests/c/parallel.c), then runs the bench command once with every thread count
# (default 1,2,4,8,16, capped to the cores present), the best ISA level timed, every
# level checked: every case at every count, checked bit-exact against the
# single-threaded scalar output, against read/copy/FMA ceilings measured with as many
# threads. Writes into OUT_DIR:
#   bench.json     the full results (benches/bench/schema.json)
#   bench.txt      the bench command's table
#   summary.txt    speedup, parallel efficiency and % of ceiling per case and count
#   parallel_c.txt the C check's output
#   machine.txt    CPU, cores, memory, compiler versions
# About 5 minutes on a 16-core machine. SCALING_BENCH_ARGS passes more options to the
# bench command (e.g. "--quick --filter attend").
set -eu
out=${1:?usage: benches/scaling.sh OUT_DIR [THREADS]}
threads=${2:-1,2,4,8,16}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
unset TOKENROUTE_NUM_THREADS TOKENROUTE_ISA TOKENROUTE_ISA_MAX || true

cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
# Keep the counts this machine has (always 1).
list=$(echo "$threads" | tr ',' '\n' | awk -v c="$cores" '$1 == 1 || $1 <= c' | paste -sd, -)

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cores: $cores"
    grep -m1 'model name' /proc/cpuinfo 2>/dev/null || true
    grep MemTotal /proc/meminfo 2>/dev/null || true
    cargo --version
    cc --version 2>/dev/null | head -1 || true
    echo "git: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "threads: $list"
} > "$out/machine.txt"
cat "$out/machine.txt"

echo "== building (release)"
cargo build --release --lib -p tokenroute
cargo build --release -p tokenroute-bench

echo "== bit-identity across thread counts through the C header"
cc -std=c11 -O1 -Wall -Wextra -pedantic -Iinclude ffi-tests/c/parallel.c \
    target/release/libtokenroute.a -lpthread -ldl -lm -o "$out/parallel_c"
: > "$out/parallel_c.txt"
target/release/tokenroute-bench --levels | while read -r name id; do
    TOKENROUTE_ISA=$name TKR_EXPECT_ISA=$id "$out/parallel_c" >> "$out/parallel_c.txt" 2>&1 || {
        cat "$out/parallel_c.txt"; echo "the C check FAILED on $name"; exit 1; }
done
cat "$out/parallel_c.txt"
rm -f "$out/parallel_c"

echo "== bench command at threads $list"
# shellcheck disable=SC2086
target/release/tokenroute-bench --best-only --threads "$list" --json "$out/bench.json" \
    ${SCALING_BENCH_ARGS:-} \
    | tee "$out/bench.txt"
target/release/tokenroute-bench --summary "$out/bench.json" | tee "$out/summary.txt"
echo "== wrote $out"
