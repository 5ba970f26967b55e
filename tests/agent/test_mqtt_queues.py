"""Agent work queues on MQTT (`[agent] mqtt_prefix = "queues/"`), with real paho-mqtt
clients against a real `strata serve`: an MQTT publish to `queues/<q>` is a send to queue
`<q>`; an MQTT subscription to it (shared or not) is a consumer competing with the HTTP
API's, each message on a lease settled by the client's PUBACK and handed back to the queue
when the client goes away without acknowledging it."""
import json
import os
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import Api, TOKEN, wait_until  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mqtt_client import Client  # noqa: E402
from strata_node import DEADLINE, node_with  # noqa: E402,F401


def start(node_with):
    return node_with("", STRATA_AGENT__ENABLED="true", STRATA_AGENT__TOKEN=TOKEN,
                     STRATA_AGENT__MQTT_PREFIX="queues/")


def props(**user):
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = list(user.items())
    return p


def puback_reason(client, topic, payload):
    """Publishes at QoS 1 and returns the PUBACK's reason code."""
    got = []
    client.c.on_publish = lambda c, u, mid, rc, p: got.append(rc)
    client.publish(topic, payload, qos=1)
    wait_until("the PUBACK", lambda: got)
    return got[0].value


def test_an_mqtt_publish_is_a_send_to_the_queue(node_with):
    node = start(node_with)
    api = Api(node)
    device = Client(node.port)
    device.publish("queues/jobs", json.dumps({"reading": 7}), qos=1,
                   properties=props(priority="high", key="sensor-1", tag="iot"))
    device.publish("queues/jobs", "plain text", qos=1)
    got = api.fetch("jobs", max=10, wait_ms=int(DEADLINE * 1000))
    assert [m["body"] for m in got] == [{"reading": 7}, "plain text"]
    assert got[0]["priority"] == 0 and got[0]["key"] == "sensor-1" and got[0]["tags"] == ["iot"]
    # Kept by the queue only: not in MQTT's own log, not routed to MQTT subscribers.
    assert api.describe("jobs")["depth"] == 2
    for m in got:
        assert api.ack("jobs", m["lease"])[0] == 200
    # Refusals come back as PUBACK reason codes, and are counted.
    assert puback_reason(device, "queues/jobs", bytes([0xff, 0xfe])) == 0x99
    assert puback_reason(device, "queues/_mbx-x-1", b"{}") == 0x90
    assert node.metrics().get('strata_mqtt_dropped_messages_total{reason="queue_refused"}') == 2
    device.close()


def manual_worker(node, client_id, topic):
    """An MQTT 3.1.1 worker that acknowledges only when told: (client, messages held)."""
    held = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv311, manual_ack=True)
    c.on_message = lambda c, u, m: held.append(m)
    c.connect("127.0.0.1", node.port)
    c.loop_start()
    c.subscribe(topic, 1)
    return c, held


def test_mqtt_and_http_consumers_compete_for_one_queue(node_with):
    node = start(node_with)
    api = Api(node)
    total = 40
    for n in range(total):
        assert api.send("work", {"n": n})[0] == 201
    # An MQTT 3 worker holds one message at a time, on a lease, until its PUBACK.
    worker, held = manual_worker(node, "w1", "$share/workers/queues/work")
    wait_until("the MQTT worker's message", lambda: held)
    got = api.fetch("work", max=100, wait_ms=0)
    assert len(got) == total - 1, "the HTTP consumer gets every message the MQTT one does not hold"
    ns = sorted([m["body"]["n"] for m in got] + [json.loads(held[0].payload)["n"]])
    assert ns == list(range(total)), "each message to one consumer"
    for m in got:
        assert api.ack("work", m["lease"])[0] == 200
    assert api.describe("work")["depth"] == 1
    # Its PUBACK is the ack: the queue is empty, and the worker takes the next message.
    worker.ack(held[0].mid, held[0].qos)
    wait_until("the PUBACK settling the lease", lambda: api.describe("work")["depth"] == 0)
    assert api.send("work", {"n": total})[0] == 201
    wait_until("the next message", lambda: len(held) == 2)
    assert json.loads(held[1].payload) == {"n": total}
    worker.disconnect()
    worker.loop_stop()


def test_an_mqtt_5_worker_reads_the_message_s_properties(node_with):
    node = start(node_with)
    api = Api(node)
    assert api.send("props", {"x": 1}, priority="low", key="k", tags=["a", "b"])[0] == 201
    worker = Client(node.port)
    assert worker.subscribe("queues/props", qos=1)[0].value == 1
    m = worker.expect()[0]
    assert m.topic == "queues/props" and json.loads(m.payload) == {"x": 1}
    user = m.properties.UserProperty
    assert ("attempt", "1") in user and ("priority", "2") in user and ("key", "k") in user
    assert [v for k, v in user if k == "tag"] == ["a", "b"]
    wait_until("the PUBACK settling the lease", lambda: api.describe("props")["depth"] == 0)
    worker.close()


def test_a_message_an_mqtt_worker_did_not_acknowledge_goes_to_another(node_with):
    node = start(node_with)
    api = Api(node)
    # A worker that takes the message and dies before acknowledging it.
    assert api.send("tasks", {"job": "resize"})[0] == 201
    dying, held = manual_worker(node, "dying", "$share/w/queues/tasks")
    wait_until("the MQTT worker holding the message", lambda: held)
    assert api.fetch("tasks", max=1, wait_ms=0) == [], "held on a lease while the worker lives"
    dying.loop_stop()
    dying.socket().close()
    # Handed back at once, to the next consumer (here an HTTP one).
    got = api.fetch("tasks", max=1, wait_ms=int(DEADLINE * 1000))
    assert [m["body"] for m in got] == [{"job": "resize"}]
    assert got[0]["attempt"] == 2
    assert api.ack("tasks", got[0]["lease"])[0] == 200


def test_mailboxes_are_not_for_mqtt(node_with):
    node = start(node_with)
    c = Client(node.port)
    assert c.subscribe("queues/_mbx-someone-1", qos=1)[0].value == 0x87
    c.close()


def test_a_message_too_large_for_the_client_goes_back_uncounted(node_with):
    node = start(node_with)
    api = Api(node)
    assert api.send("big", {"blob": "x" * 2000})[0] == 201
    connect = Properties(PacketTypes.CONNECT)
    connect.MaximumPacketSize = 256
    small = Client(node.port, properties=connect)
    assert small.subscribe("queues/big", qos=1)[0].value == 1
    # Not sent to it [MQTT-3.1.2-25], and handed back to the queue each time, uncounted.
    wait_until("the delivery the client cannot take", lambda: node.metrics().get(
        'strata_mqtt_dropped_messages_total{reason="too_large_for_client"}', 0) >= 1)
    small.close()
    got = api.fetch("big", max=1, wait_ms=int(DEADLINE * 1000))
    assert len(got) == 1 and got[0]["attempt"] == 1, got


def test_an_mqtt_3_publish_the_queue_never_takes_is_acknowledged_and_counted(node_with):
    node = start(node_with)
    device = Client(node.port, v5=False)
    # Acknowledged (MQTT 3 has no reason codes) rather than resent forever; the
    # connection stays.
    device.publish("queues/jobs", bytes([0xff, 0xfe]), qos=1)
    device.publish("queues/jobs", "fine", qos=1)
    assert node.metrics().get('strata_mqtt_dropped_messages_total{reason="queue_refused"}') == 1
    got = Api(node).fetch("jobs", max=10, wait_ms=int(DEADLINE * 1000))
    assert [m["body"] for m in got] == ["fine"]
    device.close()
