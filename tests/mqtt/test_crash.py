"""Crash test: a publisher sends QoS 1 and QoS 2 messages and records every PUBACK and
PUBCOMP; a persistent subscriber records what it receives; the node runs with
`fsync = "always"` and is killed with SIGKILL at random moments, 20 times, and started
again on the same data directory each time. At the end every acknowledged QoS 1 message
has been received at least once and every acknowledged QoS 2 message exactly once.

Both clients are minimal MQTT 3.1.1 clients over raw sockets that keep their own session
state across reconnections, as the specification requires of a client: the publisher
resends unacknowledged PUBLISH packets (DUP, same packet id) and owed PUBRELs; the
subscriber remembers inbound QoS 2 packet ids until their PUBREL, so it hands each QoS 2
message to the application once (method B of the specification)."""
import random
import select
import socket
import threading
import time

from conftest import DEADLINE, Node
from raw import ack, connect, packet, publish, split_packet, subscribe

CYCLES = 20
WINDOW = 16


class Session:
    """One raw connection at a time to whatever port the node has now."""

    def __init__(self, node_ref, client_id):
        self.node_ref = node_ref
        self.client_id = client_id
        self.sock = None
        self.buf = b""

    def open(self):
        """Connects (retrying while the node is down); returns session present."""
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", self.node_ref[0].port), timeout=1)
                sock.sendall(connect(client_id=self.client_id, v5=False, clean=False))
                self.sock, self.buf = sock, b""
                first, body = self.read(DEADLINE)
                assert first == 0x20 and body[1] == 0, (first, body)
                return body[0] == 1
            except (OSError, ConnectionError, TypeError):
                self.close()
                time.sleep(0.02)

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None

    def send(self, data):
        self.sock.sendall(data)

    def read(self, timeout):
        """The next packet as (first byte, body); None when nothing came in `timeout`.
        Raises ConnectionError when the connection is gone."""
        end = time.time() + timeout
        while True:
            got, self.buf = split_packet(self.buf)
            if got:
                return got
            left = end - time.time()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk


def publisher(node_ref, stop, acked, sent):
    """Publishes "n" for n = 0, 1, ... at QoS 1 (even n) or 2 (odd n), up to WINDOW in
    flight, until `stop`; then finishes what is in flight."""
    sess = Session(node_ref, "crash-pub")
    inflight = {}  # packet id -> [payload, qos, phase ("pub" or "rel")]
    n, next_id = 0, 0
    while not (stop.is_set() and not inflight):
        present = sess.open()
        try:
            if inflight:
                assert present, "publisher session lost"
            for pid, (payload, qos, phase) in sorted(inflight.items()):
                if phase == "pub":
                    sess.send(publish("c/t", payload, qos=qos, packet_id=pid, v5=False, dup=True))
                else:
                    sess.send(packet(0x62, pid.to_bytes(2, "big")))
            while not (stop.is_set() and not inflight):
                while not stop.is_set() and len(inflight) < WINDOW:
                    next_id = next_id % 65535 + 1
                    qos = 1 if n % 2 == 0 else 2
                    payload = str(n).encode()
                    inflight[next_id] = [payload, qos, "pub"]
                    sent.append(payload)
                    n += 1
                    sess.send(publish("c/t", payload, qos=qos, packet_id=next_id, v5=False))
                got = sess.read(0.05)
                if got is None:
                    continue
                first, body = got
                pid = int.from_bytes(body[:2], "big")
                kind = first >> 4
                if kind == 4 and pid in inflight:  # PUBACK
                    acked[inflight.pop(pid)[0]] = 1
                elif kind == 5 and pid in inflight:  # PUBREC
                    inflight[pid][2] = "rel"
                    sess.send(packet(0x62, pid.to_bytes(2, "big")))
                elif kind == 7 and pid in inflight:  # PUBCOMP
                    acked[inflight.pop(pid)[0]] = 2
        except (OSError, ConnectionError):
            pass
        sess.close()


