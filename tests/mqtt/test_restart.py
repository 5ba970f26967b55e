"""Persistent sessions and retained messages across a restart of the node: stopped
cleanly (SIGTERM) or killed (SIGKILL), then started again on the same data directory."""
import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import Client, Node
from raw import Raw, ack, parse_publish, publish, subscribe


def test_persistent_sessions_and_subscriptions_survive_a_restart(tmp_path):
    node = Node(tmp_path)
    keep311 = Client(node.port, v5=False, client_id="keep311", clean=False)
    keep311.subscribe("a/#", 1)
    keep5 = Client(node.port, client_id="keep5", clean=True, expiry=3600)
    keep5.subscribe_with_id("b/+", 1, 5)
    brief = Client(node.port, client_id="brief", clean=True, expiry=0)
    brief.subscribe("c", 1)
    short = Client(node.port, client_id="short", clean=True, expiry=1)
    short.subscribe("d", 1)
    gone = Client(node.port, v5=False, client_id="gone", clean=False)
    gone.subscribe("e", 1)
    gone.c.unsubscribe("e")
    gone.subscribe("e-marker", 1)  # answered after the UNSUBSCRIBE: it has been applied
    for c in (keep311, keep5, brief, short, gone):
        c.close()
    left = time.time()
    assert node.stop() == 0

    node = Node(tmp_path)
    try:
        # The 1-second session must have expired while the node was down or starting.
        time.sleep(max(0.0, left + 1.5 - time.time()))
        k311 = Client(node.port, v5=False, client_id="keep311", clean=False, connect=False)
        flags, rc, _ = k311.connect()
        assert flags.session_present
        k5 = Client(node.port, client_id="keep5", clean=False, expiry=3600, connect=False)
        flags, rc, _ = k5.connect()
        assert flags.session_present
        for cid, expiry in (("brief", 60), ("short", 60)):
            c = Client(node.port, client_id=cid, clean=False, expiry=expiry, connect=False)
            flags, rc, _ = c.connect()
            assert not flags.session_present, cid
            c.close()
        g = Client(node.port, v5=False, client_id="gone", clean=False, connect=False)
        flags, rc, _ = g.connect()
        assert flags.session_present

        # Subscriptions came back with the sessions: no SUBSCRIBE after the restart.
        p = Client(node.port)
        p.publish("a/x", b"to-311", 1)
        p.publish("b/y", b"to-5", 1)
        p.publish("e", b"unsubscribed", 1)
        m = k311.expect()[0]
        assert (m.topic, m.payload, m.qos) == ("a/x", b"to-311", 1)
        m = k5.expect()[0]
        assert (m.topic, m.payload) == ("b/y", b"to-5")
        assert m.properties.SubscriptionIdentifier == [5]
        g.expect_none()
        for c in (k311, k5, g, p):
            c.close()
    finally:
        assert node.stop() == 0


def test_retained_messages_and_sessions_survive_sigkill(tmp_path):
    node = Node(tmp_path)
    p = Client(node.port)
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "text/plain"
    props.UserProperty = [("k", "v")]
    p.publish("r/1", b"one", 1, retain=True, properties=props)
    p.publish("r/2", b"two", 1, retain=True)
    p.publish("r/2", b"", 1, retain=True)  # cleared
    p.publish("r/3", b"three-old", 0, retain=True)
    p.publish("r/3", b"three", 1, retain=True)  # replaced
    s = Client(node.port, v5=False, client_id="survivor", clean=False)
    s.subscribe("live/#", 1)
    s.close()
    p.close()
    node.proc.kill()
    node.proc.wait()

    node = Node(tmp_path)
    try:
        c = Client(node.port)
        c.subscribe("r/#", 1)
        got = {m.topic: m for m in c.expect(2)}
        assert sorted(got) == ["r/1", "r/3"]
        assert got["r/1"].payload == b"one" and got["r/1"].retain
        assert got["r/1"].properties.ContentType == "text/plain"
        assert got["r/1"].properties.UserProperty == [("k", "v")]
        assert got["r/3"].payload == b"three"
        c.expect_none()
        s = Client(node.port, v5=False, client_id="survivor", clean=False, connect=False)
        flags, rc, _ = s.connect()
        assert flags.session_present
        c.publish("live/1", b"after-kill", 1)
        assert s.expect()[0].payload == b"after-kill"
        s.close()
        c.close()
    finally:
        assert node.stop() == 0


