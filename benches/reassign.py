#!/usr/bin/env python3
"""Moving a partition's leader copy to another node, under writes, side by side:

  strata4   four Strata nodes on 127.0.0.1-.4 (one cluster),
  kafka4    four Apache Kafka 4.4.0 brokers on 127.0.0.1-.4 (KRaft, four voters,
            min.insync.replicas=2),

one after the other in the same run, each started fresh. A topic of one partition with
three copies is loaded with --records records of --size bytes (acks=all); then a paced
kafka-producer-perf-test (acks=all) writes while Apache Kafka's own
kafka-reassign-partitions moves the leader's copy to the node without one. Measured: the
move's time from the tool's start until Metadata lists the new replicas all in sync
(polled every 50 ms with confluent-kafka), the paced producer's p99 and maximum latency
over the whole run (the move inside it) and whether it failed a record, and the brokers'
CPU-seconds during the move. Brokers are pinned to core 0, the tools to core 1.
Prints a Markdown table of medians.

Usage: benches/reassign.py [--runs N] [--records N] [--size BYTES] [--throughput REC_PER_S]
                           [--setups strata4,kafka4] [--strata PATH]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from confluent_kafka.admin import AdminClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kafka import PRODUCE, java, tool  # noqa: E402
from kafka_cluster import Setup, prepare  # noqa: E402

TOPIC = "moving"


def partition(admin):
    t = admin.list_topics(TOPIC, timeout=10).topics.get(TOPIC)
    return t.partitions.get(0) if t is not None and t.error is None else None


def wait(what, ok, deadline=300):
    end = time.time() + deadline
    while not ok():
        if time.time() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run(a, s, label):
    admin = AdminClient({"bootstrap.servers": s.bootstrap, "log_level": 0})
    tool(a, f"{label} kafka-topics", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", s.bootstrap,
         "--create", "--topic", TOPIC, "--partitions", "1", "--replication-factor", "3")
    wait("the partition in sync", lambda: (p := partition(admin)) is not None and p.leader > 0
         and len(p.isrs) == 3)
    tool(a, f"{label} load", "org.apache.kafka.tools.ProducerPerformance", "--topic", TOPIC,
         "--num-records", str(a.records), "--record-size", str(a.size), "--throughput", "-1",
         "--command-property", f"bootstrap.servers={s.bootstrap}", "acks=all", "linger.ms=5")
    wait("the copies to catch up", lambda: len(partition(admin).isrs) == 3)
    before = partition(admin)
    spare = next(i for i in range(1, a.nodes + 1) if i not in before.replicas)
    target = [spare] + [r for r in before.replicas if r != before.leader]
    plan = os.path.join(s.tmp, "plan.json")
    with open(plan, "w") as f:
        json.dump({"version": 1, "partitions": [{"topic": TOPIC, "partition": 0, "replicas": target}]}, f)
    # The paced writer runs 2 s before the move and as long as --paced-seconds in all.
    paced = subprocess.Popen(
        ["taskset", "-c", "1"] + java(a, "-Xmx512m", "org.apache.kafka.tools.ProducerPerformance",
                                      "--topic", TOPIC, "--num-records", str(a.throughput * a.paced_seconds),
                                      "--record-size", str(a.size), "--throughput", str(a.throughput),
                                      "--command-property", f"bootstrap.servers={s.bootstrap}", "acks=all",
                                      "linger.ms=5"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    cpu0, t0 = s.cpu(), time.time()
    tool(a, f"{label} reassign", "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
         "--bootstrap-server", s.bootstrap, "--reassignment-json-file", plan, "--execute")
    wait("the move to end", lambda: (p := partition(admin)) is not None and list(p.replicas) == target
         and sorted(p.isrs) == sorted(target) and p.leader in target)
    moved, cpu1 = time.time() - t0, s.cpu()
    out, err = paced.communicate(timeout=a.paced_seconds * 4 + 120)
    m = list(PRODUCE.finditer(out))
    if not m or paced.returncode != 0:
        raise RuntimeError(f"{label}: no summary from the paced producer:\n{out[-2000:]}\n{err[-2000:]}")
    m = m[-1]
    return dict(move_s=moved, cpu=cpu1 - cpu0, sent=int(m[1]), p99=int(m[8]), max=float(m[5]),
                expected=a.throughput * a.paced_seconds, errors=err.count("ERROR"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--throughput", type=int, default=2000, help="records/s of the paced producer")
    ap.add_argument("--paced-seconds", type=int, default=20)
    ap.add_argument("--setups", default="strata4,kafka4")
    ap.add_argument("--strata", default=None)
    ap.add_argument("--java", default="java")
    ap.add_argument("--timeout", type=int, default=600)
    a = ap.parse_args()
    a.nodes, a.replication = 4, 3
    names = [n for n in a.setups.split(",") if n]
    logdir = prepare(a, "reassign-bench-log4j-")
    results = {}
    try:
        for n in range(a.runs):
            for name in names:
                s = None
                try:
                    s = Setup(name, a)
                    r = run(a, s, name)
                except Exception as e:
                    print(f"run {n + 1} {name} FAILED: {e}", file=sys.stderr)
                    continue
                finally:
                    if s is not None:
                        s.stop()
                results.setdefault(name, []).append(r)
                print(f"run {n + 1} {name:7} move {r['move_s']:.2f} s, {r['cpu']:.2f} CPU-s; paced producer "
                      f"p99 {r['p99']} ms max {r['max']:.0f} ms, sent {r['sent']} of {r['expected']}",
                      file=sys.stderr)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    mib = a.records * a.size / 2**20
    print(f"Medians of {a.runs} runs: a partition of 3 copies holding {a.records:,} records of {a.size} B "
          f"({mib:.0f} MiB) moves its leader's copy to a fourth node while a producer writes "
          f"{a.throughput} rec/s with acks=all for {a.paced_seconds} s; brokers on core 0, tools on core 1.")
    print()
    print("| setup | move s (tool start to new replicas in sync) | broker CPU-s during the move "
          "| paced p99 ms | paced max ms | records sent of expected |")
    print("|---|---|---|---|---|---|")
    for name in names:
        if name not in results:
            print(f"| {name} | failed | | | | |")
            continue
        print(f"| {name} | {med(name, 'move_s'):.2f} | {med(name, 'cpu'):.2f} | {med(name, 'p99'):.0f} "
              f"| {med(name, 'max'):.0f} | {min(r['sent'] for r in results[name])} of {a.throughput * a.paced_seconds} |")
    if a.tool_errors:
        print(f"\nthe Java tools printed {len(a.tool_errors)} WARN/ERROR line(s); first: {a.tool_errors[0]}")


if __name__ == "__main__":
    main()
