"""Each agent object's storage class, chosen when it is created: `memory`, `local` and
`object` (written straight to a real S3-compatible server, s3s-fs, on loopback; the
default when the node has object storage). What each promises across a SIGKILL restart."""
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import TOKEN, Api, killed_and_restarted, start, wait_until  # noqa: E402
from test_topics import publish  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, free_port, node_with  # noqa: E402,F401

S3S_FS = os.path.expanduser("~/.cache/strata/tools/bin/s3s-fs")
BUCKET = "strata"


@pytest.fixture
def s3(tmp_path):
    """A real S3-compatible server on a free loopback port: its endpoint and data directory."""
    data = tmp_path / "s3"
    (data / BUCKET).mkdir(parents=True)
    port = free_port()
    proc = subprocess.Popen([S3S_FS, "--host", "127.0.0.1", "--port", str(port),
                             "--access-key", "AK", "--secret-key", "SK", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + DEADLINE
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.time() < end, "s3s-fs did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", data / BUCKET
    proc.kill()
    proc.wait()


def object_config(endpoint):
    # Small objects gathered for a short time, so the test does not wait on batching.
    return f'''
[journal.object_store]
backend = "s3"
endpoint = "{endpoint}"
bucket = "{BUCKET}"
access_key_id = "AK"
secret_access_key = "SK"
[journal.object]
batch_ms = 20
'''


def stored_objects(bucket):
    return [p for p in bucket.rglob("*") if p.is_file()]


def put(api, path, storage=None):
    return api.call("PUT", path, None if storage is None else {"storage": storage})


def test_without_object_storage_the_default_is_local_and_object_is_refused(node_with):
    api = Api(start(node_with))
    status, answer, _ = put(api, "/v1/queues/jobs")
    assert (status, answer) == (201, {"name": "jobs", "storage": "local"})
    status, answer, _ = put(api, "/v1/queues/other", "object")
    assert status == 400 and answer["error"]["code"] == "storage_unavailable", answer
    assert api.call("GET", "/v1/queues/other")[0] == 404
    # A class the API does not know is a bad body, not a new class.
    status, answer, _ = put(api, "/v1/queues/other", "tape")
    assert status == 400 and answer["error"]["code"] == "bad_json", answer


def test_a_class_is_kept_and_another_one_is_a_conflict(node_with):
    api = Api(start(node_with))
    for path in ("/v1/queues/fast", "/v1/topics/fast"):
        assert put(api, path, "memory")[:2] == (201, {"name": "fast", "storage": "memory"})
        # Asking again for the same class is answered as it is; another class is refused.
        assert put(api, path, "memory")[:2] == (200, {"name": "fast", "storage": "memory"})
        assert put(api, path)[:2] == (200, {"name": "fast", "storage": "memory"})
        status, answer, _ = put(api, path, "local")
        assert status == 409 and answer["error"]["code"] == "storage_conflict", answer
    assert api.describe("fast")["storage"] == "memory"
    status, answer, _ = api.call("GET", "/v1/topics/fast")
    assert status == 200 and answer["storage"] == "memory", answer


def test_memory_is_lost_on_restart_and_the_queue_starts_afresh(node_with, tmp_path):
    node = start(node_with)
    api = Api(node)
    put(api, "/v1/queues/mem", "memory")
    put(api, "/v1/queues/disk", "local")
    for n in range(3):
        for q in ("mem", "disk"):
            assert api.send(q, {"n": n}, idempotency_key=f"k{n}")[0] == 201
    for q in ("mem", "disk"):
        got = api.fetch(q, max=1)
        assert api.ack(q, got[0]["lease"])[0] == 200
    node = killed_and_restarted(node, tmp_path)
    api = Api(node)
    assert api.describe("disk")["depth"] == 2
    # Memory keeps nothing across a restart, and what the node remembered of the queue
    # (what was acked, the idempotency keys) goes with it: the same key stores again, and
    # the new messages, at offsets used before, are all delivered.
    assert api.describe("mem") == {"name": "mem", "storage": "memory", "depth": 0,
                                   "in_flight": 0}
    for n in range(3):
        status, answer, _ = api.send("mem", {"n": n}, idempotency_key=f"k{n}")
        assert status == 201 and not answer["duplicate"], answer
    got = api.fetch("mem", max=10)
    assert sorted(m["body"]["n"] for m in got) == [0, 1, 2]


def test_object_is_the_default_and_is_written_to_s3(node_with, tmp_path, s3):
    endpoint, bucket = s3
    node = start(node_with, object_config(endpoint))
    api = Api(node)
    for n in range(5):
        assert api.send("jobs", {"n": n})[0] == 201
    publish(api, "news", {"n": 0})
    assert api.describe("jobs")["storage"] == "object"
    assert api.call("GET", "/v1/topics/news")[1]["storage"] == "object"
    # A send is answered once the object holding it is stored.
    assert stored_objects(bucket), "nothing was written to the S3 server"
    status, answer, _ = put(api, "/v1/queues/mem", "memory")
    assert (status, answer) == (201, {"name": "mem", "storage": "memory"})
    node = killed_and_restarted(node, tmp_path)
    api = Api(node)
    got = api.fetch("jobs", max=10)
    assert [m["body"]["n"] for m in got] == [0, 1, 2, 3, 4]
    status, answer, _ = api.call("GET", "/v1/topics/news/events?from=0")
    assert status == 200 and [e["data"] for e in answer["events"]] == [{"n": 0}], answer


def test_a_mailbox_is_made_in_the_class_its_registration_asks_for(node_with, tmp_path, s3):
    endpoint, _ = s3
    api = Api(start(node_with, object_config(endpoint)))
    card = {"name": "fast-agent", "tags": ["x"]}
    status, answer, _ = api.call("POST", "/v1/agents", {"card": card, "storage": "memory"})
    assert status == 201, answer
    token = answer["token"]
    status, answer, _ = api.call("POST", "/v1/agents", {"card": {"name": "slow-agent"}})
    assert status == 201, answer
    slow = answer["token"]
    status, answer, _ = api.call("GET", "/v1/agents/fast-agent/mailbox",
                                 headers={"X-Agent-Token": token})
    assert status == 200 and answer["storage"] == "memory", answer
    # Only the agent itself reads its mailbox's state.
    assert api.call("GET", "/v1/agents/fast-agent/mailbox")[0] == 403
    # Without a class, the mailbox is made (in the default class) by its first use.
    assert api.call("GET", "/v1/agents/slow-agent/mailbox",
                    headers={"X-Agent-Token": slow})[1]["storage"] is None
    assert api.call("POST", "/v1/agents/slow-agent/mailbox/messages", {"body": 1})[0] == 201
    assert api.call("GET", "/v1/agents/slow-agent/mailbox",
                    headers={"X-Agent-Token": slow})[1]["storage"] == "object"
    # Updating the registration asking another class is refused, and changes nothing.
    status, answer, _ = api.call("POST", "/v1/agents", {"card": card, "storage": "local"},
                                 {"X-Agent-Token": token})
    assert status == 409 and answer["error"]["code"] == "storage_conflict", answer
    # The same class updates the card; the mailbox is the same one.
    card["tags"] = ["y"]
    status, answer, _ = api.call("POST", "/v1/agents", {"card": card, "storage": "memory"},
                                 {"X-Agent-Token": token})
    assert status == 200, answer
    assert api.call("GET", "/v1/agents/fast-agent")[1]["tags"] == ["y"]


def test_memory_objects_and_queues_are_bounded_before_anything_is_made(node_with):
    node = start(node_with, '[agent]\nmax_memory_objects = 2\nmax_queues = 3\n'
                            'storage_classes = ["local", "memory"]\n')
    api = Api(node)
    assert put(api, "/v1/queues/m1", "memory")[0] == 201
    assert put(api, "/v1/topics/m2", "memory")[0] == 201
    status, answer, _ = put(api, "/v1/queues/m3", "memory")
    assert status == 429 and answer["error"]["code"] == "max_memory_objects", answer
    status, answer, _ = put(api, "/v1/queues/o1", "object")
    assert status == 400 and answer["error"]["code"] == "storage_not_allowed", answer
    assert put(api, "/v1/queues/l1", "local")[0] == 201
    assert put(api, "/v1/queues/l2")[0] == 201
    # Past max_queues nothing is created: no stream is left behind (the admin API lists
    # the node's streams).
    status, answer, _ = put(api, "/v1/queues/l3", "local")
    assert status == 429 and answer["error"]["code"] == "max_queues", answer
    url = f"http://127.0.0.1:{node.admin_port}/api/v1/streams/agent.queue."
    for q in ("m3", "o1", "l3"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + q, timeout=DEADLINE)
        assert missing.value.code == 404, q
    with urllib.request.urlopen(url + "l1", timeout=DEADLINE) as r:
        assert r.status == 200
