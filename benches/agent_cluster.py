#!/usr/bin/env python3
"""The agent API on one node and on three: a work queue driven by benches/agentq (Go,
net/http: producers send 1 KiB messages, consumers fetch up to 100 and ack each, one
request per write, each waiting for its answer) against

  strata1        one Strata node (the same build), its state in its own store;
  strata3-owner  three nodes forming a cluster, the load sent to the node that serves the
                 agent API (the leader of the replicated `agent.state`);
  strata3-fwd    the same cluster, the load sent to another node, which forwards each
                 request to the owner;

and, on the cluster, the failover: SIGKILL of the serving node while a client sends one
message every 10 ms through a surviving node, timed from the kill to the first send
answered 2xx. Every server process is pinned to core 0, agentq to core 1; server
CPU-seconds are summed over the setup's processes and reported per million messages.
Each run starts every setup fresh. Prints Markdown tables of medians.

Usage: benches/agent_cluster.py [--runs N] [--messages N] [--strata PATH]
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agent_peers import AGENTQ, build_agentq  # noqa: E402
from kafka_cluster import Setup, free_port_on, prepare  # noqa: E402


def call(port, method, path, body=None, timeout=10):
    """(status, answer headers) of one request to the agent API on 127.0.0.1:`port`."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, None if body is None else json.dumps(body),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def owner(ports):
    """The index of the node serving the agent API (asking until one does)."""
    end = time.time() + 60
    while time.time() < end:
        try:
            status, headers = call(ports[0], "PUT", "/v1/queues/probe", {"storage": "local"})
        except OSError:
            status, headers = 0, {}
        if status in (200, 201):
            by = headers.get("x-strata-served-by")
            return 0 if by is None else int(by) - 1
        time.sleep(0.1)
    sys.exit("no node served the agent API")


def load(port, a):
    out = subprocess.run(["taskset", "-c", "1", AGENTQ, "-system", "strata",
                          "-addr", f"127.0.0.1:{port}", "-messages", str(a.messages),
                          "-producers", "4", "-consumers", "8", "-size", "1024",
                          "-queue", f"bench{time.time_ns()}"],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"agentq failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(s, port, a):
    cpu0 = s.cpu()
    r = load(port, a)
    r["cpu_s_per_m"] = (s.cpu() - cpu0) / r["messages"] * 1e6
    return r


def failover(s, ports, serving):
    """Seconds from the SIGKILL of the serving node to the first send answered 2xx
    through a surviving node."""
    via = ports[(serving + 1) % len(ports)]
    s.kill(serving)
    killed = time.time()
    while time.time() - killed < 60:
        try:
            status, _ = call(via, "POST", "/v1/queues/after/messages", {"body": "x"}, timeout=2)
            if status in (200, 201):
                return time.time() - killed
        except OSError:
            pass
        time.sleep(0.01)
    return float("inf")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--strata")
    a = p.parse_args()
    prepare(a, "agent-cluster-")
    build_agentq()
    results = {}
    for run in range(a.runs):
        for name in ("strata1", "strata3"):
            hosts = 1 if name == "strata1" else 3
            ports = [free_port_on("127.0.0.1") for _ in range(hosts)]
            a.node_env = lambda i, ports=ports: {
                "STRATA_AGENT__ENABLED": "true",
                "STRATA_AGENT__LISTEN": f"127.0.0.1:{ports[i]}",
                "STRATA_AGENT__STORAGE": "local",
                "STRATA_AGENT__MAX_QUEUE_DEPTH": "10000000"}
            s = Setup(name, a)
            try:
                serving = owner(ports)
                if name == "strata1":
                    results.setdefault("strata1", []).append(throughput(s, ports[0], a))
                else:
                    results.setdefault("strata3-owner", []).append(throughput(s, ports[serving], a))
                    fwd = ports[(serving + 1) % 3]
                    results.setdefault("strata3-fwd", []).append(throughput(s, fwd, a))
                    results.setdefault("failover", []).append(failover(s, ports, serving))
            finally:
                s.stop()
            print(f"run {run + 1}: {name} done", file=sys.stderr)
    print("| setup | msgs/s | server CPU-s per M msgs |\n|---|---|---|")
    for name in ("strata1", "strata3-owner", "strata3-fwd"):
        rs = results[name]
        print(f"| {name} | {statistics.median(r['msgs_per_sec'] for r in rs):,.0f} | "
              f"{statistics.median(r['cpu_s_per_m'] for r in rs):,.0f} |")
    times = results["failover"]
    print(f"\nfailover (SIGKILL of the serving node to the first send answered): median "
          f"{statistics.median(times):.2f} s, runs {', '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    main()
