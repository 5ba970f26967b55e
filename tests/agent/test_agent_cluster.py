"""The agent API on three real nodes: one node (the leader of the replicated agent state)
serves it and the others forward to it, so a queue's leases exist once. SIGKILL that node
and another takes over: nothing acknowledged is lost (sends, acks, idempotency keys,
agents, mailboxes, tasks), and what was handed out but not acknowledged comes again."""
import os
import sys
import time
import urllib.error

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "kafka"))
from test_agents import card, register  # noqa: E402
from test_cluster import start_cluster  # noqa: E402
from test_queues import TOKEN, Api, wait_until  # noqa: E402
from test_tasks import report, take_task  # noqa: E402
from test_topics import Sse, publish  # noqa: E402

SERVED_BY = "x-strata-served-by"


def answered(api, method, path, body=None, headers=None, ok=(200, 201)):
    """The answer of a request, asked again while no node serves the API (503 no_owner:
    the state is being created or taken over)."""
    end = time.time() + 120
    while True:
        status, answer, got = api.call(method, path, body, headers)
        if status in ok:
            return answer, {k.lower(): v for k, v in got.items()}
        assert status == 503, (status, answer)
        assert time.time() < end, f"{method} {path}: still {status} {answer}"
        time.sleep(0.2)


def owner_of(apis):
    """The index of the node serving the API: the one whose answers are not forwarded."""
    served = []
    for api in apis:
        _, headers = answered(api, "GET", "/v1/queues/jobs")
        served.append(headers.get(SERVED_BY))
    owners = [i for i, s in enumerate(served) if s is None]
    assert len(owners) == 1, served
    assert all(s == str(owners[0] + 1) for s in served if s is not None), served
    return owners[0]


def test_the_agent_api_survives_the_death_of_the_node_serving_it(tmp_path):
    extra = f'[agent]\ntoken = "{TOKEN}"\nstorage = "local"\n'
    nodes = start_cluster(tmp_path, extra=extra)
    try:
        apis = [Api(n.node) for n in nodes]
        # Sent through every node, each with an idempotency key.
        ids = {}
        for i in range(60):
            answer, _ = answered(apis[i % 3], "POST", "/v1/queues/jobs/messages",
                                 {"body": {"n": i}}, {"Idempotency-Key": f"k{i}"})
            ids[i] = answer["id"]
        assert len(set(ids.values())) == 60
        owner = owner_of(apis)
        others = [i for i in range(3) if i != owner]
        # The admin API shows the agent state where it is served, and says so elsewhere.
        queues = nodes[owner].api("agent", "queues")["items"]
        assert "jobs" in [q["name"] for q in queues], queues
        try:
            nodes[others[0]].api("agent", "queues")
            raise AssertionError("a node that does not serve the agent API listed its queues")
        except urllib.error.HTTPError as e:
            assert e.code == 503 and b"does not serve the agent API" in e.read()
        first, second = apis[others[0]], apis[others[1]]

        # 30 handed out through one node, 20 of them acknowledged through the other. (A
        # fetch may hand out fewer than asked: the leaders' epoch markers in the queue's
        # partitions take slots and are skipped.)
        taken = []
        while len(taken) < 30:
            got, _ = answered(first, "POST", "/v1/queues/jobs/fetch",
                              {"max": 30 - len(taken), "lease_ms": 600000, "wait_ms": 5000})
            assert got["messages"], taken
            taken += got["messages"]
        assert len({m["body"]["n"] for m in taken}) == 30
        acked = {m["body"]["n"] for m in taken[:20]}
        for m in taken[:20]:
            answered(second, "POST", "/v1/queues/jobs/ack", {"lease": m["lease"]})

        # An event stream read through a forwarding node, live: the owner's answer is
        # streamed back as it comes.
        first_id = publish(second, "news", {"n": 0})
        stream = Sse(first, "news", last_event_id=first_id)
        publish(second, "news", {"n": 1})
        assert stream.next()[2]["data"] == {"n": 1}
        publish(apis[owner], "news", {"n": 2})
        assert stream.next()[2]["data"] == {"n": 2}
        stream.close()

        # An agent with a task in its mailbox, the task taken and working.
        me = {"X-Agent-Token": register(first, card("w1", "work"))[1]["token"]}
        task, _ = answered(second, "POST", "/v1/tasks", {"agent": "w1", "input": "job"})
        take_task(first, "w1", me)
        report(second, task["id"], me, "status", "working")
        answered(first, "POST", "/v1/agents/w1/mailbox/messages", {"body": "kept"})

        nodes[owner].node.proc.kill()
        nodes[owner].node.proc.wait()

        # Another node takes the state over; both survivors answer, through it.
        new_owner = None

        def taken_over():
            nonlocal new_owner
            status, _, headers = first.call("GET", "/v1/queues/jobs")
            if status != 200:
                return False
            served = {k.lower(): v for k, v in headers.items()}.get(SERVED_BY)
            new_owner = others[0] if served is None else int(served) - 1
            return new_owner in others
        wait_until("a surviving node to serve the agent API", taken_over, deadline=120)

        # Every message not acknowledged comes (again), none acknowledged does.
        seen = []
        while len(seen) < 40:
            got, _ = answered(second, "POST", "/v1/queues/jobs/fetch",
                              {"max": 100, "wait_ms": 5000, "lease_ms": 600000})
            assert got["messages"], f"only {sorted(seen)} came back"
            for m in got["messages"]:
                seen.append(m["body"]["n"])
                answered(first, "POST", "/v1/queues/jobs/ack", {"lease": m["lease"]})
        assert sorted(seen) == sorted(set(range(60)) - acked)
        got, _ = answered(first, "POST", "/v1/queues/jobs/fetch", {"max": 10, "wait_ms": 500})
        assert got["messages"] == []

        # An idempotency key remembered before the death still names its message.
        answer, _ = answered(second, "POST", "/v1/queues/jobs/messages",
                             {"body": {"n": 5}}, {"Idempotency-Key": "k5"})
        assert answer["id"] == ids[5] and answer["duplicate"] is True

        # The agent, its token, its mailbox and its task are there.
        status, agent, _ = first.call("GET", "/v1/agents/w1")
        assert status == 200 and agent["name"] == "w1", agent
        got, _ = answered(second, "POST", "/v1/agents/w1/mailbox/fetch", {"wait_ms": 5000}, me)
        assert [m["body"] for m in got["messages"]] == ["kept"]
        status, t, _ = first.call("GET", f"/v1/tasks/{task['id']}")
        assert status == 200 and t["state"] == "working", t
        report(second, task["id"], me, "status", "completed", "done")
        status, page, _ = first.call("GET", f"/v1/tasks/{task['id']}/events")
        assert [e.get("state") for e in page["events"]] == ["submitted", "working", "completed"]
    finally:
        for n in nodes:
            n.node.stop()
