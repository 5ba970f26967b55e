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

cargo test --workspace --locked "$@"
