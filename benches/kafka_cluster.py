#!/usr/bin/env python3
"""Kafka across three nodes: Apache Kafka 4.4.0's perf tools (kafka-producer-perf-test,
kafka-consumer-perf-test) against one topic of 6 partitions on

  strata1   one Strata node (the same build),
  strata3   three Strata nodes on 127.0.0.1, .2 and .3 forming one cluster (leaders spread
            two per node; the tools bootstrap from all three),
  kafka3    three Apache Kafka 4.4.0 brokers on 127.0.0.1, .2 and .3 (KRaft, each broker
            and controller, a three-voter quorum),

one after the other in the same run. Every broker process of a setup is pinned to core 0
and the tool to core 1, so the setups get the same CPU; broker CPU-seconds are summed over
the setup's processes (/proc/PID/stat) and reported per million records. Each run starts
every setup fresh in a temporary directory. Prints Markdown tables of medians with ratios.

With --replication 3 every partition has three copies (Kafka: min.insync.replicas=2, the
offsets topic also three copies; Strata: acks=all waits for a majority, two of three).

Usage: benches/kafka_cluster.py [--runs N] [--records N] [--size BYTES] [--acks 1|all]
                                [--setups strata1,strata3,kafka3] [--strata PATH]
                                [--replication 1|3] [--throughput REC_PER_S]
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from journal import default_strata  # noqa: E402
from kafka import LOG4J, PRODUCE, cpu_seconds, free_port, java, kafka_libs, tool, wait_line  # noqa: E402

TOPIC = "bench6"
PARTITIONS = 6


def prepare(a, prefix):
    """Fills in what every setup needs beside the command line (the strata binary, Kafka's
    libraries, a log4j config in a temporary directory); returns that directory."""
    a.strata = a.strata or default_strata()
    a.libs = kafka_libs()
    a.tool_errors = []
    logdir = tempfile.mkdtemp(prefix=prefix)
    a.log4j = os.path.join(logdir, "log4j2.properties")
    with open(a.log4j, "w") as f:
        f.write(LOG4J)
    return logdir


def free_port_on(host):
    """A free TCP port on `host` (a loopback address of 127.0.0.0/8)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Setup:
    """One, or three, fresh brokers of one kind, pinned to core 0."""

    def __init__(self, name, a):
        self.name, self.a = name, a
        self.tmp = tempfile.mkdtemp(prefix=f"kafka-bench-{name}-")
        self.procs, self.specs = [], []
        # Three nodes unless a bench built on this one asks for more (`a.nodes`).
        count = 1 if name == "strata1" else getattr(a, "nodes", 3)
        hosts = [f"127.0.0.{i}" for i in range(1, count + 1)]
        self.ports = [free_port_on(h) for h in hosts]
        self.bootstrap = ",".join(f"{h}:{p}" for h, p in zip(hosts, self.ports))
        try:
            if name.startswith("strata"):
                self.start_strata(hosts)
            else:
                self.start_kafka(hosts)
        except BaseException:
            self.stop()
            raise

    def spawn(self, cmd, env, out, needle, what):
        self.specs.append((cmd, env, out, needle, what))
        self.procs.append(self.launch(cmd, env, out))
        return self.procs[-1], out, needle, what

    @staticmethod
    def launch(cmd, env, out):
        with open(out, "a") as f:
            return subprocess.Popen(["taskset", "-c", "0"] + cmd, env=env, stdout=f,
                                    stderr=subprocess.STDOUT)

    def kill(self, i):
        """SIGKILL of broker `i` (0-based)."""
        self.procs[i].kill()
        self.procs[i].wait()

    def restart(self, i):
        """Starts broker `i` again on its data and ports; waits until it listens."""
        cmd, env, out, needle, what = self.specs[i]
        restarted = f"{out}.{time.time_ns()}"
        self.procs[i] = self.launch(cmd, env, restarted)
        wait_line(self.procs[i], restarted, needle, what, deadline=180)

    def start_strata(self, hosts):
        cluster = [free_port_on(h) for h in hosts]
        voters = ", ".join(f'"{i + 1}@{h}:{p}"' for i, (h, p) in enumerate(zip(hosts, cluster)))
        waits = []
        self.admin = []
        for i, host in enumerate(hosts):
            home = os.path.join(self.tmp, f"n{i + 1}")
            os.makedirs(home)
            cfg = os.path.join(home, "strata.toml")
            admin = free_port_on(host)
            self.admin.append(f"http://{host}:{admin}")
            with open(cfg, "w") as f:
                if len(hosts) > 1:
                    f.write(f'[cluster]\nnode_id = {i + 1}\nlisten = "{host}:{cluster[i]}"\n'
                            f'initial_voters = [{voters}]\nsecret = "bench-cluster-secret-0123"\n')
                # More of the node's configuration, from a bench built on this one.
                f.write(getattr(self.a, "extra_config", ""))
            env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
            env.update({"STRATA_AGENT__ENABLED": "false", "STRATA_NODE__DATA_DIR": os.path.join(home, "data"),
                        "STRATA_ADMIN__LISTEN": f"{host}:{admin}", "STRATA_MQTT__ENABLED": "false",
                        "STRATA_KAFKA__LISTEN": f"{host}:{self.ports[i]}", "STRATA_LOG__LEVEL": "warn",
                        "STRATA_KAFKA__GROUP_INITIAL_REBALANCE_DELAY_MS": "0"})
            # More of node i's environment, from a bench built on this one.
            env.update(getattr(self.a, "node_env", lambda _i: {})(i))
            waits.append(self.spawn([self.a.strata, "serve", "--config", cfg], env,
                                    os.path.join(home, "out"),
                                    f"kafka listening on {host}:{self.ports[i]}", f"strata node {i + 1}"))
        for proc, out, needle, what in waits:
            wait_line(proc, out, needle, what)
        # Every node registered with its Kafka listener before the topic is created.
        end = time.time() + 60
        nodes = []
        while True:
            try:
                with urllib.request.urlopen(f"{self.admin[0]}/api/v1/cluster/nodes", timeout=10) as r:
                    nodes = json.loads(r.read())["nodes"]
            except OSError:
                pass  # the admin listener starts after the frontends
            if len([n for n in nodes if "kafka" in n["listeners"]]) == len(hosts):
                break
            if time.time() > end:
                raise RuntimeError(f"nodes did not register: {nodes}")
            time.sleep(0.1)

    def start_kafka(self, hosts):
        cports = [free_port_on(h) for h in hosts]
        voters = ",".join(f"{i + 1}@{h}:{p}" for i, (h, p) in enumerate(zip(hosts, cports)))
        cluster = "-"
        while cluster.startswith("-"):
            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        waits = []
        for i, host in enumerate(hosts):
            home = os.path.join(self.tmp, f"b{i + 1}")
            os.makedirs(home)
            props = os.path.join(home, "server.properties")
            with open(props, "w") as f:
                f.write(f"""process.roles=broker,controller
node.id={i + 1}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://{host}:{self.ports[i]},CONTROLLER://{host}:{cports[i]}
advertised.listeners=PLAINTEXT://{host}:{self.ports[i]}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={os.path.join(home, "data")}
num.partitions=1
default.replication.factor={self.a.replication}
min.insync.replicas={min(2, self.a.replication)}
offsets.topic.replication.factor={self.a.replication}
transaction.state.log.replication.factor={self.a.replication}
transaction.state.log.min.isr={min(2, self.a.replication)}
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
""")
            fmt = subprocess.run(java(self.a, "-Xmx512m", "kafka.tools.StorageTool", "format", "-t", cluster,
                                      "-c", props), capture_output=True, text=True)
            if fmt.returncode != 0:
                raise RuntimeError(f"kafka-storage format failed:\n{fmt.stdout}{fmt.stderr}")
            waits.append(self.spawn(java(self.a, "-Xms1g", "-Xmx1g", "kafka.Kafka", props), dict(os.environ),
                                    os.path.join(home, "out"), "Kafka Server started", f"kafka broker {i + 1}"))
        for proc, out, needle, what in waits:
            wait_line(proc, out, needle, what, deadline=180)

    def cpu(self):
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run(a, s, label):
    tool(a, f"{label} kafka-topics", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", s.bootstrap,
         "--create", "--topic", TOPIC, "--partitions", str(PARTITIONS), "--replication-factor",
         str(a.replication))
    r = {}
    cpu0 = s.cpu()
    out = tool(a, f"{label} producer-perf", "org.apache.kafka.tools.ProducerPerformance", "--topic", TOPIC,
               "--num-records", str(a.records), "--record-size", str(a.size), "--throughput", str(a.throughput),
               "--command-property", f"bootstrap.servers={s.bootstrap}", f"acks={a.acks}", "linger.ms=5",
               f"batch.size={a.batch_size}")
    cpu1 = s.cpu()
    m = list(PRODUCE.finditer(out))
    if not m:
        raise RuntimeError(f"{label}: no summary from producer-perf:\n{out[-2000:]}")
    m = m[-1]
    r.update(sent=int(m[1]), p_rps=float(m[2]), p_mbs=float(m[3]), p_p99=int(m[8]),
             p_cpu=(cpu1 - cpu0) * 1e6 / a.records)
    out = tool(a, f"{label} consumer-perf", "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server",
               s.bootstrap, "--topic", TOPIC, "--num-records", str(a.records), "--timeout", "30000",
               "--group", f"bench-{uuid.uuid4().hex[:8]}")
    cpu2 = s.cpu()
    lines = out.strip().splitlines()
    i = next((k for k, l in enumerate(lines) if l.startswith("start.time")), None)
    if i is None or i + 1 >= len(lines):
        raise RuntimeError(f"{label}: no summary from consumer-perf:\n{out[-2000:]}")
    f = [x.strip() for x in lines[i + 1].split(",")]
    r.update(received=int(f[4]), c_rps=float(f[9]), c_mbs=float(f[8]), c_cpu=(cpu2 - cpu1) * 1e6 / a.records)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--records", type=int, default=3_000_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--setups", default="strata1,strata3,kafka3")
    ap.add_argument("--strata", default=None)
    ap.add_argument("--java", default="java")
    ap.add_argument("--batch-size", type=int, default=65536)
    ap.add_argument("--replication", type=int, default=1, choices=[1, 3],
                    help="copies of each partition (3: Kafka with min.insync.replicas=2)")
    ap.add_argument("--throughput", type=int, default=-1, help="records/s the producer is paced at")
    ap.add_argument("--timeout", type=int, default=300)
    a = ap.parse_args()
    names = [n for n in a.setups.split(",") if n]
    logdir = prepare(a, "kafka-bench-log4j-")
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
                print(f"run {n + 1} {name:8} produce {r['p_rps']:>9.0f} rec/s p99 {r['p_p99']} ms "
                      f"{r['p_cpu']:.2f} CPU-s/M | consume {r['c_rps']:>9.0f} rec/s {r['c_cpu']:.2f} CPU-s/M "
                      f"(sent {r['sent']}, received {r['received']})", file=sys.stderr)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)

    def med(name, key):
        rs = results.get(name)
        return statistics.median(r[key] for r in rs) if rs else None

    print(f"Medians of {a.runs} runs: {a.records:,} records of {a.size} B, acks={a.acks}, one topic of "
          f"{PARTITIONS} partitions (replication factor {a.replication}), linger.ms=5 batch.size={a.batch_size}, "
          f"producer paced at {a.throughput} rec/s (-1: unpaced); brokers on core 0, tools on core 1.")
    print()
    print("| setup | produce rec/s | produce p99 ms | produce CPU-s per M | consume rec/s | consume CPU-s per M |")
    print("|---|---|---|---|---|---|")
    for name in names:
        if name not in results:
            print(f"| {name} | failed | | | | |")
            continue
        print(f"| {name} | {med(name, 'p_rps'):.0f} | {med(name, 'p_p99'):.0f} | {med(name, 'p_cpu'):.2f} "
              f"| {med(name, 'c_rps'):.0f} | {med(name, 'c_cpu'):.2f} |")
    if "strata3" in results:
        for other in ("strata1", "kafka3"):
            if other in results:
                print(f"\nstrata3 / {other}: produce {med('strata3', 'p_rps') / med(other, 'p_rps'):.2f}x, "
                      f"consume {med('strata3', 'c_rps') / med(other, 'c_rps'):.2f}x")
    if a.tool_errors:
        print(f"\nthe Java tools printed {len(a.tool_errors)} WARN/ERROR line(s); first: {a.tool_errors[0]}")


if __name__ == "__main__":
    main()
