"""Fixtures for the MQTT tests: a real `strata serve` on free loopback ports, and paho-mqtt
clients that record what they receive. Every wait has a generous deadline; none sleeps
for a fixed time."""
import os
import queue
import signal
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

DEADLINE = 30.0
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def strata_bin():
    if os.environ.get("STRATA_BIN"):
        return os.environ["STRATA_BIN"]
    # The same default as scripts/test.sh.
    target = os.environ.get("CARGO_TARGET_DIR",
                            os.path.join(os.path.expanduser("~"), ".cache", "strata", "target"))
    return os.path.join(target, "x86_64-unknown-linux-gnu", "debug", "strata")


class Node:
    """A running `strata serve`."""

    def __init__(self, tmp_path, config=""):
        self.data_dir = tmp_path / "data"
        cfg = tmp_path / "strata.toml"
        cfg.write_text(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update({
            "STRATA_NODE__DATA_DIR": str(tmp_path / "data"),
            "STRATA_ADMIN__LISTEN": "127.0.0.1:0",
            "STRATA_MQTT__LISTEN": "127.0.0.1:0",
            "STRATA_MQTT__WS_LISTEN": "127.0.0.1:0",
        })
        self.proc = subprocess.Popen([strata_bin(), "serve", "--config", str(cfg)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = self.ws_port = self.admin_port = None
        deadline = time.time() + DEADLINE
        while None in (self.port, self.ws_port, self.admin_port):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("strata serve exited before listening")
            if line.startswith("strata: mqtt listening on "):
                self.port = int(line.rsplit(":", 1)[1])
            if line.startswith("strata: mqtt-ws listening on "):
                self.ws_port = int(line.rsplit(":", 1)[1])
            if line.startswith("strata: admin listening on "):
                self.admin_port = int(line.rsplit(":", 1)[1])
            if time.time() > deadline:
                raise RuntimeError("strata serve did not start in time")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def metrics(self):
        """The node's /metrics as {"name{labels}": value}."""
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=DEADLINE).read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def wait_connections(self, n):
        """Waits until the node has `n` open connections: a client's close() returns before
        the node has ended that connection (and, say, its session)."""
        deadline = time.time() + DEADLINE
        while self.metrics().get("strata_mqtt_connections") != n:
            assert time.time() < deadline, "connections did not settle"
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    assert n.stop() == 0


@pytest.fixture
def node_with(tmp_path):
    started = []

    def start(config):
        n = Node(tmp_path, config)
        started.append(n)
        return n
    yield start
    for n in started:
        n.stop()


class Client:
    """A paho client that queues received messages and acknowledgements."""

    def __init__(self, port, v5=True, client_id=None, clean=True, expiry=None, will=None,
                 keepalive=60, connect=True, properties=None, transport="tcp"):
        self.v5 = v5
        self.client_id = client_id or f"t-{uuid.uuid4().hex[:10]}"
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kwargs = {} if v5 else {"clean_session": clean}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=proto, transport=transport, **kwargs)
        self.messages = queue.Queue()
        self.subacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.connacks = queue.Queue()
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, codes, p: self.subacks.put(codes)
        self.c.on_disconnect = lambda c, u, flags, rc, p: self.disconnects.put(rc)
        self.c.on_connect = lambda c, u, flags, rc, p: self.connacks.put((flags, rc, p))
        if will:
            topic, payload, qos, retain, wprops = will
            self.c.will_set(topic, payload, qos, retain, properties=wprops)
        self.port = port
        self.keepalive = keepalive
        self.clean = clean
        self.expiry = expiry
        self.properties = properties
        if connect:
            self.connect()

    def connect(self):
        if self.v5:
            props = self.properties or Properties(PacketTypes.CONNECT)
            if self.expiry is not None:
                props.SessionExpiryInterval = self.expiry
            self.c.connect("127.0.0.1", self.port, self.keepalive, clean_start=self.clean,
                           properties=props)
        else:
            self.c.connect("127.0.0.1", self.port, self.keepalive)
        self.c.loop_start()
        return self.connacks.get(timeout=DEADLINE)

    def subscribe(self, topic, qos=0, **opts):
        if self.v5:
            self.c.subscribe(topic, options=mqtt.SubscribeOptions(qos=qos, **opts))
        else:
            self.c.subscribe(topic, qos)
        return self.subacks.get(timeout=DEADLINE)

    def subscribe_with_id(self, topic, qos, sub_id):
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = sub_id
        self.c.subscribe(topic, options=mqtt.SubscribeOptions(qos=qos), properties=props)
        return self.subacks.get(timeout=DEADLINE)

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        info = self.c.publish(topic, payload, qos, retain, properties=properties)
        if qos > 0:
            info.wait_for_publish(timeout=DEADLINE)
            assert info.is_published()
        return info

    def expect(self, n=1):
        return [self.messages.get(timeout=DEADLINE) for _ in range(n)]

    def expect_none(self, flush_with=None):
        """Asserts nothing else arrives: publishes a marker to ourselves and expects only it."""
        marker = f"marker/{uuid.uuid4().hex[:8]}"
        self.subscribe(marker, 1)
        self.publish(marker, b"end", 1)
        m = self.messages.get(timeout=DEADLINE)
        assert m.topic == marker, f"unexpected message on {m.topic}: {m.payload!r}"

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self):
        """Closes the socket without DISCONNECT (an abnormal end)."""
        self.c.loop_stop()
        self.c.socket().close()
