"""The Kafka error paths with hand-built requests over a raw socket: an unsupported
ApiVersions version, a batch with a bad CRC, a retried idempotent batch stored once, and a
request the broker cannot parse. Record batches are built with kafka-python's encoder."""
import socket
import struct
import time

from confluent_kafka import Consumer, TopicPartition
from kafka.record.default_records import DefaultRecordBatchBuilder

from kafka_support import DEADLINE, node, node_with  # noqa: F401


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Raw:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.corr = 0

    def request(self, key, version, body, flexible_header=False):
        self.corr += 1
        header = struct.pack(">hhi", key, version, self.corr) + string("raw-test")
        if flexible_header:
            header += b"\x00"
        frame = header + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self.recv(4))[0]
        data = self.recv(size)
        assert struct.unpack(">i", data[:4])[0] == self.corr
        return data[4:]

    def recv(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed by the broker")
            out += chunk
        return out

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True


def batch(producer_id=-1, seq=-1, values=(b"v",)):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
                                  base_sequence=seq, batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=1000 + i, key=None, value=v, headers=[])
    return bytes(b.build())


def produce_v3(raw, topic, records):
    body = struct.pack(">hhi", -1, 1, 30000)  # no transactional id, acks=1, timeout
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(records)) + records
    data = raw.request(0, 3, body)
    # responses[1]: name, partitions[1]: index, error_code, base_offset, log_append_time
    pos = 4
    (n,) = struct.unpack(">h", data[pos:pos + 2])
    pos += 2 + n + 4
    index, error, base = struct.unpack(">ihq", data[pos:pos + 14])
    return error, base


def test_unsupported_api_versions_version_is_answered_in_v0(node):
    raw = Raw(node.kafka_port)
    data = raw.request(18, 99, b"", flexible_header=True)
    error, count = struct.unpack(">hi", data[:6])
    assert error == 35
    keys = {struct.unpack(">hhh", data[6 + 6 * i:12 + 6 * i])[0] for i in range(count)}
    assert {0, 1, 2, 3, 18} <= keys


def test_corrupt_batch_is_refused_and_not_stored(node):
    raw = Raw(node.kafka_port)
    good = batch(values=(b"good",))
    assert produce_v3(raw, "raw", good) == (0, 0)
    bad = bytearray(batch(values=(b"evil",)))
    bad[-1] ^= 0xFF  # the last value byte: the crc32c no longer matches
    error, _ = produce_v3(raw, "raw", bytes(bad))
    assert error == 2  # CORRUPT_MESSAGE
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "raw"})
    assert c.get_watermark_offsets(TopicPartition("raw", 0), timeout=DEADLINE) == (0, 1)
    c.close()
    metrics = node.metrics()
    assert metrics.get('strata_kafka_errors_total{api="Produce",code="2"}') == 1
    assert metrics.get('strata_kafka_requests_total{api="Produce",version="3"}') == 2
    assert metrics.get("strata_kafka_produced_bytes_total") == len(good) + 8
    assert metrics.get("strata_kafka_produced_records_total") == 1


def test_a_retried_idempotent_batch_is_stored_once(node):
    raw = Raw(node.kafka_port)
    # InitProducerId v0: transactional id null, timeout.
    data = raw.request(22, 0, struct.pack(">hi", -1, 60000))
    error, pid, epoch = struct.unpack(">ihqh", data[:16])[1:]
    assert error == 0 and pid >= 0
    first = batch(pid, 0, (b"a", b"b"))
    assert produce_v3(raw, "idem-raw", first) == (0, 0)
    assert produce_v3(raw, "idem-raw", first) == (0, 0), "the retry gets the first offset"
    assert produce_v3(raw, "idem-raw", batch(pid, 2, (b"c",))) == (0, 2)
    error, _ = produce_v3(raw, "idem-raw", batch(pid, 7, (b"gap",)))
    assert error == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "raw"})
    assert c.get_watermark_offsets(TopicPartition("idem-raw", 0), timeout=DEADLINE) == (0, 3)
    c.close()


def test_garbage_closes_the_connection_and_the_node_serves_on(node):
    raw = Raw(node.kafka_port)
    raw.sock.sendall(struct.pack(">i", 12) + b"\x00\x00\x00\x03" + b"\xff" * 8)  # Metadata v3, junk
    assert raw.closed()
    raw = Raw(node.kafka_port)
    raw.sock.sendall(struct.pack(">i", 2_000_000_000))  # beyond max_request_bytes
    assert raw.closed()
    data = Raw(node.kafka_port).request(18, 0, b"")
    assert struct.unpack(">h", data[:2])[0] == 0


