#!/usr/bin/env python3
"""MQTT benchmark: the same `strata bench mqtt` load against mosquitto, rumqttd (when
installed) and Strata, one broker after the other, the broker pinned to core 0 and the load
generator to core 1. Prints medians and Strata / peer ratios of throughput and of broker
CPU-seconds per million messages (from /proc/PID/stat).

Usage: benches/mqtt.py [--runs N] [--messages N] [--strata PATH] [--rumqttd PATH]
rumqttd: `cargo install rumqttd --root ~/.cache/strata/tools` (no --locked) puts it in
~/.cache/strata/tools/bin/rumqttd.
"""
import argparse
import contextlib
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

HOME = os.path.expanduser("~")


def default_strata():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(HOME, ".cache", "strata", "target"))
    path = os.path.join(target, "x86_64-unknown-linux-gnu", "release", "strata")
    if not os.path.exists(path):
        sys.exit("no release strata binary; run: cargo build --release -p strata")
    return path


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"broker on {port} did not start")


def start_mosquitto(tmp, port):
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                "max_inflight_messages 0\npersistence false\n")
    return subprocess.Popen(["taskset", "-c", "0", "mosquitto", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_rumqttd(tmp, port, binary):
    conf = os.path.join(tmp, "rumqttd.toml")
    with open(conf, "w") as f:
        f.write(f"""id = 0
[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 100
dynamic_filters = true
""")
    return subprocess.Popen(["taskset", "-c", "0", binary, "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_strata(tmp, port, binary, admin_port=0):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update({"STRATA_AGENT__ENABLED": "false", "STRATA_NODE__DATA_DIR": os.path.join(tmp, "data"), "STRATA_MQTT__LISTEN": f"127.0.0.1:{port}",
                "STRATA_MQTT__WS_ENABLED": "false", "STRATA_KAFKA__ENABLED": "false",
                "STRATA_ADMIN__LISTEN": f"127.0.0.1:{admin_port}",
                "STRATA_LOG__LEVEL": "warn"})
    return subprocess.Popen(["taskset", "-c", "0", binary, "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def running(start):
    """Starts a broker on a free port in a fresh directory; yields (port, pid)."""
    tmp = tempfile.mkdtemp()
    port = free_port()
    proc = start(tmp, port)
    try:
        wait_port(port)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def bench(strata, port, pid, *args):
    out = subprocess.run(["taskset", "-c", "1", strata, "bench", "mqtt", "--broker", f"127.0.0.1:{port}",
                          "--pid", str(pid), "--json", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


SCENARIOS = [
    ("p2p QoS 0", ["--scenario", "p2p", "--qos", "0"]),
    ("p2p QoS 1", ["--scenario", "p2p", "--qos", "1"]),
    ("fan-out 1->100 QoS 0", ["--scenario", "fan-out", "--clients", "100", "--qos", "0", "--messages", "MSG100"]),
    ("fan-out 1->100 QoS 1", ["--scenario", "fan-out", "--clients", "100", "--qos", "1", "--messages", "MSG100"]),
    ("fan-out 1->1000 QoS 0", ["--scenario", "fan-out", "--clients", "1000", "--qos", "0", "--messages", "MSG1000"]),
    ("fan-out 1->1000 QoS 1", ["--scenario", "fan-out", "--clients", "1000", "--qos", "1", "--messages", "MSG1000"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=200000)
    ap.add_argument("--strata", default=None)
    ap.add_argument("--rumqttd", default=os.path.join(HOME, ".cache", "strata", "tools", "bin", "rumqttd"))
    a = ap.parse_args()
    strata = a.strata or default_strata()
    brokers = [("mosquitto", lambda t, p: start_mosquitto(t, p))]
    if os.path.exists(a.rumqttd):
        brokers.append(("rumqttd", lambda t, p: start_rumqttd(t, p, a.rumqttd)))
    brokers.append(("strata", lambda t, p: start_strata(t, p, strata)))
    results = {}
    for run in range(a.runs):
        for name, start in brokers:
            with running(start) as (port, pid):
                for label, args in SCENARIOS:
                    args = [x.replace("MSG1000", str(max(a.messages * 5 // 1000, 100)))
                            .replace("MSG100", str(max(a.messages * 5 // 100, 100))) for x in args]
                    if "--messages" not in args:
                        args += ["--messages", str(a.messages)]
                    r = bench(strata, port, pid, *args)
                    results.setdefault((label, name), []).append(r)
                    print(f"run {run + 1} {name:9} {label:22} {r['msgs_per_s']:>10.0f} msg/s "
                          f"{r['broker_cpu_seconds_per_million'] or 0:6.2f} CPU-s/M lost {r['lost']}", file=sys.stderr)
    # Latency: p2p QoS 1 paced at half the slower peer's flood rate, 5 seconds per broker.
    peers = [n for n, _ in brokers if n != "strata"]
    slowest = min(statistics.median(r["msgs_per_s"] for r in results[("p2p QoS 1", n)]) for n in peers)
    rate = max(int(slowest / 2), 1)
    latency = {}
    for run in range(a.runs):
        for name, start in brokers:
            with running(start) as (port, pid):
                r = bench(strata, port, pid, "--scenario", "p2p", "--qos", "1", "--rate", str(rate),
                          "--messages", str(rate * 5))
                latency.setdefault(name, []).append(r)
                print(f"run {run + 1} {name:9} paced {rate} msg/s: p50 {r['p50_us']} µs p99 {r['p99_us']} µs",
                      file=sys.stderr)
    names = [n for n, _ in brokers]
    print("| scenario | " + " | ".join(f"{n} msg/s (CPU-s/M)" for n in names) + " | strata / peers, throughput | strata / peers, CPU per msg |")
    print("|---" * (len(names) + 3) + "|")
    for label, _ in SCENARIOS:
        med = {n: (statistics.median(r["msgs_per_s"] for r in results[(label, n)]),
                   statistics.median(r["broker_cpu_seconds_per_million"] or 0 for r in results[(label, n)]),
                   max(r["lost"] for r in results[(label, n)])) for n in names}
        cells = [f"{med[n][0]:.0f} ({med[n][1]:.2f}){' LOST ' + str(med[n][2]) if med[n][2] else ''}" for n in names]
        s = med["strata"]
        thr = ", ".join(f"{s[0] / med[n][0]:.2f}x {n}" for n in names if n != "strata")
        cpu = ", ".join(f"{s[1] / med[n][1]:.2f}x {n}" for n in names if n != "strata" and med[n][1] > 0)
        print(f"| {label} | " + " | ".join(cells) + f" | {thr} | {cpu} |")
    print()
    print(f"p2p QoS 1 paced at {rate} msg/s (half the slower peer's flood rate), medians of {a.runs}:")
    print("| broker | p50 µs | p99 µs | p999 µs |")
    print("|---|---|---|---|")
    for n in names:
        rs = latency[n]
        print(f"| {n} | {statistics.median(r['p50_us'] for r in rs):.0f} | {statistics.median(r['p99_us'] for r in rs):.0f} "
              f"| {statistics.median(r['p999_us'] for r in rs):.0f} |")


if __name__ == "__main__":
    main()

