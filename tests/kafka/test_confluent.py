"""confluent-kafka (librdkafka 2.16) against a real `strata serve`: produce and consume
with every codec, idempotent producers, admin APIs, offsets and timestamps."""
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from kafka_support import DEADLINE, node, node_with  # noqa: F401


def produce(bootstrap, topic, values, **conf):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    errors, offsets = [], []

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            offsets.append((msg.partition(), msg.offset()))
    for i, v in enumerate(values):
        p.produce(topic, key=f"k{i % 5}", value=v, on_delivery=done)
    assert p.flush(DEADLINE) == 0
    return errors, offsets


def consume(bootstrap, topic, count, group=None, **conf):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"g-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    c.subscribe([topic])
    got = []
    deadline = time.time() + DEADLINE * 2
    while len(got) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m)
    return c, got


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_codec_round_trips(node, codec):
    values = [f"{codec}-{i}".encode() * (1 + i % 50) for i in range(500)]
    errors, offsets = produce(node.bootstrap, f"codec-{codec}", values,
                              **{"compression.type": codec})
    assert errors == []
    assert len(offsets) == 500
    c, got = consume(node.bootstrap, f"codec-{codec}", 500)
    c.close()
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(500))


def test_idempotent_producer_stores_each_record_once(node):
    values = [f"v{i}".encode() for i in range(2000)]
    errors, offsets = produce(node.bootstrap, "idem", values, **{
        "enable.idempotence": True, "acks": "all", "max.in.flight.requests.per.connection": 5})
    assert errors == []
    assert sorted(o for _, o in offsets) == list(range(2000))
    c, got = consume(node.bootstrap, "idem", 2000)
    c.close()
    assert [m.value() for m in got] == values


def test_acks_zero_and_one(node):
    for acks in ("0", "1"):
        errors, _ = produce(node.bootstrap, f"acks-{acks}", [b"x"] * 100, acks=acks)
        assert errors == []
        c, got = consume(node.bootstrap, f"acks-{acks}", 100)
        c.close()
        assert len(got) == 100


def test_committed_offsets_survive_a_restart(node_with):
    n = node_with()
    produce(n.bootstrap, "commits", [b"a"] * 10)
    c, got = consume(n.bootstrap, "commits", 10, group="keeper")
    c.commit(message=got[6], asynchronous=False)
    c.close()
    assert n.stop() == 0
    n = node_with()
    c = Consumer({"bootstrap.servers": n.bootstrap, "group.id": "keeper"})
    committed = c.committed([TopicPartition("commits", 0)], timeout=DEADLINE)
    assert committed[0].offset == 7
    c.close()


def test_list_offsets_earliest_latest_and_by_timestamp(node):
    p = Producer({"bootstrap.servers": node.bootstrap})
    base = 1_700_000_000_000
    for i in range(10):
        p.produce("times", value=b"t", timestamp=base + i * 1000)
    assert p.flush(DEADLINE) == 0
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "times"})
    low, high = c.get_watermark_offsets(TopicPartition("times", 0), timeout=DEADLINE)
    assert (low, high) == (0, 10)
    found = c.offsets_for_times([TopicPartition("times", 0, base + 4500)], timeout=DEADLINE)
    assert found[0].offset == 5
    found = c.offsets_for_times([TopicPartition("times", 0, base + 99_000)], timeout=DEADLINE)
    assert found[0].offset in (-1, 10)
    c.close()


def test_admin_topics_configs_and_groups(node):
    a = AdminClient({"bootstrap.servers": node.bootstrap})
    for f in a.create_topics([NewTopic("adm", num_partitions=3, replication_factor=1)]).values():
        f.result(DEADLINE)
    with pytest.raises(KafkaException) as e:
        for f in a.create_topics([NewTopic("adm", num_partitions=3, replication_factor=1)]).values():
            f.result(DEADLINE)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    md = a.list_topics(timeout=DEADLINE)
    assert len(md.topics["adm"].partitions) == 3
    res = ConfigResource(ConfigResource.Type.TOPIC, "adm")
    configs = a.describe_configs([res])[res].result(DEADLINE)
    assert configs["cleanup.policy"].value == "delete"
    produce(node.bootstrap, "adm", [b"x"] * 3)
    c, got = consume(node.bootstrap, "adm", 3, group="adm-group")
    c.commit(asynchronous=False)
    groups = a.list_consumer_groups().result(DEADLINE)
    assert "adm-group" in [g.group_id for g in groups.valid]
    described = a.describe_consumer_groups(["adm-group"])["adm-group"].result(DEADLINE)
    assert len(described.members) == 1
    c.close()
    for f in a.create_partitions([NewPartitions("adm", 6)]).values():
        f.result(DEADLINE)
    assert len(a.list_topics(timeout=DEADLINE).topics["adm"].partitions) == 6
    with pytest.raises(KafkaException):
        for f in a.create_partitions([NewPartitions("adm", 4)]).values():
            f.result(DEADLINE)
    for f in a.delete_topics(["adm"]).values():
        f.result(DEADLINE)
    assert "adm" not in a.list_topics(timeout=DEADLINE).topics


def test_message_too_large_and_unknown_topic(node_with):
    n = node_with("[kafka]\nauto_create_topics = false\nmax_message_bytes = 10000\n")
    a = AdminClient({"bootstrap.servers": n.bootstrap})
    for f in a.create_topics([NewTopic("small", num_partitions=1, replication_factor=1)]).values():
        f.result(DEADLINE)
    errors, _ = produce(n.bootstrap, "small", [b"x" * 50_000], **{"message.max.bytes": 1_000_000})
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    errors, _ = produce(n.bootstrap, "absent", [b"x"], **{"message.timeout.ms": 3000})
    assert errors and errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT)
    assert n.metrics().get('strata_kafka_errors_total{api="Produce",code="10"}', 0) >= 1


def test_sasl_plain_is_required_when_users_are_configured(node_with):
    n = node_with('[kafka.sasl_plain_users]\nalice = "secret"\n')
    good = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": "alice", "sasl.password": "secret"}
    errors, offsets = produce(n.bootstrap, "secured", [b"x"] * 10, **good)
    assert errors == [] and len(offsets) == 10
    c, got = consume(n.bootstrap, "secured", 10, **good)
    c.close()
    assert len(got) == 10
    bad = dict(good, **{"sasl.password": "wrong", "message.timeout.ms": 5000})
    errors, _ = produce(n.bootstrap, "secured", [b"y"], **bad)
    assert errors, "a wrong password must not produce"
    errors, _ = produce(n.bootstrap, "secured", [b"z"], **{"message.timeout.ms": 5000})
    assert errors, "no authentication must not produce"
    assert n.metrics().get('strata_kafka_errors_total{api="SaslAuthenticate",code="58"}', 0) >= 1