def test_an_idempotent_retry_after_a_restart_is_stored_once(node_with):
    n = node_with()
    raw = Raw(n.kafka_port)
    data = raw.request(22, 0, struct.pack(">hi", -1, 60000))
    pid = struct.unpack(">ihqh", data[:16])[2]
    assert produce_v3(raw, "idem-restart", batch(pid, 0, (b"a", b"b"))) == (0, 0)
    assert produce_v3(raw, "idem-restart", batch(pid, 2, (b"c",))) == (0, 2)
    raw.sock.close()
    assert n.stop() == 0
    n = node_with()
    raw = Raw(n.kafka_port)
    # The producer retries its last batch after the restart: answered, not stored again.
    assert produce_v3(raw, "idem-restart", batch(pid, 2, (b"c",))) == (0, 2)
    assert produce_v3(raw, "idem-restart", batch(pid, 3, (b"d",))) == (0, 3)
    # Producer ids are never handed out twice.
    data = raw.request(22, 0, struct.pack(">hi", -1, 60000))
    assert struct.unpack(">ihqh", data[:16])[2] > pid
    c = Consumer({"bootstrap.servers": n.bootstrap, "group.id": "raw"})
    assert c.get_watermark_offsets(TopicPartition("idem-restart", 0), timeout=DEADLINE) == (0, 4)
    c.close()


def fetch_v4(raw, topic, offset, max_wait_ms, min_bytes, partition_max_bytes, max_bytes=1 << 30):
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", 0, offset, partition_max_bytes)
    data = raw.request(1, 4, body)
    pos = 4 + 4  # throttle time, responses count
    (n,) = struct.unpack(">h", data[pos:pos + 2])
    pos += 2 + n + 4
    _, error, high, _ = struct.unpack(">ihqq", data[pos:pos + 22])
    pos += 22
    (aborted,) = struct.unpack(">i", data[pos:pos + 4])
    pos += 4 + max(aborted, 0) * 16
    (size,) = struct.unpack(">i", data[pos:pos + 4])
    records = data[pos + 4:pos + 4 + max(size, 0)]
    return error, high, records


def batches_in(records):
    count, pos = 0, 0
    while pos + 12 <= len(records):
        (length,) = struct.unpack(">i", records[pos + 8:pos + 12])
        pos += 12 + length
        count += 1
    return count


def test_fetch_long_polls_and_bounds_bytes_per_partition(node):
    import threading
    produce_v3(Raw(node.kafka_port), "poll", batch(values=(b"first",)))
    fetcher = Raw(node.kafka_port)
    result = {}

    def long_poll():
        result["r"] = fetch_v4(fetcher, "poll", 1, max_wait_ms=60_000, min_bytes=1,
                               partition_max_bytes=1 << 20)
    fetches = 'strata_kafka_requests_total{api="Fetch",version="4"}'
    t = threading.Thread(target=long_poll)
    t.start()
    # Nothing at offset 1 yet: once the broker holds the fetch, a record appended answers it.
    deadline = time.time() + DEADLINE
    while node.metrics().get(fetches, 0) < 1:
        assert time.time() < deadline, "the fetch never arrived"
        time.sleep(0.02)
    assert t.is_alive(), "the fetch must wait for data"
    producer = Raw(node.kafka_port)
    assert produce_v3(producer, "poll", batch(values=(b"second",))) == (0, 1)
    t.join(DEADLINE)
    error, high, records = result["r"]
    assert (error, high) == (0, 2)
    assert b"second" in records
    # Per-partition budget: at least one batch, not all of them.
    for i in range(20):
        produce_v3(producer, "poll", batch(values=(b"x" * 1000,)))
    error, high, records = fetch_v4(fetcher, "poll", 0, 0, 1, partition_max_bytes=3000)
    assert error == 0 and high == 22
    assert 1 <= batches_in(records) < 22
    error, _, records = fetch_v4(fetcher, "poll", 0, 0, 1, partition_max_bytes=1 << 20, max_bytes=1)
    assert error == 0 and batches_in(records) == 1, "the first batch even beyond max_bytes"
    error, _, _ = fetch_v4(fetcher, "poll", 99, 0, 1, 1 << 20)
    assert error == 1  # OFFSET_OUT_OF_RANGE


def metadata_v1(raw, topic):
    data = raw.request(3, 1, struct.pack(">i", 1) + string(topic))
    pos = 0
    (brokers,) = struct.unpack(">i", data[pos:pos + 4])
    pos += 4
    for _ in range(brokers):
        pos += 4
        (n,) = struct.unpack(">h", data[pos:pos + 2])
        pos += 2 + n + 4
        (n,) = struct.unpack(">h", data[pos:pos + 2])  # rack (nullable)
        pos += 2 + max(n, 0)
    pos += 4  # controller id
    pos += 4  # topics count
    (error,) = struct.unpack(">h", data[pos:pos + 2])
    return error


def test_unknown_topic_without_auto_creation(node_with):
    n = node_with("[kafka]\nauto_create_topics = false\n")
    raw = Raw(n.kafka_port)
    assert metadata_v1(raw, "nowhere") == 3  # UNKNOWN_TOPIC_OR_PARTITION
    assert produce_v3(raw, "nowhere", batch(values=(b"x",))) == (3, -1)
    error, high, _ = fetch_v4(raw, "nowhere", 0, 0, 1, 1 << 20)
    assert error == 3
    assert n.metrics().get('strata_kafka_errors_total{api="Produce",code="3"}') == 1