def subscriber(node_ref, stop, received):
    sess = Session(node_ref, "crash-sub")
    awaiting_rel = set()  # inbound QoS 2 ids delivered, PUBREL not yet seen
    subscribed = False
    while not stop.is_set():
        present = sess.open()
        try:
            if subscribed:
                assert present, "subscriber session lost"
            else:
                sess.send(subscribe("c/#", 2, v5=False))
            while not stop.is_set():
                got = sess.read(0.05)
                if got is None:
                    continue
                first, body = got
                kind = first >> 4
                if kind == 9:
                    subscribed = True
                elif kind == 3:
                    qos = (first >> 1) & 3
                    n = int.from_bytes(body[:2], "big")
                    pid = int.from_bytes(body[2 + n:4 + n], "big")
                    payload = body[4 + n:]
                    if qos == 1:
                        received.setdefault(payload, []).append(1)
                        sess.send(ack(0x40, pid))
                    elif qos == 2:
                        if pid not in awaiting_rel:
                            awaiting_rel.add(pid)
                            received.setdefault(payload, []).append(2)
                        sess.send(ack(0x50, pid))
                elif kind == 6:  # PUBREL
                    pid = int.from_bytes(body[:2], "big")
                    awaiting_rel.discard(pid)
                    sess.send(ack(0x70, pid))
        except (OSError, ConnectionError):
            pass
        sess.close()


def test_acknowledged_messages_survive_sigkill_cycles(tmp_path):
    config = '[journal]\nfsync = "always"\n'
    node_ref = [Node(tmp_path, config)]
    stop_pub, stop_sub = threading.Event(), threading.Event()
    acked, sent, received = {}, [], {}
    errors = []

    def guarded(f, *args):
        try:
            f(*args)
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))

    sub = threading.Thread(target=guarded, args=(subscriber, node_ref, stop_sub, received), daemon=True)
    sub.start()
    # The subscription must exist before anything is published.
    deadline = time.time() + DEADLINE
    while not node_ref[0].metrics().get("strata_mqtt_subscriptions", 0) and time.time() < deadline:
        time.sleep(0.02)
    pub = threading.Thread(target=guarded, args=(publisher, node_ref, stop_pub, acked, sent), daemon=True)
    pub.start()
    rng = random.Random()
    for cycle in range(CYCLES):
        # Kill at a random moment, once some new acknowledgements have come in.
        before = len(acked)
        deadline = time.time() + DEADLINE
        while len(acked) < before + 5 and time.time() < deadline and not errors:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        node_ref[0].proc.kill()
        node_ref[0].proc.wait()
        node_ref[0] = Node(tmp_path, config)
        assert not errors, errors
    stop_pub.set()
    pub.join(timeout=2 * DEADLINE)
    assert not pub.is_alive(), "publisher did not finish its in-flight messages"
    deadline = time.time() + 2 * DEADLINE
    while any(p not in received for p in acked) and time.time() < deadline:
        time.sleep(0.05)
    stop_sub.set()
    sub.join(timeout=DEADLINE)
    node_ref[0].stop()
    assert not errors, errors

    lost = [p for p in acked if p not in received]
    qos2_dups = [p for p, got in received.items() if got.count(2) > 1]
    q1 = sum(1 for q in acked.values() if q == 1)
    q2 = sum(1 for q in acked.values() if q == 2)
    dup1 = sum(len(got) - 1 for got in received.values() if got and got[0] == 1)
    print(f"\ncrash test: {CYCLES} SIGKILL cycles, {len(sent)} published, {q1} QoS 1 and {q2} QoS 2 "
          f"acknowledged, {len(received)} distinct received, {dup1} QoS 1 duplicates, "
          f"{len(qos2_dups)} QoS 2 duplicates, {len(lost)} acknowledged and lost")
    assert not lost, f"acknowledged but never delivered: {lost[:20]}"
    assert not qos2_dups, f"QoS 2 delivered more than once: {qos2_dups[:20]}"
