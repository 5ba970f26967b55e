"""Attacks on the MQTT listeners and the bounds that stop them, each with a real socket or a
paho client: a SUBSCRIBE repeating `#` after many retained messages, subscriptions and
sessions without end, retained and delayed messages without bound, sockets that never send
CONNECT (or send a huge one), oversized WebSocket frames, subscribers that stop reading,
persistent sessions that never expire, and topic rules bypassed by wildcards, `$delayed/`,
wills and bridged records."""
import base64
import os
import socket
import struct
import time

from conftest import DEADLINE, Client
from raw import Raw, connect, packet, publish, s, subscribe, varint


def wait_for(what, done, deadline=DEADLINE):
    end = time.time() + deadline
    while not done():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def subscribe_many(filters, packet_id=1, v5=True):
    body = packet_id.to_bytes(2, "big") + (b"\x00" if v5 else b"")
    for f in filters:
        body += s(f) + b"\x00"
    return packet(0x82, body)


def closed(sock):
    """Whether the server closes `sock` (within the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def retain_many(port, n, prefix="r"):
    p = Client(port)
    for i in range(n):
        p.publish(f"{prefix}/{i}", b"x" * 10, 1, retain=True)
    p.close()


def test_a_subscribe_repeating_hash_after_many_retained_is_refused(node):
    retain_many(node.port, 1000)
    r = Raw(node.port)
    assert r.connect(client_id="flood")[1] == 0
    # Nearly 1 MiB of `#` filters: 262,000 filters x 1,000 retained messages.
    r.send(subscribe_many(["#"] * 262_000))
    first, body = r.read_packet()
    assert first == 0xE0 and body[0] == 0x97, "DISCONNECT quota exceeded"
    m = node.metrics()
    assert m['strata_mqtt_errors_total{reason="subscribe_filters"}'] == 1
    assert m["process_resident_memory_bytes"] < 512 * 1024 * 1024
    # The node serves on.
    c = Client(node.port)
    c.subscribe("r/1", 0)
    assert c.expect(1)[0].payload == b"x" * 10


def test_retained_deliveries_per_subscribe_are_bounded(node_with):
    n = node_with("[mqtt]\nmax_retained_per_subscribe = 300\n")
    retain_many(n.port, 200)
    r = Raw(n.port)
    assert r.connect(client_id="many")[1] == 0
    r.send(subscribe_many(["r/#", "#", "+/+"]))  # 600 matches, 300 sent
    first, _ = r.read_packet()
    assert first == 0x90
    got = 0
    r.sock.settimeout(2)
    try:
        while r.read_packet() is not None:
            got += 1
    except socket.timeout:
        pass
    assert got == 300
    assert n.metrics()['strata_mqtt_dropped_messages_total{reason="retained_per_subscribe"}'] == 300


def test_subscriptions_per_session_are_bounded(node_with):
    n = node_with("[mqtt]\nmax_subscriptions_per_session = 3\n")
    c = Client(n.port)
    for i in range(3):
        assert c.subscribe(f"a/{i}", 1)[0].value == 1
    assert c.subscribe("a/3", 1)[0].value == 0x97
    assert c.subscribe("a/0", 0)[0].value == 0, "replacing one is not a new one"
    v3 = Client(n.port, v5=False)
    for i in range(3):
        v3.subscribe(f"b/{i}", 1)
    assert v3.subscribe("b/3", 1)[0] == 0x80


def test_sessions_per_node_are_bounded(node_with):
    n = node_with("[mqtt]\nmax_sessions = 2\n")
    a = Client(n.port, client_id="s1", expiry=3600)
    a.close()
    b = Client(n.port, client_id="s2", expiry=3600)
    r = Raw(n.port)
    assert r.connect(client_id="s3")[1] == 0x97
    r3 = Raw(n.port)
    assert r3.connect(client_id="s3-v3", v5=False)[1] == 0x03
    # An existing session may always come back.
    again = Raw(n.port)
    assert again.connect(client_id="s1", clean=False)[1] == 0
    b.close()


def test_retained_messages_are_bounded_in_count_and_bytes(node_with):
    n = node_with("[mqtt]\nmax_retained_messages = 5\nmax_retained_bytes = 1000\n")
    retain_many(n.port, 10)
    # `$SYS` topics are the broker's own and outside the bound.
    assert n.metrics()['strata_mqtt_dropped_messages_total{reason="retained_count"}'] == 5
    # A retained topic already kept can be replaced.
    p = Client(n.port)
    p.publish("r/0", b"new", 1, retain=True)
    p.publish("r/1", b"y" * 2000, 1, retain=True)  # past the byte bound: r/1 stays as it was
    p.close()
    c = Client(n.port)
    c.subscribe("r/#", 0)
    got = {m.topic: m.payload for m in c.expect(5)}
    assert got["r/0"] == b"new" and got["r/1"] == b"x" * 10
    assert n.metrics()['strata_mqtt_dropped_messages_total{reason="retained_bytes"}'] == 1


def test_delayed_publishes_are_bounded(node_with):
    n = node_with("[mqtt]\nmax_delayed_messages = 2\n")
    r = Raw(n.port)
    assert r.connect(client_id="delayer")[1] == 0
    codes = []
    for i in (1, 2, 3):
        r.send(publish("$delayed/3600/later", b"p", qos=1, packet_id=i))
        first, body = r.read_packet()
        assert first == 0x40
        codes.append(body[2] if len(body) > 2 else 0)
    assert codes == [0, 0, 0x97]
    # A delay beyond max_delay_secs (7 days) is refused too.
    r2 = Raw(n.port)
    assert r2.connect(client_id="far")[1] == 0
    r2.send(publish("$delayed/999999999/later", b"p", qos=1, packet_id=1))
    first, body = r2.read_packet()
    assert first == 0x40 and body[2] == 0x97


def test_clients_cannot_publish_to_broker_topics(node):
    r = Raw(node.port)
    assert r.connect(client_id="sys-forger")[1] == 0
    for i in range(1, 4):
        r.send(publish(f"$SYS/broker/forged{i}", b"x" * 1000, qos=1, packet_id=i))
        first, body = r.read_packet()
        assert first == 0x40 and body[2] == 0x87
    r.send(publish("$other/x", b"x", qos=1, packet_id=9))
    first, body = r.read_packet()
    assert first == 0x40 and body[2] == 0x87
    assert node.metrics()['strata_mqtt_dropped_messages_total{reason="rule"}'] == 4


def test_persistent_sessions_expire_at_the_cap(node_with):
    n = node_with("[mqtt]\nmax_session_expiry = 1\n")
    # MQTT 3.1.1 persistent sessions ask for no expiry at all.
    c = Client(n.port, v5=False, client_id="forever", clean=False)
    c.subscribe("x", 1)
    c.close()
    wait_for("the session to expire", lambda: n.metrics()["strata_mqtt_sessions"] == 0)


def test_default_caps_are_finite(node):
    r = Raw(node.port)
    body = r.connect(client_id="ka0", keep_alive=0, props=bytes([0x11]) + (0xFFFFFFFF).to_bytes(4, "big"))
    assert body[1] == 0
    props = body[3:]
    assert bytes([0x13, 0xFF, 0xFF]) in props, "server keep alive 65535"
    assert bytes([0x11]) + (7 * 24 * 3600).to_bytes(4, "big") in props, "session expiry capped"


def test_sockets_without_connect_are_bounded(node_with):
    n = node_with("[mqtt]\nmax_connections = 1\nmax_pending_connects = 2\nconnect_timeout_secs = 600\n")
    idle = [socket.create_connection(("127.0.0.1", n.port), timeout=DEADLINE) for _ in range(3)]
    # Three sockets are allowed (1 + 2); the fourth is closed before a byte is read.
    wait_for("three sockets admitted", lambda: n.metrics().get("strata_mqtt_sockets") == 3)
    fourth = socket.create_connection(("127.0.0.1", n.port), timeout=DEADLINE)
    assert closed(fourth)
    key = 'strata_mqtt_errors_total{reason="max_connections"}'
    wait_for("the refusal to be counted", lambda: n.metrics().get(key) == 1)
    for sock in idle:
        sock.close()
    wait_for("the sockets to be released", lambda: n.metrics().get("strata_mqtt_sockets") == 0)


def test_a_socket_without_connect_is_timed_out(node_with):
    n = node_with("[mqtt]\nconnect_timeout_secs = 1\n")
    idle = socket.create_connection(("127.0.0.1", n.port), timeout=DEADLINE)
    assert closed(idle)
    assert n.metrics()['strata_mqtt_errors_total{reason="connect_timeout"}'] == 1


def test_connections_per_address_are_bounded(node_with):
    n = node_with("[mqtt]\nmax_connections_per_ip = 2\n")
    held = [Client(n.port) for _ in range(2)]
    third = socket.create_connection(("127.0.0.1", n.port), timeout=DEADLINE)
    assert closed(third)
    assert n.metrics()['strata_mqtt_errors_total{reason="max_connections_per_ip"}'] == 1
    for c in held:
        c.close()


def test_the_connection_rate_per_address_is_bounded(node_with):
    n2 = node_with("[mqtt]\nmax_connection_rate_per_ip = 0.1\nconnection_burst_per_ip = 3\n")
    socks = [socket.create_connection(("127.0.0.1", n2.port), timeout=DEADLINE) for _ in range(5)]
    refused = 0
    for sock in socks:
        try:
            sock.sendall(connect(client_id=f"rate-{id(sock)}"))
            refused += sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            refused += 1
    assert refused == 2
    assert n2.metrics()['strata_mqtt_errors_total{reason="connection_rate"}'] == 2


def test_a_huge_connect_is_refused_before_it_is_buffered(node):
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=DEADLINE)
    # A CONNECT announcing 1 MiB (within the packet limit, past the CONNECT limit).
    sock.sendall(bytes([0x10]) + varint(1024 * 1024 - 10) + b"\x00" * 100)
    assert closed(sock)
    assert node.metrics()['strata_mqtt_errors_total{reason="0x95"}'] >= 1


def ws_handshake(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "handshake refused"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def test_websocket_frames_beyond_the_packet_limit_are_refused_unbuffered(node):
    before = node.metrics()["process_resident_memory_bytes"]
    frame = 15 * 1024 * 1024
    for _ in range(10):
        sock = ws_handshake(node.ws_port)
        # A masked binary frame of 15 MiB: refused at its header, not after buffering it.
        try:
            sock.sendall(bytes([0x82, 0xFF]) + struct.pack(">Q", frame) + b"\x00" * 4)
            sock.sendall(b"\x00" * frame)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed(sock)
    assert node.metrics()["process_resident_memory_bytes"] - before < 64 * 1024 * 1024


def test_a_subscriber_that_stops_reading_is_disconnected(node_with):
    n = node_with("[mqtt]\nwrite_timeout_secs = 1\n")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", n.port))
    slow.settimeout(DEADLINE)
    slow.sendall(connect(client_id="slow"))
    slow.sendall(subscribe("flood", 0))
    p = Client(n.port)
    payload = b"z" * 60_000
    key = 'strata_mqtt_errors_total{reason="write_timeout"}'

    def timed_out():
        for _ in range(20):
            p.publish("flood", payload, 0)
        return n.metrics().get(key, 0) >= 1
    wait_for("the stalled subscriber to be cut off", timed_out)
    wait_for("its connection to end", lambda: n.metrics()["strata_mqtt_connections"] == 1)
    fresh = Client(n.port)
    fresh.subscribe("still", 0)
    p.publish("still", b"serving", 0)
    assert fresh.expect(1)[0].payload == b"serving"


RULES = """
[[mqtt.rules]]
filter = "secret/#"
deny_subscribe = true
deny_publish = true
"""


def test_topic_rules_see_through_wildcards_delayed_publishes_and_wills(node_with):
    n = node_with(RULES)
    c = Client(n.port)
    for f in ("#", "+/x", "secret/+", "$share/g/#"):
        assert c.subscribe(f, 0)[0].value == 0x87, f
    assert c.subscribe("public/#", 0)[0].value == 0
    r = Raw(n.port)
    assert r.connect(client_id="delayer")[1] == 0
    r.send(publish("$delayed/1/secret/x", b"sneak", qos=1, packet_id=1))
    first, body = r.read_packet()
    assert first == 0x40 and body[2] == 0x87
    w = Raw(n.port)
    will = s("secret/will") + s(b"w")
    body = s("MQTT") + bytes([5, 0x02 | 0x04]) + (60).to_bytes(2, "big") + b"\x00" + s("willer")
    body += b"\x00" + will
    w.send(packet(0x10, body))
    first, body = w.read_packet()
    assert first == 0x20 and body[1] == 0x87
    assert n.metrics()['strata_mqtt_errors_total{reason="will_refused"}'] == 1


def test_records_bridged_from_a_stream_obey_the_rules(node_with):
    from confluent_kafka import Producer
    n = node_with("""
