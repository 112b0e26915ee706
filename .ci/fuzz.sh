#!/usr/bin/env bash
# Usage: .ci/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Builds the cargo-fuzz targets (fuzz/, nightly toolchain, AddressSanitizer) and runs
# each for SECONDS_PER_TARGET (default 60), starting from the committed seed corpus
# fuzz/corpus/<target> (read-only) and writing new inputs to target/fuzz-corpus/<target>
# (so the committed corpus only changes when you merge on purpose, see README). Prints
# each target's executions, executions per second and new inputs; exits non-zero on the
# first crash, leak, timeout or failed assertion (the input is saved under
# fuzz/artifacts/<target>/).
# Knobs: FUZZ_MAX_LEN (default 2048), FUZZ_JOBS (parallel processes per target, default 1),
#        FUZZ_RSS_MB (default 2048), FUZZ_SANITIZER (address (default), none: the build
#        takes 4-5 minutes on 2 cores instead of 10-11; CI's short runs use none, the
#        long runs by hand address), FUZZ_CODEGEN_UNITS (default 16: cargo-fuzz's own
#        default of 1 builds the whole library on one core, 14-15 minutes with ASan).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}; [ $# -gt 0 ] && shift
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2; exit 1; }
cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
# The same flags for build and run (different ones would rebuild).
flags=(--sanitizer "${FUZZ_SANITIZER:-address}" --codegen-units "${FUZZ_CODEGEN_UNITS:-16}")
echo "cargo fuzz build ${flags[*]}"
cargo +nightly fuzz build "${flags[@]}"
summary=()
for t in "${targets[@]}"; do
  out=../target/fuzz-corpus/$t
  mkdir -p "$out" "corpus/$t"
  log=../target/fuzz-$t.log
  echo "=== fuzz $t for ${secs}s (seed corpus: $(ls "corpus/$t" | wc -l) inputs) ==="
  if ! cargo +nightly fuzz run "${flags[@]}" "$t" "$out" "corpus/$t" -- \
      -max_total_time="$secs" -max_len="${FUZZ_MAX_LEN:-2048}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
      -timeout=30 -print_final_stats=1 ${FUZZ_JOBS:+-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS} \
      >"$log" 2>&1; then
    grep -v '^"' "$log" | tail -60
    echo "fuzz target $t FAILED (log: target/fuzz-$t.log)" >&2
    exit 1
  fi
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}')
  new=$(grep -m1 'stat::new_units_added' "$log" | awk '{print $2}')
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' || true)
  line="$t: ${execs:-?} executions in ${secs}s (${rate:-?}/s), ${new:-?} new inputs, $cov"
  echo "$line"
  summary+=("$line")
done
echo
echo "fuzzing passed:"
printf '  %s\n' "${summary[@]}"
