#!/usr/bin/env python3
"""A wiped node rejoining a cluster of three, with and without object storage: one topic
of 6 partitions with three copies each (leaders spread two per node), filled by Apache
Kafka's kafka-producer-perf-test (acks=all); then node 3 is SIGKILLed, its data directory
deleted and the node started again. Measured: the time from its start until every
partition lists it in sync again, the bytes its copies hold on its disk then, and the
CPU-seconds of the three nodes meanwhile.

  local    every copy keeps its whole log on its disk: the wiped node copies every record
           from the leaders;
  object   every node offloads to one S3 server (s3s-fs on loopback) with 1 MiB segments,
           each uploaded by its partition's leader once committed, every copy's local
           files dropped at once (`local_retention_ms = 0`): the wiped node starts where
           the uploads end and copies only the rest.

The nodes are pinned to core 0 and the tools to core 1 (as in benches/kafka_cluster.py).
Prints a Markdown table of medians over --runs runs, each starting fresh.

Usage: benches/rejoin.py [--runs N] [--records N] [--size BYTES] [--setups local,object]
                         [--strata PATH]
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_cluster  # noqa: E402
from kafka import PRODUCE, tool  # noqa: E402
from kafka_cluster import TOPIC, PARTITIONS, free_port_on  # noqa: E402

from confluent_kafka.admin import AdminClient  # noqa: E402

S3S_FS = os.path.expanduser("~/.cache/strata/tools/bin/s3s-fs")


class ObjectStore:
    """s3s-fs on a free loopback port, its data in `home`."""

    def __init__(self, home):
        os.makedirs(os.path.join(home, "strata"))
        self.home = home
        self.port = free_port_on("127.0.0.1")
        self.proc = subprocess.Popen(
            ["taskset", "-c", "1", S3S_FS, "--host", "127.0.0.1", "--port", str(self.port),
             "--access-key", "AK", "--secret-key", "SK", home],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.time() > end or self.proc.poll() is not None:
                    raise RuntimeError("s3s-fs did not start")
                time.sleep(0.05)

    def config(self):
        return ('[journal]\nsegment_bytes = 1048576\n'
                '[journal.object_store]\nbackend = "s3"\n'
                f'endpoint = "http://127.0.0.1:{self.port}"\nbucket = "strata"\n'
                'access_key_id = "AK"\nsecret_access_key = "SK"\n'
                '[journal.offload]\nlocal_retention_ms = 0\n')

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def disk_bytes(path):
    """Bytes of the segment files (`.log`) under `path`: the records a copy holds on its
    disk (index files are preallocated, whatever the records)."""
    return sum(os.path.getsize(os.path.join(d, f))
               for d, _, fs in os.walk(path) for f in fs if f.endswith(".log"))


def in_sync(bootstrap, node):
    """How many partitions list `node` among their in-sync replicas (-1: no answer)."""
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        t = admin.list_topics(TOPIC, timeout=10).topics[TOPIC]
        if len(t.partitions) != PARTITIONS:
            return -1
        return sum(1 for p in t.partitions.values() if node in p.isrs)
    except Exception:  # noqa: BLE001 - a node starting refuses connections
        return -1


def wait_until(what, done, deadline=600):
    end = time.time() + deadline
    while not done():
        if time.time() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run(a, name):
    store = ObjectStore(os.path.join(a.tmp, f"s3-{time.time_ns()}")) if name == "object" else None
    a.extra_config = store.config() if store else ""
    s = kafka_cluster.Setup("strata3", a)
    try:
        tool(a, f"{name} kafka-topics", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
             s.bootstrap, "--create", "--topic", TOPIC, "--partitions", str(PARTITIONS),
             "--replication-factor", "3")
        out = tool(a, f"{name} producer-perf", "org.apache.kafka.tools.ProducerPerformance",
                   "--topic", TOPIC, "--num-records", str(a.records), "--record-size", str(a.size),
                   "--throughput", "-1", "--command-property", f"bootstrap.servers={s.bootstrap}",
                   "acks=all", "linger.ms=5", "batch.size=65536")
        if not list(PRODUCE.finditer(out)):
            raise RuntimeError(f"{name}: no summary from producer-perf:\n{out[-2000:]}")
        wait_until("every copy in sync", lambda: in_sync(s.bootstrap, 3) == PARTITIONS)
        if store:
            # The uploads caught up: the leaders' local files are down to the active segments.
            time.sleep(3)
        data = os.path.join(s.tmp, "n3", "data")
        before = disk_bytes(data)
        s.kill(2)
        shutil.rmtree(data)
        # The leaders notice it is gone (10 s without a fetch at their end).
        live = ",".join(s.bootstrap.split(",")[:2])
        wait_until("node 3 out of every in-sync set", lambda: in_sync(live, 3) == 0)
        cpu0 = sum(kafka_cluster.cpu_seconds(p.pid) for p in s.procs[:2])
        started = time.time()
        s.restart(2)
        wait_until("the wiped node to be in sync", lambda: in_sync(live, 3) == PARTITIONS)
        took = time.time() - started
        cpu = s.cpu() - cpu0
        return dict(seconds=took, after=disk_bytes(data), before=before, cpu=cpu)
    finally:
        s.stop()
        if store:
            store.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--setups", default="local,object")
    ap.add_argument("--strata", default=None)
    ap.add_argument("--java", default="java")
    ap.add_argument("--timeout", type=int, default=600)
    a = ap.parse_args()
    a.tmp = kafka_cluster.prepare(a, "rejoin-bench-")
    setups = a.setups.split(",")
    results = {n: [] for n in setups}
    for i in range(a.runs):
        for n in setups:
            r = run(a, n)
            results[n].append(r)
            print(f"run {i + 1} {n}: {r['seconds']:.1f} s to rejoin, {r['after'] / 1e6:.1f} MB on "
                  f"its disk then ({r['before'] / 1e6:.1f} MB before the wipe), "
                  f"{r['cpu']:.1f} CPU-s", flush=True)
    print(f"\n{a.records} records of {a.size} bytes, 6 partitions, three copies; medians of {a.runs} runs\n")
    print("| setup | seconds to rejoin | MB of segment files on the wiped node then | MB before the wipe | CPU-s of the three nodes |")
    print("|---|---:|---:|---:|---:|")
    for n in setups:
        med = lambda k: statistics.median(r[k] for r in results[n])  # noqa: E731
        print(f"| {n} | {med('seconds'):.1f} | {med('after') / 1e6:.1f} | {med('before') / 1e6:.1f} | {med('cpu'):.1f} |")
    shutil.rmtree(a.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
