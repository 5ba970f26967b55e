"""The Python SDK (sdk/python, on httpx) against a real node: a handler outlives its lease
and keeps the message, a failing one gives it back, a subscription resumes by itself
across a SIGKILL restart, and a task runs from creation to completion."""
import os
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "sdk", "python"))
sys.path.insert(0, os.path.dirname(HERE))
from strata_agent import Client, StrataError  # noqa: E402
from strata_node import DEADLINE, Node, free_port, node_with  # noqa: E402,F401

TOKEN = "sdk-token-0123456789abcdef"


def env(port=0):
    return {"STRATA_AGENT__ENABLED": "true", "STRATA_AGENT__TOKEN": TOKEN,
            "STRATA_AGENT__LISTEN": f"127.0.0.1:{port}"}


def client(node):
    return Client(f"http://127.0.0.1:{node.ports['agent']}", token=TOKEN)


def test_process_keeps_the_lease_while_working_and_gives_back_on_failure(node_with):
    c = client(node_with("", **env()))
    c.send("jobs", {"n": 1})
    # The handler takes three leases' time: the SDK extends the lease meanwhile.
    m = c.process("jobs", lambda m: time.sleep(1.5), lease_ms=500, wait_ms=5000)
    assert m.body == {"n": 1} and m.attempt == 1
    assert c.describe("jobs")["depth"] == 0
    c.send("jobs", {"n": 2})
    with pytest.raises(ValueError):
        c.process("jobs", lambda m: (_ for _ in ()).throw(ValueError("boom")), wait_ms=5000)
    again = c.fetch("jobs", wait_ms=5000)
    assert [x.body for x in again] == [{"n": 2}] and again[0].attempt == 2
    with pytest.raises(StrataError) as e:
        c.ack("not-a-lease", "jobs")
    assert e.value.status == 404 and e.value.code == "unknown_lease"


def test_a_subscription_resumes_by_itself_across_a_sigkill(node_with, tmp_path):
    port = free_port()
    node = node_with("", **env(port))
    c = client(node)
    for i in range(5):
        c.publish("feed", {"n": i})
    got, stop = [], threading.Event()

    def follow():
        with Client(f"http://127.0.0.1:{port}", token=TOKEN) as s:
            for e in s.subscribe("feed", from_id=0, retry_s=0.2, stop=stop):
                got.append(e.id)
                if len(got) == 10:
                    stop.set()
    t = threading.Thread(target=follow, daemon=True)
    t.start()
    deadline = time.time() + DEADLINE
    while len(got) < 5:
        assert time.time() < deadline, got
        time.sleep(0.05)
    node.proc.kill()
    node.proc.wait()
    config = (tmp_path / "strata.toml").read_text()
    again = Node(tmp_path, config, env(port))
    try:
        c = client(again)
        for i in range(5, 10):
            c.publish("feed", {"n": i})
        t.join(DEADLINE * 2)
        assert got == list(range(10))
    finally:
        stop.set()
        assert again.stop() == 0


def test_a_task_from_creation_to_completion(node_with):
    node = node_with("", **env())
    requester = client(node)
    worker = client(node)
    worker.register({"name": "adder", "skills": [{"id": "add"}]})
    assert [a.name for a in requester.agents(skill="add")] == ["adder"]
    task = requester.create_task("adder", {"a": 2, "b": 3})

    def work(m):
        job = m.body
        worker.report(job["task"], "status", state="working")
        worker.report(job["task"], "artifact", data={"sum": job["input"]["a"] + job["input"]["b"]})
        worker.report(job["task"], "status", state="completed")
    assert worker.process(None, work, mailbox="adder", wait_ms=5000) is not None
    done = requester.wait_task(task.id, timeout_s=DEADLINE)
    assert done.state == "completed"
    kinds = [(e.kind, e.state) for e in requester.stream_task(task.id)]
    assert kinds == [("status", "submitted"), ("status", "working"), ("artifact", None),
                     ("status", "completed")]


def test_objects_are_created_in_the_class_asked_for(node_with):
    c = client(node_with("", **env()))
    assert c.create_queue("fast", "memory") == "memory"
    assert c.create_queue("fast") == "memory"
    assert c.create_topic("log", "local") == "local"
    with pytest.raises(StrataError) as e:
        c.create_queue("fast", "local")
    assert e.value.status == 409 and e.value.code == "storage_conflict"
    c.register({"name": "quick"}, storage="memory")
    assert c.send_to_agent("quick", {"hi": 1}).duplicate is False
