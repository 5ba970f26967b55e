"""Configured limits, end to end: connections, queued messages per session, topic levels
and length. Each gives the specification's reason code and a metric."""
from conftest import DEADLINE, Client
from raw import Raw, publish


def test_max_connections(node_with):
    n = node_with("[mqtt]\nmax_connections = 2\n")
    a, b = Client(n.port), Client(n.port)
    r = Raw(n.port)
    assert r.connect(client_id="third")[1] == 0x89, "CONNACK server busy (MQTT 5)"
    r3 = Raw(n.port)
    assert r3.connect(client_id="third-v3", v5=False)[1] == 0x03, "server unavailable (3.1.1)"
    assert n.metrics()['strata_mqtt_errors_total{reason="max_connections"}'] >= 2
    a.close()
    b.close()


def test_queue_limit_bounds_an_offline_session(node_with):
    n = node_with("[mqtt]\nmax_queued_messages = 10\n")
    s = Client(n.port, v5=False, client_id="slow", clean=False)
    s.subscribe("flood", 1)
    s.close()
    p = Client(n.port, v5=False)
    for i in range(30):
        p.publish("flood", f"{i}".encode(), 1)
    s2 = Client(n.port, v5=False, client_id="slow", clean=False)
    got = [int(m.payload) for m in s2.expect(10)]
    assert got == list(range(10)), "the oldest are kept, the newest refused"
    s2.expect_none()
    assert n.metrics()['strata_mqtt_dropped_messages_total{reason="queue_full"}'] == 20


def test_queue_full_drop_oldest_keeps_the_newest_and_bounds_bytes(node_with):
    n = node_with('[mqtt]\nmax_queued_messages = 100\nmax_queued_bytes = 50\nqueue_full = "drop_oldest"\n')
    s = Client(n.port, v5=False, client_id="slow", clean=False)
    s.subscribe("f", 1)
    s.close()
    p = Client(n.port, v5=False)
    for i in range(30):
        p.publish("f", f"m{i:03d}".encode(), 1)  # 5 bytes each with the topic: 10 fit
    s2 = Client(n.port, v5=False, client_id="slow", clean=False)
    got = [m.payload for m in s2.expect(10)]
    assert got == [f"m{i:03d}".encode() for i in range(20, 30)], "the newest 10 by bytes"
    s2.expect_none()
    assert n.metrics()['strata_mqtt_dropped_messages_total{reason="queue_full_oldest"}'] == 20


def test_queue_full_refuse_gives_quota_exceeded(node_with):
    n = node_with('[mqtt]\nmax_queued_messages = 3\nqueue_full = "refuse"\n')
    s = Client(n.port, v5=False, client_id="slow", clean=False)
    s.subscribe("g", 1)
    s.close()
    r = Raw(n.port)
    assert r.connect(client_id="pub5")[1] == 0
    codes = []
    for i in range(5):
        r.send(publish("g", f"{i}".encode(), qos=1, packet_id=i + 1))
        first, body = r.read_packet()
        assert first == 0x40
        codes.append(body[2] if len(body) > 2 else 0)
    assert codes == [0, 0, 0, 0x97, 0x97], "PUBACK quota exceeded once the queue is full"
    s2 = Client(n.port, v5=False, client_id="slow", clean=False)
    assert [int(m.payload) for m in s2.expect(3)] == [0, 1, 2]
    s2.expect_none()
    assert n.metrics()['strata_mqtt_dropped_messages_total{reason="queue_full_refused"}'] == 2


def test_topic_levels_and_length(node_with):
    n = node_with("[mqtt]\nmax_topic_levels = 3\nmax_topic_length = 20\n")
    c = Client(n.port)
    assert c.subscribe("a/b/c/d", 0)[0].value == 0x8F
    assert c.subscribe("x" * 21, 0)[0].value == 0x8F
    assert c.subscribe("a/b/c", 0)[0].value == 0x00
    r = Raw(n.port)
    r.connect(client_id="deep")
    r.send(publish("a/b/c/d", b"x"))
    first, body = r.read_packet()
    assert first == 0xE0 and body[0] == 0x90, "DISCONNECT topic name invalid"
