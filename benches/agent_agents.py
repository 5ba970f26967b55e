#!/usr/bin/env python3
"""10,000 registered agents with mailboxes on one node: the node's memory per agent (its
card and its mailbox, a queue of three partitions holding one message), and one agent's
fetch latency before and after the others exist. The node runs on core 0 (local storage
class, the default without object storage), this script on core 1, one kept-alive
connection.

    python3 benches/agent_agents.py [--agents 10000] [--strata PATH]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from agent_latency import agent_config, free_port, pct, serve, wait_port  # noqa: E402
from journal import default_strata  # noqa: E402


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Http:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None, headers=None):
        self.c.request(method, path, body=None if body is None else json.dumps(body),
                       headers={"Content-Type": "application/json", **(headers or {})})
        r = self.c.getresponse()
        data = json.loads(r.read() or b"null")
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data}")
        return data


def fetch_latency(h, token, rounds=300):
    """p50/p99 (ms) of send to agent-0's mailbox, fetch it, ack it: each step timed."""
    fetches = []
    for i in range(rounds):
        h.call("POST", "/v1/agents/agent-0/mailbox/messages", {"body": {"n": i}})
        t = time.perf_counter()
        got = h.call("POST", "/v1/agents/agent-0/mailbox/fetch", {"max": 1},
                     {"X-Agent-Token": token})
        fetches.append(time.perf_counter() - t)
        for m in got["messages"]:
            h.call("POST", "/v1/agents/agent-0/mailbox/ack", {"lease": m["lease"]},
                   {"X-Agent-Token": token})
    return pct(fetches, 50), pct(fetches, 99)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=10000)
    ap.add_argument("--strata", default=None)
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {1})
    except (AttributeError, OSError):
        pass
    tmp = tempfile.mkdtemp(prefix="strata-agent-agents-")
    port = free_port()
    node = serve(args.strata or default_strata(), tmp, agent_config(tmp, port))
    try:
        wait_port(port, node, "strata")
        h = Http(port)
        token = h.call("POST", "/v1/agents", {"card": {"name": "agent-0"}})["token"]
        before_latency = fetch_latency(h, token)
        rss0, files0 = rss_mib(node.pid), open_files(node.pid)
        started = time.time()
        for i in range(1, args.agents):
            h.call("POST", "/v1/agents", {"card": {"name": f"agent-{i}", "tags": ["idle"],
                                                   "skills": [{"id": "wait"}]}})
            h.call("POST", f"/v1/agents/agent-{i}/mailbox/messages", {"body": {"hello": i}})
        made = time.time() - started
        time.sleep(2)
        rss1, files1 = rss_mib(node.pid), open_files(node.pid)
        after_latency = fetch_latency(h, token)
        listed = h.call("GET", "/v1/agents?tag=idle&max=1000")
        report = {
            "agents": args.agents, "seconds_to_make": round(made, 1),
            "rss_mib_before": round(rss0, 1), "rss_mib_after": round(rss1, 1),
            "kib_per_agent": round((rss1 - rss0) * 1024 / (args.agents - 1), 1),
            "open_files_before": files0, "open_files_after": files1,
            "fetch_p50_ms_before": round(before_latency[0], 3),
            "fetch_p99_ms_before": round(before_latency[1], 3),
            "fetch_p50_ms_after": round(after_latency[0], 3),
            "fetch_p99_ms_after": round(after_latency[1], 3),
            "listed_by_tag": len(listed["agents"]),
        }
        print(json.dumps(report))
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
