"""Kafka acknowledgements survive SIGKILL: a confluent-kafka producer (acks=all) writes
while the node is killed at random moments; after each restart every acknowledged record
is read back at its offset with its value."""
import random
import signal
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from kafka_support import DEADLINE, Node, wait_until

CYCLES = 5


def produce_until_killed(bootstrap, acked, stop):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                  "message.timeout.ms": 3000, "retries": 0})
    seq = 0

    def done(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()
    while not stop.is_set():
        try:
            p.produce("crash", value=f"{time.time_ns()}-{seq}".encode(), on_delivery=done)
            seq += 1
        except BufferError:
            pass
        p.poll(0.001)
    p.flush(5)


def read_all(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time_ns()}",
                  "enable.auto.commit": False})
    _, high = c.get_watermark_offsets(TopicPartition("crash", 0), timeout=DEADLINE)
    c.assign([TopicPartition("crash", 0, 0)])
    got = {}
    deadline = time.time() + DEADLINE * 2
    while len(got) < high and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got[m.offset()] = m.value()
    c.close()
    return got


def test_acknowledged_records_survive_sigkill(tmp_path):
    acked = {}
    for cycle in range(CYCLES):
        node = Node(tmp_path)
        stop = threading.Event()
        t = threading.Thread(target=produce_until_killed, args=(node.bootstrap, acked, stop))
        t.start()
        before = len(acked)
        want = before + random.randint(200, 3000)
        wait_until("acknowledgements", lambda: len(acked) >= want)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()
        stop.set()
        t.join(DEADLINE)
        node = Node(tmp_path)
        got = read_all(node.bootstrap)
        missing = [o for o in acked if got.get(o) != acked[o]]
        assert not missing, f"cycle {cycle}: {len(missing)} acknowledged records lost or changed"
        print(f"cycle {cycle}: {len(acked)} acknowledged records intact")
        node.stop()