def restart(node, tmp_path, how):
    if how == "kill":
        node.proc.kill()
        node.proc.wait()
    else:
        assert node.stop() == 0
    return Node(tmp_path)


@pytest.mark.parametrize("how", ["term", "kill"])
def test_queued_and_inflight_deliveries_survive_a_restart(tmp_path, how):
    """[MQTT-4.4.0-1] across a restart: unacknowledged QoS 1/2 PUBLISH packets come back
    with DUP and their packet ids, a PUBREL still owed is resent, and what was queued while
    the client was away follows, in order."""
    node = Node(tmp_path)
    a = Raw(node.port)
    assert a.connect(client_id="durable", v5=False, clean=False)[1] == 0
    a.send(subscribe("q/#", 2, v5=False))
    assert a.read_packet()[0] == 0x90
    p = Client(node.port, v5=False)
    for payload, qos in ((b"m1", 1), (b"m2", 2), (b"m3", 2)):
        p.publish("q/a", payload, qos)
    got = [parse_publish(*a.read_packet(), v5=False) for _ in range(3)]
    assert [(g[1], g[4]) for g in got] == [(1, b"m1"), (2, b"m2"), (2, b"m3")]
    ids = [g[3] for g in got]
    a.send(ack(0x50, ids[2]))  # m3 reaches PUBREL
    assert a.read_packet() == (0x62, ids[2].to_bytes(2, "big"))
    a.close()
    for payload, qos in ((b"m4", 1), (b"m5", 2)):
        p.publish("q/b", payload, qos)  # queued for the absent client
    p.close()

    node = restart(node, tmp_path, how)
    try:
        b = Raw(node.port)
        assert b.connect(client_id="durable", v5=False, clean=False) == b"\x01\x00"
        assert parse_publish(*b.read_packet(), v5=False) == (True, 1, "q/a", ids[0], b"m1")
        assert parse_publish(*b.read_packet(), v5=False) == (True, 2, "q/a", ids[1], b"m2")
        assert b.read_packet() == (0x62, ids[2].to_bytes(2, "big"))
        m4 = parse_publish(*b.read_packet(), v5=False)
        m5 = parse_publish(*b.read_packet(), v5=False)
        assert (m4[0], m4[1], m4[2], m4[4]) == (False, 1, "q/b", b"m4")
        assert (m5[0], m5[1], m5[2], m5[4]) == (False, 2, "q/b", b"m5")
        b.send(ack(0x40, ids[0]) + ack(0x50, ids[1]) + ack(0x70, ids[2]) + ack(0x40, m4[3]) + ack(0x50, m5[3]))
        assert b.read_packet() == (0x62, ids[1].to_bytes(2, "big"))
        assert b.read_packet() == (0x62, m5[3].to_bytes(2, "big"))
        b.send(ack(0x70, ids[1]) + ack(0x70, m5[3]))
        b.send(bytes([0xC0, 0x00]))
        assert b.read_packet()[0] == 0xD0
        b.close()
        # Every flow completed: a restart brings nothing back.
        node = restart(node, tmp_path, how)
        c = Raw(node.port)
        assert c.connect(client_id="durable", v5=False, clean=False) == b"\x01\x00"
        c.send(bytes([0xC0, 0x00]))
        assert c.read_packet()[0] == 0xD0
        c.close()
    finally:
        node.stop()


