"""The MCP endpoint driven by the official Python `mcp` client package over real HTTP, in
the current revision (2026-07-28, `server/discover`) and in the handshake era
(`initialize`, 2025-11-25): tools listed and called against a real node, tool errors
reported as tool errors, protocol errors as JSON-RPC errors that are counted."""
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import TOKEN, Api, start  # noqa: E402
from test_topics import publish  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, node_with  # noqa: E402,F401

TOOLS = {"discover_agents", "send", "fetch", "ack", "create_task", "wait_task", "respond",
         "history"}


def mcp_session(node, mode, token=TOKEN, agent_token=None):
    """Runs `body(client)` in an MCP session with `node` (a coroutine's result)."""
    headers = {"Authorization": f"Bearer {token}"}
    if agent_token:
        headers["X-Agent-Token"] = agent_token
    url = f"http://127.0.0.1:{node.ports['agent']}/mcp"

    def run(body):
        async def session():
            http = httpx2.AsyncClient(headers=headers,
                                      timeout=httpx2.Timeout(DEADLINE, read=DEADLINE * 4))
            async with http:
                async with Client(streamable_http_client(url, http_client=http),
                                  mode=mode) as client:
                    return await body(client)
        return asyncio.run(session())
    return run


async def call(client, tool, **args):
    """A tool's structured result and whether it is an error."""
    result = await client.call_tool(tool, args)
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content, result.is_error


