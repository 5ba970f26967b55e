"""Moving replicas on four real nodes. Kafka's own `kafka-reassign-partitions` tool (the
Java Admin client's AlterPartitionReassignments and ListPartitionReassignments) moves the
leader's copy of a three-copy partition to the fourth node while an idempotent
confluent-kafka producer with acks=all keeps writing; the move ends with the new
replicas (the new node leading), the old copy deleted, and, once the new leader's node
is killed, the two copies left elect a leader holding every acknowledged record at the
offset it was acknowledged with, once. Removing a node through the admin API moves its
copies to the other nodes; asked again once it holds none, it is removed."""
import json
import os
import signal
import subprocess
import threading
import urllib.error

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_support import DEADLINE, wait_until
from test_cluster import admin_call, start_cluster

LIBS = os.path.expanduser("~/.cache/strata/tools/kafka-4.4.0/libs")


def reassign(bootstrap, plan_file, *action):
    """Runs the tool; replication throttles are not supported (IncrementalAlterConfigs),
    so none are set and `--verify` is told to leave them be."""
    out = subprocess.run(
        ["java", "-cp", os.path.join(LIBS, "*"),
         "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
         "--bootstrap-server", bootstrap, "--reassignment-json-file", str(plan_file), *action],
        capture_output=True, text=True, timeout=DEADLINE * 4)
    return out.returncode, out.stdout + out.stderr


