#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) and prints a summary line per
# target: executions and crashes. Exits non-zero if any target crashed.
#
#   cargo install cargo-fuzz --locked   # once
#   fuzz/run.sh 60                      # from anywhere
#
# Only the stable toolchain is installed here: RUSTC_BOOTSTRAP=1 lets it take the
# sanitizer flags cargo-fuzz passes. Seeds in corpus/<target>/ are read only; what the
# fuzzer finds goes to corpus-work/<target>/ and crashes to artifacts/<target>/ (both
# ignored by git).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
targets=(header verify verify_signed envelope scheme_standard scheme_github scheme_shopify scheme_slack)
export RUSTC_BOOTSTRAP=1

cargo fuzz build
status=0
for target in "${targets[@]}"; do
  mkdir -p "corpus-work/$target"
  log="corpus-work/$target.log"
  if cargo fuzz run "$target" "corpus-work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    crashes=0
  else
    crashes=1
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  echo "$target: ${runs} executions in ${seconds}s, crashes: ${crashes}"
  if [ "$crashes" != 0 ]; then
    tail -n 40 "$log"
  fi
done
exit "$status"
