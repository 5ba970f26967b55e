#!/usr/bin/env python3
"""What security costs, side by side in one run, each pair alternating run by run, the broker
pinned to core 0 and the load generator to core 1 (medians of --runs):

  tls         MQTT p2p QoS 1 (strata bench mqtt) over plaintext and over TLS, one node with
              both listeners;
  handshakes  TLS connections per second (strata bench mqtt --scenario storm) into Strata
              and into mosquitto 2 (Debian's), with the same certificate;
  kafka       Kafka's own kafka-producer-perf-test into Strata's PLAINTEXT and SASL_SSL
              (PLAIN) listeners;
  kcat        the same with kcat (librdkafka and OpenSSL), --kcat-records of 1 KiB from a
              file, timed from start to its exit after the last acknowledgement, with how
              much of its core kcat and the broker used;
  acl         MQTT p2p QoS 1 with no ACL, and with 10,000 ACL rules and 100,000 users loaded
              (rules name other users: every decision reads them all, once per topic and
              connection);
  flood       100 publishers at QoS 1 (p2p pairs, from 127.0.0.1), quiet and while another
              address (127.0.0.2) attempts 10,000 connections per second (refused by its
              per-address rate), and the node's RSS after the flood;
  ratelimit   100 publishers at QoS 1 (p2p pairs) paced at each of --rl-rates per second
              (below the per-client limit, max_messages_per_sec = 1000), quiet and beside one
              paho-mqtt client
              (benches/mqtt_abuser.py) attempting ten times the limit: the others' throughput
              and p99, and what the abuser got acknowledged. The paho client shares the
              load generator's core, so the same client publishing at its limit is the
              baseline that isolates the cost of exceeding it.

Prints Markdown tables with the ratios. Broker CPU-seconds per million messages are
reported beside throughput (the load generator often saturates first).

Usage: benches/security.py [--runs N] [--only tls,handshakes,kafka,kcat,acl,flood,ratelimit]
                           [--strata PATH] [--messages N]
Build first: cargo build --release -p strata. mosquitto: apt-get install mosquitto. Kafka's
tools: scripts/install-kafka.sh.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from journal import default_strata  # noqa: E402

ARGON2 = None  # one hash reused for every generated user (verifying it is not measured)


def sh(*cmd, cwd=None):
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=120)


def make_pki(d):
    os.makedirs(d, exist_ok=True)
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench CA", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
       "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    return d


class Strata:
    """`strata serve` on core 0 with `config`, every listener on a free loopback port."""

    def __init__(self, a, config="", env_extra=None):
        self.tmp = tempfile.mkdtemp(prefix="strata-sec-bench-")
        cfg = os.path.join(self.tmp, "strata.toml")
        with open(cfg, "w") as f:
            f.write(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update({"STRATA_AGENT__ENABLED": "false", "STRATA_NODE__DATA_DIR": os.path.join(self.tmp, "data"),
                    "STRATA_LOG__LEVEL": "warn",
                    **{f"STRATA_{k}": "127.0.0.1:0" for k in (
                        "ADMIN__LISTEN", "MQTT__LISTEN", "MQTT__WS_LISTEN", "KAFKA__LISTEN",
                        "MQTT__TLS_LISTEN", "MQTT__WSS_LISTEN", "KAFKA__TLS_LISTEN")}})
        env.update(env_extra or {})
        self.proc = subprocess.Popen(["taskset", "-c", "0", a.strata, "serve", "--config", cfg],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.ports = {}
        deadline = time.time() + 120
        while "admin" not in self.ports:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("strata serve exited before listening")
            if line.startswith("strata: ") and " listening on " in line:
                self.ports[line[len("strata: "):].split(" ", 1)[0]] = int(line.rsplit(":", 1)[1])
            if time.time() > deadline:
                raise RuntimeError("strata serve did not start")
        self.pid = self.proc.pid

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Mosquitto:
    """mosquitto 2 on core 0 with one TLS listener."""

    def __init__(self, pki, port):
        self.tmp = tempfile.mkdtemp(prefix="mosquitto-bench-")
        conf = os.path.join(self.tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n"
                    f"cafile {pki}/ca.pem\ncertfile {pki}/server.pem\nkeyfile {pki}/server.key\n"
                    "persistence false\nlog_dest none\nuser root\n")
        self.proc = subprocess.Popen(["taskset", "-c", "0", "mosquitto", "-c", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid, self.port = self.proc.pid, port
        deadline = time.time() + 30
        while time.time() < deadline:
            if subprocess.run(["ss", "-ltn", f"sport = :{port}"], capture_output=True,
                              text=True).stdout.count("LISTEN"):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


def bench(a, port, pid, *extra):
    out = subprocess.run(["taskset", "-c", "1", a.strata, "bench", "mqtt", "--broker",
                          f"127.0.0.1:{port}", "--pid", str(pid), "--json", *extra],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"strata bench mqtt {' '.join(extra)}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def p2p(a, port, pid, *extra, messages=None):
    r = bench(a, port, pid, "--scenario", "p2p", "--qos", "1", "--messages",
              str(messages or a.messages), *extra)
    if r["lost"]:
        raise RuntimeError(f"p2p lost {r['lost']} messages")
    return r


def med(rs, key):
    return statistics.median(r[key] for r in rs)


def row(label, base, other, key, unit, cpu=True):
    b, o = med(base, key), med(other, key)
    line = f"| {label} | {b:,.0f} {unit} | {o:,.0f} {unit} | **{o / b:.2f}x** |"
    if cpu:
        line += (f" {med(base, 'broker_cpu_seconds_per_million'):.2f} / "
                 f"{med(other, 'broker_cpu_seconds_per_million'):.2f} |")
    return line


def tls(a, pki):
    n = Strata(a, f'[mqtt.tls]\ncert_file = "{pki}/server.pem"\nkey_file = "{pki}/server.key"\n')
    plain, secure = [], []
    try:
        for run in range(a.runs):
            plain.append(p2p(a, n.ports["mqtt"], n.pid))
            secure.append(p2p(a, n.ports["mqtt-tls"], n.pid, "--tls-ca", f"{pki}/ca.pem"))
            print(f"tls run {run + 1}: plaintext {plain[-1]['msgs_per_s']:.0f}/s, "
                  f"TLS {secure[-1]['msgs_per_s']:.0f}/s", file=sys.stderr)
    finally:
        n.stop()
    return ["| MQTT p2p QoS 1, 1 pair | plaintext | TLS 1.3 | TLS / plaintext | CPU-s/M (plain / TLS) |",
            "|---|---:|---:|---:|---:|",
            row(f"{a.messages:,} msgs of 100 B", plain, secure, "msgs_per_s", "msg/s"),
            f"| p99 latency | {med(plain, 'p99_us'):,.0f} µs | {med(secure, 'p99_us'):,.0f} µs | | |"]


def handshakes(a, pki):
    strata, mosq = [], []
    storm = ["--scenario", "storm", "--clients", str(a.connections), "--concurrency", "64",
             "--tls-ca", f"{pki}/ca.pem"]
    for run in range(a.runs):
        n = Strata(a, f'[mqtt.tls]\ncert_file = "{pki}/server.pem"\nkey_file = "{pki}/server.key"\n'
                      '[mqtt]\nmax_connection_rate_per_ip = 0.0\n')
        try:
            strata.append(bench(a, n.ports["mqtt-tls"], n.pid, *storm))
        finally:
            n.stop()
        m = Mosquitto(pki, 28883)
        try:
            mosq.append(bench(a, m.port, m.pid, *storm))
        finally:
            m.stop()
        print(f"handshakes run {run + 1}: strata {strata[-1]['connects_per_s']:.0f}/s, "
              f"mosquitto {mosq[-1]['connects_per_s']:.0f}/s", file=sys.stderr)
    return ["| TLS connections (CONNECT + CONNACK), 64 at once | mosquitto | Strata | Strata / mosquitto |",
            "|---|---:|---:|---:|",
            row(f"{a.connections:,} connections", mosq, strata, "connects_per_s", "conn/s", cpu=False)]


def kafka_bench():
    """benches/kafka.py (by path: `kafka` is also kafka-python's package name)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("kafka_bench", os.path.join(HERE, "kafka.py"))
    kb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kb)
    return kb


