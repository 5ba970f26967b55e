#!/usr/bin/env python3
"""Kafka benchmark: Apache Kafka 4.4.0's own perf tools (kafka-producer-perf-test and
kafka-consumer-perf-test, the same JVM and client for both brokers) against Strata and
against Apache Kafka 4.4.0 (KRaft, combined broker+controller, one node), one broker after
the other, the broker pinned to core 0 and the tool to core 1.

For every run and every scenario (100 B and 1 KiB records, acks=1 and acks=all) each broker
starts fresh in a new temporary directory (Strata first, then Kafka), the topic is created
with kafka-topics (1 partition), the producer tool floods it (--throughput -1), then the
consumer tool reads back the records just produced. Broker CPU-seconds come from
/proc/PID/stat (utime+stime) before and after each phase. Prints Markdown tables of medians
with Strata / Kafka ratios on stdout, per-run numbers and any WARN/ERROR lines the Java
tools printed on stderr.

Usage: benches/kafka.py [--runs N] [--records N] [--records-1k N] [--brokers strata,kafka]
                        [--strata PATH] [--java PATH] [--batch-size BYTES]
Kafka: scripts/install-kafka.sh puts it in ~/.cache/strata/tools/kafka-4.4.0/libs (Maven
Central; Java 17+).
"""
import argparse
import base64
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HOME = os.path.expanduser("~")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from journal import default_strata  # noqa: E402
HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOPIC = "bench"
# What kafka-run-class.sh / kafka-server-start.sh / kafka-*-perf-test.sh use.
JVM_OPTS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"]
LOG4J = """status = warn
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = STDERR
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""
# Tool stderr lines that are not about the broker.
BENIGN = re.compile(r"deprecated|UNKNOWN_TOPIC_OR_PARTITION.*correlation id 1\b")


def kafka_libs():
    out = subprocess.run(["bash", os.path.join(HERE, "..", "scripts", "install-kafka.sh")],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_line(proc, path, needle, what, deadline=90):
    end = time.time() + deadline
    while time.time() < end:
        with open(path, errors="replace") as f:
            if needle in f.read():
                return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(path, errors="replace") as f:
        tail = f.read()[-3000:]
    raise RuntimeError(f"{what} did not start (exit {proc.poll()}):\n{tail}")


class Broker:
    """A fresh broker in its own temporary directory, pinned to core 0."""

    def __init__(self, name, a):
        self.name, self.a = name, a
        self.tmp = tempfile.mkdtemp(prefix=f"kafka-bench-{name}-")
        self.port = free_port()
        self.out = os.path.join(self.tmp, "broker.out")
        if name == "strata":
            env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
            env.update({"STRATA_AGENT__ENABLED": "false", "STRATA_NODE__DATA_DIR": os.path.join(self.tmp, "data"),
                        "STRATA_ADMIN__LISTEN": "127.0.0.1:0", "STRATA_MQTT__ENABLED": "false",
                        "STRATA_KAFKA__LISTEN": f"127.0.0.1:{self.port}", "STRATA_LOG__LEVEL": "warn",
                        # as the Kafka side's group.initial.rebalance.delay.ms=0 (Strata's default: 1000)
                        "STRATA_KAFKA__GROUP_INITIAL_REBALANCE_DELAY_MS": "0"})
            if a.strata_fsync:
                env["STRATA_JOURNAL__FSYNC"] = a.strata_fsync
            cmd, needle = ["taskset", "-c", "0", a.strata, "serve"], f"kafka listening on 127.0.0.1:{self.port}"
        else:
            env = dict(os.environ)
            cport = free_port()
            props = os.path.join(self.tmp, "server.properties")
            with open(props, "w") as f:
                f.write(f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={os.path.join(self.tmp, "data")}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
""")
            cluster = "-"
            while cluster.startswith("-"):  # as Kafka's Uuid.randomUuid: a leading '-' reads as an option
                cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            fmt = subprocess.run(java(a, "-Xmx512m", "kafka.tools.StorageTool", "format", "-t", cluster,
                                      "-c", props), capture_output=True, text=True)
            if fmt.returncode != 0:
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise RuntimeError(f"kafka-storage format failed:\n{fmt.stdout}{fmt.stderr}")
            cmd = ["taskset", "-c", "0"] + java(a, "-Xms1g", "-Xmx1g", "kafka.Kafka", props)
            needle = "Kafka Server started"
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_line(self.proc, self.out, needle, name)
        except BaseException:
            self.stop()
            raise
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def java(a, heap, main, *args):
    return [a.java, heap, *JVM_OPTS, f"-Dlog4j2.configurationFile={a.log4j}", "-cp",
            os.path.join(a.libs, "*"), main, *args]


