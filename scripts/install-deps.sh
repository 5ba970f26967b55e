#!/usr/bin/env bash
# Installs the system packages that building and testing Strata need, and nothing else.
# Idempotent: when every package is already installed it changes nothing and needs no root.
# With `--build`, only what building needs (libclang-dev): scripts/serve.sh uses that.
#
#   libclang-dev       bindgen, which generates RocksDB's bindings (strata-journal)
#   fio                raw-disk baselines that journal benchmarks are compared against
#   mosquitto-clients  mosquitto_pub / mosquitto_sub, real MQTT clients in the MQTT tests
#   kcat               Debian's Kafka CLI client (librdkafka 2.0), a real Kafka client
#   iptables           network partitions between nodes in the chaos harness (tests/chaos)
# and, outside apt: s3s-fs (a real S3-compatible server, from crates.io) and the Python MQTT
# and Kafka client libraries (from PyPI).
set -euo pipefail

packages=(libclang-dev fio mosquitto-clients kcat iptables)
build_only=false
if [ "${1:-}" = "--build" ]; then
  build_only=true
  packages=(libclang-dev)
fi

if ! command -v dpkg >/dev/null 2>&1; then
  echo "install-deps: no dpkg here (not Debian/Ubuntu); make sure these are installed: ${packages[*]}" >&2
  exit 0
fi

missing=()
for package in "${packages[@]}"; do
  # `dpkg -s` also succeeds for removed packages whose config files remain; check the status.
  if ! dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed$'; then
    missing+=("$package")
  fi
done

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

install_missing() {
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
}

if [ "$build_only" = true ]; then
  install_missing
  exit 0
fi

# A real S3-compatible server for the object storage tests (strata-tiered), built once per
# machine into ~/.cache/strata/tools (a few minutes; 0.15 and later need a newer rustc).
s3s_root="$HOME/.cache/strata/tools"
if [ ! -x "$s3s_root/bin/s3s-fs" ]; then
  echo "install-deps: building s3s-fs 0.14.1 into $s3s_root" >&2
  cargo install s3s-fs@0.14.1 --features binary --locked --root "$s3s_root"
fi

# Python packages the MQTT tests drive the broker with (real clients over TCP).
if ! python3 -c 'import paho.mqtt, pytest; assert paho.mqtt.__version__.startswith("2.")' 2>/dev/null; then
  echo "install-deps: installing paho-mqtt and pytest from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check "paho-mqtt==2.1.0" "pytest>=7"
fi

# Python Kafka clients the Kafka tests drive the broker with.
if ! python3 -c 'import confluent_kafka, kafka; assert confluent_kafka.version().startswith("2.16")' 2>/dev/null; then
  echo "install-deps: installing confluent-kafka and kafka-python from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check "confluent-kafka==2.16.0" "kafka-python==3.0.12"
fi

# PyJWT (with cryptography) signs the tokens the JWT tests connect with.
if ! python3 -c 'import jwt, cryptography; assert jwt.__version__ == "2.10.1"' 2>/dev/null; then
  echo "install-deps: installing PyJWT and cryptography from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check "PyJWT[crypto]==2.10.1"
fi

# schemathesis runs against the admin API's OpenAPI document.
if ! python3 -c 'import schemathesis; assert schemathesis.__version__ == "4.32.5"' 2>/dev/null; then
  echo "install-deps: installing schemathesis from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi

# httpx: what the Python SDK of the agent API (sdk/python) is built on.
if ! python3 -c 'import httpx; assert httpx.__version__ == "0.28.1"' 2>/dev/null; then
  echo "install-deps: installing httpx from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check "httpx==0.28.1"
fi

# The official MCP client (with httpx2), for the agent frontend's MCP endpoint tests.
if ! python3 -c 'import importlib.metadata as m; assert m.version("mcp") == "2.3.0"' 2>/dev/null; then
  echo "install-deps: installing mcp from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check "mcp==2.3.0"
fi

# The official A2A client, for the agent frontend's A2A gateway tests.
if ! python3 -c 'import importlib.metadata as m; assert m.version("a2a-sdk") == "1.3.0"' 2>/dev/null; then
  echo "install-deps: installing a2a-sdk from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check "a2a-sdk==1.3.0"
fi

# kafkajs from npm for the Kafka tests, into ~/.cache/strata/tools/node.
node_root="$HOME/.cache/strata/tools/node"
if command -v npm >/dev/null 2>&1 && [ ! -f "$node_root/node_modules/kafkajs/package.json" ]; then
  echo "install-deps: installing kafkajs 2.2.4 into $node_root" >&2
  mkdir -p "$node_root"
  (cd "$node_root" && npm install --silent --no-audit --no-fund kafkajs@2.2.4)
fi

# Apache Kafka 4.4 (the Java clients for the tests, the broker and tools for benchmarks).
"$(dirname "$0")/install-kafka.sh" >/dev/null

install_missing
