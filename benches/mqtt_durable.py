#!/usr/bin/env python3
"""MQTT durability benchmark: QoS 1 with persistent sessions, mosquitto (`persistence
true`) against Strata (journal + RocksDB, default `fsync = interval:100`), the same
`strata bench mqtt --persistent` load, broker pinned to core 0 and load generator to core 1;
then the restart time of each broker with 1,000,000 QoS 1 messages queued for one
persistent session: from the start of the process to CONNACK (session present) and to
the first message, and the time to drain all of them.

Usage: benches/mqtt_durable.py [--runs N] [--messages N] [--stored N]
"""
import argparse
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqtt as m  # noqa: E402


def start_mosquitto(tmp, port):
    # Started as root, mosquitto drops to its own user: it must be able to write here.
    os.chmod(tmp, 0o777)
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
                f"max_inflight_messages 0\npersistence true\npersistence_location {tmp}/\n")
    return subprocess.Popen(["taskset", "-c", "0", "mosquitto", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_strata(binary, extra_env=None):
    def start(tmp, port):
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update({"STRATA_AGENT__ENABLED": "false", "STRATA_NODE__DATA_DIR": os.path.join(tmp, "data"), "STRATA_MQTT__LISTEN": f"127.0.0.1:{port}",
                    "STRATA_MQTT__WS_ENABLED": "false", "STRATA_KAFKA__ENABLED": "false", "STRATA_ADMIN__LISTEN": "127.0.0.1:0",
                    "STRATA_LOG__LEVEL": "warn"})
        env.update(extra_env or {})
        return subprocess.Popen(["taskset", "-c", "0", binary, "serve"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return start


def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def s(text):
    b = text.encode()
    return len(b).to_bytes(2, "big") + b


class Conn:
    def __init__(self, port, client_id, clean):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = bytearray()
        self.sock.sendall(packet(0x10, s("MQTT") + bytes([4, 0x02 if clean else 0]) + (600).to_bytes(2, "big")
                                 + s(client_id)))

    def packets(self):
        """Yields (first byte, body) as they arrive; stops after 30 s of silence."""
        while True:
            i = 0
            while True:
                if len(self.buf) - i < 2:
                    break
                n, mult, j = 0, 1, i + 1
                while j < len(self.buf):
                    b = self.buf[j]
                    n += (b & 0x7F) * mult
                    mult *= 128
                    j += 1
                    if not b & 0x80:
                        break
                if len(self.buf) < j + n:
                    break
                yield self.buf[i], bytes(self.buf[j:j + n])
                i = j + n
            del self.buf[:i]
            ready, _, _ = select.select([self.sock], [], [], 30)
            if not ready:
                return
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return
            self.buf += chunk


def wait_connack(port, client_id, deadline=120, expect_present=True):
    """Connects until the broker answers; returns (connection, CONNACK time)."""
    end = time.time() + deadline
    while time.time() < end:
        try:
            c = Conn(port, client_id, clean=False)
            for first, body in c.packets():
                assert first == 0x20, first
                assert body[1] == 0 and (body[0] == 1 or not expect_present), f"CONNACK {body!r}"
                return c, time.time(), body[0] == 1
        except OSError:
            time.sleep(0.005)
    sys.exit("broker did not come back")


def restart_time(name, start, stored, strata, how="term"):
    tmp = tempfile.mkdtemp()
    port = m.free_port()
    proc = start(tmp, port)
    try:
        m.wait_port(port)
        c = Conn(port, "restart-sub", clean=False)
        c.sock.sendall(packet(0x82, (1).to_bytes(2, "big") + s("bench/fill") + b"\x01"))
        got = 0
        for first, _ in c.packets():
            got += 1
            if first >> 4 == 9:
                break
        c.sock.close()
        m.bench(strata, port, proc.pid, "--scenario", "publish", "--qos", "1", "--messages", str(stored))
        t = time.time()
        proc.send_signal(signal.SIGTERM if how == "term" else signal.SIGKILL)
        proc.wait()
        stop_s = time.time() - t
        t0 = time.time()
        proc = start(tmp, port)
        c, connack, present = wait_connack(port, "restart-sub",
                                           expect_present=(name != "mosquitto" or how == "term"))
        first_msg, n, acks = None, 0, bytearray()
        # A session that did not survive has nothing to drain.
        for first, body in (c.packets() if present else ()):
            if first >> 4 != 3:
                continue
            if first_msg is None:
                first_msg = time.time()
            n += 1
            tl = int.from_bytes(body[:2], "big")
            acks += b"\x40\x02" + body[2 + tl:4 + tl]
            if len(acks) > 4000 or n == stored:
                c.sock.sendall(acks)
                acks.clear()
            if n == stored:
                break
        if first_msg is None:
            first_msg = time.time()
        done = time.time()
        c.sock.close()
        return {"broker": name, "stop_s": stop_s, "connack_s": connack - t0,
                "first_s": (first_msg or done) - t0, "drain_s": done - t0, "received": n}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--messages", type=int, default=300000)
    ap.add_argument("--stored", type=int, default=1000000)
    a = ap.parse_args()
    strata = m.default_strata()
    brokers = [("mosquitto", start_mosquitto), ("strata", start_strata(strata))]
    results = {}
    for run in range(a.runs):
        for name, start in brokers:
            with m.running(start) as (port, pid):
                r = m.bench(strata, port, pid, "--scenario", "p2p", "--qos", "1", "--persistent",
                            "--messages", str(a.messages))
                results.setdefault(name, []).append(r)
                print(f"run {run + 1} {name:9} p2p QoS 1 persistent {r['msgs_per_s']:>9.0f} msg/s "
                      f"{r['broker_cpu_seconds_per_million'] or 0:6.2f} CPU-s/M lost {r['lost']}", file=sys.stderr)
    rate = max(int(statistics.median(r["msgs_per_s"] for r in results["mosquitto"]) / 2), 1)
    latency = {}
    for run in range(a.runs):
        for name, start in brokers:
            with m.running(start) as (port, pid):
                r = m.bench(strata, port, pid, "--scenario", "p2p", "--qos", "1", "--persistent",
                            "--rate", str(rate), "--messages", str(rate * 5))
                latency.setdefault(name, []).append(r)
    med = {n: (statistics.median(r["msgs_per_s"] for r in rs),
               statistics.median(r["broker_cpu_seconds_per_million"] or 0 for r in rs),
               max(r["lost"] for r in rs)) for n, rs in results.items()}
    mq, st = med["mosquitto"], med["strata"]
    print("| broker | msg/s | CPU-s per M | lost | p50 µs | p99 µs | p999 µs |")
    print("|---|---|---|---|---|---|---|")
    for n in ("mosquitto", "strata"):
        ls = latency[n]
        print(f"| {n} | {med[n][0]:.0f} | {med[n][1]:.2f} | {med[n][2]} | "
              f"{statistics.median(r['p50_us'] for r in ls):.0f} | {statistics.median(r['p99_us'] for r in ls):.0f} | "
              f"{statistics.median(r['p999_us'] for r in ls):.0f} |")
    print(f"\nstrata / mosquitto: throughput {st[0] / mq[0]:.2f}x, CPU per message {st[1] / mq[1]:.2f}x; "
          f"latency paced at {rate} msg/s\n")
    print(f"Restart with {a.stored} stored messages, medians of {a.runs}:\n")
    print(f"| broker | stopped by | stop s | start to CONNACK s | start to first message s | start to all {a.stored} s (or to the last) | received |")
    print("|---|---|---|---|---|---|---|")
    extra = {"STRATA_MQTT__MAX_QUEUED_MESSAGES": str(a.stored * 2), "STRATA_MQTT__MAX_QUEUED_BYTES": str(1 << 34)}
    for how in ("term", "kill"):
        for name, start in (("mosquitto", start_mosquitto), ("strata", start_strata(strata, extra))):
            rs = [restart_time(name, start, a.stored, strata, how) for _ in range(a.runs)]
            for r in rs:
                print(f"restart {name} after SIG{how.upper()}: CONNACK {r['connack_s']:.2f} s, all {r['drain_s']:.2f} s, "
                      f"received {r['received']}", file=sys.stderr)
            med = {k: statistics.median(r[k] for r in rs) for k in ("stop_s", "connack_s", "first_s", "drain_s")}
            print(f"| {name} | SIG{how.upper()} | {med['stop_s']:.2f} | {med['connack_s']:.2f} | {med['first_s']:.2f} | "
                  f"{med['drain_s']:.2f} | {min(r['received'] for r in rs)} |")

if __name__ == "__main__":
    main()