def kafka_pairs(a, name, pki, produce, plain_client, secure_client):
    """`produce(node, port, client)` into a PLAINTEXT node and a SASL_SSL (PLAIN, user
    `bench`) node, alternating, --runs times; the two lists of results."""
    secure_config = (f'[kafka.tls]\ncert_file = "{pki}/server.pem"\nkey_file = "{pki}/server.key"\n'
                     '[kafka.sasl_plain_users]\nbench = "bench-password"\n')
    plain, secure = [], []
    for run in range(a.runs):
        for config, port, client, out in (("", "kafka", plain_client, plain),
                                           (secure_config, "kafka-tls", secure_client, secure)):
            n = Strata(a, config, {"STRATA_MQTT__ENABLED": "false"})
            try:
                out.append(produce(n, n.ports[port], client))
            finally:
                n.stop()
        print(f"{name} run {run + 1}: PLAINTEXT {plain[-1]['msgs_per_s']:.0f}/s, "
              f"SASL_SSL {secure[-1]['msgs_per_s']:.0f}/s", file=sys.stderr)
    return plain, secure


def kafka(a, pki):
    kb = kafka_bench()
    a.libs, a.tool_errors, a.java, a.timeout = kb.kafka_libs(), [], "java", 600
    work = tempfile.mkdtemp(prefix="sec-bench-kafka-")
    a.log4j = os.path.join(work, "log4j2.properties")
    with open(a.log4j, "w") as f:
        f.write(kb.LOG4J)
    client = os.path.join(work, "client.properties")
    with open(client, "w") as f:
        f.write("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
                "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
                'username="bench" password="bench-password";\n'
                f"ssl.truststore.type=PEM\nssl.truststore.location={pki}/ca.pem\n")
    empty = os.path.join(work, "empty.properties")
    open(empty, "w").close()

    def produce(n, port, props):
        bs = f"127.0.0.1:{port}"
        kb.tool(a, "kafka-topics", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs,
                "--command-config", props, "--create", "--topic", "bench", "--partitions", "1")
        cpu0 = kb.cpu_seconds(n.pid)
        out = kb.tool(a, "producer-perf", "org.apache.kafka.tools.ProducerPerformance", "--topic", "bench",
                      "--num-records", str(a.kafka_records), "--record-size", "1024", "--throughput", "-1",
                      "--producer.config", props, "--command-property", f"bootstrap.servers={bs}",
                      "acks=1", "linger.ms=5", "batch.size=65536")
        cpu = (kb.cpu_seconds(n.pid) - cpu0) * 1e6 / a.kafka_records
        m = list(kb.PRODUCE.finditer(out))[-1]
        return {"msgs_per_s": float(m[2]), "mb_per_s": float(m[3]), "p99_ms": int(m[8]),
                "broker_cpu_seconds_per_million": cpu}

    try:
        plain, secure = kafka_pairs(a, "kafka", pki, produce, empty, client)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ["| kafka-producer-perf-test, 1 KiB, acks=1 | PLAINTEXT | SASL_SSL (PLAIN) | ratio | CPU-s/M |",
            "|---|---:|---:|---:|---:|",
            row(f"{a.kafka_records:,} records", plain, secure, "msgs_per_s", "rec/s"),
            f"| p99 latency | {med(plain, 'p99_ms')} ms | {med(secure, 'p99_ms')} ms | | |"]


