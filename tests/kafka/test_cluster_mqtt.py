"""The MQTT message store in a cluster of three real nodes is a stream of the cluster with
three copies of each partition. paho-mqtt clients publish QoS 1 messages through two
nodes; the node leading most of the store's partitions is killed with SIGKILL midway (its
clients reconnect to a third node and carry on). Every message acknowledged with a PUBACK,
before or after the kill, is then read back from the store through Kafka on a surviving
node (as a reader listed in `internal_stream_readers`). Here beside the cluster fixture it
shares with the Kafka cluster tests."""
import signal
import threading
import time

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, TopicPartition

from kafka_support import DEADLINE, wait_until
from test_cluster import start_cluster

STORE = "mqtt.messages"
PER_CLIENT = 60


def store_placement(node):
    return node.api("cluster", f"leaders?stream={STORE}")


class Publisher(threading.Thread):
    """One paho client publishing QoS 1 messages in order through the nodes in `targets`
    (the first one up at each connection); a message counts as acknowledged once its
    PUBACK arrived, and one that was not is published again."""

    def __init__(self, client_id, targets, go_on):
        super().__init__(daemon=True)
        self.client_id, self.targets, self.go_on = client_id, targets, go_on
        self.acked, self.errors = [], []

    def connect(self):
        deadline = time.time() + DEADLINE
        while True:
            for n in self.targets():
                c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                protocol=mqtt.MQTTv311)
                try:
                    c.connect(n.host, n.node.port, keepalive=30)
                except OSError:
                    continue
                c.loop_start()
                return c
            assert time.time() < deadline, f"{self.client_id} found no node to connect to"
            time.sleep(0.2)

    def run(self):
        try:
            c = self.connect()
            for i in range(PER_CLIENT):
                if i == PER_CLIENT // 2:
                    self.go_on.wait(DEADLINE)
                payload = f"{self.client_id}-{i}".encode()
                deadline = time.time() + DEADLINE
                while True:
                    assert time.time() < deadline, f"{payload!r} never acknowledged"
                    info = c.publish(f"kept/{self.client_id}", payload, qos=1)
                    try:
                        info.wait_for_publish(timeout=5)
                        published = info.is_published()
                    except RuntimeError:
                        published = False  # not connected: the connection went with its node
                    if published:
                        self.acked.append(payload)
                        break
                    c.loop_stop()
                    c.disconnect()
                    c = self.connect()
            c.loop_stop()
            c.disconnect()
        except Exception as e:  # reported by the test
            self.errors.append(e)


def read_store(bootstrap, partitions):
    """Every record value of the store's partitions, read from the start up to each
    partition's end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "store-reader",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    ends = {p: c.get_watermark_offsets(TopicPartition(STORE, p), timeout=DEADLINE)[1]
            for p in partitions}
    c.assign([TopicPartition(STORE, p, 0) for p in partitions])
    seen, at = [], {p: 0 for p in partitions}
    deadline = time.time() + DEADLINE
    while any(at[p] < ends[p] for p in partitions):
        assert time.time() < deadline, f"read {at} of {ends}"
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen.append(m.value())
        at[m.partition()] = m.offset() + 1
    c.close()
    return seen


def test_acknowledged_mqtt_messages_survive_a_nodes_death(tmp_path):
    nodes = start_cluster(tmp_path, mqtt=True,
                          extra='[kafka]\ninternal_stream_readers = ["ANONYMOUS"]\n')
    try:
        # The store is created once the three nodes are up, with three copies each.
        wait_until("the MQTT store placed with three copies of each partition",
                   lambda: (p := store_placement(nodes[0])) and all(
                       len(x["replicas"]) == 3 and x["leader"] for x in p))
        placement = store_placement(nodes[0])
        partitions = [p["partition"] for p in placement]
        led = {n: sum(p["leader"] == n for p in placement) for n in (2, 3)}
        victim = nodes[max(led, key=led.get) - 1]
        assert led[int(victim.host[-1])] >= 1, placement
        other = next(n for n in nodes[1:] if n is not victim)

        go_on = threading.Event()
        on_victim = [victim]
        publishers = [Publisher(f"pub-{i}", lambda: [nodes[0]], go_on) for i in range(4)]
        publishers += [Publisher(f"far-{i}", lambda: list(on_victim), go_on)
                       for i in range(2)]
        for p in publishers:
            p.start()
        wait_until("half the messages acknowledged",
                   lambda: all(len(p.acked) >= PER_CLIENT // 2 for p in publishers))
        victim.node.proc.send_signal(signal.SIGKILL)
        victim.node.proc.wait()
        on_victim[:] = [other]
        go_on.set()
        for p in publishers:
            p.join(DEADLINE * 2)
            assert not p.is_alive() and not p.errors, (p.client_id, p.errors)
            assert len(p.acked) == PER_CLIENT

        # The victim's partitions are led by the survivors now.
        survivors = [n for n in nodes if n is not victim]
        victim_id = int(victim.host[-1])
        wait_until("every partition of the store led by a survivor",
                   lambda: all(p["leader"] not in (None, victim_id)
                               for p in store_placement(survivors[0])))
        seen = set(read_store(",".join(n.bootstrap for n in survivors), partitions))
        lost = [m for p in publishers for m in p.acked if m not in seen]
        assert lost == [], f"{len(lost)} acknowledged messages missing: {lost[:5]}"
    finally:
        for n in nodes:
            n.node.stop()
