"""The admin API's MQTT endpoints against a real node with real paho-mqtt clients
connected: clients (filters, paging, detail, disconnect), sessions (discard),
subscriptions, retained messages (list, read, delete), and the CLI over them."""
import json
import socket
import uuid

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from admin_support import (  # noqa: F401 (fixtures)
    DEADLINE, admin_cli, Api, assert_error, Client, node, node_with, wait_until)


def connect(node, client_id, v5=True, username=None, **kw):
    c = Client(node.port, v5=v5, client_id=client_id, connect=False, **kw)
    if username:
        c.c.username_pw_set(username, "pw")
    flags, rc, _ = c.connect()
    assert rc == 0, rc
    return c


def walk(api, *segments, limit, **query):
    """Every item of a listing, page by page; checks each page's bounds."""
    items, cursor = [], None
    while True:
        page = api.ok(*segments, limit=limit, cursor=cursor, **query)
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items, page["total"]


def test_clients_are_listed_filtered_and_paged(node):
    api = Api(node)
    clients = [connect(node, f"app-{i:02}", username="alice" if i % 2 == 0 else "bob")
               for i in range(12)]
    clients += [connect(node, f"dev-{i}", v5=False) for i in range(3)]
    try:
        items, total = walk(api, "mqtt", "clients", limit=4)
        ids = [c["client_id"] for c in items]
        assert total == 15
        assert ids == sorted(ids) and len(set(ids)) == 15
        assert set(ids) == {c.client_id for c in clients}
        for c in items:
            assert c["connected"] is True
            conn = c["connection"]
            assert conn["peer"].startswith("127.0.0.1:") and conn["transport"] == "tcp"
            assert conn["protocol_version"] == (4 if c["client_id"].startswith("dev-") else 5)

        dev = api.ok("mqtt", "clients", client_id_prefix="dev-")
        assert [c["client_id"] for c in dev["items"]] == ["dev-0", "dev-1", "dev-2"]
        assert api.ok("mqtt", "clients", protocol_version=4)["total"] == 3
        alice = api.ok("mqtt", "clients", username="alice")["items"]
        assert len(alice) == 6 and all(c["connection"]["username"] == "alice" for c in alice)
        assert api.ok("mqtt", "clients", peer_prefix="127.0.0.1:")["total"] == 15
        assert api.ok("mqtt", "clients", peer_prefix="10.")["total"] == 0

        assert_error(api.get("mqtt", "clients", protocol_version=7), 400, "bad_request")
        assert_error(api.get("mqtt", "clients", limit=0), 400, "bad_request")
        assert_error(api.get("mqtt", "clients", limit=1001), 400, "bad_request")
        assert_error(api.get("mqtt", "clients", limit="many"), 400, "bad_request")
        assert_error(api.get("mqtt", "clients", cursor="xyz"), 400, "bad_request")

        code, out, err = admin_cli(node, "mqtt", "clients", "--prefix", "dev-")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["CLIENT", "ID", "CONNECTED"]
        assert [ln.split()[0] for ln in lines[1:4]] == ["dev-0", "dev-1", "dev-2"]
        assert "(3 shown of 3)" in out
        code, out, err = admin_cli(node, "--json", "mqtt", "clients", "--limit", "5")
        assert code == 0, err
        page = json.loads(out)
        assert len(page["items"]) == 5 and page["total"] == 15 and page["next_cursor"]
    finally:
        for c in clients:
            c.close()


def test_client_detail_and_disconnect(node):
    api = Api(node)
    watcher = connect(node, "watcher")
    watcher.subscribe("wills/#", 1)
    will_props = Properties(PacketTypes.WILLMESSAGE)
    victim = connect(node, "victim", expiry=300,
                     will=("wills/victim", b"gone", 1, False, will_props))
    victim.subscribe_with_id("d/#", 1, 42)
    try:
        detail = api.ok("mqtt", "clients", "victim")
        s = detail["session"]
        assert s["connected"] and s["session_expiry_secs"] == 300 and s["durable"]
        assert s["connection"]["protocol_version"] == 5
        assert s["connection"]["keep_alive_secs"] == 60
        [sub] = detail["subscriptions"]
        assert (sub["filter"], sub["qos"], sub["identifier"]) == ("d/#", 1, 42)

        status, _ = api.post("mqtt", "clients", "victim", "disconnect")
        assert status == 204
        victim.disconnects.get(timeout=DEADLINE)
        will = watcher.expect()[0]
        assert (will.topic, will.payload) == ("wills/victim", b"gone")

        after = wait_until("the session to show disconnected",
                           lambda: not (d := api.ok("mqtt", "sessions", "victim"))["session"]["connected"] and d)
        assert after["session"]["subscriptions"] == 1 and after["session"]["connection"] is None
        offline = api.ok("mqtt", "sessions", connected="false")["items"]
        assert [s["client_id"] for s in offline] == ["victim"]
        assert_error(api.post("mqtt", "clients", "victim", "disconnect"), 404, "not_found")
        assert_error(api.get("mqtt", "clients", "nobody"), 404, "not_found")
        assert node.metrics()['strata_mqtt_errors_total{reason="administrative_action"}'] == 1
    finally:
        victim.c.loop_stop()
        watcher.close()


