"""Attacks on the Kafka listener and what bounds them: streams another frontend owns
(`mqtt.messages`) cannot be deleted, written or read through Kafka; topic creation is
bounded per request and per node; Fetch responses are bounded whatever the client asks;
request buffers grow only with the bytes that arrive and are small before SASL; idle
connections are closed; a failed authentication closes the connection; a stream that
cannot open does not keep the node from starting."""
import json
import socket
import struct
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from kafka_support import DEADLINE, node, node_with, wait_until  # noqa: F401
from test_raw import Raw, batch, fetch_v4, produce_v3, string

TOPIC_AUTHORIZATION_FAILED = 29


def mqtt_qos1(port, topic, payload):
    """Publishes one QoS 1 message with paho and returns the PUBACK's outcome."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    info = c.publish(topic, payload, qos=1)
    info.wait_for_publish(DEADLINE)
    ok = info.is_published() and info.rc == 0
    c.disconnect()
    c.loop_stop()
    return ok


def test_mqtt_stream_cannot_be_deleted_written_or_read_through_kafka(node):
    assert mqtt_qos1(node.port, "sensors/1", b"secret reading")
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    for name, f in admin.delete_topics(["mqtt.messages"], operation_timeout=DEADLINE).items():
        with pytest.raises(KafkaException) as e:
            f.result(DEADLINE)
        assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, name
    for name, f in admin.create_partitions([NewPartitions("mqtt.messages", 9)]).items():
        with pytest.raises(KafkaException) as e:
            f.result(DEADLINE)
        assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, name
    # Still there, and MQTT QoS 1 still works.
    assert mqtt_qos1(node.port, "sensors/1", b"after")

    raw = Raw(node.kafka_port)
    error, _, records = fetch_v4(raw, "mqtt.messages", 0, 0, 1, 1 << 20)
    assert error == TOPIC_AUTHORIZATION_FAILED and records == b""
    assert produce_v3(raw, "mqtt.messages", batch(values=(b"forged",))) == (
        TOPIC_AUTHORIZATION_FAILED, -1)
    # Not listed to a client that may not read it.
    topics = admin.list_topics(timeout=DEADLINE).topics
    assert "mqtt.messages" not in topics
    # A real consumer is told it is not authorized (as an error message or an error
    # event), and reads nothing.
    errors = []
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "thief",
                  "auto.offset.reset": "earliest", "error_cb": lambda e: errors.append(e.code())})
    c.subscribe(["mqtt.messages"])
    deadline = time.time() + DEADLINE
    while time.time() < deadline and KafkaError.TOPIC_AUTHORIZATION_FAILED not in errors:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error(), f"read a stored MQTT message: {m.value()!r}"
        errors.append(m.error().code())
    c.close()
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in errors, errors
    assert node.metrics()['strata_kafka_errors_total{api="DeleteTopics",code="29"}'] >= 1


def test_a_listed_principal_may_read_the_mqtt_stream(node_with):
    n = node_with('[kafka]\ninternal_stream_readers = ["ANONYMOUS"]\n')
    assert mqtt_qos1(n.port, "audit/1", b"kept")
    raw = Raw(n.kafka_port)
    found = b""
    for p in range(4):
        body = struct.pack(">iiiib", -1, 0, 1, 1 << 20, 0) + struct.pack(">i", 1)
        body += string("mqtt.messages") + struct.pack(">i", 1) + struct.pack(">iqi", p, 0, 1 << 20)
        found += raw.request(1, 4, body)
    assert b"kept" in found
    # Reading is all it may do.
    assert produce_v3(raw, "mqtt.messages", batch(values=(b"x",)))[0] == TOPIC_AUTHORIZATION_FAILED


def metadata_v1_many(raw, names):
    body = struct.pack(">i", len(names)) + b"".join(string(t) for t in names)
    return raw.request(3, 1, body)


def test_topic_creation_is_bounded_per_request_and_per_node(node_with, tmp_path):
    n = node_with("[kafka]\nmax_topics = 150\nmax_topics_created_per_request = 100\n")
    raw = Raw(n.kafka_port)
    # The attack: one Metadata v1 naming 200,000 new topics.
    metadata_v1_many(raw, [f"t{i:06d}" for i in range(200_000)])
    admin = AdminClient({"bootstrap.servers": n.bootstrap})
    created = [t for t in admin.list_topics(timeout=DEADLINE).topics if t.startswith("t")]
    assert len(created) == 100
    metadata_v1_many(raw, [f"u{i:06d}" for i in range(200)])
    # 150 streams at most, mqtt.messages included.
    total = len(admin.list_topics(timeout=DEADLINE).topics) + 1
    assert total == 150
    fs = admin.create_topics([NewTopic("one-more", 1)])
    with pytest.raises(KafkaException) as e:
        fs["one-more"].result(DEADLINE)
    assert e.value.args[0].code() == KafkaError.POLICY_VIOLATION
    m = n.metrics()
    assert m['strata_kafka_errors_total{api="create",code="per_request"}'] >= 1
    assert m['strata_kafka_errors_total{api="create",code="max_topics"}'] >= 1
    # The node restarts with everything it created.
    assert n.stop() == 0
    again = node_with("[kafka]\nmax_topics = 150\n")
    assert len(AdminClient({"bootstrap.servers": again.bootstrap})
               .list_topics(timeout=DEADLINE).topics) == 149


def test_fetch_response_is_bounded_whatever_max_bytes_asks(node_with):
    n = node_with("[kafka]\nmax_fetch_bytes = 1048576\n")
    p = Producer({"bootstrap.servers": n.bootstrap, "linger.ms": 0})
    for i in range(40):
        p.produce("big", b"x" * 100_000)
        p.poll(0)
    assert p.flush(DEADLINE) == 0
    raw = Raw(n.kafka_port)
    error, high, records = fetch_v4(raw, "big", 0, 0, 1, partition_max_bytes=2**31 - 1,
                                    max_bytes=2**31 - 1)
    assert error == 0 and high == 40
    assert 100_000 < len(records) <= 1048576 + 200_000, len(records)


def closed(sock):
    """Whether the broker closed `sock` (a reset counts: it closed with bytes unread)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def memory(node):
    # Virtual, not resident: zeroed buffers allocated up front cost address space (and
    # resident memory once written), so address space is what shows them.
    return node.metrics()["process_virtual_memory_bytes"]


