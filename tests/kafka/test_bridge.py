"""MQTT and Kafka on the same journal: an MQTT publish is read by a Kafka consumer group
(record key = MQTT topic, headers = MQTT QoS and properties) and a Kafka record reaches
MQTT subscribers under a topic prefix, both ways through a real `strata serve`."""
import queue
import time

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, Producer
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kafka_support import DEADLINE, node_with  # noqa: F401

CONFIG = """
[mqtt]
bridge_to_stream = [{ filter = "sensors/#", stream = "sensors" }]
bridge_from_stream = [{ stream = "commands", prefix = "cmd/" }]
"""


def mqtt_client(port, name, on_message=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    if on_message:
        c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_mqtt_publishes_reach_a_kafka_consumer_group(node_with):
    n = node_with(CONFIG)
    pub = mqtt_client(n.port, "sensor-1")
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("unit", "celsius")
    props.ContentType = "text/plain"
    sent = []
    for i in range(20):
        info = pub.publish(f"sensors/room{i % 3}/temp", f"{20 + i}", qos=1, properties=props)
        sent.append(info)
    pub.publish("other/topic", "not bridged", qos=1).wait_for_publish(DEADLINE)
    for info in sent:
        info.wait_for_publish(DEADLINE)
    pub.disconnect()
    pub.loop_stop()

    c = Consumer({"bootstrap.servers": n.bootstrap, "group.id": "readers",
                  "auto.offset.reset": "earliest"})
    c.subscribe(["sensors"])
    got = []
    deadline = time.time() + DEADLINE * 2
    while len(got) < 20 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    c.close()
    assert len(got) == 20
    assert [m.value().decode() for m in got] == [f"{20 + i}" for i in range(20)]
    assert got[0].key() == b"sensors/room0/temp"
    headers = dict(got[0].headers())
    assert headers["mqtt.qos"] == b"\x01"
    assert headers["mqtt.user:unit"] == b"celsius"
    assert headers["mqtt.content_type"] == b"text/plain"
    assert headers["mqtt.client"] == b"sensor-1"


def test_kafka_records_reach_mqtt_subscribers(node_with):
    n = node_with(CONFIG)
    received = queue.Queue()
    sub = mqtt_client(n.port, "lamp", lambda c, u, m: received.put((m.topic, m.payload, m.qos)))
    subscribed = queue.Queue()
    sub.on_subscribe = lambda *a: subscribed.put(True)
    sub.subscribe("cmd/#", qos=1)
    subscribed.get(timeout=DEADLINE)
    p = Producer({"bootstrap.servers": n.bootstrap})
    for i in range(10):
        p.produce("commands", key=f"lamp/{i}", value=f"on-{i}")
    assert p.flush(DEADLINE) == 0
    got = [received.get(timeout=DEADLINE) for _ in range(10)]
    assert got == [(f"cmd/lamp/{i}", f"on-{i}".encode(), 1) for i in range(10)]
    sub.disconnect()
    sub.loop_stop()