def tool(a, label, main, *args):
    """Runs a Kafka tool on core 1; returns stdout, reports its stderr warnings."""
    cmd = ["taskset", "-c", "1"] + java(a, "-Xmx512m", main, *args)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{label}: timed out after {a.timeout}s; stdout:\n{e.stdout}\nstderr:\n{e.stderr}")
    noise = [l for l in p.stderr.splitlines() if l.strip() and not BENIGN.search(l)]
    for l in noise:
        print(f"    [{label} stderr] {l}", file=sys.stderr)
        a.tool_errors.append(f"{label}: {l}")
    if p.returncode != 0:
        raise RuntimeError(f"{label}: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return p.stdout


PRODUCE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                     r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def run_scenario(a, b, size, acks, records, label, throughput=-1):
    bs = f"127.0.0.1:{b.port}"
    tool(a, f"{label} kafka-topics", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--create",
         "--topic", TOPIC, "--partitions", "1", "--replication-factor", "1")
    r = {}
    cpu0 = cpu_seconds(b.pid)
    out = tool(a, f"{label} producer-perf", "org.apache.kafka.tools.ProducerPerformance", "--topic", TOPIC,
               "--num-records", str(records), "--record-size", str(size), "--throughput", str(throughput),
               "--command-property", f"bootstrap.servers={bs}", f"acks={acks}", "linger.ms=5",
               f"batch.size={a.batch_size}")
    cpu1 = cpu_seconds(b.pid)
    m = [x for x in PRODUCE.finditer(out)]
    if not m:
        raise RuntimeError(f"{label}: no summary from producer-perf:\n{out[-2000:]}")
    m = m[-1]
    r.update(sent=int(m[1]), p_rps=float(m[2]), p_mbs=float(m[3]), p_avg=float(m[4]), p_p50=int(m[6]),
             p_p99=int(m[8]), p_p999=int(m[9]), p_cpu=(cpu1 - cpu0) * 1e6 / records)
    out = tool(a, f"{label} consumer-perf", "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bs,
               "--topic", TOPIC, "--num-records", str(records), "--timeout", "30000",
               "--group", f"bench-{uuid.uuid4().hex[:8]}")
    cpu2 = cpu_seconds(b.pid)
    lines = out.strip().splitlines()
    i = next((k for k, l in enumerate(lines) if l.startswith("start.time")), None)
    if i is None or i + 1 >= len(lines):
        raise RuntimeError(f"{label}: no summary from consumer-perf:\n{out[-2000:]}")
    f = [x.strip() for x in lines[i + 1].split(",")]
    r.update(received=int(f[4]), c_mbs_total=float(f[3]), c_join_ms=int(f[6]), c_mbs=float(f[8]),
             c_rps=float(f[9]), c_cpu=(cpu2 - cpu1) * 1e6 / records)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--records", type=int, default=3_000_000, help="records per 100 B scenario")
    ap.add_argument("--records-1k", type=int, default=750_000, help="records per 1 KiB scenario")
    ap.add_argument("--brokers", default="strata,kafka")
    ap.add_argument("--strata", default=None)
    ap.add_argument("--strata-fsync", default=None, help="STRATA_JOURNAL__FSYNC (default: Strata's, interval:100)")
    ap.add_argument("--java", default="java", help="java binary (Kafka 4.4.0 needs Java 17+)")
    ap.add_argument("--batch-size", type=int, default=65536, help="producer batch.size")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per tool invocation")
    ap.add_argument("--paced", type=int, default=20000,
                    help="rate (records/s) of the paced latency scenario, 1 KiB acks=all (0: none)")
    a = ap.parse_args()
    names = [n for n in a.brokers.split(",") if n]
    if "strata" in names:
        a.strata = a.strata or default_strata()
    a.libs = kafka_libs()
    a.tool_errors = []
    logdir = tempfile.mkdtemp(prefix="kafka-bench-log4j-")
    a.log4j = os.path.join(logdir, "log4j2.properties")
    with open(a.log4j, "w") as f:
        f.write(LOG4J)
    scenarios = [(size, acks, a.records if size == 100 else a.records_1k, -1)
                 for size in (100, 1024) for acks in ("1", "all")]
    if a.paced:
        # Latency at a rate both brokers sustain, rather than queueing time under flood.
        scenarios.append((1024, "all", a.paced * 10, a.paced))
    results, failures = {}, {}
    started = time.time()
    try:
        for run in range(a.runs):
            for size, acks, records, rate in scenarios:
                label = f"{size} B acks={acks}" + (f" paced {rate}/s" if rate > 0 else "")
                for name in names:
                    tag = f"run {run + 1} {name:6} {label:14}"
                    b = None
                    try:
                        b = Broker(name, a)
                        r = run_scenario(a, b, size, acks, records, f"{name} {label}", rate)
                    except Exception as e:  # keep going: the other broker's numbers still matter
                        print(f"{tag} FAILED: {e}", file=sys.stderr)
                        failures.setdefault((label, name), []).append(" / ".join(str(e).splitlines()[:3]))
                        continue
                    finally:
                        if b is not None:
                            b.stop()
                    results.setdefault((label, name), []).append(r)
                    short = "" if r["sent"] == records and r["received"] == records else \
                        f" SHORT sent {r['sent']} received {r['received']}"
                    print(f"{tag} produce {r['p_rps']:>9.0f} rec/s {r['p_mbs']:7.2f} MB/s avg {r['p_avg']:7.1f} ms "
                          f"p99 {r['p_p99']:5d} ms {r['p_cpu']:6.2f} CPU-s/M | consume {r['c_rps']:>9.0f} rec/s "
                          f"{r['c_mbs']:7.2f} MB/s (with join {r['c_mbs_total']:.2f}) join {r['c_join_ms']} ms "
                          f"{r['c_cpu']:6.2f} CPU-s/M{short}", file=sys.stderr)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    elapsed = time.time() - started

    def med(label, name, key):
        rs = results.get((label, name))
        return statistics.median(r[key] for r in rs) if rs else None

    def ratio(s, k):
        return f"{s / k:.2f}x" if s is not None and k else "-"

    def cell(v, fmt):
        return "-" if v is None else format(v, fmt)

    def label_of(size, acks, rate):
        return f"{size} B acks={acks}" + (f" paced {rate}/s" if rate > 0 else "")

    labels = [label_of(size, acks, rate) for size, acks, _, rate in scenarios]
    counts = {label_of(size, acks, rate): n for size, acks, n, rate in scenarios}
    print(f"Medians of {a.runs} runs; {a.records:,} x 100 B / {a.records_1k:,} x 1 KiB records, 1 partition, "
          f"linger.ms=5 batch.size={a.batch_size}; MB = MiB as the tools print; took {elapsed / 60:.1f} min.")
    print()
    print("Produce (kafka-producer-perf-test --throughput -1, or the paced rate; latency = send to "
          "acknowledgement, under flood unless paced):")
    print()
    print("| scenario | records | kafka rec/s (MB/s) | strata rec/s (MB/s) | strata / kafka, throughput "
          "| kafka avg / p99 ms | strata avg / p99 ms | strata / kafka, p99 "
          "| kafka CPU-s per M | strata CPU-s per M | strata / kafka, CPU per msg |")
    print("|---" * 11 + "|")
    for l in labels:
        k = {key: med(l, "kafka", key) for key in ("p_rps", "p_mbs", "p_avg", "p_p99", "p_cpu")}
        s = {key: med(l, "strata", key) for key in ("p_rps", "p_mbs", "p_avg", "p_p99", "p_cpu")}
        print(f"| {l} | {counts[l]:,} | {cell(k['p_rps'], '.0f')} ({cell(k['p_mbs'], '.1f')}) "
              f"| {cell(s['p_rps'], '.0f')} ({cell(s['p_mbs'], '.1f')}) | {ratio(s['p_rps'], k['p_rps'])} "
              f"| {cell(k['p_avg'], '.0f')} / {cell(k['p_p99'], '.0f')} | {cell(s['p_avg'], '.0f')} / "
              f"{cell(s['p_p99'], '.0f')} | {ratio(s['p_p99'], k['p_p99'])} | {cell(k['p_cpu'], '.2f')} "
              f"| {cell(s['p_cpu'], '.2f')} | {ratio(s['p_cpu'], k['p_cpu'])} |")
    print()
    print("Consume (kafka-consumer-perf-test, the records just produced; rates are the tool's fetch rates, "
          "which exclude the group join; CPU covers the whole tool run):")
    print()
    print("| scenario | kafka rec/s (MB/s) | strata rec/s (MB/s) | strata / kafka, throughput "
          "| kafka join ms | strata join ms | kafka CPU-s per M | strata CPU-s per M | strata / kafka, CPU per msg |")
    print("|---" * 9 + "|")
    for l in labels:
        k = {key: med(l, "kafka", key) for key in ("c_rps", "c_mbs", "c_join_ms", "c_cpu")}
        s = {key: med(l, "strata", key) for key in ("c_rps", "c_mbs", "c_join_ms", "c_cpu")}
        print(f"| {l} | {cell(k['c_rps'], '.0f')} ({cell(k['c_mbs'], '.1f')}) | {cell(s['c_rps'], '.0f')} "
              f"({cell(s['c_mbs'], '.1f')}) | {ratio(s['c_rps'], k['c_rps'])} | {cell(k['c_join_ms'], '.0f')} "
              f"| {cell(s['c_join_ms'], '.0f')} | {cell(k['c_cpu'], '.2f')} | {cell(s['c_cpu'], '.2f')} "
              f"| {ratio(s['c_cpu'], k['c_cpu'])} |")
    short = [(l, n) for (l, n), rs in results.items()
             if any(r["sent"] != counts[l] or r["received"] != counts[l] for r in rs)]
    if short or failures or a.tool_errors:
        print()
    for l, n in short:
        print(f"- {n} {l}: records sent/received short of {counts[l]:,} in some run (see stderr)")
    for (l, n), errs in failures.items():
        print(f"- {n} {l}: failed in {len(errs)} run(s): {errs[0]}")
    if a.tool_errors:
        print(f"- the Java tools printed {len(a.tool_errors)} WARN/ERROR line(s) (on stderr); first: "
              f"{a.tool_errors[0]}")


if __name__ == "__main__":
    main()
