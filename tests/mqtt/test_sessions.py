"""Sessions, wills, takeover and keep alive with real paho-mqtt clients."""
import socket
import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import DEADLINE, Client
from raw import Raw, ack, parse_publish, subscribe


def test_persistent_session_311_queues_while_offline(node):
    s = Client(node.port, v5=False, client_id="keeper", clean=False)
    s.subscribe("jobs/#", 1)
    s.close()
    p = Client(node.port, v5=False)
    for i in range(5):
        p.publish("jobs/x", f"j{i}".encode(), 1)
    s2 = Client(node.port, v5=False, client_id="keeper", clean=False, connect=False)
    flags, rc, _ = s2.connect()
    assert flags.session_present
    assert [m.payload for m in s2.expect(5)] == [f"j{i}".encode() for i in range(5)]
    s2.close()
    # A clean session discards it.
    s3 = Client(node.port, v5=False, client_id="keeper", clean=True, connect=False)
    flags, rc, _ = s3.connect()
    assert not flags.session_present
    s3.close()
    p.close()


def test_unacknowledged_messages_are_resent_with_dup_on_reconnect(node):
    """[MQTT-4.4.0-1], [MQTT-3.3.1-1]: on a resumed session, unacknowledged PUBLISH packets
    are resent with DUP set and their original packet ids, and a PUBREL whose PUBCOMP
    never came is resent, in the original order."""
    a = Raw(node.port)
    assert a.connect(client_id="resend", v5=False, clean=False)[1] == 0
    a.send(subscribe("r/1", 2, v5=False))
    assert a.read_packet()[0] == 0x90
    p = Client(node.port, v5=False)
    p.publish("r/1", b"m1", 1)
    p.publish("r/1", b"m2", 2)
    p.publish("r/1", b"m3", 2)
    got = []
    for _ in range(3):
        first, body = a.read_packet()
        assert first >> 4 == 3
        got.append(parse_publish(first, body, v5=False))
    assert [(g[0], g[1], g[4]) for g in got] == [(False, 1, b"m1"), (False, 2, b"m2"), (False, 2, b"m3")]
    ids = [g[3] for g in got]
    assert len(set(ids)) == 3 and 0 not in ids
    # m3 gets as far as PUBREC / PUBREL; m1 and m2 are never acknowledged.
    a.send(ack(0x50, ids[2]))
    assert a.read_packet() == (0x62, ids[2].to_bytes(2, "big"))
    a.close()

    b = Raw(node.port)
    connack = b.connect(client_id="resend", v5=False, clean=False)
    assert connack == b"\x01\x00"  # session present
    first, body = b.read_packet()
    assert parse_publish(first, body, v5=False) == (True, 1, "r/1", ids[0], b"m1")
    first, body = b.read_packet()
    assert parse_publish(first, body, v5=False) == (True, 2, "r/1", ids[1], b"m2")
    assert b.read_packet() == (0x62, ids[2].to_bytes(2, "big"))
    # Completing every flow leaves nothing more to resend.
    b.send(ack(0x40, ids[0]) + ack(0x50, ids[1]))
    assert b.read_packet() == (0x62, ids[1].to_bytes(2, "big"))
    b.send(ack(0x70, ids[1]) + ack(0x70, ids[2]))
    # PINGRESP comes after the PUBCOMPs were handled; closing right after sending them
    # could reset the connection before the broker read them.
    b.send(bytes([0xC0, 0x00]))
    assert b.read_packet()[0] == 0xD0
    b.close()
    c = Raw(node.port)
    assert c.connect(client_id="resend", v5=False, clean=False) == b"\x01\x00"
    c.send(bytes([0xC0, 0x00]))  # PINGREQ: the next packet must be its PINGRESP
    assert c.read_packet()[0] == 0xD0
    c.close()
    p.close()


def test_v5_session_expiry_zero_ends_at_disconnect(node):
    s = Client(node.port, client_id="brief", clean=True, expiry=0)
    s.subscribe("x", 1)
    s.close()
    node.wait_connections(0)
    s2 = Client(node.port, client_id="brief", clean=False, expiry=60, connect=False)
    flags, rc, _ = s2.connect()
    assert not flags.session_present
    s2.close()
    s3 = Client(node.port, client_id="brief", clean=False, expiry=60, connect=False)
    flags, rc, _ = s3.connect()
    assert flags.session_present
    s3.close()


def test_will_on_abnormal_end_not_on_normal_disconnect(node):
    w = Client(node.port)
    w.subscribe("wills/#", 1)
    a = Client(node.port, will=("wills/a", b"a died", 1, False, None))
    a.drop()
    m = w.expect(1)[0]
    assert (m.topic, m.payload) == ("wills/a", b"a died")
    b = Client(node.port, will=("wills/b", b"b died", 1, False, None))
    b.close()
    w.expect_none()
    w.close()


def test_will_with_disconnect_0x04(node):
    w = Client(node.port)
    w.subscribe("wills/#", 1)
    c = Client(node.port, will=("wills/c", b"sent anyway", 0, False, None))
    c.c.disconnect(reasoncode=__import__("paho.mqtt.reasoncodes", fromlist=["ReasonCode"]).ReasonCode(
        PacketTypes.DISCONNECT, identifier=0x04))
    m = w.expect(1)[0]
    assert m.payload == b"sent anyway"
    w.close()


def raw_v5_connect(port, client_id):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(DEADLINE)
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + len(cid).to_bytes(2, "big") + cid
    s.sendall(bytes([0x10, len(body)]) + body)
    ack = s.recv(2)
    assert ack[0] == 0x20
    rest = s.recv(ack[1])
    assert rest[1] == 0x00, "CONNACK success"
    return s


def test_takeover_disconnects_the_first_connection(node):
    first = raw_v5_connect(node.port, "twin")
    second = raw_v5_connect(node.port, "twin")
    assert first.recv(3)[:3] == b"\xe0\x01\x8e", "DISCONNECT 0x8E session taken over"
    assert first.recv(1) == b"", "then the connection closes"
    second.close()


def test_keep_alive_timeout_publishes_the_will(node):
    w = Client(node.port)
    w.subscribe("wills/ka", 0)
    # A raw MQTT 3.1.1 CONNECT with keep alive 1 s and a will, then silence.
    s = socket.create_connection(("127.0.0.1", node.port))
    will_topic, will_msg, cid = b"wills/ka", b"timed out", b"sleepy"
    payload = (len(cid).to_bytes(2, "big") + cid + len(will_topic).to_bytes(2, "big") + will_topic
               + len(will_msg).to_bytes(2, "big") + will_msg)
    var = b"\x00\x04MQTT\x04\x06\x00\x01"
    body = var + payload
    s.sendall(bytes([0x10, len(body)]) + body)
    assert s.recv(4) == b"\x20\x02\x00\x00"
    started = time.time()
    m = w.expect(1)[0]
    assert m.payload == b"timed out"
    assert time.time() - started >= 1.0, "not before 1.5 x keep alive"
    s.close()
    w.close()


def test_empty_client_id_gets_an_assigned_one(node):
    r = Raw(node.port)
    body = r.connect(client_id="")
    assert body[1] == 0x00
    assert b"strata-" in body, "CONNACK carries an assigned client identifier (0x12)"
    r311 = Raw(node.port)
    r311.send(b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x3c\x00\x00")  # 3.1.1, clean session 0, empty id
    first, body = r311.read_packet()
    assert (first, body[1]) == (0x20, 0x02), "identifier rejected"
