#!/usr/bin/env bash
# Builds Strata (release) and runs a cluster of three nodes on one machine, on 127.0.0.1,
# 127.0.0.2 and 127.0.0.3 (the loopback range needs no set-up). Each node has every
# frontend on its default port on its own address (MQTT 1883, MQTT over WebSocket 8083,
# Kafka 9092, admin API 9180) and node-to-node RPC on 9190. Data goes to
# ./data/cluster/n<id>; the cluster secret is made once, in ./data/cluster/secret. Logs go
# to ./data/cluster/n<id>.log. Stops every node on Ctrl-C, or when one of them exits.
#
#   scripts/cluster.sh             # three nodes
#   NODES=5 scripts/cluster.sh     # 1 to 9 nodes
#   STRATA_BIN=path scripts/cluster.sh   # a binary already built
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
nodes="${NODES:-3}"
if ! [[ "$nodes" =~ ^[1-9]$ ]]; then
  echo "cluster.sh: NODES must be 1 to 9" >&2
  exit 2
fi
if [[ -z "${STRATA_BIN:-}" ]]; then
  "$root/scripts/install-deps.sh" --build
  cargo build --release --locked --manifest-path "$root/Cargo.toml" -p strata
  target="${CARGO_TARGET_DIR:-$root/target}"
  STRATA_BIN="$target/x86_64-unknown-linux-gnu/release/strata"
fi

dir="$PWD/data/cluster"
mkdir -p "$dir"
if [[ ! -s "$dir/secret" ]]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/secret")
fi
secret="$(cat "$dir/secret")"
voters=""
for i in $(seq 1 "$nodes"); do
  voters+="${voters:+, }\"$i@127.0.0.$i:9190\""
done

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait
}
trap stop INT TERM EXIT

for i in $(seq 1 "$nodes"); do
  host="127.0.0.$i"
  mkdir -p "$dir/n$i"
  cat > "$dir/n$i.toml" <<EOF
[node]
data_dir = "$dir/n$i"

[cluster]
node_id = $i
listen = "$host:9190"
initial_voters = [$voters]

[mqtt]
listen = "$host:1883"
ws_listen = "$host:8083"

[kafka]
listen = "$host:9092"

[admin]
listen = "$host:9180"

[agent]
listen = "$host:8090"
EOF
  # The secret goes in through the environment, not into the file.
  STRATA_CLUSTER__SECRET="$secret" "$STRATA_BIN" serve --config "$dir/n$i.toml" \
    >> "$dir/n$i.log" 2>&1 &
  pids+=("$!")
  echo "node $i: $host (Kafka $host:9092, MQTT $host:1883, agent http://$host:8090, admin http://$host:9180), log $dir/n$i.log"
done
echo "cluster of $nodes: strata admin --url http://127.0.0.1:9180 cluster nodes"
# Runs until Ctrl-C or until one node exits.
wait -n
echo "a node exited; stopping the others" >&2