[[mqtt.rules]]
filter = "secret/#"
deny_publish = true

[[mqtt.bridge_from_stream]]
stream = "inbound"
prefix = ""
qos = 0
""")
    c = Client(n.port)
    c.subscribe("#", 0)
    p = Producer({"bootstrap.servers": f"127.0.0.1:{n.kafka_port}"})
    p.produce("inbound", key=b"secret/x", value=b"forged")
    p.produce("inbound", key=b"public/y", value=b"fine")
    assert p.flush(DEADLINE) == 0
    got = c.expect(1)
    assert (got[0].topic, got[0].payload) == ("public/y", b"fine")
    c.expect_none()
    assert n.metrics()['strata_mqtt_dropped_messages_total{reason="rule"}'] == 1


def test_a_client_ahead_of_its_rate_is_read_slower_and_loses_nothing(node_with):
    n = node_with("[mqtt]\nmax_messages_per_sec = 100.0\nrate_hard_cap_secs = 60.0\n")
    sub = Client(n.port)
    sub.subscribe("rated", 0)
    fast = Client(n.port)
    for i in range(300):
        fast.publish("rated", str(i).encode(), 0)
    got = [int(m.payload) for m in sub.expect(300)]
    assert got == list(range(300))
    assert n.metrics()['strata_mqtt_errors_total{reason="throttled"}'] >= 1
    # Another client is not slowed down by it.
    other = Client(n.port)
    other.publish("rated", b"other", 1)


def test_a_client_held_back_longer_than_its_keep_alive_is_not_timed_out(node_with):
    # 60 publishes at 10/s are 5 s of reading; the keep alive of 1 s allows 1.5 s of
    # silence. The silence while the broker holds the client back is the broker's own.
    n = node_with("[mqtt]\nmax_messages_per_sec = 10.0\nrate_hard_cap_secs = 30.0\n")
    r = Raw(n.port)
    assert r.connect(client_id="held", keep_alive=1)[1] == 0
    start = time.monotonic()
    r.send(b"".join(publish("held", b"x", qos=0) for _ in range(60)))
    wait_for("the client to be held back", lambda: n.metrics().get(
        'strata_mqtt_errors_total{reason="throttled"}', 0) >= 1)
    r.send(packet(0xC0, b""))
    first, _ = r.read_packet()
    assert first == 0xD0, f"PINGRESP, not {first:#x}"
    assert time.monotonic() - start > 1.5, "the client was held back beyond its keep alive"
    assert n.metrics().get('strata_mqtt_errors_total{reason="keep_alive_timeout"}', 0) == 0


def test_a_burst_far_beyond_the_rate_is_cut_with_0x96(node_with):
    n = node_with("[mqtt]\nmax_messages_per_sec = 5.0\nrate_hard_cap_secs = 1.0\n")
    r = Raw(n.port)
    assert r.connect(client_id="flooder")[1] == 0
    r.send(b"".join(publish("flood", b"x", qos=0) for _ in range(2000)))
    while True:
        p = r.read_packet()
        assert p is not None, "closed without DISCONNECT"
        if p[0] == 0xE0:
            assert p[1][0] == 0x96
            break
    assert n.metrics()['strata_mqtt_errors_total{reason="0x96"}'] == 1
