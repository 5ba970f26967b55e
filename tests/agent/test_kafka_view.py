"""The agent frontend's data from Kafka, no copy: a real Kafka consumer (confluent-kafka)
reads an agent topic and an agent queue as the Kafka topics `agent.topic.<t>` and
`agent.queue.<q>` (one partition per priority level), the records being the events and
messages the agent API stored."""
import json
import os
import sys
import time

from confluent_kafka import Consumer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import Api, start  # noqa: E402
from test_topics import publish  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, node_with  # noqa: E402,F401


def consume(node, topic, count):
    """The first `count` records of Kafka topic `topic`: (partition, key, value as JSON)."""
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": f"view-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, end = [], time.time() + DEADLINE * 2
    try:
        while len(got) < count:
            assert time.time() < end, f"read {len(got)} of {count} records of {topic}"
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            key = m.key().decode() if m.key() else None
            got.append((m.partition(), key, json.loads(m.value())))
    finally:
        c.close()
    return got


def test_a_kafka_consumer_reads_agent_topics_and_queues(node_with):
    node = start(node_with)
    api = Api(node)
    for n in range(3):
        publish(api, "news", {"n": n}, kind="headline")
    got = consume(node, "agent.topic.news", 3)
    assert [v["data"] for _, _, v in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {v["type"] for _, _, v in got} == {"headline"}
    assert api.send("jobs", {"task": "urgent"}, priority="high", key="k1")[0] == 201
    assert api.send("jobs", {"task": "later"}, priority="low")[0] == 201
    got = sorted(consume(node, "agent.queue.jobs", 2))
    # One partition per level: high is 0, low is 2; the key is the message's key.
    assert [(p, k, v["body"]) for p, k, v in got] == [
        (0, "k1", {"task": "urgent"}), (2, None, {"task": "later"})]
