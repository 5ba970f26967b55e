"""Publish/subscribe with real paho-mqtt clients over TCP: QoS 0/1/2 in both directions,
wildcards, retained messages, $SYS, for MQTT 3.1.1 and 5.0."""
import pytest

from conftest import Client


@pytest.mark.parametrize("v5", [False, True])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_qos_round_trip(node, v5, qos):
    sub = Client(node.port, v5=v5)
    assert sub.subscribe("q/+", qos)[0].value == qos, "granted QoS"
    pub = Client(node.port, v5=v5)
    for i in range(20):
        pub.publish(f"q/{i % 3}", f"m{i}".encode(), qos)
    got = sub.expect(20)
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(20)], "in order, once each"
    assert {m.qos for m in got} == {qos}
    sub.expect_none()
    pub.close()
    sub.close()


def test_wildcards_and_sys_topics(node):
    c = Client(node.port)
    c.subscribe("sport/#", 0)
    c.subscribe("+/tennis/+", 0)
    c.subscribe("#", 0)
    c.publish("sport", b"a", 1)
    c.publish("sport/tennis/player1", b"b", 1)
    # "sport" matches sport/# and #; sport/tennis/player1 matches all three filters. Each is
    # delivered once: one message per client at the highest QoS of its matching filters.
    got = sorted((m.topic, m.payload) for m in c.expect(2))
    assert got == [("sport", b"a"), ("sport/tennis/player1", b"b")]
    c.expect_none()
    # '#' does not match $SYS; an explicit $SYS filter does.
    c.subscribe("$SYS/broker/version", 0)
    m = c.expect(1)[0]
    assert m.topic == "$SYS/broker/version" and m.payload.startswith(b"strata")
    c.close()


@pytest.mark.parametrize("v5", [False, True])
def test_retained_set_replace_clear(node, v5):
    p = Client(node.port, v5=v5)
    p.publish("r/1", b"first", 1, retain=True)
    p.publish("r/1", b"second", 1, retain=True)
    p.publish("r/2", b"other", 1, retain=True)
    s = Client(node.port, v5=v5)
    s.subscribe("r/#", 1)
    got = sorted((m.topic, m.payload, m.retain) for m in s.expect(2))
    assert got == [("r/1", b"second", True), ("r/2", b"other", True)]
    p.publish("r/1", b"", 1, retain=True)  # clear; live subscribers still get it
    m = s.expect(1)[0]
    assert (m.topic, m.payload) == ("r/1", b"")
    s2 = Client(node.port, v5=v5)
    s2.subscribe("r/#", 1)
    assert [(m.topic, m.payload) for m in s2.expect(1)] == [("r/2", b"other")]
    s2.expect_none()
    # Live forwarding clears the retain flag (MQTT 3.1.1 [MQTT-3.3.1-9]; MQTT 5 without
    # retain-as-published).
    p.publish("r/3", b"live", 1, retain=True)
    m = s.expect(1)[0]
    assert (m.topic, m.retain) == ("r/3", False)
    for c in (p, s, s2):
        c.close()


def test_packets_sent_right_behind_connect_are_handled(node):
    """A client may send SUBSCRIBE (or anything) without waiting for CONNACK; those bytes
    often arrive in the same read as the CONNECT."""
    from raw import Raw, connect, subscribe
    r = Raw(node.port)
    r.send(connect(client_id="eager", v5=False) + subscribe("eager/t", 1, v5=False))
    assert r.read_packet()[0] == 0x20
    assert r.read_packet()[0] == 0x90, "SUBACK without any further input"
    r.close()
