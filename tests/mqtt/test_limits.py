"""Reason-code paths and limits, with raw packets where paho cannot produce them: receive
maximum, maximum packet size, AUTH without a method, topic aliases, will delay and shared
subscription hand-over."""
import time

from conftest import DEADLINE, Client
from raw import Raw, publish, s, varint


def test_receive_maximum_exceeded_gives_0x93(node_with):
    n = node_with("[mqtt]\nreceive_maximum = 2\n")
    r = Raw(n.port)
    body = r.connect(client_id="rm")
    assert body[1] == 0x00
    for i in (1, 2, 3):  # QoS 2 publishes, no PUBREL
        r.send(publish("rm/x", b"p", qos=2, packet_id=i))
    kinds = []
    while True:
        p = r.read_packet()
        if p is None:
            break
        kinds.append(p)
    assert [k[0] for k in kinds[:2]] == [0x50, 0x50], "two PUBRECs"
    assert kinds[2][0] == 0xE0 and kinds[2][1][0] == 0x93, kinds


def test_packet_too_large_gives_0x95(node_with):
    n = node_with("[mqtt]\nmax_packet_size = 1024\n")
    r = Raw(n.port)
    body = r.connect(client_id="big")
    assert body[1] == 0x00
    r.send(publish("big", b"x" * 2000))
    first, body = r.read_packet()
    assert first == 0xE0 and body[0] == 0x95
    assert r.read_packet() is None


def test_auth_without_a_configured_method(node):
    r = Raw(node.port)
    props = bytes([0x15]) + s("SCRAM-SHA-1")
    body = r.connect(client_id="auth", props=props)
    assert body[1] == 0x8C, "CONNACK bad authentication method"
    r2 = Raw(node.port)
    assert r2.connect(client_id="auth2")[1] == 0x00
    r2.send(bytes([0xF0, 0x00]))  # AUTH
    first, body = r2.read_packet()
    assert first == 0xE0 and body[0] == 0x82


def test_inbound_topic_alias(node):
    sub = Client(node.port)
    sub.subscribe("alias/t", 0)
    r = Raw(node.port)
    r.connect(client_id="aliaser")
    alias = bytes([0x23, 0x00, 0x01])
    r.send(publish("alias/t", b"one", props=alias))
    r.send(publish("", b"two", props=alias))
    got = [(m.topic, m.payload) for m in sub.expect(2)]
    assert got == [("alias/t", b"one"), ("alias/t", b"two")]
    r.send(publish("", b"three", props=bytes([0x23, 0x00, 0x09])))  # beyond the maximum? 9 <= 64: unknown alias
    first, body = r.read_packet()
    assert first == 0xE0 and body[0] == 0x82, "unknown alias is a protocol error"


def test_outbound_topic_aliases_are_assigned(node):
    r = Raw(node.port)
    r.connect(client_id="alias-rx", props=bytes([0x22, 0x00, 0x05]))  # topic alias maximum 5
    r.send(bytes([0x82]) + varint(2 + 1 + 2 + 5 + 1) + b"\x00\x01" + b"\x00" + s("out/t") + b"\x00")
    first, _ = r.read_packet()
    assert first == 0x90
    pub = Client(node.port)
    for i in range(3):
        pub.publish("out/t", f"m{i}".encode(), 1)
    topics = []
    for _ in range(3):
        first, body = r.read_packet()
        assert first & 0xF0 == 0x30
        tlen = int.from_bytes(body[:2], "big")
        topics.append(body[2:2 + tlen])
    assert topics[0] == b"out/t" and topics[1] == b"" and topics[2] == b"", topics


def test_will_delay_is_cancelled_by_a_reconnect(node):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    w = Client(node.port)
    w.subscribe("wd/#", 1)
    props = Properties(PacketTypes.WILLMESSAGE)
    props.WillDelayInterval = 2
    a = Client(node.port, client_id="wd-a", expiry=60, will=("wd/a", b"a gone", 1, False, props))
    a.drop()
    Client(node.port, client_id="wd-a", clean=False, expiry=60)  # back within the delay
    props1 = Properties(PacketTypes.WILLMESSAGE)
    props1.WillDelayInterval = 1
    b = Client(node.port, client_id="wd-b", expiry=60, will=("wd/b", b"b gone", 1, False, props1))
    started = time.time()
    b.drop()
    m = w.expect(1)[0]
    assert m.topic == "wd/b", "only the client that stayed away has its will published"
    assert time.time() - started >= 0.9
    w.expect_none()


def test_shared_member_leaving_hands_over_unacknowledged_messages(node):
    greedy = Raw(node.port)
    greedy.connect(client_id="greedy")
    greedy.send(bytes([0x82]) + varint(2 + 1 + 2 + len("$share/g/job") + 1) + b"\x00\x01\x00" + s("$share/g/job") + b"\x01")
    assert greedy.read_packet()[0] == 0x90
    steady = Client(node.port)
    steady.subscribe("$share/g/job", 1)
    pub = Client(node.port)
    for i in range(10):
        pub.publish("job", f"{i}".encode(), 1)
    got_greedy = 0
    while got_greedy < 5:  # round robin: half of them, never acknowledged
        first, _ = greedy.read_packet()
        if first & 0xF0 == 0x30:
            got_greedy += 1
    greedy.close()
    payloads = sorted(int(m.payload) for m in steady.expect(10))
    assert payloads == list(range(10)), "the steady member ends with every message"
