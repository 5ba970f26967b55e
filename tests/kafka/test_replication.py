"""A topic with three copies of each partition on three real nodes: an idempotent
confluent-kafka producer with acks=all writes to it, the node leading the partition is
killed with SIGKILL, the producer carries on once the two others elected a new leader, and
a consumer then reads every acknowledged record, once, at the offset it was acknowledged
with. Metadata's in-sync replicas, the admin API and the metrics show the partition
under-replicated until the killed node is back and caught up; OffsetForLeaderEpoch answers
where each leader epoch ends and refuses fenced and unknown epochs. A topic whose
min.insync.replicas is 3 refuses acks=all writes with NOT_ENOUGH_REPLICAS while a copy is
out of sync, takes acks=1 writes, and takes acks=all again once the copy is back."""
import signal
import socket
import struct

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from kafka_support import DEADLINE, wait_until
from test_cluster import start_cluster
from test_raw import Raw, string

NOT_LEADER_OR_FOLLOWER = 6
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75


def offset_for_leader_epoch(node, topic, partition, current_leader_epoch, leader_epoch):
    """OffsetForLeaderEpoch v2 of one partition: (error code, epoch, end offset)."""
    raw = Raw.__new__(Raw)
    raw.sock = socket.create_connection((node.host, node.node.kafka_port), timeout=DEADLINE)
    raw.corr = 0
    body = struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iii", partition, current_leader_epoch, leader_epoch)
    data = raw.request(23, 2, body)
    raw.sock.close()
    pos = 4 + 4  # throttle time, topics
    (n,) = struct.unpack(">h", data[pos:pos + 2])
    pos += 2 + n + 4  # topic name, partitions
    error, _, epoch, end = struct.unpack(">hiiq", data[pos:pos + 18])
    return error, epoch, end


def list_offsets_v4(node, topic, partition, current_leader_epoch):
    """ListOffsets v4 for the latest offset of one partition: (error code, offset)."""
    raw = Raw.__new__(Raw)
    raw.sock = socket.create_connection((node.host, node.node.kafka_port), timeout=DEADLINE)
    raw.corr = 0
    body = struct.pack(">ib", -1, 0) + struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iiq", partition, current_leader_epoch, -1)
    data = raw.request(2, 4, body)
    raw.sock.close()
    pos = 4 + 4
    (n,) = struct.unpack(">h", data[pos:pos + 2])
    pos += 2 + n + 4
    _, error, _, offset = struct.unpack(">ihqq", data[pos:pos + 22])
    return error, offset


def answers(probe):
    """`probe()` once a node that may be restarting answers it, else None."""
    try:
        return probe()
    except OSError:
        return None


def produce(producer, topic, values, acked, failed):
    def report(err, msg):
        if err is None:
            acked[msg.value()] = msg.offset()
        else:
            failed.append(err)
    for v in values:
        producer.produce(topic, value=v, partition=0, on_delivery=report)
    assert producer.flush(DEADLINE * 8) == 0


