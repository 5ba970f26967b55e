#!/usr/bin/env python3
"""Two builds of strata side by side on the MQTT hot paths, to catch a regression in a
change: p2p QoS 0 and QoS 1 and fan-out 1->100 QoS 0, each build fresh per run, the order
alternating between runs, medians reported with the broker's CPU-seconds per million
messages. The load generator is `--after`'s `strata bench mqtt` for both, pinned to core 1;
brokers run on core 0 (see benches/mqtt.py).

    python3 benches/mqtt_ab.py --before /tmp/strata-before --after target/.../release/strata

With `--after-log-override`, the after build runs with a log override at debug for a client
id that is not in the load, to measure what an active override costs everyone else.
"""
import argparse
import json
import statistics
import sys
import time
import urllib.request

from mqtt import bench, free_port, running, start_strata


def add_override(admin_port):
    body = json.dumps({"client_id": "somebody-else", "level": "debug"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/api/v1/log/overrides", data=body,
                                 method="POST", headers={"Content-Type": "application/json"})
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 201
                return
        except OSError:
            assert time.time() < deadline, "admin API did not come up"
            time.sleep(0.05)

SCENARIOS = [
    ("p2p QoS 0", ["--scenario", "p2p", "--qos", "0", "--messages", "600000"]),
    ("p2p QoS 1", ["--scenario", "p2p", "--qos", "1", "--messages", "600000"]),
    ("fan-out 1->100 QoS 0", ["--scenario", "fan-out", "--clients", "100", "--qos", "0",
                              "--messages", "30000"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--after-log-override", action="store_true")
    a = ap.parse_args()
    builds = [("before", a.before), ("after", a.after)]
    results = {}
    for run in range(a.runs):
        for name, binary in (builds if run % 2 else builds[::-1]):
            admin_port = free_port()
            with running(lambda t, p, b=binary: start_strata(t, p, b, admin_port)) as (port, pid):
                if name == "after" and a.after_log_override:
                    add_override(admin_port)
                for label, args in SCENARIOS:
                    r = bench(a.after, port, pid, *args)
                    results.setdefault((label, name), []).append(r)
                    print(f"run {run + 1} {name:6} {label:22} {r['msgs_per_s']:>10.0f} msg/s "
                          f"{r['broker_cpu_seconds_per_million'] or 0:5.2f} CPU-s/M lost {r['lost']}",
                          file=sys.stderr)
    print("| scenario | before msg/s (CPU-s/M) | after msg/s (CPU-s/M) | after / before |")
    print("|---|---|---|---|")
    for label, _ in SCENARIOS:
        med = {}
        for name, _ in builds:
            rs = results[(label, name)]
            med[name] = (statistics.median(r["msgs_per_s"] for r in rs),
                         statistics.median(r["broker_cpu_seconds_per_million"] or 0 for r in rs))
        print(f"| {label} | {med['before'][0]:.0f} ({med['before'][1]:.2f}) | "
              f"{med['after'][0]:.0f} ({med['after'][1]:.2f}) | "
              f"{med['after'][0] / med['before'][0]:.2f}x |")


if __name__ == "__main__":
    main()
