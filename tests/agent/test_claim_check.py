"""Claim-check: a message body over `claim_check_bytes` (64 KiB) is stored once on its
own, in the node's default class (here on a real S3 server, s3s-fs on loopback), and the
message carries a claim to it; `GET /v1/blobs/{id}` and the SDKs read it back, across a
SIGKILL restart; bodies over `max_claim_bytes` are refused."""
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import TOKEN, Api, killed_and_restarted, start  # noqa: E402
from test_storage import object_config, s3, stored_objects  # noqa: E402,F401
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "sdk", "python"))
from strata_agent import Client  # noqa: E402
sys.path.insert(0, os.path.dirname(HERE))
from strata_node import node_with  # noqa: E402,F401


def stored_bytes(bucket):
    return sum(p.stat().st_size for p in stored_objects(bucket))


def test_a_large_body_is_stored_once_on_object_storage_and_read_back(node_with, tmp_path, s3):
    endpoint, bucket = s3
    node = start(node_with, object_config(endpoint) + "[agent]\nmax_claim_bytes = 1048576\n")
    api = Api(node)
    assert api.call("PUT", "/v1/queues/big", {"storage": "local"})[0] == 201
    large = {"doc": secrets.token_hex(150_000)}  # 300 KB of JSON, hard to compress
    before = stored_bytes(bucket)
    status, answer, _ = api.send("big", large)
    assert status == 201, answer
    # Kept as an object (the queue itself is local): the S3 server grew by about the body.
    assert stored_bytes(bucket) - before >= 150_000
    assert node.metrics().get("strata_agent_claim_checks_total") == 1
    assert api.send("big", {"small": 1})[0] == 201
    got = api.fetch("big", max=10)
    assert got[0]["body"] is None and got[0]["claim"]["bytes"] > 300_000
    assert got[1]["body"] == {"small": 1} and "claim" not in got[1]
    status, body, headers = api.call("GET", f"/v1/blobs/{got[0]['claim']['id']}")
    assert status == 200 and body == large
    # Ids are not guessable: the right offset with another key is no blob.
    offset = got[0]["claim"]["id"].split("-")[0]
    status, answer, _ = api.call("GET", f"/v1/blobs/{offset}-{'0' * 32}")
    assert status == 404 and answer["error"]["code"] == "unknown_blob"
    # Not acknowledged: after a SIGKILL the message comes back, its body still there,
    # read in by the SDK.
    node = killed_and_restarted(node, tmp_path)
    c = Client(f"http://127.0.0.1:{node.ports['agent']}", token=TOKEN)
    again = c.fetch("big", max=10, wait_ms=5000)
    assert [m.body for m in again] == [large, {"small": 1}]
    # Past max_claim_bytes: refused, nothing stored.
    status, answer, _ = Api(node).send("big", {"doc": "x" * 1_100_000})
    assert status == 413 and answer["error"]["code"] == "too_large", answer


def test_a_refused_send_stores_no_body_and_mqtt_consumers_get_it_read_in(node_with):
    import json
    sys.path.insert(0, os.path.dirname(HERE))
    from mqtt_client import Client as Mqtt
    node = node_with("", STRATA_AGENT__ENABLED="true", STRATA_AGENT__TOKEN=TOKEN,
                     STRATA_AGENT__MQTT_PREFIX="queues/")
    api = Api(node)
    large = {"doc": secrets.token_hex(50_000)}
    status, answer, _ = api.call("POST", "/v1/queues/bad.name/messages", {"body": large})
    assert status == 400 and answer["error"]["code"] == "bad_name"
    assert node.metrics().get("strata_agent_claim_checks_total") == 0
    assert api.send("bigq", large)[0] == 201
    assert node.metrics().get("strata_agent_claim_checks_total") == 1
    worker = Mqtt(node.port)
    assert worker.subscribe("queues/bigq", qos=1)[0].value == 1
    m = worker.expect()[0]
    assert json.loads(m.payload) == large
    worker.close()
