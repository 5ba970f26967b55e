#!/usr/bin/env bash
# Builds Strata (release) and runs one node with every frontend on its default port: MQTT
# 1883, MQTT over WebSocket 8083, Kafka 9092, the agent API on 127.0.0.1:8090, the admin API
# on 127.0.0.1:9180. Data goes to
# ./data under the directory it is started from. Installs first what the build needs
# (libclang for RocksDB's bindings), idempotently. Extra arguments go to `strata serve`,
# e.g. `scripts/serve.sh --config strata.toml`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install-deps.sh" --build

exec cargo run --release --locked --manifest-path "$root/Cargo.toml" -p strata -- serve "$@"