def test_a_partition_moves_under_writes_and_a_removed_node_hands_its_copies_over(tmp_path):
    nodes = start_cluster(tmp_path, size=4)
    try:
        admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
        for f in admin.create_topics([NewTopic("moving", 1, 3)]).values():
            f.result(DEADLINE)

        def partition():
            t = admin.list_topics(timeout=DEADLINE).topics.get("moving")
            return t.partitions.get(0) if t else None
        wait_until("every copy is in sync", lambda: partition() is not None
                   and partition().leader > 0 and sorted(partition().isrs) == sorted(partition().replicas))
        before = partition()
        old_leader = before.leader
        spare = next(i for i in range(1, 5) if i not in before.replicas)
        target = [spare] + [r for r in before.replicas if r != old_leader]

        producer = Producer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes),
                             "acks": "all", "enable.idempotence": True, "linger.ms": 2})
        acked, failures = {}, []

        def report(err, msg):
            if err is None:
                acked[msg.value()] = msg.offset()
            else:
                failures.append((msg.value(), err))
        for i in range(200):
            producer.produce("moving", b"before-%d" % i, partition=0, on_delivery=report)
        assert producer.flush(DEADLINE) == 0

        # Writes go on while the partition moves.
        writing = threading.Event()
        writing.set()

        def write():
            i = 0
            while writing.is_set():
                producer.produce("moving", b"during-%d" % i, partition=0, on_delivery=report)
                producer.poll(0.005)
                i += 1
            producer.flush(DEADLINE)
        writer = threading.Thread(target=write)
        writer.start()
        try:
            plan = tmp_path / "plan.json"
            plan.write_text(json.dumps({"version": 1, "partitions": [
                {"topic": "moving", "partition": 0, "replicas": target}]}))
            code, out = reassign(nodes[0].bootstrap, plan, "--execute")
            assert code == 0, out
            assert "Successfully started partition reassignment" in out, out

            last = []

            def completed():
                code, out = reassign(nodes[1].bootstrap, plan, "--verify", "--preserve-throttles")
                last[:] = [out]
                return code == 0 and "Reassignment of partition moving-0 is completed" in out
            try:
                wait_until("the tool sees the move completed", completed)
            except AssertionError as e:
                raise AssertionError(f"{e}; the tool said: {last}") from None
        finally:
            writing.clear()
            writer.join()
        assert failures == [], failures[:5]
        during = [v for v in acked if v.startswith(b"during-")]
        assert during, "writes were acknowledged while the partition moved"
        after = partition()
        assert list(after.replicas) == target, after.replicas
        wait_until("the new replicas are in sync", lambda: sorted(partition().isrs) == sorted(target))
        # A new replica leads (the first, preferred one, once it has been in sync a while).
        new_leader = partition().leader
        assert new_leader in target, new_leader
        # The old copy is gone from the node it left.
        wait_until("the old node no longer lists a copy", lambda: all(
            r["stream"] != "moving" for r in nodes[old_leader - 1].api("cluster", "replicas")))
        views = [v for v in nodes[0].api("cluster", "leaders") if v["stream"] == "moving"]
        assert views[0]["moving_to"] == [] and views[0]["replicas"] == target

        # The new leader's node dies: the two copies left elect one of themselves.
        nodes[new_leader - 1].node.proc.send_signal(signal.SIGKILL)
        nodes[new_leader - 1].node.proc.wait()
        for i in range(100):
            producer.produce("moving", b"after-%d" % i, partition=0, on_delivery=report)
        assert producer.flush(DEADLINE) == 0
        assert failures == [], failures[:5]
        survivor = next(n for i, n in enumerate(nodes) if i + 1 != new_leader)
        consumer = Consumer({"bootstrap.servers": survivor.bootstrap, "group.id": "check",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.assign([TopicPartition("moving", 0, 0)])
        seen, twice = {}, []

        def read_all():
            for m in consumer.consume(500, 1.0):
                if m.error() is None:
                    if m.value() in seen:
                        twice.append(m.value())
                    seen[m.value()] = m.offset()
            return all(v in seen for v in acked)
        wait_until("the consumer has read every acknowledged record", read_all)
        consumer.close()
        assert twice == []
        for value, offset in acked.items():
            assert seen[value] == offset, (value, offset, seen[value])

        # Removing a node that holds copies moves them to the nodes left (the killed
        # node cannot take any: its heartbeats stopped).
        nodes[new_leader - 1].restart()
        wait_until("the restarted node is back in sync", lambda: sorted(partition().isrs) == sorted(target))
        for f in admin.create_topics([NewTopic("spread", 2, 3)]).values():
            f.result(DEADLINE)
        wait_until("the spread topic is in sync", lambda: all(
            p.leader > 0 and sorted(p.isrs) == sorted(p.replicas) for p in
            admin.list_topics(timeout=DEADLINE).topics["spread"].partitions.values()))
        leaving = next(r for r in target if r != new_leader)
        first = admin_call(nodes[0], "DELETE", "cluster", "nodes", str(leaving))
        assert first["state"] == "leaving" and first["copies"] > 0, first

        def moved_off():
            md = admin.list_topics(timeout=DEADLINE)
            return all(leaving not in p.replicas and sorted(p.isrs) == sorted(p.replicas)
                       for t in ("moving", "spread") for p in md.topics[t].partitions.values())
        try:
            wait_until("every copy moved off the leaving node", moved_off)
        except AssertionError as e:
            raise AssertionError(f"{e}: {nodes[0].api('cluster', 'leaders')}") from None
        wait_until("the leaving node is removed once it holds nothing", lambda: admin_call(
            nodes[0], "DELETE", "cluster", "nodes", str(leaving))["state"] == "removed")
        md = admin.list_topics(timeout=DEADLINE)
        assert leaving not in md.brokers
        assert all(len(p.replicas) == 3 for t in ("moving", "spread")
                   for p in md.topics[t].partitions.values())

        # The admin API moves a partition too, and refuses what cannot be.
        here = [v for v in nodes[0].api("cluster", "leaders") if v["stream"] == "spread"][0]
        order = here["replicas"][1:] + here["replicas"][:1]
        view = admin_call(nodes[0], "POST", "cluster", "partitions", "spread", "0", "replicas",
                          body={"replicas": order})
        assert view["replicas"] == order and view["moving_to"] == [], view
        for body, status in (({"replicas": [order[0], order[0]]}, 409),
                             ({"replicas": [order[0], order[1], leaving]}, 409),
                             ({"replicas": [order[0]]}, 409)):
            try:
                admin_call(nodes[0], "POST", "cluster", "partitions", "spread", "0", "replicas",
                           body=body)
                raise AssertionError(f"{body} was accepted")
            except urllib.error.HTTPError as e:
                assert e.code == status, (body, e.code)
        try:
            admin_call(nodes[0], "POST", "cluster", "partitions", "spread", "9", "replicas",
                       body={"replicas": order})
            raise AssertionError("a move of a missing partition was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 404, e.code
    finally:
        for n in nodes:
            n.node.stop()