def raw_v5_client(node, client_id):
    """A socket that sent an MQTT 5 CONNECT and read its CONNACK (paho does not report
    the reason code of a DISCONNECT the server sends)."""
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=DEADLINE)
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + len(cid).to_bytes(2, "big") + cid
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(2)[0] == 0x20, "CONNACK"
    sock.recv(64)
    return sock


def test_disconnect_sends_administrative_action(node):
    api = Api(node)
    with raw_v5_client(node, "raw-victim") as sock:
        status, _ = api.post("mqtt", "clients", "raw-victim", "disconnect")
        assert status == 204
        assert sock.recv(3) == b"\xe0\x01\x98", "DISCONNECT 0x98 administrative action"


def test_disconnect_reaches_a_subscriber_that_stopped_reading(node):
    """A client that stops reading blocks the broker's writes to it; the operator's
    disconnect must still end its connection."""
    api = Api(node)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(DEADLINE)
    sock.connect(("127.0.0.1", node.port))
    cid = b"stalled"
    body = b"\x00\x04MQTT\x05\x02\x00\x00\x00" + len(cid).to_bytes(2, "big") + cid
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(2)[0] == 0x20
    sock.recv(64)
    topic = b"flood/#"
    sub = b"\x00\x01\x00" + len(topic).to_bytes(2, "big") + topic + b"\x00"
    sock.sendall(bytes([0x82, len(sub)]) + sub)
    assert sock.recv(5)[0] == 0x90, "SUBACK"
    pub = connect(node, "flooder")
    try:
        payload = b"x" * 65536
        # Far more than the socket buffers hold: the broker's writes to `stalled` block.
        for _ in range(400):
            pub.publish("flood/x", payload, 0)
        pub.publish("flood/x", b"last", 1)
        status, _ = api.post("mqtt", "clients", "stalled", "disconnect")
        assert status == 204
        wait_until("the stalled connection to end",
                   lambda: api.ok("mqtt", "clients")["total"] == 1)
        assert [c["client_id"] for c in api.ok("mqtt", "clients")["items"]] == ["flooder"]
    finally:
        pub.close()
        sock.close()


def test_discarded_sessions_are_gone_for_good(node):
    api = Api(node)
    keeper = connect(node, "keeper", v5=False, clean=False)
    keeper.subscribe("k/#", 1)
    keeper.close()
    node.wait_connections(0)
    assert api.ok("mqtt", "sessions", "keeper")["session"]["durable"]

    status, _ = api.delete("mqtt", "sessions", "keeper")
    assert status == 204
    assert_error(api.get("mqtt", "sessions", "keeper"), 404, "not_found")
    assert api.ok("mqtt", "subscriptions", client_id="keeper")["total"] == 0
    back = Client(node.port, v5=False, client_id="keeper", clean=False, connect=False)
    flags, rc, _ = back.connect()
    assert not flags.session_present, "a discarded session must not come back"
    back.close()

    # A connected client's session ends at once: its connection is closed and its will
    # dropped with it.
    watcher = connect(node, "will-watcher")
    watcher.subscribe("wills/#", 1)
    will_props = Properties(PacketTypes.WILLMESSAGE)
    live = connect(node, "live", expiry=600, will=("wills/live", b"gone", 1, False, will_props))
    live.subscribe("l/#", 1)
    status, _ = api.delete("mqtt", "sessions", "live")
    assert status == 204
    assert_error(api.get("mqtt", "sessions", "live"), 404, "not_found")
    assert api.ok("mqtt", "subscriptions", client_id="live")["total"] == 0
    live.disconnects.get(timeout=DEADLINE)
    live.c.loop_stop()
    watcher.expect_none()
    watcher.close()
    assert_error(api.delete("mqtt", "sessions", "live"), 404, "not_found")


