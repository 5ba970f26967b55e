#!/usr/bin/env python3
"""MQTT QoS 1 on one node and on a cluster of three, where the message store
(`mqtt.messages`) has three copies of each partition and a publish is acknowledged once two
of them have it: the same `strata bench mqtt` load against

  strata1   one node,
  strata3   three nodes on 127.0.0.1, .2 and .3 forming one cluster; every client
            connects to node 1, and the store's partitions are led where placement put
            them (with 4 partitions, half of them elsewhere: those appends are forwarded),

one after the other in each run, each started fresh in a temporary directory. Every node
is pinned to core 0 and the load generator to core 1; broker CPU-seconds are summed over
a setup's processes (/proc/PID/stat) and reported per million messages. Prints a Markdown
table of medians.

Usage: benches/mqtt_cluster.py [--runs N] [--messages N] [--clients N] [--strata PATH]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from journal import default_strata  # noqa: E402
from kafka import wait_line  # noqa: E402
import kafka_cluster  # noqa: E402
from kafka_cluster import free_port_on  # noqa: E402


class Setup(kafka_cluster.Setup):
    """One node, or three forming a cluster, with MQTT on; every process on core 0
    (`cpu` and `stop` as for the Kafka setups)."""

    # Not super().__init__(): that one starts the Kafka setups.
    def __init__(self, strata, size):
        self.tmp = tempfile.mkdtemp(prefix=f"mqtt-cluster-{size}-")
        self.procs = []
        hosts = [f"127.0.0.{i + 1}" for i in range(size)]
        rpc = [free_port_on(h) for h in hosts]
        voters = ", ".join(f'"{i + 1}@{h}:{p}"' for i, (h, p) in enumerate(zip(hosts, rpc)))
        self.mqtt = [free_port_on(h) for h in hosts]
        self.admin = []
        waits = []
        try:
            for i, host in enumerate(hosts):
                home = os.path.join(self.tmp, f"n{i + 1}")
                os.makedirs(home)
                cfg = os.path.join(home, "strata.toml")
                with open(cfg, "w") as f:
                    if size > 1:
                        f.write(f'[cluster]\nnode_id = {i + 1}\nlisten = "{host}:{rpc[i]}"\n'
                                f'initial_voters = [{voters}]\nsecret = "bench-cluster-secret-0123"\n')
                admin = free_port_on(host)
                self.admin.append(f"http://{host}:{admin}")
                env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
                env.update({"STRATA_AGENT__ENABLED": "false", "STRATA_KAFKA__ENABLED": "false",
                            "STRATA_NODE__DATA_DIR": os.path.join(home, "data"),
                            "STRATA_ADMIN__LISTEN": f"{host}:{admin}",
                            "STRATA_MQTT__LISTEN": f"{host}:{self.mqtt[i]}",
                            "STRATA_MQTT__WS_ENABLED": "false", "STRATA_LOG__LEVEL": "warn"})
                out = os.path.join(home, "out")
                with open(out, "a") as f:
                    proc = subprocess.Popen(["taskset", "-c", "0", strata, "serve", "--config", cfg],
                                            env=env, stdout=f, stderr=subprocess.STDOUT)
                self.procs.append(proc)
                waits.append((proc, out, f"admin listening on {host}:{admin}", f"node {i + 1}"))
            for proc, out, needle, what in waits:
                wait_line(proc, out, needle, what)
            self.wait_for_store(size)
        except BaseException:
            self.stop()
            raise

    def wait_for_store(self, size):
        """Until the message store is placed, with three copies in a cluster."""
        end = time.time() + 120
        while True:
            try:
                url = f"{self.admin[0]}/api/v1/cluster/leaders?stream=mqtt.messages"
                with urllib.request.urlopen(url, timeout=10) as r:
                    placed = json.loads(r.read())
                if placed and all(p["leader"] and len(p["replicas"]) == min(size, 3) and
                                  len(p["in_sync"]) == min(size, 3) for p in placed):
                    self.placement = placed
                    return
            except OSError:
                pass
            if time.time() > end:
                raise RuntimeError("the MQTT store was not placed in time")
            time.sleep(0.2)



def run(a, size):
    s = Setup(a.strata, size)
    try:
        before = s.cpu()
        out = subprocess.run(["taskset", "-c", "1", a.strata, "bench", "mqtt",
                              "--broker", f"127.0.0.1:{s.mqtt[0]}", "--scenario", "p2p", "--qos", "1",
                              "--clients", str(a.clients), "--messages", str(a.messages), "--json"],
                             check=True, capture_output=True, text=True).stdout
        cpu = s.cpu() - before
        r = json.loads(out.strip().splitlines()[-1])
        led = sum(p["leader"] == 1 for p in s.placement)
        return {"rate": r["msgs_per_s"], "cpu": cpu / r["received"] * 1e6 if r["received"] else 0,
                "p99": r["p99_us"], "lost": r["lost"],
                "led_by_1": f"{led}/{len(s.placement)}"}
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=200000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--strata")
    a = ap.parse_args()
    a.strata = a.strata or default_strata()
    results = {1: [], 3: []}
    for i in range(a.runs):
        for size in ((1, 3) if i % 2 == 0 else (3, 1)):
            r = run(a, size)
            results[size].append(r)
            print(f"run {i + 1} strata{size}: {r['rate']:.0f} msg/s, {r['cpu']:.2f} CPU-s/M, "
                  f"p99 {r['p99']} µs, lost {r['lost']}, store partitions led by node 1: "
                  f"{r['led_by_1']}", flush=True)
    med = {k: (statistics.median(r["rate"] for r in v), statistics.median(r["cpu"] for r in v),
               statistics.median(r["p99"] or 0 for r in v)) for k, v in results.items()}
    print("| setup | msg/s | broker CPU-s per M | p99 µs |")
    print("|---|---|---|---|")
    for k, (rate, cpu, p99) in med.items():
        print(f"| strata{k} | {rate:.0f} | {cpu:.2f} | {p99} |")
    print(f"strata3 / strata1: {med[3][0] / med[1][0]:.2f}x throughput, "
          f"{med[3][1] / med[1][1]:.2f}x CPU per message")


if __name__ == "__main__":
    main()
