#!/usr/bin/env python3
"""Agent queue latency per storage class: a paced producer sends 1 KiB messages to a queue
of class `memory`, `local` and `object` (on a real S3-compatible server, s3s-fs, on
loopback), one consumer long-polls, acks each message, and records when it arrived. Reports
p50/p99 of the send's answer (the acknowledgement latency of the class) and of send to
delivery, with the node's CPU-seconds per million messages. The node and s3s-fs run on
core 0, this script on core 1; each HTTP client keeps one connection (one request per
write, as an SDK does); sends go out on `--senders` connections at the pace.

    python3 benches/agent_latency.py [--rate 200] [--seconds 10] [--runs 3] [--senders 16]
                                     [--fsync always] [--strata PATH]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from journal import default_strata  # noqa: E402

BUCKET = "strata"
CLASSES = ["memory", "local", "object"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    end = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > end:
                sys.exit(f"{what} did not start")
            time.sleep(0.05)


def start_s3(binary, data):
    os.makedirs(os.path.join(data, BUCKET), exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", "0", binary, "--host", "127.0.0.1", "--port", str(port),
                             "--access-key", "AK", "--secret-key", "SK", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "s3s-fs")
    return proc, f"http://127.0.0.1:{port}"


def object_store(endpoint):
    """The configuration of the s3s-fs server at `endpoint` as the node's object storage."""
    return f'''[journal.object_store]
backend = "s3"
endpoint = "{endpoint}"
bucket = "{BUCKET}"
access_key_id = "AK"
secret_access_key = "SK"
'''


def agent_config(tmp, port, extra=""):
    """Writes a configuration with the agent API on `port` (and `extra`): its path."""
    config = os.path.join(tmp, "strata.toml")
    with open(config, "w") as f:
        f.write(f'[agent]\nenabled = true\nlisten = "127.0.0.1:{port}"\n{extra}')
    return config


def serve(binary, tmp, config, env_extra=None, core="0"):
    """`strata serve` with `config`, data under `tmp`, only the agent API and the admin API
    (on a free port), on `core` (any with None); not waited for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update({"STRATA_NODE__DATA_DIR": os.path.join(tmp, "data"), "STRATA_MQTT__ENABLED": "false",
                "STRATA_KAFKA__ENABLED": "false", "STRATA_ADMIN__LISTEN": "127.0.0.1:0",
                "STRATA_LOG__LEVEL": "warn", **(env_extra or {})})
    pin = ["taskset", "-c", core] if core else []
    return subprocess.Popen(pin + [binary, "serve", "--config", config], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_strata(binary, tmp, endpoint, fsync):
    port = free_port()
    config = agent_config(tmp, port, object_store(endpoint))
    proc = serve(binary, tmp, config, {"STRATA_JOURNAL__FSYNC": fsync} if fsync else None)
    wait_port(port, proc, "strata")
    return proc, port


class Http:
    """One kept-alive connection."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None):
        self.c.request(method, path, body=None if body is None else json.dumps(body),
                       headers={"Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
        return json.loads(data or b"null")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


def run_class(port, pid, cls, rate, seconds, senders):
    queue = f"lat-{cls}-{time.monotonic_ns()}"
    Http(port).call("PUT", f"/v1/queues/{queue}", {"storage": cls})
    total = rate * seconds
    pad = "x" * 1000
    answers, deliveries = [], []
    done = threading.Event()

    def consume():
        h = Http(port)
        seen = 0
        while seen < total:
            got = h.call("POST", f"/v1/queues/{queue}/fetch", {"max": 100, "wait_ms": 5000})
            now = time.time()
            for m in got["messages"]:
                deliveries.append(now - m["body"]["t"])
                h.call("POST", f"/v1/queues/{queue}/ack", {"lease": m["lease"]})
                seen += 1
        done.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    # Senders on their own connections, so a class whose answer takes longer than the
    # pace (object) still sends at the pace: send i starts at its due time or, when every
    # sender is busy, as soon as one is free.
    counter = iter(range(total))
    lock = threading.Lock()
    start = time.time() + 0.2

    def produce():
        h = Http(port)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            delay = start + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            t = time.time()
            h.call("POST", f"/v1/queues/{queue}/messages", {"body": {"t": t, "pad": pad}})
            answers.append(time.time() - t)

    cpu0 = cpu_seconds(pid)
    producers = [threading.Thread(target=produce, daemon=True) for _ in range(senders)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    if not done.wait(120):
        sys.exit(f"{cls}: not every message was delivered")
    cpu = cpu_seconds(pid) - cpu0
    return {"class": cls, "sent": total, "elapsed_s": time.time() - start,
            "ack_p50_ms": pct(answers, 50), "ack_p99_ms": pct(answers, 99),
            "deliver_p50_ms": pct(deliveries, 50), "deliver_p99_ms": pct(deliveries, 99),
            "cpu_s_per_m": cpu / total * 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--senders", type=int, default=16)
    ap.add_argument("--fsync", default=None, help="the journal's fsync policy (always, never, interval:<ms>)")
    ap.add_argument("--strata", default=None)
    ap.add_argument("--s3s-fs", default=os.path.expanduser("~/.cache/strata/tools/bin/s3s-fs"))
    args = ap.parse_args()
    strata = args.strata or default_strata()
    try:
        os.sched_setaffinity(0, {1})
    except (AttributeError, OSError):
        pass
    results = {c: [] for c in CLASSES}
    for run in range(args.runs):
        tmp = tempfile.mkdtemp(prefix="strata-agent-lat-")
        s3, endpoint = start_s3(args.s3s_fs, os.path.join(tmp, "s3"))
        node, port = start_strata(strata, tmp, endpoint, args.fsync)
        try:
            order = CLASSES if run % 2 == 0 else list(reversed(CLASSES))
            for cls in order:
                r = run_class(port, node.pid, cls, args.rate, args.seconds, args.senders)
                results[cls].append(r)
                print(json.dumps(r), flush=True)
        finally:
            for p in (node, s3):
                p.send_signal(signal.SIGTERM)
                p.wait()
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nmedians of {args.runs} runs, {args.rate} msg/s for {args.seconds} s, 1 KiB, "
          f"{args.senders} senders, fsync {args.fsync or 'default'}:")
    print(f"{'class':8} {'ack p50':>9} {'ack p99':>9} {'deliver p50':>12} {'deliver p99':>12} {'CPU-s/M':>9}")
    for cls in CLASSES:
        rs = results[cls]

        def med(k):
            return statistics.median(r[k] for r in rs)
        print(f"{cls:8} {med('ack_p50_ms'):8.2f}ms {med('ack_p99_ms'):8.2f}ms "
              f"{med('deliver_p50_ms'):11.2f}ms {med('deliver_p99_ms'):11.2f}ms {med('cpu_s_per_m'):9.1f}")


if __name__ == "__main__":
    main()