@pytest.mark.parametrize("how", ["term", "kill"])
def test_inbound_qos2_is_not_routed_twice_across_a_restart(tmp_path, how):
    """Exactly once inbound: a PUBLISH answered with PUBREC and resent (DUP) after a restart
    is acknowledged again but not delivered again; its PUBREL finds the packet id."""
    node = Node(tmp_path)
    sub = Client(node.port, v5=False, client_id="watcher", clean=False)
    sub.subscribe("once", 2)
    pub = Raw(node.port)
    assert pub.connect(client_id="sender", v5=False, clean=False)[1] == 0
    pub.send(publish("once", b"x", qos=2, packet_id=7, v5=False))
    assert pub.read_packet() == (0x50, (7).to_bytes(2, "big"))
    assert sub.expect()[0].payload == b"x"
    sub.close()
    pub.close()

    node = restart(node, tmp_path, how)
    try:
        pub = Raw(node.port)
        assert pub.connect(client_id="sender", v5=False, clean=False) == b"\x01\x00"
        pub.send(publish("once", b"x", qos=2, packet_id=7, v5=False, dup=True))
        assert pub.read_packet() == (0x50, (7).to_bytes(2, "big"))
        pub.send(ack(0x62, 7))
        assert pub.read_packet() == (0x70, (7).to_bytes(2, "big"))
        pub.close()
        sub = Client(node.port, v5=False, client_id="watcher", clean=False, connect=False)
        flags, rc, _ = sub.connect()
        assert flags.session_present
        sub.expect_none()
        sub.close()
    finally:
        node.stop()


def test_message_expiry_counts_across_a_restart(tmp_path):
    node = Node(tmp_path)
    s = Client(node.port, client_id="later", clean=True, expiry=3600)
    s.subscribe("exp", 1)
    s.close()
    p = Client(node.port)
    for payload, expiry in ((b"short", 1), (b"long", 3600)):
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = expiry
        p.publish("exp", payload, 1, properties=props)
    published = time.time()
    p.close()
    node = restart(node, tmp_path, "kill")
    try:
        # The short one's second passes while the node is down or starting.
        time.sleep(max(0.0, published + 1.5 - time.time()))
        s = Client(node.port, client_id="later", clean=False, expiry=3600, connect=False)
        flags, rc, _ = s.connect()
        assert flags.session_present
        m = s.expect()[0]
        assert m.payload == b"long"
        assert 3590 <= m.properties.MessageExpiryInterval <= 3600
        s.expect_none()
        s.close()
    finally:
        node.stop()


def test_delayed_publish_is_kept_across_a_restart(tmp_path):
    node = Node(tmp_path)
    s = Client(node.port, v5=False, client_id="waiter", clean=False)
    s.subscribe("later/#", 1)
    p = Client(node.port)
    started = time.time()
    p.publish("$delayed/1/later/now", b"soon", 1)
    m = s.expect()[0]
    assert (m.topic, m.payload) == ("later/now", b"soon")
    assert time.time() - started >= 0.9, "not before its delay"
    p.publish("$delayed/2/later/restart", b"kept", 1)
    info = p.c.publish("$delayed/x/later/bad", b"", 1)
    info.wait_for_publish(timeout=30)
    s.close()
    p.close()
    published = time.time()
    node = restart(node, tmp_path, "kill")
    try:
        s = Client(node.port, v5=False, client_id="waiter", clean=False, connect=False)
        s.connect()
        m = s.expect()[0]
        assert (m.topic, m.payload) == ("later/restart", b"kept")
        assert time.time() - published >= 1.9
        s.expect_none()
        s.close()
    finally:
        node.stop()


def test_wills_with_a_delay_survive_a_restart(tmp_path):
    node = Node(tmp_path)
    w = Client(node.port, v5=False, client_id="will-watch", clean=False)
    w.subscribe("wills/#", 1)
    w.close()
    for cid, delay in (("soon", 1), ("late", 3)):
        props = Properties(PacketTypes.WILLMESSAGE)
        props.WillDelayInterval = delay
        c = Client(node.port, client_id=cid, expiry=600, will=(f"wills/{cid}", cid.encode(), 1, False, props))
        c.drop()
    node.wait_connections(0)
    dropped = time.time()
    node.proc.kill()
    node.proc.wait()
    # "soon" falls due while the node is down: it is published at start-up.
    time.sleep(max(0.0, dropped + 1.5 - time.time()))
    node = Node(tmp_path)
    try:
        w = Client(node.port, v5=False, client_id="will-watch", clean=False, connect=False)
        w.connect()
        m = w.expect()[0]
        assert (m.topic, m.payload) == ("wills/soon", b"soon")
        m = w.expect()[0]
        assert (m.topic, m.payload) == ("wills/late", b"late")
        assert time.time() - dropped >= 2.9, "the late will keeps its delay across the restart"
        w.expect_none()
        w.close()
    finally:
        node.stop()


