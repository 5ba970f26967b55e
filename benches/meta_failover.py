#!/usr/bin/env python3
"""Meta service failover with real processes: three `strata serve` nodes on 127.0.0.1, .2
and .3 form a cluster; the node leading the meta service is SIGKILLed; the time is taken
from the kill until (a) both survivors report the same new leader and (b) a meta write
through a survivor succeeds (`POST /api/v1/cluster/rebalance`, a Raft write through the
new leader, the path topic creation takes). The killed node is restarted and the next
round kills whoever leads then. Prints every round and the medians.

Usage: benches/meta_failover.py [--rounds 10] [--strata PATH]
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from journal import default_strata  # noqa: E402
from kafka_cluster import free_port_on as free_port  # noqa: E402

SECRET = "failover-bench-secret-0123"


def call(url, method="GET", timeout=5):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


class Node:
    def __init__(self, a, tmp, i, voters, cluster_port):
        self.i, self.host = i, f"127.0.0.{i}"
        self.home = os.path.join(tmp, f"n{i}")
        os.makedirs(self.home, exist_ok=True)
        self.admin_port = free_port(self.host)
        self.cfg = os.path.join(self.home, "strata.toml")
        with open(self.cfg, "w") as f:
            f.write(f'[cluster]\nnode_id = {i}\nlisten = "{self.host}:{cluster_port}"\n'
                    f'initial_voters = [{voters}]\nsecret = "{SECRET}"\n')
        self.a = a
        self.start()

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update({"STRATA_AGENT__ENABLED": "false", "STRATA_NODE__DATA_DIR": os.path.join(self.home, "data"),
                    "STRATA_ADMIN__LISTEN": f"{self.host}:{self.admin_port}",
                    "STRATA_MQTT__ENABLED": "false", "STRATA_KAFKA__LISTEN": f"{self.host}:0",
                    "STRATA_LOG__LEVEL": "warn"})
        self.log = open(os.path.join(self.home, "out"), "a")
        self.proc = subprocess.Popen([self.a.strata, "serve", "--config", self.cfg], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        end = time.time() + 60
        while True:
            try:
                call(self.url("cluster/nodes"), timeout=1)
                return
            except OSError:
                if time.time() > end or self.proc.poll() is not None:
                    raise RuntimeError(f"node {self.i} did not start")
                time.sleep(0.05)

    def url(self, path):
        return f"http://{self.host}:{self.admin_port}/api/v1/{path}"

    def leader(self):
        try:
            return call(self.url("cluster/nodes"), timeout=1)["leader"]
        except OSError:
            return None

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--strata", default=None)
    a = ap.parse_args()
    a.strata = a.strata or default_strata()
    tmp = tempfile.mkdtemp(prefix="meta-failover-")
    ports = {i: free_port(f"127.0.0.{i}") for i in (1, 2, 3)}
    voters = ", ".join(f'"{i}@127.0.0.{i}:{p}"' for i, p in ports.items())
    nodes = {}
    elected, written = [], []
    try:
        for i in (1, 2, 3):
            nodes[i] = Node(a, tmp, i, voters, ports[i])
        for r in range(a.rounds):
            end = time.time() + 60
            while True:
                seen = {n.leader() for n in nodes.values()}
                if len(seen) == 1 and None not in seen:
                    break
                assert time.time() < end, f"no agreed leader: {seen}"
                time.sleep(0.05)
            victim = nodes[seen.pop()]
            rest = [n for n in nodes.values() if n is not victim]
            killed = time.monotonic()
            victim.kill()
            t_elected = t_written = None
            while t_written is None:
                now = time.monotonic()
                assert now - killed < 60, "no failover within 60 s"
                if t_elected is None:
                    seen = {n.leader() for n in rest}
                    if len(seen) == 1 and None not in seen and victim.i not in seen:
                        t_elected = now - killed
                if t_elected is not None:
                    try:
                        call(rest[0].url("cluster/rebalance"), "POST", timeout=10)
                        t_written = time.monotonic() - killed
                    except OSError:
                        time.sleep(0.02)
                else:
                    time.sleep(0.01)
            elected.append(t_elected)
            written.append(t_written)
            print(f"round {r + 1}: killed node {victim.i}; new leader agreed after {t_elected:.2f} s, "
                  f"first write through a survivor after {t_written:.2f} s", file=sys.stderr)
            victim.start()
    finally:
        for n in nodes.values():
            n.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(elected)} rounds: new leader agreed, median {statistics.median(elected):.2f} s "
          f"(min {min(elected):.2f}, max {max(elected):.2f}); first write, median "
          f"{statistics.median(written):.2f} s (min {min(written):.2f}, max {max(written):.2f})")


if __name__ == "__main__":
    main()
