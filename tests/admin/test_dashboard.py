"""docs/grafana/strata.json queries only metrics a node exports: a node with every
component in use (MQTT, Kafka and agent API traffic, a consumer group, offloading to a filesystem
object store and reading back, a malformed MQTT packet and a refused Kafka request) must
expose every metric name any panel's query names."""
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from admin_support import (  # noqa: F401 (fixtures)
    DEADLINE, ROOT, Client, node, node_with, offloading_node, wait_until)

DASHBOARD = os.path.join(ROOT, "docs", "grafana", "strata.json")


def queried_metrics():
    """Every metric name in the dashboard's PromQL expressions."""
    exprs = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "expr" and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    with open(DASHBOARD) as f:
        walk(json.load(f))
    assert exprs, "the dashboard has no queries"
    names = set()
    for e in exprs:
        names.update(re.findall(r"\b(?:strata|process)_[a-z0-9_]+", e))
    return names


def exported_metrics(node):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/metrics",
                                  timeout=DEADLINE).read().decode()
    return {re.split(r"[{ ]", line, 1)[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_every_dashboard_metric_exists(node_with, tmp_path):
    n = offloading_node(node_with, tmp_path, STRATA_AGENT__ENABLED="true",
                        STRATA_AGENT__TOKEN="dash-token-0123456789")
    # The agent API: a send, and a request refused (a wrong token) for the error series.
    agent = f"http://127.0.0.1:{n.ports['agent']}/v1/queues/dash/messages"
    for token, status in (("dash-token-0123456789", 201), ("wrong", 401)):
        req = urllib.request.Request(agent, data=b'{"body": 1}', method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            got = urllib.request.urlopen(req, timeout=DEADLINE).status
        except urllib.error.HTTPError as e:
            got = e.code
        assert got == status
    # MQTT: deliveries at every QoS, a retained message, then a malformed packet.
    sub = Client(n.port, client_id="dash-sub")
    sub.subscribe("dash/#", 2)
    pub = Client(n.port, client_id="dash-pub")
    for qos in (0, 1, 2):
        pub.publish("dash/x", b"m", qos, retain=(qos == 1))
    sub.expect(3)
    with socket.create_connection(("127.0.0.1", n.port), timeout=DEADLINE) as s:
        s.sendall(b"\x10\x04\xff\xff\xff\xff")
        s.recv(16)

    # Kafka: records enough to roll and offload segments, a group that commits, a refused
    # topic creation (it exists), and a read back from object storage.
    p = Producer({"bootstrap.servers": n.bootstrap, "linger.ms": 0})
    for i in range(100):
        p.produce("dash", value=b"v" * 200)
        p.flush(DEADLINE)
    admin = AdminClient({"bootstrap.servers": n.bootstrap})
    refused = admin.create_topics([NewTopic("dash", 1, 1)])["dash"]
    with pytest.raises(KafkaException):
        refused.result(DEADLINE)
    wait_until("a local copy deleted after upload",
               lambda: n.metrics().get("strata_tier_local_segments_deleted_total", 0) >= 1,
               DEADLINE * 2)
    c = Consumer({"bootstrap.servers": n.bootstrap, "group.id": "dash",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["dash"])
    got, end = 0, time.time() + DEADLINE * 2
    while got < 50 and time.time() < end:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.close()
    assert got == 50
    sub.close()
    pub.close()

    exported = exported_metrics(n)
    missing = sorted(queried_metrics() - exported)
    assert not missing, f"the dashboard queries metrics the node does not export: {missing}"
