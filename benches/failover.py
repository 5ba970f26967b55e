#!/usr/bin/env python3
"""Leader failover, side by side: SIGKILL of a partition's leader, then the first
acks=all produce a real client gets acknowledged, on

  strata3   three Strata nodes on 127.0.0.1, .2 and .3 forming one cluster,
  kafka3    three Apache Kafka 4.4.0 brokers on the same addresses (KRaft, each broker and
            controller, a three-voter quorum), min.insync.replicas=2,

each with one topic of one partition and three copies, one setup after the other in the
same run (benches/kafka_cluster.py starts them; brokers on core 0).

One trial: a new confluent-kafka producer (idempotent, acks=all, linger.ms=0) sends a record
every 5 ms and waits for nothing; once acknowledgements flow, the partition's leader (as
Metadata names it) is killed with SIGKILL. The failover time is the time from the kill to
the first acknowledgement of a record sent after the kill. The killed broker is then
started again, and the next trial waits until every replica is back in sync (Metadata's
ISR holds all three) and acknowledgements flow again. Both setups run with their default
failure detection (Strata: a node is down 1.5 s after its last heartbeat, or at once when
its cluster port refuses connections, its process gone; Kafka: a broker
is fenced when its session of broker.session.timeout.ms=9000 lapses; a killed active
controller is replaced by a quorum election first).

Prints each trial, then the median, minimum and maximum per setup and their ratio.

Usage: benches/failover.py [--trials N] [--setups strata3,kafka3] [--strata PATH]
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kafka import tool  # noqa: E402
from kafka_cluster import Setup, prepare  # noqa: E402

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

TOPIC = "failover"
EVERY = 0.005


class Acks:
    """A producer sending one record every EVERY seconds; remembers when each record was
    sent and when it was acknowledged."""

    def __init__(self, bootstrap):
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                  "enable.idempotence": True, "linger.ms": 0,
                                  "message.timeout.ms": 120000, "log_level": 0})
        self.lock = threading.Lock()
        self.acked = []  # (sent_at, acked_at)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        def done(err, msg):
            if err is None:
                with self.lock:
                    self.acked.append((float(msg.value()), time.monotonic()))
        while not self.stop.is_set():
            self.producer.produce(TOPIC, value=repr(time.monotonic()).encode(), partition=0,
                                  on_delivery=done)
            self.producer.poll(0)
            time.sleep(EVERY)
        self.producer.flush(30)

    def first_ack_of_sent_after(self, t):
        with self.lock:
            later = [a for s, a in self.acked if s >= t]
        return min(later) if later else None

    def close(self):
        self.stop.set()
        self.thread.join(60)


def leader_and_isr(bootstrap):
    t = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(
        TOPIC, timeout=5).topics.get(TOPIC)
    if t is None or t.error is not None or 0 not in t.partitions:
        return None, []
    p = t.partitions[0]
    return p.leader, list(p.isrs)


def wait(what, cond, deadline):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - a broker starting refuses connections
            pass
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def meta_leader(s):
    """The node leading Strata's meta service, as the first node's admin API names it
    (None for Kafka or when it does not answer)."""
    if not getattr(s, "admin", None):
        return None
    try:
        with urllib.request.urlopen(f"{s.admin[0]}/api/v1/cluster/nodes", timeout=10) as r:
            return json.loads(r.read()).get("leader")
    except OSError:
        return None


def trials(a, name):
    s = Setup(name, a)
    times = []
    try:
        tool(a, f"{name} kafka-topics", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
             s.bootstrap, "--create", "--topic", TOPIC, "--partitions", "1", "--replication-factor", "3")
        for n in range(a.trials):
            wait("every replica in sync", lambda: len(leader_and_isr(s.bootstrap)[1]) == 3, 180)
            # A new producer each trial: one that saw the previous trial's broker down
            # would still be backing off its reconnects to it (librdkafka doubles
            # reconnect.backoff.ms up to 10 s), and that broker may lead next.
            acks = Acks(s.bootstrap)
            try:
                now = time.monotonic()
                wait("acknowledgements", lambda: acks.first_ack_of_sent_after(now) is not None, 120)
                leader, _ = leader_and_isr(s.bootstrap)
                also = " (it also led the meta service)" if meta_leader(s) == leader else ""
                killed = time.monotonic()
                s.kill(leader - 1)
                wait("an acknowledgement after the kill",
                     lambda: acks.first_ack_of_sent_after(killed) is not None, 120)
                took = acks.first_ack_of_sent_after(killed) - killed
                times.append(took)
                print(f"{name} trial {n + 1}: killed broker {leader}{also}, acks again after "
                      f"{took:.3f} s", file=sys.stderr)
            finally:
                acks.close()
            s.restart(leader - 1)
    finally:
        s.stop()
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=7)
    ap.add_argument("--setups", default="strata3,kafka3")
    ap.add_argument("--strata", default=None)
    ap.add_argument("--java", default="java")
    ap.add_argument("--timeout", type=int, default=300)
    a = ap.parse_args()
    a.replication = 3
    logdir = prepare(a, "failover-log4j-")
    results = {}
    try:
        for name in a.setups.split(","):
            results[name] = trials(a, name)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    print(f"SIGKILL of the leader of a partition with three copies -> first acks=all produce "
          f"acknowledged (confluent-kafka, idempotent; {a.trials} trials each):")
    print()
    print("| setup | median s | min s | max s | trials |")
    print("|---|---|---|---|---|")
    for name, t in results.items():
        print(f"| {name} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} | "
              + ", ".join(f"{x:.2f}" for x in t) + " |")
    if "strata3" in results and "kafka3" in results:
        print(f"\nstrata3 / kafka3 median failover time: "
              f"{statistics.median(results['strata3']) / statistics.median(results['kafka3']):.2f}x")


if __name__ == "__main__":
    main()
