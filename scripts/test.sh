#!/usr/bin/env bash
# Runs every test in the workspace, first installing the system packages the tests need.
# Works from any directory. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh -- --nocapture
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh

# One target directory outside the checkout, shared by every worktree: RocksDB's C++ takes
# minutes to build, so it should be built once per machine, not once per clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata/target}"

# Keep cargo's output as it is and end with one line totalling every test binary's result,
# so the last line speaks for the whole run (cargo's own last line is the doc-test binary's).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?

# Protocol tests with real client libraries against a real `strata serve` (the debug
# binary cargo test just built).
if [ "$status" -eq 0 ]; then
  cargo build --locked -p strata
  python3 -m pytest -q tests 2>&1 | tee -a "$log" || status=$?
fi

awk '
  /^test result:/ { passed += $4; failed += $6 }
  /^[0-9]+ (passed|failed).* in [0-9.]+s/ {
    for (i = 1; i <= NF; i++) {
      if ($(i) ~ /^passed/) passed += $(i - 1)
      if ($(i) ~ /^failed/) failed += $(i - 1)
    }
  }
  END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
