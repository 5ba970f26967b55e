#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer, the nightly toolchain), one after
# another, each for the same budget, growing the corpora in fuzz/corpus/<target> (kept in
# the repository), then minimizes each corpus. Prints one line per target: its runs and
# whether it ended clean. A crash stops the script with the reproducer in fuzz/artifacts.
#
#   scripts/fuzz.sh                 every target for 60 s
#   scripts/fuzz.sh 600             every target for 600 s
#   scripts/fuzz.sh -runs=10000000  every target for ten million inputs
#   TARGETS="mqtt_decode jwt_tokens" scripts/fuzz.sh -runs=1000000
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${1:-60}"
if [[ "$budget" == -runs=* ]]; then
  limit=("$budget")
else
  limit=("-max_total_time=$budget")
fi

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: installing the nightly toolchain (libFuzzer's instrumentation needs it)" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz@0.13.1 --locked
fi

cd fuzz
targets="${TARGETS:-$(cargo +nightly fuzz list)}"
for t in $targets; do
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- "${limit[@]}" -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $t FAILED (reproducer in fuzz/artifacts/$t)" >&2
    exit 1
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  cargo +nightly fuzz cmin "$t" "corpus/$t" >/dev/null 2>&1 || true
  files="$(find "corpus/$t" -type f | wc -l)"
  echo "fuzz: $t clean after ${runs:-?} runs; corpus $files files"
  rm -f "$log"
done
