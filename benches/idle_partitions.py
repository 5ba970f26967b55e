#!/usr/bin/env python3
"""Idle partitions: what 1,000 partitions with three copies each cost three nodes that
have nothing to do, side by side on

  strata3   three Strata nodes on 127.0.0.1, .2 and .3 forming one cluster,
  kafka3    three Apache Kafka 4.4.0 brokers on the same addresses (KRaft, each broker and
            controller),

one after the other in the same run (benches/kafka_cluster.py starts them; brokers on
core 0). Each setup creates one topic of --partitions partitions with three copies, waits
until every partition has all three replicas in sync (Metadata's ISR), lets it settle for
--settle seconds, then measures each broker process's CPU time over --seconds seconds
(/proc/PID/stat) and its resident memory at the end (/proc/PID/status VmRSS).

Usage: benches/idle_partitions.py [--partitions N] [--seconds S] [--setups strata3,kafka3]
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kafka import cpu_seconds, tool  # noqa: E402
from kafka_cluster import Setup, prepare  # noqa: E402
from meta_topics import rss_mib  # noqa: E402

from confluent_kafka.admin import AdminClient  # noqa: E402

TOPIC = "idle"




def all_in_sync(bootstrap, partitions):
    t = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(
        TOPIC, timeout=10).topics.get(TOPIC)
    if t is None or t.error is not None or len(t.partitions) != partitions:
        return False
    return all(p.leader >= 0 and len(p.isrs) == 3 for p in t.partitions.values())


def measure(a, name):
    s = Setup(name, a)
    try:
        tool(a, f"{name} kafka-topics", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
             s.bootstrap, "--create", "--topic", TOPIC, "--partitions", str(a.partitions),
             "--replication-factor", "3")
        end = time.monotonic() + 600
        started = time.monotonic()
        while not all_in_sync(s.bootstrap, a.partitions):
            if time.monotonic() > end:
                raise TimeoutError(f"{name}: partitions not all in sync after 600 s")
            time.sleep(1)
        ready = time.monotonic() - started
        time.sleep(a.settle)
        before = [cpu_seconds(p.pid) for p in s.procs]
        time.sleep(a.seconds)
        after = [cpu_seconds(p.pid) for p in s.procs]
        rows = [(i + 1, (c1 - c0) / a.seconds * 100, rss_mib(p.pid))
                for i, (c0, c1, p) in enumerate(zip(before, after, s.procs))]
        return ready, rows
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--settle", type=float, default=15)
    ap.add_argument("--setups", default="strata3,kafka3")
    ap.add_argument("--strata", default=None)
    ap.add_argument("--java", default="java")
    ap.add_argument("--timeout", type=int, default=600)
    a = ap.parse_args()
    a.replication = 3
    logdir = prepare(a, "idle-log4j-")
    results = {}
    try:
        for name in a.setups.split(","):
            results[name] = measure(a, name)
            print(f"{name}: {results[name]}", file=sys.stderr)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    print(f"{a.partitions} idle partitions with three copies on three nodes: CPU over {a.seconds:.0f} s "
          f"(after {a.settle:.0f} s settling) and resident memory, per node:")
    print()
    print("| setup | all in sync after s | node | CPU % of a core | RSS MiB |")
    print("|---|---|---|---|---|")
    for name, (ready, rows) in results.items():
        for node, cpu, rss in rows:
            print(f"| {name} | {ready:.0f} | {node} | {cpu:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