def kcat(a, pki):
    cpu_seconds = kafka_bench().cpu_seconds
    work = tempfile.mkdtemp(prefix="sec-bench-kcat-")
    records = os.path.join(work, "records")
    with open(records, "w") as f:
        for i in range(a.kcat_records):
            f.write(f"{i:08d}" + "x" * 1015 + "\n")  # 1,023 bytes and the delimiter
    sasl = ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanism=PLAIN",
            "-X", "sasl.username=bench", "-X", "sasl.password=bench-password",
            "-X", f"ssl.ca.location={pki}/ca.pem"]

    def produce(n, port, extra):
        cmd = ["taskset", "-c", "1", "kcat", "-P", "-b", f"127.0.0.1:{port}", "-t", "bench",
               "-X", "acks=1", "-X", "linger.ms=5", "-X", "batch.size=65536", *extra]
        # The topic exists (and the connection is warm) before the clock starts.
        subprocess.run(cmd, input="warm\n", text=True, check=True, timeout=120,
                       capture_output=True)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, t0 = cpu_seconds(n.pid), time.monotonic()
        r = subprocess.run([*cmd, "-l", records], timeout=900, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"kcat exited with {r.returncode}: {r.stderr[-2000:]}")
        secs = time.monotonic() - t0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        kcat_cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
        return {"msgs_per_s": a.kcat_records / secs, "kcat_core": kcat_cpu / secs,
                "broker_core": (cpu_seconds(n.pid) - cpu0) / secs,
                "broker_cpu_seconds_per_million": (cpu_seconds(n.pid) - cpu0) * 1e6 / a.kcat_records}

    try:
        plain, secure = kafka_pairs(a, "kcat", pki, produce, [], sasl)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ["| kcat -P, 1 KiB, acks=1 | PLAINTEXT | SASL_SSL (PLAIN) | ratio | CPU-s/M |",
            "|---|---:|---:|---:|---:|",
            row(f"{a.kcat_records:,} records", plain, secure, "msgs_per_s", "rec/s"),
            f"| kcat's use of its core | {med(plain, 'kcat_core'):.2f} | {med(secure, 'kcat_core'):.2f} | | |",
            f"| broker's use of its core | {med(plain, 'broker_core'):.2f} | {med(secure, 'broker_core'):.2f} | | |"]