def send_one(nodes, topic, acks):
    """One record to `topic` with `acks`, no retries: None when acknowledged, else the
    error code."""
    producer = Producer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes if
                                                       n.node.proc.poll() is None),
                         "acks": acks, "retries": 0, "enable.idempotence": False})
    result = []
    producer.produce(topic, value=b"one", partition=0,
                     on_delivery=lambda err, msg: result.append(err))
    assert producer.flush(DEADLINE) == 0
    return None if result[0] is None else result[0].code()


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

        def in_sync(topic):
            t = admin.list_topics(timeout=DEADLINE).topics.get(topic)
            return sorted(t.partitions[0].isrs) if t and t.partitions.get(0) else []
        # min.insync.replicas: taken at creation up to the copies, reported by
        # DescribeConfigs, refused beyond the copies.
        for f in admin.create_topics([NewTopic("strict", 1, 3, config={
                "min.insync.replicas": "3"})]).values():
            f.result(DEADLINE)
        bad = admin.create_topics([NewTopic("bad-min", 1, 3, config={
            "min.insync.replicas": "4"})])["bad-min"]
        try:
            bad.result(DEADLINE)
            raise AssertionError("min.insync.replicas 4 of 3 copies was accepted")
        except Exception as e:  # noqa: BLE001 - the client raises KafkaException
            assert e.args[0].code() == KafkaError.INVALID_CONFIG, e
        configs = admin.describe_configs([ConfigResource("topic", "strict")])
        entries = list(configs.values())[0].result(DEADLINE)
        assert entries["min.insync.replicas"].value == "3"
        wait_until("every copy of the strict topic is in sync", lambda: in_sync("strict") == [1, 2, 3])
        assert send_one(nodes, "strict", "all") is None
        # A topic that names no replication factor gets three copies on three nodes.
        for f in admin.create_topics([NewTopic("default-copies", 2)]).values():
            f.result(DEADLINE)
        wait_until("the default topic is placed", lambda: all(
            len(p.replicas) == 3 for p in
            admin.list_topics(timeout=DEADLINE).topics["default-copies"].partitions.values()))
        # Killed before its followers confirmed they hold its first commit, a partition
        # could not elect (a replica that never held every committed record does not
        # vote): every copy is in sync first.
        wait_until("every copy of the default topic is in sync", lambda: all(
            sorted(p.isrs) == [1, 2, 3] for p in
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
        epochs = {}  # offset -> the leader epoch of its batch
        twice = []

        def read_all():
            for m in consumer.consume(500, 1.0):
                if m.error() is None:
                    if m.value() in seen:
                        twice.append(m.value())
                    seen[m.value()] = m.offset()
                    epochs[m.offset()] = m.leader_epoch()
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

        # Every partition had a copy on the killed node: all four are under-replicated,
        # in Metadata's in-sync replicas, the admin API and the leaders' gauges.
        survivors = [n for i, n in enumerate(nodes) if i != leader - 1]
        alive = sorted(i + 1 for i in range(3) if i != leader - 1)
        wait_until("the in-sync replicas leave the killed node out", lambda: sorted(
            described().partitions[0].isrs) == alive)
        # Two of three in sync: acks=all is refused on the strict topic, acks=1 is taken.
        wait_until("the strict topic's in-sync replicas leave the killed node out",
                   lambda: in_sync("strict") == alive)
        assert send_one(survivors, "strict", "all") == \
            KafkaError.NOT_ENOUGH_REPLICAS
        assert send_one(survivors, "strict", "1") is None
        wait_until("the admin API lists four under-replicated partitions", lambda: len(
            survivors[0].api("cluster", "leaders?under_replicated=true")) == 4)
        gauge = "strata_replica_under_replicated_partitions"
        wait_until("the leaders count four under-replicated partitions",
                   lambda: sum(n.metrics()[gauge] for n in survivors) == 4)

        # Leader epochs: epoch 0 ends where the next epoch starts, after every record of
        # epoch 0 and at or before the first of a later one (its leader's marker comes
        # first); the newest ends at the log's end.
        led = next(n for n in nodes if n.host == f"127.0.0.{new_leader.leader}")
        epoch = next(p["epoch"] for p in led.api("cluster", "leaders?stream=rep"))
        assert epoch >= 1
        error, first, end0 = offset_for_leader_epoch(led, "rep", 0, epoch, 0)
        assert (error, first) == (0, 0)
        assert all(o < end0 for o, e in epochs.items() if e == 0)
        assert all(o > end0 for o, e in epochs.items() if e > 0)
        assert max(o for o, e in epochs.items() if e == 0) >= acked[b"before-0"]
        error, newest, end = offset_for_leader_epoch(led, "rep", 0, epoch, epoch)
        assert (error, newest) == (0, epoch) and end >= acked[b"after-299"] + 1
        assert offset_for_leader_epoch(led, "rep", 0, epoch - 1, 0)[0] == FENCED_LEADER_EPOCH
        assert offset_for_leader_epoch(led, "rep", 0, epoch + 1, 0)[0] == UNKNOWN_LEADER_EPOCH
        # ListOffsets checks the epoch too.
        assert list_offsets_v4(led, "rep", 0, epoch - 1)[0] == FENCED_LEADER_EPOCH
        assert list_offsets_v4(led, "rep", 0, epoch) == (0, end)
        other = next(n for n in survivors if n is not led)
        assert offset_for_leader_epoch(other, "rep", 0, epoch, 0)[0] == NOT_LEADER_OR_FOLLOWER

        # The killed node comes back, catches up and is in sync again everywhere.
        nodes[leader - 1].restart()
        wait_until("the restarted node is back in sync", lambda: answers(
            lambda: sorted(described().partitions[0].isrs)) == [1, 2, 3])
        wait_until("no partition is under-replicated", lambda: answers(
            lambda: survivors[0].api("cluster", "leaders?under_replicated=true")) == [])
        mine = [r for r in led.api("cluster", "replicas") if r["stream"] == "rep"]
        assert len(mine) == 1 and mine[0]["role"] == "leader" and mine[0]["epoch"] == epoch
        assert mine[0]["high_watermark"] >= acked[b"after-299"] + 1
        assert sorted(f["node"] for f in mine[0]["followers"]) == sorted(
            i for i in (1, 2, 3) if i != new_leader.leader)
        assert all(f["in_sync"] for f in mine[0]["followers"]), mine
        wait_until("every copy of the strict topic is in sync again",
                   lambda: answers(lambda: in_sync("strict")) == [1, 2, 3])
        assert send_one(nodes, "strict", "all") is None
    finally:
        for n in nodes:
            if n.node.proc.poll() is None:
                n.node.stop()
