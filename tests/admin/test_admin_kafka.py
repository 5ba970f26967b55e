"""The admin API's Kafka endpoints against a real node with real confluent-kafka clients:
consumer groups with members, assignments, committed offsets and lag, the same lag in
/metrics, and the CLI over them."""
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from admin_support import (  # noqa: F401 (fixtures)
    DEADLINE, admin_cli, Api, assert_error, node, node_with, wait_until)

PARTITIONS = 4
PER_PARTITION = 50


def consumer(node, client_id):
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "billing",
                  "client.id": client_id, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 30000,
                  "heartbeat.interval.ms": 500})
    c.subscribe(["orders"])
    return c


def test_groups_members_assignment_and_lag(node):
    api = Api(node)
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic("orders", PARTITIONS, 1)])["orders"].result(DEADLINE)
    p = Producer({"bootstrap.servers": node.bootstrap})
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            p.produce("orders", value=b"o%d" % i, partition=part)
    assert p.flush(DEADLINE) == 0

    c1, c2 = consumer(node, "billing-1"), consumer(node, "billing-2")
    consumed = 0
    try:
        # Both members poll until the group is stable with both of them, consuming some.
        def stable():
            nonlocal consumed
            for c in (c1, c2):
                m = c.poll(0.2)
                if m is not None and not m.error():
                    consumed += 1
            status, g = api.get("kafka", "groups", "billing")
            return (status == 200 and g["group"]["state"] == "Stable"
                    and g["group"]["members"] == 2 and consumed >= 20 and g)
        wait_until("a stable group of two that consumed", stable, DEADLINE * 2)
        for c in (c1, c2):
            c.commit(asynchronous=False)
        committed = {}
        for c in (c1, c2):
            for tp in c.committed(c.assignment(), timeout=DEADLINE):
                if tp.offset >= 0:
                    committed[tp.partition] = tp.offset
        assert committed, "the members committed nothing"

        g = api.ok("kafka", "groups", "billing")
        assert g["group"]["protocol_type"] == "consumer" and g["group"]["generation"] >= 1
        members = g["members"]
        assert sorted(m["client_id"] for m in members) == ["billing-1", "billing-2"]
        assert all(m["client_host"] == "/127.0.0.1" for m in members)
        assigned = sorted((tp["topic"], p) for m in members for tp in m["assignment"]
                          for p in tp["partitions"])
        assert assigned == [("orders", p) for p in range(PARTITIONS)]
        offsets = {o["partition"]: o for o in g["offsets"] if o["topic"] == "orders"}
        assert {p: o["committed_offset"] for p, o in offsets.items()} == committed
        for o in offsets.values():
            assert o["end_offset"] == PER_PARTITION
            assert o["lag"] == PER_PARTITION - o["committed_offset"]
        assert g["group"]["lag"] == sum(o["lag"] for o in offsets.values())

        listed = {x["group_id"]: x for x in api.ok("kafka", "groups")}
        assert listed["billing"]["members"] == 2 and listed["billing"]["lag"] == g["group"]["lag"]
        metrics = node.metrics()
        for part, o in offsets.items():
            key = f'strata_kafka_consumer_group_lag{{group="billing",partition="{part}",topic="orders"}}'
            assert metrics[key] == o["lag"], key
        assert metrics['strata_kafka_consumer_group_members{group="billing"}'] == 2
        assert metrics['strata_kafka_consumer_groups{state="Stable"}'] == 1

        code, out, err = admin_cli(node, "kafka", "group", "billing")
        assert code == 0, err
        assert "billing-1" in out and "billing-2" in out and "orders" in out
        code, out, err = admin_cli(node, "kafka", "groups")
        assert code == 0 and out.splitlines()[1].split()[:2] == ["billing", "Stable"], out
    finally:
        c1.close()
        c2.close()

    left = wait_until("the group to empty after both left", lambda: (
        g := api.ok("kafka", "groups", "billing"))["group"]["members"] == 0 and g)
    assert left["group"]["state"] == "Empty"
    assert left["offsets"], "committed offsets outlive the members"
    assert_error(api.get("kafka", "groups", "nobody"), 404, "not_found")


def test_groups_with_only_committed_offsets_survive_a_restart(node_with):
    n = node_with()
    p = Producer({"bootstrap.servers": n.bootstrap})
    for i in range(10):
        p.produce("audit", value=b"a%d" % i)
    assert p.flush(DEADLINE) == 0
    c = Consumer({"bootstrap.servers": n.bootstrap, "group.id": "auditors",
                  "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("audit", 0, 4)], asynchronous=False)
    c.close()
    assert n.stop() == 0

    again = node_with()
    g = Api(again).started().ok("kafka", "groups", "auditors")
    assert g["group"]["state"] == "Empty" and g["members"] == []
    [o] = g["offsets"]
    assert (o["topic"], o["committed_offset"], o["end_offset"], o["lag"]) == ("audit", 4, 10, 6)
