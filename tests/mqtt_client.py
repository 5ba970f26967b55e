"""A paho-mqtt client for the tests that queues what it receives: messages, SUBACKs,
CONNACKs and DISCONNECTs. Every wait has a generous deadline."""
import queue
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from strata_node import DEADLINE


class Client:
    """A paho client that queues received messages and acknowledgements."""

    def __init__(self, port, v5=True, client_id=None, clean=True, expiry=None, will=None,
                 keepalive=60, connect=True, properties=None, transport="tcp",
                 username=None, password=None):
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
        if username is not None:
            self.c.username_pw_set(username, password)
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
