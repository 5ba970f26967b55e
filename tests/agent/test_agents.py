"""The agents registry and mailboxes over real HTTP: register, find by skill, tag and being
online, only an agent's own token updates or removes it and reads its mailbox, changes
watched as a resumable stream, and all of it after a SIGKILL restart."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import TOKEN, Api, killed_and_restarted, start  # noqa: E402
from test_topics import Sse  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import node_with  # noqa: E402,F401


def card(name, skill, tags=()):
    return {"name": name, "description": f"{name} does {skill}",
            "skills": [{"id": skill, "tags": list(tags)}], "tags": ["worker"],
            "endpoint": f"http://{name}.invalid/"}


def register(api, c, token=None, lease_ms=None):
    body = {"card": c} if lease_ms is None else {"card": c, "lease_ms": lease_ms}
    headers = {"X-Agent-Token": token} if token else {}
    return api.call("POST", "/v1/agents", body, headers)


def test_agents_register_are_found_and_only_their_token_changes_them(node_with):
    api = Api(start(node_with))
    status, a, _ = register(api, card("summer", "sum", ["math"]))
    assert status == 201 and a["name"] == "summer" and len(a["token"]) == 32
    status, b, _ = register(api, card("drawer", "draw", ["art"]), lease_ms=1000)
    assert status == 201
    # The name is taken: only its own token updates the card.
    status, answer, _ = register(api, card("summer", "steal"))
    assert status == 409 and answer["error"]["code"] == "name_taken"
    status, _, _ = register(api, card("summer", "sum", ["math", "calc"]), token=a["token"])
    assert status == 200
    status, got, _ = api.call("GET", "/v1/agents/summer")
    assert status == 200 and got["skills"] == [{"id": "sum", "tags": ["math", "calc"]}]
    assert got["online"] is True
    names = lambda q: [x["name"] for x in api.call("GET", "/v1/agents" + q)[1]["agents"]]  # noqa: E731
    assert names("?skill=sum") == ["summer"]
    assert names("?tag=art") == ["drawer"]
    assert names("?tag=worker") == ["drawer", "summer"]
    # drawer's lease (1 s) lapses without heartbeats; summer beats.
    status, beat, _ = api.call("POST", "/v1/agents/summer/heartbeat", {},
                               {"X-Agent-Token": a["token"]})
    assert status == 200 and beat["online_until_ms"] > 0
    deadline = time.time() + 30
    while names("?online=true") != ["summer"]:
        assert time.time() < deadline, "drawer still online"
        time.sleep(0.1)
    for headers in ({}, {"X-Agent-Token": a["token"]}):
        status, answer, _ = api.call("DELETE", "/v1/agents/drawer", headers=headers)
        assert status == 403 and answer["error"]["code"] == "not_owner"
    assert api.call("DELETE", "/v1/agents/drawer", headers={"X-Agent-Token": b["token"]})[0] == 200
    assert api.call("GET", "/v1/agents/drawer")[0] == 404


def test_a_mailbox_is_read_by_its_owner_alone(node_with):
    api = Api(start(node_with))
    a = register(api, card("inbox", "read"))[1]
    status, answer, _ = api.call("POST", "/v1/agents/nobody/mailbox/messages", {"body": 1})
    assert status == 404 and answer["error"]["code"] == "unknown_agent"
    status, sent, _ = api.call("POST", "/v1/agents/inbox/mailbox/messages",
                               {"body": {"hello": "inbox"}, "priority": "high"})
    assert status == 201
    status, answer, _ = api.call("POST", "/v1/agents/inbox/mailbox/fetch", {})
    assert status == 403 and answer["error"]["code"] == "not_owner"
    # The mailbox's queue is not reachable as a plain queue.
    status, answer, _ = api.call("POST", "/v1/queues/_mbx-inbox/fetch", {})
    assert status == 400 and answer["error"]["code"] == "bad_name"
    owner = {"X-Agent-Token": a["token"]}
    status, got, _ = api.call("POST", "/v1/agents/inbox/mailbox/fetch", {"max": 5}, owner)
    assert status == 200 and [m["body"] for m in got["messages"]] == [{"hello": "inbox"}]
    assert got["messages"][0]["id"] == sent["id"]
    status, _, _ = api.call("POST", "/v1/agents/inbox/mailbox/ack",
                            {"lease": got["messages"][0]["lease"]}, owner)
    assert status == 200


def test_registry_changes_are_a_stream_and_agents_survive_a_sigkill(node_with, tmp_path):
    node = start(node_with)
    api = Api(node)
    a = register(api, card("keeper", "keep"))[1]
    register(api, card("keeper", "keep", ["x"]), token=a["token"])
    b = register(api, card("leaver", "leave"))[1]
    api.call("DELETE", "/v1/agents/leaver", headers={"X-Agent-Token": b["token"]})
    api.call("POST", "/v1/agents/keeper/mailbox/messages", {"body": "kept"})
    s = Sse(api, "_registry", query="?from=0")
    changes = [s.next() for _ in range(4)]
    s.close()
    assert [(c[1], c[2]["data"].get("name")) for c in changes] == [
        ("registered", "keeper"), ("updated", "keeper"), ("registered", "leaver"),
        ("removed", "leaver")]
    # Nobody but the frontend publishes to the registry's topic.
    status, answer, _ = api.call("POST", "/v1/topics/_registry/events", {"data": 1})
    assert status == 400 and answer["error"]["code"] == "bad_name"
    again = killed_and_restarted(node, tmp_path)
    try:
        api = Api(again)
        status, got, _ = api.call("GET", "/v1/agents/keeper")
        assert status == 200 and got["skills"][0]["tags"] == ["x"]
        assert api.call("GET", "/v1/agents/leaver")[0] == 404
        status, got, _ = api.call("POST", "/v1/agents/keeper/mailbox/fetch", {},
                                  {"X-Agent-Token": a["token"]})
        assert status == 200 and [m["body"] for m in got["messages"]] == ["kept"]
        # Resumed after the last change seen: only what came after it.
        register(api, card("newcomer", "join"))
        s = Sse(api, "_registry", last_event_id=changes[-1][0])
        assert s.next()[2]["data"]["name"] == "newcomer"
        s.close()
    finally:
        assert again.stop() == 0
