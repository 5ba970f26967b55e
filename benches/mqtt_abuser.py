#!/usr/bin/env python3
"""One MQTT client (paho-mqtt, not the project's own load generator) that publishes QoS 1
at a fixed attempted rate for a fixed time, one packet per write, and reports as one JSON
line how many of its publishes the broker acknowledged and at what rate, whether and
why it was disconnected, and how much CPU it used itself (it shares a core with the load
generator in benches/security.py). Used by benches/security.py (`ratelimit`) as the client that
sends ten times its rate limit beside well-behaved ones.

Usage: benches/mqtt_abuser.py HOST:PORT --rate N --secs S [--topic T] [--payload BYTES]
"""
import argparse
import json
import resource
import threading
import time

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("broker")
    ap.add_argument("--rate", type=float, required=True, help="attempted publishes per second")
    ap.add_argument("--secs", type=float, required=True)
    ap.add_argument("--topic", default="abuse/1")
    ap.add_argument("--payload", type=int, default=100)
    a = ap.parse_args()
    host, port = a.broker.rsplit(":", 1)

    acked = 0
    lock = threading.Lock()
    connected = threading.Event()
    reason = {"code": None}

    def on_connect(_c, _u, _f, rc, _p=None):
        if rc == 0:
            connected.set()

    def on_publish(_c, _u, _mid, _rc=None, _p=None):
        nonlocal acked
        with lock:
            acked += 1

    def on_disconnect(_c, _u, _f, rc, _p=None):
        reason["code"] = int(rc.value) if hasattr(rc, "value") else int(rc)

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-abuser",
                    protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.on_connect, c.on_publish, c.on_disconnect = on_connect, on_publish, on_disconnect
    c.connect(host, int(port))
    c.loop_start()
    if not connected.wait(30):
        raise SystemExit("abuser: no CONNACK")
    payload = b"x" * a.payload
    start = time.monotonic()
    attempted = 0
    # The attempted rate is kept by publishing whatever is due every millisecond; paho
    # queues what the broker has not taken yet (its in-flight window is full).
    while (now := time.monotonic()) - start < a.secs and reason["code"] is None:
        due = int((now - start) * a.rate)
        while attempted < due:
            c.publish(a.topic, payload, qos=1)
            attempted += 1
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    with lock:
        done = acked
    cut = reason["code"]
    c.disconnect()
    c.loop_stop()
    use = resource.getrusage(resource.RUSAGE_SELF)
    cpu = use.ru_utime + use.ru_stime
    print(json.dumps({"attempted": attempted, "attempted_per_s": attempted / elapsed,
                      "acked": done, "acked_per_s": done / elapsed, "secs": elapsed,
                      "disconnect_reason": cut, "cpu_s": cpu, "core_use": cpu / elapsed}))


if __name__ == "__main__":
    main()