@pytest.mark.parametrize("mode,version", [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
def test_an_mcp_client_uses_queues_tasks_and_topics_as_tools(node_with, mode, version):
    node = start(node_with)
    api = Api(node)
    status, answer, _ = api.call("POST", "/v1/agents", {"card": {
        "name": "reviewer", "tags": ["review"], "skills": [{"id": "review-code"}]}})
    assert status == 201, answer
    worker_token = answer["token"]
    publish(api, "news", {"n": 1})

    async def model(client):
        assert client.protocol_version == version
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        found, error = await call(client, "discover_agents", tag="review")
        assert not error and [a["name"] for a in found["agents"]] == ["reviewer"]
        sent, error = await call(client, "send", queue="jobs", body={"n": 7}, priority="high",
                                 idempotency_key="once")
        assert not error and sent["duplicate"] is False, sent
        again, _ = await call(client, "send", queue="jobs", body={"n": 7},
                              idempotency_key="once")
        assert again == {"id": sent["id"], "duplicate": True}
        got, error = await call(client, "fetch", queue="jobs", max=10, wait_ms=1000)
        assert not error and [m["body"] for m in got["messages"]] == [{"n": 7}], got
        acked, error = await call(client, "ack", queue="jobs", lease=got["messages"][0]["lease"])
        assert not error and acked == {"id": sent["id"]}
        # An error of the agent API is the tool's error, its body the structured result.
        refused, error = await call(client, "ack", queue="jobs", lease="not-a-lease")
        assert error and refused["error"]["code"] == "unknown_lease", refused
        task, error = await call(client, "create_task", agent="reviewer", input={"pr": 42})
        assert not error and task["state"] == "submitted", task
        # The worker (plain HTTP) asks for input; the model answers it through a tool.
        status, answer, _ = api.call("POST", f"/v1/tasks/{task['id']}/events",
                                     {"kind": "status", "state": "input-required"},
                                     {"X-Agent-Token": worker_token})
        assert status == 200, answer
        waited, _ = await call(client, "wait_task", id=task["id"], wait_ms=10000)
        assert waited["state"] == "input-required", waited
        answered, error = await call(client, "respond", id=task["id"], data={"approve": True})
        assert not error and answered["state"] == "working", answered
        status, answer, _ = api.call("POST", f"/v1/tasks/{task['id']}/events",
                                     {"kind": "status", "state": "completed"},
                                     {"X-Agent-Token": worker_token})
        assert status == 200, answer
        done, _ = await call(client, "wait_task", id=task["id"], wait_ms=10000)
        assert done["state"] == "completed", done
        history, error = await call(client, "history", topic="news", **{"from": 0})
        assert not error and [e["data"] for e in history["events"]] == [{"n": 1}], history
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("no_such_tool", {})
        assert unknown.value.code == -32602
        with pytest.raises(MCPError) as bad:
            await client.call_tool("send", {"queue": "jobs"})  # no body
        assert bad.value.code == -32602
        return True
    assert mcp_session(node, mode)(model)


def test_a_mailbox_is_read_with_the_agents_own_token(node_with):
    node = start(node_with)
    api = Api(node)
    status, answer, _ = api.call("POST", "/v1/agents", {"card": {"name": "helper"}})
    assert status == 201, answer
    assert api.call("POST", "/v1/agents/helper/mailbox/messages", {"body": "hi"})[0] == 201

    async def as_someone_else(client):
        return await call(client, "fetch", agent="helper")
    refused, error = mcp_session(node, "auto")(as_someone_else)
    assert error and refused["error"]["code"] == "not_owner", refused

    async def as_the_agent(client):
        return await call(client, "fetch", agent="helper", wait_ms=1000)
    got, error = mcp_session(node, "auto", agent_token=answer["token"])(as_the_agent)
    assert not error and [m["body"] for m in got["messages"]] == ["hi"], got


def raw(node, body, headers=None, token=TOKEN):
    req = urllib.request.Request(f"http://127.0.0.1:{node.ports['agent']}/mcp", data=body,
                                 method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=DEADLINE) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_bad_mcp_input_is_a_json_rpc_error_and_is_counted(node_with):
    node = start(node_with)
    call_ = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    status, body = raw(node, b"{not json")
    assert status == 400 and json.loads(body)["error"]["code"] == -32700
    status, body = raw(node, b"[" + call_ + b"]")
    assert status == 400 and json.loads(body)["error"]["code"] == -32600
    status, body = raw(node, call_, {"MCP-Protocol-Version": "1999-01-01"})
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == -32022 and "2026-07-28" in error["data"]["supported"]
    status, body = raw(node, json.dumps({"jsonrpc": "2.0", "id": "x", "method": "nope"}).encode())
    assert status == 200 and json.loads(body) == {
        "jsonrpc": "2.0", "id": "x", "error": {"code": -32601, "message": "no method nope"}}
    # A notification is accepted with no answer; a wrong token is refused like any request.
    assert raw(node, b'{"jsonrpc": "2.0", "method": "notifications/initialized"}') == (202, b"")
    status, body = raw(node, call_, token="wrong-token-000000000")
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    # Past max_body_bytes (256 KiB) and the envelope's room (64 KiB).
    status, body = raw(node, b'{"body": "' + b"x" * 400000 + b'"}')
    assert status == 413
    # A web page of another site cannot drive the node (CSRF, DNS rebinding); this
    # machine's pages can.
    status, body = raw(node, call_, {"Origin": "http://evil.example"})
    assert status == 403 and json.loads(body)["error"]["code"] == "bad_origin"
    status, body = raw(node, call_, {"Origin": "http://localhost:3000"})
    assert status == 200 and "tools" in json.loads(body)["result"]
    # There is no server-to-client stream.
    req = urllib.request.Request(f"http://127.0.0.1:{node.ports['agent']}/mcp", method="GET")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with pytest.raises(urllib.error.HTTPError) as get:
        urllib.request.urlopen(req, timeout=DEADLINE)
    assert get.value.code == 405
    m = node.metrics()
    for code in ("mcp_parse_error", "mcp_invalid_request", "mcp_bad_version",
                 "mcp_unknown_method", "unauthorized", "too_large", "bad_origin"):
        assert m[f'strata_agent_errors_total{{code="{code}"}}'] >= 1, code
    assert m['strata_agent_mcp_requests_total{method="other"}'] >= 1
