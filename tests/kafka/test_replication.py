"""A topic with three copies of each partition on three real nodes: an idempotent
confluent-kafka producer with acks=all writes to it, the node leading the partition is
killed with SIGKILL, the producer carries on once the two others elected a new leader, and
a consumer then reads every acknowledged record, once, at the offset it was acknowledged
with."""
import signal

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_support import DEADLINE, wait_until
from test_cluster import start_cluster


def produce(producer, topic, values, acked, failed):
    def report(err, msg):
        if err is None:
            acked[msg.value()] = msg.offset()
        else:
            failed.append(err)
    for v in values:
        producer.produce(topic, value=v, partition=0, on_delivery=report)
    assert producer.flush(DEADLINE * 8) == 0


def test_acknowledged_records_survive_the_leaders_node(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
        for f in admin.create_topics([NewTopic("rep", 1, 3)]).values():
            f.result(DEADLINE)
        # More copies than nodes is refused as Kafka refuses it.
        failed = admin.create_topics([NewTopic("too-many", 1, 4)])["too-many"]
        try:
            failed.result(DEADLINE)
            raise AssertionError("four copies on three nodes were accepted")
        except Exception as e:  # noqa: BLE001 - the client raises KafkaException
            assert e.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR, e

        def described():
            t = admin.list_topics(timeout=DEADLINE).topics.get("rep")
            return t is not None and t.partitions.get(0) is not None \
                and t.partitions[0].leader > 0 and t
        wait_until("the topic has a leader", described)
        # A topic that names no replication factor gets three copies on three nodes.
        for f in admin.create_topics([NewTopic("default-copies", 2)]).values():
            f.result(DEADLINE)
        wait_until("the default topic is placed", lambda: all(
            len(p.replicas) == 3 for p in
            admin.list_topics(timeout=DEADLINE).topics["default-copies"].partitions.values()))
        part = described().partitions[0]
        assert sorted(part.replicas) == [1, 2, 3]
        leader = part.leader

        producer = Producer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes),
                             "acks": "all", "enable.idempotence": True, "linger.ms": 2})
        acked, failures = {}, []
        produce(producer, "rep", [b"before-%d" % i for i in range(300)], acked, failures)
        assert failures == [] and len(acked) == 300

        nodes[leader - 1].node.proc.send_signal(signal.SIGKILL)
        nodes[leader - 1].node.proc.wait()
        produce(producer, "rep", [b"after-%d" % i for i in range(300)], acked, failures)
        assert failures == [], failures
        assert len(acked) == 600

        survivor = next(n for i, n in enumerate(nodes) if i != leader - 1)
        consumer = Consumer({"bootstrap.servers": survivor.bootstrap, "group.id": "check",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.assign([TopicPartition("rep", 0, 0)])
        seen = {}
        twice = []

        def read_all():
            for m in consumer.consume(500, 1.0):
                if m.error() is None:
                    if m.value() in seen:
                        twice.append(m.value())
                    seen[m.value()] = m.offset()
            return len(seen) >= 600
        wait_until("the consumer has read every acknowledged record", read_all)
        consumer.close()
        assert twice == []
        for value, offset in acked.items():
            assert seen.get(value) == offset, (value, offset, seen.get(value))
        # Offsets never went backwards: one record per offset, in order of writing.
        ordered = sorted(seen.items(), key=lambda kv: kv[1])
        assert [v for v, _ in ordered] == [b"before-%d" % i for i in range(300)] + \
            [b"after-%d" % i for i in range(300)]

        new_leader = described().partitions[0]
        assert new_leader.leader != leader
    finally:
        for n in nodes:
            if n.node.proc.poll() is None:
                n.node.stop()
