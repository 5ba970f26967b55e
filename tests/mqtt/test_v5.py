"""MQTT 5 features with paho-mqtt: properties forwarded, subscription identifiers, no local,
retain as published, message expiry, shared subscriptions, topic rules, malformed input."""
import socket

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import DEADLINE, Client


def test_properties_are_forwarded_unchanged(node):
    s = Client(node.port)
    s.subscribe("props", 1)
    p = Client(node.port)
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 1
    props.ContentType = "text/plain"
    props.ResponseTopic = "replies/1"
    props.CorrelationData = b"\x01\x02"
    props.UserProperty = [("k1", "v1"), ("k2", "v2")]
    props.MessageExpiryInterval = 3600
    p.publish("props", b"hi", 1, properties=props)
    m = s.expect(1)[0]
    got = m.properties
    assert got.PayloadFormatIndicator == 1
    assert got.ContentType == "text/plain"
    assert got.ResponseTopic == "replies/1"
    assert got.CorrelationData == b"\x01\x02"
    assert got.UserProperty == [("k1", "v1"), ("k2", "v2")]
    assert 3590 <= got.MessageExpiryInterval <= 3600


def test_subscription_identifiers_and_no_local(node):
    c = Client(node.port)
    c.subscribe_with_id("ids/#", 1, 7)
    c.subscribe_with_id("ids/+", 1, 9)
    other = Client(node.port)
    other.publish("ids/a", b"x", 1)
    m = c.expect(1)[0]
    assert sorted(m.properties.SubscriptionIdentifier) == [7, 9]
    c.expect_none()
    nl = Client(node.port)
    nl.subscribe("self", 1, noLocal=True)
    nl.publish("self", b"mine", 1)
    other.publish("self", b"theirs", 1)
    assert nl.expect(1)[0].payload == b"theirs"


def test_retain_as_published(node):
    c = Client(node.port)
    c.subscribe("rap", 1, retainAsPublished=True)
    Client(node.port).publish("rap", b"x", 1, retain=True)
    assert c.expect(1)[0].retain


def test_message_expiry_drops_stale_queued_messages(node):
    s = Client(node.port, client_id="exp", clean=True, expiry=300)
    s.subscribe("exp", 1)
    s.close()
    p = Client(node.port)
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 1
    p.publish("exp", b"stale", 1, properties=props)
    p.publish("exp", b"fresh", 1)
    import time
    deadline = time.time() + 3
    while time.time() < deadline:  # the expiry interval must pass; bounded wait on the clock
        time.sleep(0.1)
    s2 = Client(node.port, client_id="exp", clean=False, expiry=300)
    assert [m.payload for m in s2.expect(1)] == [b"fresh"]
    s2.expect_none()


def test_shared_subscription_round_robin(node):
    a = Client(node.port)
    b = Client(node.port)
    a.subscribe("$share/g/work", 1)
    b.subscribe("$share/g/work", 1)
    p = Client(node.port)
    for i in range(10):
        p.publish("work", f"{i}".encode(), 1)
    got_a = [a.messages.get(timeout=DEADLINE) for _ in range(5)]
    got_b = [b.messages.get(timeout=DEADLINE) for _ in range(5)]
    assert sorted(int(m.payload) for m in got_a + got_b) == list(range(10))
    a.expect_none()
    b.expect_none()


def test_topic_rules_refuse_with_reason_codes(node_with):
    n = node_with('[[mqtt.rules]]\nfilter = "secret/#"\ndeny_publish = true\ndeny_subscribe = true\n')
    c = Client(n.port)
    codes = c.subscribe("secret/x", 1)
    assert codes[0].value == 0x87
    acks = []
    c.c.on_publish = lambda cl, u, mid, rc, p: acks.append(rc)
    c.publish("secret/x", b"no", 1)
    assert acks and acks[0].value == 0x87
    v3 = Client(n.port, v5=False)
    assert v3.subscribe("secret/x", 1)[0].value == 0x80


def test_malformed_packet_gets_disconnect_0x81(node):
    s = socket.create_connection(("127.0.0.1", node.port))
    s.settimeout(DEADLINE)
    connect = b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00"
    s.sendall(connect)
    ack = s.recv(64)
    assert ack[0] == 0x20 and ack[3] == 0x00
    s.sendall(b"\x32\x03\x00\x01\x23")  # QoS 1 PUBLISH with a wildcard topic, no packet id
    data = s.recv(16)
    assert data[:1] == b"\xe0" and data[2] in (0x81, 0x82), data
    assert s.recv(16) == b"", "connection closed"


def test_unsupported_protocol_version(node):
    s = socket.create_connection(("127.0.0.1", node.port))
    s.settimeout(DEADLINE)
    s.sendall(b"\x10\x0c\x00\x04MQTT\x07\x02\x00\x3c\x00\x00")
    assert s.recv(8)[:4] == b"\x20\x03\x00\x84"


def test_retain_handling(node):
    Client(node.port).publish("rh/t", b"kept", 1, retain=True)
    always = Client(node.port)
    always.subscribe("rh/#", 1, retainHandling=0)
    assert always.expect(1)[0].payload == b"kept"
    always.subscribe("rh/#", 1, retainHandling=0)  # again: sent again
    assert always.expect(1)[0].payload == b"kept"
    if_new = Client(node.port)
    if_new.subscribe("rh/#", 1, retainHandling=1)
    assert if_new.expect(1)[0].payload == b"kept"
    if_new.subscribe("rh/#", 1, retainHandling=1)  # existing subscription: not sent
    if_new.expect_none()
    never = Client(node.port)
    never.subscribe("rh/#", 1, retainHandling=2)
    never.expect_none()