def acl(a, pki):
    users = "".join(f'[[auth.users]]\nname = "user-{i}"\npassword_hash = "{ARGON2}"\n'
                    for i in range(100_000))
    rules = "".join(f'[[auth.acl]]\npermission = "allow"\naction = "all"\ntopic = "bench/{i}/#"\n'
                    f'username = "user-{i}"\n' for i in range(10_000))
    loaded = '[auth]\nanonymous = "allow"\n' + users + rules
    none, full = [], []
    for run in range(a.runs):
        for config, out in (("", none), (loaded, full)):
            n = Strata(a, config)
            try:
                out.append(p2p(a, n.ports["mqtt"], n.pid))
            finally:
                n.stop()
        print(f"acl run {run + 1}: none {none[-1]['msgs_per_s']:.0f}/s, "
              f"10k rules + 100k users {full[-1]['msgs_per_s']:.0f}/s", file=sys.stderr)
    return ["| MQTT p2p QoS 1, 1 pair | no ACL, no users | 10,000 rules, 100,000 users | ratio | CPU-s/M |",
            "|---|---:|---:|---:|---:|",
            row(f"{a.messages:,} msgs of 100 B", none, full, "msgs_per_s", "msg/s")]


def flood(a, pki):
    config = ("[mqtt]\nmax_connection_rate_per_ip = 100.0\nconnection_burst_per_ip = 200.0\n"
              "max_connections_per_ip = 1000\n")
    quiet, loud, rss, floods = [], [], [], []
    load = ["--clients", "100"]
    per_client = max(a.messages // 100, 100)
    for run in range(a.runs):
        n = Strata(a, config)
        try:
            quiet.append(p2p(a, n.ports["mqtt"], n.pid, *load, messages=per_client))
        finally:
            n.stop()
        n = Strata(a, config)
        try:
            flooder = subprocess.Popen(
                ["taskset", "-c", "1", a.strata, "bench", "mqtt", "--broker",
                 f"127.0.0.1:{n.ports['mqtt']}", "--scenario", "flood", "--rate", "10000",
                 "--messages", str(10_000 * a.flood_secs), "--concurrency", "256", "--json",
                 "--bind", "127.0.0.2"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            time.sleep(1)  # the flood is under way before the measured load starts
            loud.append(p2p(a, n.ports["mqtt"], n.pid, *load, messages=per_client))
            out, _ = flooder.communicate(timeout=a.flood_secs * 3 + 60)
            floods.append(json.loads(out.strip().splitlines()[-1]))
            rss.append(n.rss_kib())
        finally:
            n.stop()
        print(f"flood run {run + 1}: quiet {quiet[-1]['msgs_per_s']:.0f}/s p99 {quiet[-1]['p99_us']} µs, "
              f"flooded {loud[-1]['msgs_per_s']:.0f}/s p99 {loud[-1]['p99_us']} µs, "
              f"flood {floods[-1]['attempts_per_sec']:.0f}/s ({floods[-1]['accepted']} accepted), "
              f"RSS {rss[-1] / 1024:.0f} MiB", file=sys.stderr)
    return ["| 100 publishers, QoS 1 p2p | quiet | 10,000 attempts/s from one address | ratio | CPU-s/M |",
            "|---|---:|---:|---:|---:|",
            row("throughput", quiet, loud, "msgs_per_s", "msg/s"),
            row("p99 latency", quiet, loud, "p99_us", "µs", cpu=False),
            f"| flood reached | | {statistics.median(f['attempts_per_sec'] for f in floods):,.0f} attempts/s, "
            f"{statistics.median(f['accepted'] for f in floods):,.0f} accepted | | |",
            f"| node RSS after | | {statistics.median(rss) / 1024:,.0f} MiB | | |"]


def ratelimit(a, pki):
    limit = 1000
    config = f"[mqtt]\nmax_messages_per_sec = {limit}.0\n"
    secs = 10
    table = [f"| 100 publishers, QoS 1 p2p, limit {limit}/s per client | baseline | beside one "
             f"client attempting {limit * 10:,}/s | ratio | CPU-s/M |",
             "|---|---:|---:|---:|---:|"]
    for rate in (int(r) for r in a.rl_rates.split(",")):
        # Paced publishers: `rate` per publisher, `secs` seconds of messages each. Each run
        # measures them alone (quiet), beside one paho client publishing at its limit, and
        # beside the same client attempting ten times its limit. The paho client shares the
        # load generator's core (it uses a quarter to a third of it at either rate), so the
        # at-limit run is the baseline that isolates what exceeding the limit costs others.
        load = ["--clients", "100", "--rate", str(rate)]
        quiet, fair, loud, abusers, fairs, rss = [], [], [], [], [], []

        def beside(attempted, into, clients):
            n = Strata(a, config)
            try:
                abuser = subprocess.Popen(
                    ["taskset", "-c", "1", sys.executable, os.path.join(HERE, "mqtt_abuser.py"),
                     f"127.0.0.1:{n.ports['mqtt']}", "--rate", str(attempted),
                     "--secs", str(secs + 2)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                time.sleep(1)  # the client is under way before the measured load starts
                into.append(p2p(a, n.ports["mqtt"], n.pid, *load, messages=rate * secs))
                out, err = abuser.communicate(timeout=secs * 3 + 60)
                if abuser.returncode != 0:
                    raise RuntimeError(f"mqtt_abuser.py: {err[-2000:]}")
                clients.append(json.loads(out.strip().splitlines()[-1]))
                return n.rss_kib()
            finally:
                n.stop()

        for run in range(a.runs):
            n = Strata(a, config)
            try:
                quiet.append(p2p(a, n.ports["mqtt"], n.pid, *load, messages=rate * secs))
            finally:
                n.stop()
            beside(limit, fair, fairs)
            rss.append(beside(limit * 10, loud, abusers))
            print(f"ratelimit {rate}/s run {run + 1}: quiet {quiet[-1]['msgs_per_s']:.0f}/s p99 "
                  f"{quiet[-1]['p99_us']} µs; beside a client at its limit "
                  f"{fair[-1]['msgs_per_s']:.0f}/s p99 {fair[-1]['p99_us']} µs; beside abuser "
                  f"{loud[-1]['msgs_per_s']:.0f}/s p99 {loud[-1]['p99_us']} µs, abuser "
                  f"{abusers[-1]['attempted_per_s']:.0f}/s attempted, "
                  f"{abusers[-1]['acked_per_s']:.0f}/s acknowledged, disconnect "
                  f"{abusers[-1]['disconnect_reason']}, its core use "
                  f"{abusers[-1]['core_use']:.2f} (at its limit {fairs[-1]['core_use']:.2f}), "
                  f"RSS {rss[-1] / 1024:.0f} MiB", file=sys.stderr)
        cuts = sorted({str(x["disconnect_reason"]) for x in abusers})
        table += [row(f"{rate}/s each: throughput (baseline: quiet)", quiet, loud,
                      "msgs_per_s", "msg/s"),
                  row(f"{rate}/s each: p99 latency (baseline: quiet)", quiet, loud, "p99_us",
                      "µs", cpu=False),
                  row(f"{rate}/s each: throughput (baseline: beside a client at its limit)",
                      fair, loud, "msgs_per_s", "msg/s"),
                  row(f"{rate}/s each: p99 latency (baseline: beside a client at its limit)",
                      fair, loud, "p99_us", "µs", cpu=False),
                  f"| {rate}/s each: that client attempted / acknowledged | "
                  f"{med(fairs, 'attempted_per_s'):,.0f} / {med(fairs, 'acked_per_s'):,.0f} msg/s | "
                  f"{med(abusers, 'attempted_per_s'):,.0f} / {med(abusers, 'acked_per_s'):,.0f} msg/s "
                  f"(disconnect reason: {', '.join(cuts)}) | | |",
                  f"| {rate}/s each: that client's use of the generator's core | "
                  f"{med(fairs, 'core_use'):.2f} | {med(abusers, 'core_use'):.2f} | | |",
                  f"| {rate}/s each: node RSS after | | {statistics.median(rss) / 1024:,.0f} MiB | | |"]
    return table


def main():
    global ARGON2
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="tls,handshakes,kafka,kcat,acl,flood,ratelimit")
    ap.add_argument("--kafka-records", type=int, default=300_000)
    ap.add_argument("--rl-rates", default="200,500")
    ap.add_argument("--kcat-records", type=int, default=1_000_000)
    ap.add_argument("--strata", default=None)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--flood-secs", type=int, default=10)
    a = ap.parse_args()
    a.strata = a.strata or default_strata()
    ARGON2 = subprocess.run([a.strata, "admin", "users", "hash"],
                            input="bench-password\n", capture_output=True, text=True,
                            check=True).stdout.strip()
    pki = make_pki(tempfile.mkdtemp(prefix="sec-bench-pki-"))
    sections = {"tls": tls, "handshakes": handshakes, "kafka": kafka, "kcat": kcat, "acl": acl, "flood": flood,
                "ratelimit": ratelimit}
    tables = []
    for name in a.only.split(","):
        tables.append(f"\n### {name}\n")
        tables.extend(sections[name](a, pki))
    print("\n".join(tables))


if __name__ == "__main__":
    main()