def test_wills_and_delayed_publishes_queued_for_an_offline_session_survive_sigkill(tmp_path):
    """Messages the broker publishes itself are stored like clients' messages: when they
    are queued for an offline persistent session, a crash does not lose them."""
    node = Node(tmp_path)
    w = Client(node.port, v5=False, client_id="away", clean=False)
    w.subscribe("own/#", 1)
    w.close()
    live = Client(node.port)
    live.subscribe("own/#", 1)
    c = Client(node.port, v5=False, client_id="dies", will=("own/will", b"gone", 1, False, None))
    c.drop()
    p = Client(node.port)
    p.publish("$delayed/1/own/delayed", b"late", 1)
    p.close()
    # Once a live subscriber has both, they were routed to the absent session too.
    assert sorted(m.payload for m in live.expect(2)) == [b"gone", b"late"]
    live.close()
    node = restart(node, tmp_path, "kill")
    try:
        w = Client(node.port, v5=False, client_id="away", clean=False, connect=False)
        w.connect()
        got = sorted((m.topic, m.payload) for m in w.expect(2))
        assert got == [("own/delayed", b"late"), ("own/will", b"gone")]
        w.expect_none()
        w.close()
    finally:
        node.stop()


@pytest.mark.parametrize("how", ["term", "kill"])
def test_paho_inflight_qos1_and_qos2_resume_after_a_restart(tmp_path, how):
    """A paho-mqtt subscriber with manual acknowledgements receives a QoS 1 and a QoS 2
    message and acknowledges neither. After the node restarts, the resumed session gets the
    QoS 1 message again with DUP set. The QoS 2 one is not delivered again: paho answered
    its PUBLISH with PUBREC and handed it over at PUBREL (only the PUBCOMP was held), so the
    node resends the PUBREL, which completes the exchange. Nothing comes back after that."""
    import paho.mqtt.client as mqtt
    import queue

    def subscriber():
        got = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="manual", protocol=mqtt.MQTTv311,
                        clean_session=False, manual_ack=True)
        c.on_message = lambda cl, u, m: got.put(m)
        return c, got

    node = Node(tmp_path)
    c, got = subscriber()
    subscribed = queue.Queue()
    c.on_subscribe = lambda cl, u, mid, codes, props: subscribed.put(codes)
    c.connect("127.0.0.1", node.port)
    c.loop_start()
    c.subscribe("manual/t", 2)
    subscribed.get(timeout=30)  # the SUBACK: the subscription exists before anything is published
    p = Client(node.port)
    p.publish("manual/t", b"q1", 1)
    p.publish("manual/t", b"q2", 2)
    first = [got.get(timeout=30) for _ in range(2)]
    assert sorted((m.payload, m.qos, m.dup) for m in first) == [(b"q1", 1, False), (b"q2", 2, False)]
    c.loop_stop()
    c.socket().close()  # gone without acknowledging either
    p.close()
    node.wait_connections(0)

    node = restart(node, tmp_path, how)
    try:
        c, got = subscriber()
        c.connect("127.0.0.1", node.port)
        c.loop_start()
        m = got.get(timeout=30)
        assert (m.payload, m.qos, m.dup) == (b"q1", 1, True)
        c.ack(m.mid, m.qos)
        # Acknowledged: nothing comes back after another restart.
        c.disconnect()
        c.loop_stop()
        node.wait_connections(0)
        node = restart(node, tmp_path, how)
        c2 = Client(node.port, v5=False, client_id="manual", clean=False, connect=False)
        flags, rc, _ = c2.connect()
        assert flags.session_present
        c2.expect_none()
        c2.close()
    finally:
        node.stop()
