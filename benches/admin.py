#!/usr/bin/env python3
"""The admin API with many MQTT clients connected: the latency of listing, filtering,
paging through and reading clients, and of a /metrics scrape, against a release node on
core 0 holding N idle MQTT 3.1.1 connections (opened from raw sockets on core 1).
Medians of --requests calls each.

    python3 benches/admin.py --clients 10000
"""
import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from mqtt import default_strata, free_port, wait_port


def connect_packet(client_id):
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def timed(url, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as r:
            body = r.read()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), len(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--strata", default=None)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {1})
    tmp = tempfile.mkdtemp()
    mqtt_port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update({"STRATA_AGENT__ENABLED": "false", "STRATA_NODE__DATA_DIR": os.path.join(tmp, "data"),
                "STRATA_MQTT__LISTEN": f"127.0.0.1:{mqtt_port}", "STRATA_MQTT__WS_ENABLED": "false",
                "STRATA_MQTT__MAX_CONNECTIONS": "100000", "STRATA_KAFKA__ENABLED": "false",
                "STRATA_ADMIN__LISTEN": f"127.0.0.1:{admin_port}", "STRATA_LOG__LEVEL": "warn"})
    node = subprocess.Popen(["taskset", "-c", "0", a.strata or default_strata(), "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        wait_port(mqtt_port)
        wait_port(admin_port)
        for i in range(a.clients):
            s = socket.create_connection(("127.0.0.1", mqtt_port))
            s.sendall(connect_packet(f"client-{i:06}"))
            assert s.recv(4)[:2] == b"\x20\x02"
            socks.append(s)
        base = f"http://127.0.0.1:{admin_port}"
        rows = [
            ("clients, first page of 100", "/api/v1/mqtt/clients?limit=100"),
            ("clients, page of 1000", "/api/v1/mqtt/clients?limit=1000"),
            ("clients, prefix filter (10 match)", "/api/v1/mqtt/clients?client_id_prefix=client-00001"),
            ("one client", "/api/v1/mqtt/clients/client-000042"),
            ("sessions, first page of 100", "/api/v1/mqtt/sessions?limit=100"),
            ("/metrics", "/metrics"),
        ]
        print(f"| request ({a.clients} clients connected) | median ms | bytes |")
        print("|---|---|---|")
        for label, path in rows:
            ms, size = timed(base + path, a.requests)
            print(f"| {label} | {ms:.2f} | {size} |")
        # Walking every page of 1000.
        t = time.perf_counter()
        cursor, pages = "", 0
        while True:
            url = f"{base}/api/v1/mqtt/clients?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            with urllib.request.urlopen(url, timeout=60) as r:
                page = json.loads(r.read())
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        print(f"| every page of 1000 ({pages} pages) | {(time.perf_counter() - t) * 1000:.1f} total | |")
    finally:
        for s in socks:
            s.close()
        node.terminate()
        node.wait()


if __name__ == "__main__":
    sys.exit(main())
