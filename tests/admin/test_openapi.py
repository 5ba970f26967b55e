"""schemathesis against the OpenAPI document the node serves, with real MQTT and Kafka
clients connected, an agent registered with a task, and state in place: every check (no server error, status codes and
content types documented, bodies matching their schemas, invalid input refused, valid
input accepted) over every operation. The seed is fixed so a failure reproduces; set
STRATA_SCHEMATHESIS_SEED to explore others."""
import os
import shutil
import subprocess
import sys
import json
import urllib.request

from confluent_kafka import Consumer, Producer

from admin_support import DEADLINE, Api, Client, node, node_with  # noqa: F401 (fixtures)


def test_schemathesis_finds_nothing(node_with, tmp_path):
    # Every frontend on, so each one's routes are checked as they really answer.
    node = node_with("", STRATA_AGENT__ENABLED="true")
    api = Api(node)
    doc = api.ok("openapi.json")
    assert doc["openapi"].startswith("3.1")
    assert len(doc["paths"]) >= 20

    sub = Client(node.port, client_id="st-sub", expiry=600)
    sub.subscribe("st/#", 1)
    pub = Client(node.port, client_id="st-pub")
    pub.publish("st/retained", b"kept", 1, retain=True)
    sub.expect(1)
    p = Producer({"bootstrap.servers": node.bootstrap})
    p.produce("st-topic", b"v")
    assert p.flush(DEADLINE) == 0
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "st-group",
                  "auto.offset.reset": "earliest"})
    c.subscribe(["st-topic"])
    while (m := c.poll(1.0)) is None or m.error():
        pass
    c.commit(asynchronous=False)
    agent = f"http://127.0.0.1:{node.ports['agent']}"
    for path, body in (("/v1/agents", {"card": {"name": "st-agent"}}),
                       ("/v1/tasks", {"agent": "st-agent"}),
                       ("/v1/queues/st-queue/messages", {"body": 1})):
        req = urllib.request.Request(agent + path, data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=DEADLINE).close()

    st = shutil.which("schemathesis") or shutil.which("st")
    cmd = [st] if st else [sys.executable, "-m", "schemathesis.cli"]
    seed = os.environ.get("STRATA_SCHEMATHESIS_SEED", "20261126")
    base = f"http://127.0.0.1:{node.admin_port}"
    run = subprocess.run(cmd + ["run", f"{base}/api/v1/openapi.json", "--url", base,
                                "--checks", "all", "--max-examples", "60", "--seed", seed,
                                "--request-timeout", "30"],
                         capture_output=True, text=True, timeout=DEADLINE * 20,
                         cwd=tmp_path)
    c.close()
    sub.close()
    pub.close()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
