"""The admin API's agent endpoints (`/api/v1/agent/...`) and `strata admin agent ...`
against a real node: agents with their mailboxes, queues (mailboxes and dead-letter
queues included) with their depth, tasks by state and agent; 404 `disabled` on a node
without the agent frontend."""
import json
import urllib.request

from admin_support import (  # noqa: F401 (fixtures)
    DEADLINE, admin_cli, Api, assert_error, node, node_with, wait_until)

TOKEN = "admin-agent-token-0123456789"


def agent_api(node, method, path, body=None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{node.ports['agent']}{path}",
                                 data=None if body is None else json.dumps(body).encode(),
                                 method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=DEADLINE) as r:
        return json.loads(r.read() or b"null")


def test_agents_queues_and_tasks(node_with):
    n = node_with("", STRATA_AGENT__ENABLED="true", STRATA_AGENT__TOKEN=TOKEN)
    api = Api(n)
    wait_until("the agent frontend", lambda: api.get("agent", "agents")[0] == 200)
    token = agent_api(n, "POST", "/v1/agents", {"card": {"name": "planner", "skills": [
        {"id": "plan"}], "tags": ["core"]}})["token"]
    agent_api(n, "POST", "/v1/agents", {"card": {"name": "worker"}})
    for i in range(3):
        agent_api(n, "POST", "/v1/queues/jobs/messages", {"body": i})
    task = agent_api(n, "POST", "/v1/tasks", {"agent": "planner", "input": "x"})
    agent_api(n, "POST", f"/v1/tasks/{task['id']}/events", {"kind": "status", "state": "working"},
              {"X-Agent-Token": token})
    agent_api(n, "POST", "/v1/tasks", {"agent": "worker"})

    agents = api.ok("agent", "agents")
    assert [a["name"] for a in agents["items"]] == ["planner", "worker"]
    planner = agents["items"][0]
    assert planner["skills"] == ["plan"] and planner["tags"] == ["core"]
    assert planner["mailbox"].startswith("_mbx-planner-") and planner["mailbox_depth"] == 1
    page = api.ok("agent", "agents", limit=1)
    assert [a["name"] for a in page["items"]] == ["planner"] and page["next_cursor"] == "planner"
    assert [a["name"] for a in api.ok("agent", "agents", cursor="planner")["items"]] == ["worker"]
    assert api.ok("agent", "agents", "worker")["online"] is True

    queues = {q["name"]: q for q in api.ok("agent", "queues")["items"]}
    assert queues["jobs"]["kind"] == "queue" and queues["jobs"]["depth"] == 3
    assert queues["jobs"]["storage"] == "local"
    assert queues[planner["mailbox"]]["kind"] == "mailbox"
    assert [q["name"] for q in api.ok("agent", "queues", kind="mailbox")["items"]] == sorted(
        q for q in queues if q.startswith("_mbx-"))
    assert api.ok("agent", "queues", "jobs")["in_flight"] == 0
    assert_error(api.get("agent", "queues", "nope"), 404, "not_found")

    tasks = api.ok("agent", "tasks")["items"]
    assert {t["agent"]: t["state"] for t in tasks} == {"planner": "working", "worker": "submitted"}
    assert [t["agent"] for t in api.ok("agent", "tasks", state="working")["items"]] == ["planner"]
    assert [t["state"] for t in api.ok("agent", "tasks", agent="worker")["items"]] == ["submitted"]
    # Its submitted status, then working.
    assert api.ok("agent", "tasks", task["id"])["events"] == 2
    assert_error(api.get("agent", "tasks", "nope"), 404, "unknown_task")
    assert_error(api.get("agent", "tasks", limit=0), 400, "bad_request")

    # The CLI over the same routes.
    code, out, err = admin_cli(n, "agent", "queues")
    assert code == 0, err
    assert "jobs" in out and "mailbox" in out and "DEPTH" in out
    code, out, err = admin_cli(n, "agent", "tasks", "--state", "working")
    assert code == 0 and task["id"] in out and "submitted" not in out, (out, err)
    code, out, err = admin_cli(n, "agent", "agents", "--json")
    assert code == 0 and [a["name"] for a in json.loads(out)["items"]] == ["planner", "worker"]
    code, out, err = admin_cli(n, "agent", "agent", "planner")
    assert code == 0 and "planner" in out, (out, err)


def test_disabled_without_the_agent_frontend(node_with):
    n = node_with("[agent]\nenabled = false\n")
    assert_error(Api(n).get("agent", "agents"), 404, "disabled")