def test_subscriptions_by_client_and_by_topic(node):
    api = Api(node)
    a = connect(node, "sub-a")
    b = connect(node, "sub-b")
    try:
        a.subscribe("s/+/y", 1)
        a.subscribe("other/#", 0)
        b.subscribe("s/#", 2, noLocal=True)
        b.subscribe("$share/workers/s/x/y", 1)
        mine = api.ok("mqtt", "subscriptions", client_id="sub-a")["items"]
        assert [s["filter"] for s in mine] == ["other/#", "s/+/y"]
        matching = api.ok("mqtt", "subscriptions", topic="s/x/y")["items"]
        got = {(s["client_id"], s["filter"]) for s in matching}
        assert got == {("sub-a", "s/+/y"), ("sub-b", "s/#"), ("sub-b", "$share/workers/s/x/y")}
        by_filter = {s["filter"]: s for s in matching}
        assert by_filter["s/#"]["qos"] == 2 and by_filter["s/#"]["no_local"] is True
        assert by_filter["$share/workers/s/x/y"]["share_group"] == "workers"
        items, total = walk(api, "mqtt", "subscriptions", limit=1)
        assert total == 4 and len(items) == 4
        code, out, err = admin_cli(node, "mqtt", "subscriptions", "--topic", "s/x/y")
        assert code == 0 and "sub-b" in out and "$share/workers/s/x/y" in out, (out, err)
    finally:
        a.close()
        b.close()


def test_retained_messages_listed_read_and_deleted(node_with):
    n = node_with()
    api = Api(n)
    pub = connect(n, "publisher")
    pub.publish("r/1", b"one", 1, retain=True)
    pub.publish("r/2", bytes([0xff, 0x00, 0x01]), 1, retain=True)
    pub.publish("other/x", b"x", 1, retain=True)
    listener = connect(n, "listener")
    listener.subscribe("r/#", 1)
    assert len(listener.expect(2)) == 2
    try:
        page = api.ok("mqtt", "retained", filter="r/#")
        assert [m["topic"] for m in page["items"]] == ["r/1", "r/2"]
        assert page["items"][0]["publisher"] == "publisher"
        assert api.ok("mqtt", "retained")["total"] == 3
        one = api.ok("mqtt", "retained", "r/1")
        assert one["payload_utf8"] == "one" and one["payload_base64"] == "b25l"
        two = api.ok("mqtt", "retained", "r/2")
        assert two["payload_utf8"] is None and two["payload_base64"] == "/wAB"
        assert_error(api.get("mqtt", "retained", filter="a/#/b"), 400, "bad_request")
        assert_error(api.get("mqtt", "retained", "r/9"), 404, "not_found")

        retained_before = n.metrics()["strata_mqtt_retained_messages"]
        status, _ = api.delete("mqtt", "retained", "r/1")
        assert status == 204
        assert_error(api.delete("mqtt", "retained", "r/1"), 404, "not_found")
        listener.expect_none()  # deleting publishes nothing
        assert n.metrics()["strata_mqtt_retained_messages"] == retained_before - 1
        fresh = connect(n, "fresh")
        fresh.subscribe("r/#", 1)
        assert [m.topic for m in fresh.expect(1)] == ["r/2"]
        fresh.expect_none()
        fresh.close()
        code, out, err = admin_cli(n, "mqtt", "retained-delete", "other/x")
        assert code == 0 and "deleted" in out, err
    finally:
        pub.close()
        listener.close()
    assert n.stop() == 0

    # The deletions are stored: a restarted node does not bring them back.
    again = node_with()
    assert [m["topic"] for m in Api(again).started().ok("mqtt", "retained")["items"]] == ["r/2"]


def test_delivery_metrics_count_each_delivery(node):
    sub = connect(node, "m-sub")
    pub = connect(node, "m-pub")
    try:
        sub.subscribe("m/#", 2)
        before = node.metrics()
        topic = f"m/{uuid.uuid4().hex[:6]}"
        for qos in (0, 1, 2):
            pub.publish(topic, b"x" * (10 + qos), qos)
        sub.expect(3)
        after = wait_until("the delivery histogram to count 3 more", lambda: (
            m := node.metrics())["strata_mqtt_delivery_seconds_count"]
            - before["strata_mqtt_delivery_seconds_count"] == 3 and m)
        for qos in (0, 1, 2):
            key = f'strata_mqtt_sent_payload_bytes_total{{qos="{qos}"}}'
            assert after[key] - before.get(key, 0) == 10 + qos
            key = f'strata_mqtt_received_payload_bytes_total{{qos="{qos}"}}'
            assert after[key] - before.get(key, 0) == 10 + qos
    finally:
        sub.close()
        pub.close()
