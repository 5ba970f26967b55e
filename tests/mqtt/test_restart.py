"""Persistent sessions and retained messages across a restart of the node: stopped
cleanly (SIGTERM) or killed (SIGKILL), then started again on the same data directory."""
import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import Client, Node


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