def test_large_announced_requests_cost_only_the_bytes_sent(node):
    before = memory(node)
    socks = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", node.kafka_port), timeout=DEADLINE)
        s.sendall(struct.pack(">i", 100 * 1024 * 1024 - 1) + b"\x00" * 1024)
        socks.append(s)
    wait_until("every connection open", lambda: node.metrics()["strata_kafka_connections"] == 50)
    # 50 requests of 100 MiB announced: 5 GiB if buffers were allocated up front.
    assert memory(node) - before < 1024 * 1024 * 1024
    for s in socks:
        s.close()


def test_before_sasl_requests_are_small_and_a_failed_login_closes(node_with):
    n = node_with('[kafka.sasl_plain_users]\nalice = "alice-secret"\n')
    s = socket.create_connection(("127.0.0.1", n.kafka_port), timeout=DEADLINE)
    s.sendall(struct.pack(">i", 1024 * 1024) + b"\x00" * 16)
    assert closed(s), "a 1 MiB request before authentication closes the connection"
    assert n.metrics()['strata_kafka_errors_total{api="request",code="size"}'] >= 1
    bad = Consumer({"bootstrap.servers": n.bootstrap, "group.id": "g",
                    "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                    "sasl.username": "alice", "sasl.password": "wrong"})
    key = 'strata_kafka_errors_total{api="connection",code="authentication_failed"}'

    def closed_after_failing():
        bad.poll(0.2)
        return n.metrics().get(key, 0) >= 1
    wait_until("the failed login closed its connection", closed_after_failing)
    bad.close()


def test_idle_connections_are_closed(node_with):
    n = node_with("[kafka]\nconnections_max_idle_ms = 300\n")
    s = socket.create_connection(("127.0.0.1", n.kafka_port), timeout=DEADLINE)
    assert closed(s)
    assert n.metrics()['strata_kafka_errors_total{api="connection",code="idle_timeout"}'] >= 1


def test_connections_are_bounded_at_accept(node_with):
    n = node_with("[kafka]\nmax_connections = 3\nmax_connections_per_ip = 2\n")
    held = [socket.create_connection(("127.0.0.1", n.kafka_port), timeout=DEADLINE)
            for _ in range(2)]
    third = socket.create_connection(("127.0.0.1", n.kafka_port), timeout=DEADLINE)
    assert closed(third), "a third connection from one address is closed at once"
    assert n.metrics()[
        'strata_kafka_errors_total{api="connection",code="max_connections_per_ip"}'] >= 1
    for s in held:
        s.close()


def test_a_stream_that_cannot_open_does_not_stop_the_node(node_with):
    n = node_with()
    p = Producer({"bootstrap.servers": n.bootstrap})
    for t in ("good", "broken"):
        p.produce(t, b"v")
    assert p.flush(DEADLINE) == 0
    data_dir = n.data_dir
    assert n.stop() == 0
    (data_dir / "journal" / "streams" / "broken" / "stream.json").write_text("{ damaged")
    again = node_with()  # the same data directory
    status = json.load(urllib.request.urlopen(
        f"http://127.0.0.1:{again.admin_port}/api/v1/node", timeout=DEADLINE))
    assert [f["name"] for f in status["failed_streams"]] == ["broken"]
    assert again.metrics()["strata_journal_streams_failed"] == 1
    c = Consumer({"bootstrap.servers": again.bootstrap, "group.id": "g"})
    assert c.get_watermark_offsets(TopicPartition("good", 0), timeout=DEADLINE) == (0, 1)
    c.close()


def test_quotas_throttle_without_dropping(node_with):
    """A producer and a consumer ahead of their byte quotas get throttle_time_ms (librdkafka
    reports it through throttle_cb) and are slowed, and every message arrives."""
    n = node_with("[kafka]\nproducer_byte_rate = 200000\nconsumer_byte_rate = 200000\n")
    throttles = []
    on_throttle = lambda ev: throttles.append(ev.throttle_time)  # noqa: E731
    p = Producer({"bootstrap.servers": n.bootstrap, "throttle_cb": on_throttle,
                  "linger.ms": 5})
    delivered = []
    for i in range(100):
        p.produce("quota", b"%06d" % i + b"x" * 10_000,
                  on_delivery=lambda err, msg: delivered.append(err))
        p.poll(0)
    assert p.flush(DEADLINE * 4) == 0
    assert len(delivered) == 100 and all(e is None for e in delivered)
    assert throttles and max(throttles) > 0, "the producer was told to slow down"
    produced = len(throttles)
    c = Consumer({"bootstrap.servers": n.bootstrap, "group.id": "quota-reader",
                  "auto.offset.reset": "earliest", "throttle_cb": on_throttle,
                  "fetch.max.bytes": 1_100_000, "message.max.bytes": 1_000_000,
                  "max.partition.fetch.bytes": 100_000})
    c.subscribe(["quota"])
    seen = set()
    end = time.time() + DEADLINE * 4
    while len(seen) < 100 and time.time() < end:
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen.add(m.value()[:6])
    c.close()
    assert len(seen) == 100, "every message read"
    assert len(throttles) > produced, "the consumer was told to slow down"
    m = n.metrics()
    assert m['strata_kafka_throttle_milliseconds_total{api="Produce"}'] > 0
    assert m['strata_kafka_throttle_milliseconds_total{api="Fetch"}'] > 0


def test_consumer_groups_are_bounded(node_with):
    """Groups per node, members per group, session timeouts and offset metadata have
    bounds, answered with Kafka's codes."""
    n = node_with("[kafka]\nmax_groups = 2\nmax_group_members = 1\n")
    admin = AdminClient({"bootstrap.servers": n.bootstrap})
    list(admin.create_topics([NewTopic("g", 1)]).values())[0].result(DEADLINE)

    def first_error(group, **more):
        conf = {"bootstrap.servers": n.bootstrap, "group.id": group,
                "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
        conf.update(more)
        c = Consumer(conf)
        c.subscribe(["g"])
        try:
            end = time.time() + DEADLINE
            while time.time() < end:
                m = c.poll(0.2)
                if m is not None and m.error():
                    return c, m.error().code()
                if c.assignment():
                    return c, None
            return c, "timeout"
        except KafkaException as e:
            return c, e.args[0].code()

    a, err = first_error("g1")
    assert err is None
    b, err = first_error("g2")
    assert err is None
    third, err = first_error("g3")
    assert err == KafkaError.POLICY_VIOLATION, err
    # A second member of g1 is one too many.
    extra, err = first_error("g1")
    assert err == KafkaError.GROUP_MAX_SIZE_REACHED, err
    # A session timeout outside Kafka's bounds.
    odd, err = first_error("g2", **{"session.timeout.ms": 3000})
    assert err == KafkaError.INVALID_SESSION_TIMEOUT, err
    for c in (a, b, third, extra, odd):
        c.close()
    # Offset metadata of more than 4096 bytes is refused; within it, kept.
    c = Consumer({"bootstrap.servers": n.bootstrap, "group.id": "g1"})
    big = TopicPartition("g", 0, 1, metadata="m" * 5000)
    try:
        code = c.commit(offsets=[big], asynchronous=False)[0].error.code()
    except KafkaException as e:
        code = e.args[0].code()
    assert code == KafkaError.OFFSET_METADATA_TOO_LARGE
    small = TopicPartition("g", 0, 1, metadata="m" * 100)
    assert c.commit(offsets=[small], asynchronous=False)[0].error is None
    c.close()
    # DeleteGroups frees a slot: g2 (no members now) goes; a group that is not there is
    # GROUP_ID_NOT_FOUND; then a third group fits.
    deleted = admin.delete_consumer_groups(["g2", "nope"], request_timeout=DEADLINE)
    deleted["g2"].result(DEADLINE)
    with pytest.raises(KafkaException) as e:
        deleted["nope"].result(DEADLINE)
    assert e.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    again, err = first_error("g3")
    assert err is None
    again.close()


def commit_v2(raw, group, topic):
    """OffsetCommit v2 from outside any group (generation -1) of offset 1 of `topic`
    partition 0; returns the partition's error code."""
    body = (string(group) + struct.pack(">i", -1) + string("") + struct.pack(">q", -1)
            + struct.pack(">i", 1) + string(topic) + struct.pack(">iiqh", 1, 0, 1, -1))
    data = raw.request(8, 2, body)
    (topics,) = struct.unpack(">i", data[:4])
    assert topics == 1
    name_len = struct.unpack(">h", data[4:6])[0]
    rest = data[6 + name_len:]
    (partitions,) = struct.unpack(">i", rest[:4])
    assert partitions == 1
    return struct.unpack(">ih", rest[4:10])[1]


def test_a_commit_from_outside_cannot_rewind_an_active_group(node):
    """As Kafka: a commit without a generation is UNKNOWN_MEMBER_ID (25) while the group
    has members, and allowed once it has none."""
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    list(admin.create_topics([NewTopic("busy", 1)]).values())[0].result(DEADLINE)
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "busy",
                  "session.timeout.ms": 6000})
    c.subscribe(["busy"])
    wait_until("the assignment", lambda: c.poll(0.2) is None and bool(c.assignment()))
    raw = Raw(node.kafka_port)
    assert commit_v2(raw, "busy", "busy") == 25
    c.close()
    assert commit_v2(raw, "busy", "busy") == 0


def test_a_group_id_with_nul_is_refused(node):
    """Committed offsets are stored under keys whose parts NUL separates: a group id with
    NUL in it is INVALID_GROUP_ID (24), so no group can pass for another after a restart
    (and slip past `max_groups`)."""
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    list(admin.create_topics([NewTopic("nul", 1)]).values())[0].result(DEADLINE)
    raw = Raw(node.kafka_port)
    assert commit_v2(raw, "a\0b", "nul") == 24
    assert commit_v2(raw, "ab", "nul") == 0

    # DeleteGroups v0 of `ab\0nul` would be the prefix of group `ab`'s offsets of `nul`.
    data = raw.request(42, 0, struct.pack(">i", 1) + string("ab\0nul"))
    _throttle, count, name_len = struct.unpack(">iih", data[:10])
    assert count == 1
    assert struct.unpack(">h", data[10 + name_len:12 + name_len])[0] == 24
    # Group `ab` still has its offset (OffsetFetch v1: offset 1 of `nul` partition 0).
    data = raw.request(9, 1, string("ab") + struct.pack(">i", 1) + string("nul")
                       + struct.pack(">ii", 1, 0))
    topics, name_len = struct.unpack(">ih", data[:6])
    partition, offset = struct.unpack(">iq", data[10 + name_len:22 + name_len])
    assert (topics, partition, offset) == (1, 0, 1)


def test_made_up_producer_ids_are_refused(node):
    """Idempotence state is kept only for producer ids this node handed out: a batch with a
    made-up id gets UNKNOWN_PRODUCER_ID (59) and is not stored."""
    raw = Raw(node.kafka_port)
    error, _ = produce_v3(raw, "pids", batch(123_456_789, 0, (b"forged",)))
    assert error == 59
    data = raw.request(22, 0, struct.pack(">hi", -1, 60000))
    error, pid, _ = struct.unpack(">ihqh", data[:16])[1:]
    assert error == 0
    assert produce_v3(raw, "pids", batch(pid, 0, (b"real",))) == (0, 0)
