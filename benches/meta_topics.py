#!/usr/bin/env python3
"""Meta operations at scale: three Strata nodes on 127.0.0.1, .2 and .3 (as
benches/kafka_cluster.py starts them); 1,000 topics of 6 partitions are created through
Kafka's CreateTopics (confluent-kafka's AdminClient, batches of --batch topics, each batch
waited for), then the time until every node's metadata lists all of them. Reports the
creation time and each node's resident memory (VmRSS) and meta store size before and after.

Usage: benches/meta_topics.py [--topics 1000] [--partitions 6] [--batch 50] [--strata PATH]
"""
import argparse
import os
import subprocess
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from journal import default_strata  # noqa: E402
from kafka_cluster import Setup  # noqa: E402


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def du_mib(path):
    out = subprocess.run(["du", "-sk", path], capture_output=True, text=True).stdout.split()
    return int(out[0]) / 1024 if out else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--strata", default=None)
    a = ap.parse_args()
    a.strata = a.strata or default_strata()
    s = Setup("strata3", a)
    try:
        metas = [os.path.join(s.tmp, f"n{i}", "data", "meta") for i in (1, 2, 3)]
        before = [(rss_mib(p.pid), du_mib(m)) for p, m in zip(s.procs, metas)]
        admin = AdminClient({"bootstrap.servers": s.bootstrap})
        names = [f"t{i:05d}" for i in range(a.topics)]
        started = time.monotonic()
        for i in range(0, len(names), a.batch):
            futures = admin.create_topics([NewTopic(n, a.partitions, 1) for n in names[i:i + a.batch]],
                                          operation_timeout=60)
            for f in futures.values():
                f.result(120)
        created = time.monotonic() - started
        hosts = s.bootstrap.split(",")
        for h in hosts:
            c = AdminClient({"bootstrap.servers": h})
            while len([t for t in c.list_topics(timeout=60).topics if t.startswith("t")]) < a.topics:
                time.sleep(0.1)
        everywhere = time.monotonic() - started
        after = [(rss_mib(p.pid), du_mib(m)) for p, m in zip(s.procs, metas)]
    finally:
        s.stop()
    print(f"{a.topics} topics x {a.partitions} partitions through CreateTopics in batches of {a.batch}: "
          f"{created:.1f} s ({a.topics / created:.0f} topics/s); listed by every node after {everywhere:.1f} s")
    print()
    print("| node | RSS before MiB | RSS after MiB | meta store before MiB | meta store after MiB |")
    print("|---|---|---|---|---|")
    for i, ((r0, m0), (r1, m1)) in enumerate(zip(before, after)):
        print(f"| {i + 1} | {r0:.0f} | {r1:.0f} | {m0:.1f} | {m1:.1f} |")


if __name__ == "__main__":
    main()
