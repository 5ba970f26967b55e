#!/usr/bin/env python3
"""Resume correctness of agent topics under disconnects and crashes: a publisher appends
numbered events to a topic (at least `--events`, and on until the reader is done); a reader follows it as Server-Sent Events, hanging up at random
points and resuming with Last-Event-ID (1,000 times by default); meanwhile the node is
SIGKILLed and restarted (10 times by default) on the same data. At the end a checker reads
the topic's whole history and compares: every stored event reached the reader once, in
order; every publish the node acknowledged is stored.

    python3 benches/agent_resume.py [--events 3000] [--reconnects 1000] [--kills 10]
                                    [--object] [--strata PATH]
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from agent_latency import agent_config, free_port, object_store, serve, start_s3, wait_port  # noqa: E402
from journal import default_strata  # noqa: E402

TOPIC = "resume"


class Node:
    """`strata serve` with the agent API on a fixed port, restartable on its data."""

    def __init__(self, binary, tmp, store=None):
        self.binary, self.tmp = binary, tmp
        self.port = free_port()
        self.config = agent_config(tmp, self.port, object_store(store) if store else "")
        self.proc = None
        self.start()

    def start(self):
        self.proc = serve(self.binary, self.tmp, self.config, core=None)
        wait_port(self.port, self.proc, "strata")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


def call(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


def publisher(node, events, acked, done, stop):
    """Publishes events 0, 1, ... (at least `events`, and on until `stop`), each retried
    until the node acknowledges it (a retry after a crash may store one twice: the node did
    not answer the first)."""
    seq = 0
    while seq < events or not stop.is_set():
        while True:
            try:
                status, answer = call(node.port, "POST", f"/v1/topics/{TOPIC}/events",
                                      {"data": {"seq": seq}})
                if status == 201:
                    acked.append((seq, answer["id"]))
                    break
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.01)
        seq += 1
        time.sleep(0.002)
    done.set()


def read_some(port, last_id, limit):
    """One SSE connection resumed after `last_id`: up to `limit` events (id, seq), then
    hangs up. Raises on a connection failure."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    headers = {"Accept": "text/event-stream"}
    path = f"/v1/topics/{TOPIC}/events"
    if last_id is None:
        path += "?from=0"
    else:
        headers["Last-Event-ID"] = str(last_id)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        raise OSError(f"status {r.status}")
    got, fields = [], {}
    try:
        while len(got) < limit:
            line = r.fp.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith(":"):
                continue
            if not line:
                if "data" in fields:
                    got.append((int(fields["id"]), json.loads(fields["data"])["data"]["seq"]))
                fields = {}
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
    except (socket.timeout, TimeoutError):
        pass
    finally:
        c.close()
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--reconnects", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--strata", default=None)
    ap.add_argument("--object", action="store_true",
                    help="topics of class object, on s3s-fs on loopback (local otherwise)")
    ap.add_argument("--s3s-fs", default=os.path.expanduser("~/.cache/strata/tools/bin/s3s-fs"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="strata-agent-resume-")
    s3, endpoint = start_s3(args.s3s_fs, os.path.join(tmp, "s3")) if args.object else (None, None)
    node = Node(args.strata or default_strata(), tmp, endpoint)
    acked, done, stop = [], threading.Event(), threading.Event()
    pub = threading.Thread(target=publisher, args=(node, args.events, acked, done, stop),
                           daemon=True)
    pub.start()
    seen, last_id, reconnects, failures = [], None, 0, 0
    kills = []
    rng = random.Random(7)
    started = time.time()

    def killer():
        # SIGKILLs at random moments, whatever the reader and the publisher are doing.
        while len(kills) < args.kills:
            time.sleep(rng.uniform(0.3, 1.2))
            node.kill()
            kills.append(time.time())
            node.start()
    threading.Thread(target=killer, daemon=True).start()
    try:
        while True:
            if reconnects >= args.reconnects and len(kills) >= args.kills:
                stop.set()
            finished = done.is_set() and acked and last_id is not None and \
                last_id >= max(i for _, i in acked)
            if finished:
                break
            try:
                got = read_some(node.port, last_id, rng.randint(1, 6))
            except (OSError, http.client.HTTPException, ValueError):
                failures += 1
                time.sleep(0.02)
                continue
            reconnects += 1
            seen.extend(got)
            if got:
                last_id = got[-1][0]
        # The checker: the whole history, as stored.
        history, start = [], 0
        while True:
            status, page = call(node.port, "GET", f"/v1/topics/{TOPIC}/events?from={start}&max=1000")
            assert status == 200, page
            history.extend((e["id"], e["data"]["seq"]) for e in page["events"])
            if not page["events"]:
                break
            start = page["next"]
    finally:
        node.stop()
        if s3:
            s3.kill()
            s3.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    ids = [i for i, _ in seen]
    report = {
        "storage": "object" if args.object else "local", "publishes_acked": len(acked),
        "stored": len(history), "delivered": len(seen), "reconnects": reconnects,
        "failed_connects": failures, "kills": len(kills), "seconds": round(time.time() - started, 1),
        "duplicates": len(ids) - len(set(ids)),
        "out_of_order": sum(1 for a, b in zip(ids, ids[1:]) if b <= a),
        "missing": len(set(i for i, _ in history) - set(ids)),
        "not_stored": len(set(history) ^ set(seen)),
        "acked_not_stored": len({s for s, _ in acked} - {s for _, s in history}),
        "stored_twice_by_retries": len(history) - len({s for _, s in history}),
    }
    print(json.dumps(report))
    ok = (report["duplicates"] == 0 and report["out_of_order"] == 0 and report["missing"] == 0
          and report["not_stored"] == 0 and report["acked_not_stored"] == 0)
    print("every event delivered once, in order" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
