"""The A2A gateway driven by the official Python `a2a-sdk` client (protocol 1.0, JSON-RPC)
over real HTTP: an A2A client sends messages to an agent registered on the node, whose
worker (plain HTTP here) answers through its mailbox and task events; tasks stream, ask for
input, are answered, canceled, read back after a SIGKILL restart, and a stream resumed with
Last-Event-ID misses nothing."""
import asyncio
import json
import os
import sys
import threading
import urllib.request
import uuid

import httpx
import pytest
from a2a.client import A2ACardResolver, A2AClientError, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (CancelTaskRequest, GetTaskRequest, Message, Part, Role,
                               SendMessageRequest, SubscribeToTaskRequest, TaskState)
from a2a.utils.errors import (TaskNotCancelableError, TaskNotFoundError,
                              UnsupportedOperationError)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import TOKEN, Api, killed_and_restarted, start, wait_until  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, node_with  # noqa: E402,F401


class Worker:
    """Agent `worker`: takes tasks from its mailbox. "hello" gets an artifact and completes;
    "approve" asks for input, then completes with the answer; "slow" sends an artifact and
    stays working."""

    def __init__(self, api):
        self.api = api
        status, answer, _ = api.call("POST", "/v1/agents", {"card": {
            "name": "worker", "description": "echoes", "skills": [{"id": "echo", "tags": ["t"]}]}})
        assert status == 201, answer
        self.token = answer["token"]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def event(self, task, body, canceled_ok=False):
        status, answer, _ = self.api.call("POST", f"/v1/tasks/{task}/events", body,
                                          {"X-Agent-Token": self.token})
        # A task its requester canceled takes no more events.
        if canceled_ok and status == 409 and answer["error"]["code"] == "task_finished":
            return
        assert status == 200, answer

    def run(self):
        while not self.stop.is_set():
            status, answer, _ = self.api.call("POST", "/v1/agents/worker/mailbox/fetch",
                                              {"max": 10, "wait_ms": 500},
                                              {"X-Agent-Token": self.token})
            if status != 200:
                continue
            for m in answer["messages"]:
                task, text = m["body"]["task"], m["body"]["input"]["parts"][0]["text"]
                if text == "hello":
                    self.event(task, {"kind": "artifact", "data": f"echo: {text}"})
                    self.event(task, {"kind": "status", "state": "completed"})
                elif text == "approve":
                    self.event(task, {"kind": "status", "state": "input-required",
                                      "data": "approve?"})
                    threading.Thread(target=self.approval, args=(task,), daemon=True).start()
                elif text == "slow":
                    self.event(task, {"kind": "artifact", "data": "part one"}, canceled_ok=True)
                self.api.call("POST", "/v1/agents/worker/mailbox/ack", {"lease": m["lease"]},
                              {"X-Agent-Token": self.token})

    def approval(self, task):
        after = None
        while not self.stop.is_set():
            query = f"?wait_ms=1000" + (f"&after={after}" if after is not None else "")
            _, answer, _ = self.api.call("GET", f"/v1/tasks/{task}/events{query}")
            for e in answer["events"]:
                after = e["id"]
                if e["kind"] == "message" and e["by"] == "requester":
                    self.event(task, {"kind": "artifact", "data": e["data"]["parts"][0]["text"]})
                    self.event(task, {"kind": "status", "state": "completed"})
                    return


def text_message(text, **kw):
    return SendMessageRequest(message=Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER,
                                              parts=[Part(text=text)], **kw))


def a2a(node, body, token=TOKEN):
    """Runs `body(card, blocking_client, streaming_client)` against agent `worker`."""
    url = f"http://127.0.0.1:{node.ports['agent']}/a2a/worker"

    async def run():
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                     timeout=DEADLINE * 2) as http:
            card = await A2ACardResolver(http, url).get_agent_card()
            blocking = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
            streaming = ClientFactory(ClientConfig(httpx_client=http)).create(card)
            return await body(card, blocking, streaming)
    return asyncio.run(run())


def test_an_a2a_client_sends_streams_answers_and_cancels(node_with, tmp_path):
    node = start(node_with)
    worker = Worker(Api(node))

    async def client(card, blocking, streaming):
        assert card.name == "worker" and card.capabilities.streaming
        assert [s.id for s in card.skills] == ["echo"]
        # A blocking send waits for the task to end.
        [sent] = [r async for r in blocking.send_message(text_message("hello"))]
        task = sent.task
        assert TaskState.Name(task.status.state) == "TASK_STATE_COMPLETED", task
        assert [a.parts[0].text for a in task.artifacts] == ["echo: hello"]
        assert [(m.role, m.parts[0].text) for m in task.history] == [(Role.ROLE_USER, "hello")]
        # A streamed send: the snapshot, then updates until the task asks for input.
        kinds, states, asked = [], [], None
        async for ev in streaming.send_message(text_message("approve")):
            kind = ev.WhichOneof("payload")
            kinds.append(kind)
            if kind == "task":
                waiting = ev.task.id
            if kind == "status_update":
                states.append(TaskState.Name(ev.status_update.status.state))
                if ev.status_update.status.HasField("message"):
                    asked = ev.status_update.status.message.parts[0].text
        assert kinds[0] == "task" and states[-1] == "TASK_STATE_INPUT_REQUIRED", (kinds, states)
        assert asked == "approve?"
        # The answer goes to the task: the worker completes it with the answer.
        [answered] = [r async for r in blocking.send_message(
            text_message("yes, go", task_id=waiting))]
        assert TaskState.Name(answered.task.status.state) == "TASK_STATE_COMPLETED"
        assert [a.parts[0].text for a in answered.task.artifacts] == ["yes, go"]
        got = await streaming.get_task(GetTaskRequest(id=waiting))
        assert [m.parts[0].text for m in got.history] == ["approve", "approve?", "yes, go"]
        # Errors are A2A's.
        with pytest.raises(TaskNotFoundError):
            await streaming.get_task(GetTaskRequest(id="no-such-task"))
        with pytest.raises(TaskNotCancelableError):
            await streaming.cancel_task(CancelTaskRequest(id=waiting))
        with pytest.raises(UnsupportedOperationError):
            async for _ in streaming.subscribe(SubscribeToTaskRequest(id=waiting)):
                pass
        # A task still working is canceled.
        [slow] = [r async for r in blocking.send_message(
            SendMessageRequest(message=text_message("slow").message,
                               configuration={"return_immediately": True}))]
        canceled = await streaming.cancel_task(CancelTaskRequest(id=slow.task.id))
        assert TaskState.Name(canceled.status.state) == "TASK_STATE_CANCELED"
        return task.id
    done = a2a(node, client)
    worker.stop.set()
    worker.thread.join(DEADLINE)
    # The wrong token is refused before anything is read.
    with pytest.raises(Exception) as refused:
        a2a(node, client, token="wrong-token-000000000")
    assert "401" in str(refused.value) or "401" in repr(refused.value.__cause__)
    # Tasks survive a SIGKILL: read back whole after the restart.
    node = killed_and_restarted(node, tmp_path)

    async def after(card, blocking, streaming):
        got = await streaming.get_task(GetTaskRequest(id=done))
        return TaskState.Name(got.status.state), [a.parts[0].text for a in got.artifacts]
    assert a2a(node, after) == ("TASK_STATE_COMPLETED", ["echo: hello"])


def sse(req, last_event_id=None):
    """Sends `req` for Server-Sent Events: yields {"id"?, "event"?, "data" (JSON)} per event
    until the stream ends."""
    req.add_header("Accept", "text/event-stream")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if last_event_id is not None:
        req.add_header("Last-Event-ID", str(last_event_id))
    with urllib.request.urlopen(req, timeout=DEADLINE * 2) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        fields = {}
        for line in r:
            line = line.decode().rstrip("\n")
            if line.startswith(":"):
                continue
            if not line:
                if "data" in fields:
                    yield {**fields, "data": json.loads(fields["data"])}
                fields = {}
                continue
            key, _, value = line.partition(": ")
            fields[key] = value


def sse_frames(api, path, last_event_id=None):
    """A GET streamed as Server-Sent Events, event by event."""
    return sse(urllib.request.Request(api.base + path), last_event_id)


def sse_events(node, body, last_event_id=None):
    """Posts a JSON-RPC streaming request; yields (id, result) per SSE event until the
    stream ends."""
    req = urllib.request.Request(f"http://127.0.0.1:{node.ports['agent']}/a2a/worker",
                                 data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    for f in sse(req, last_event_id):
        yield f.get("id"), f["data"]["result"]


def test_a_resumed_stream_misses_no_update(node_with):
    node = start(node_with)
    api = Api(node)
    status, answer, _ = api.call("POST", "/v1/agents", {"card": {"name": "worker"}})
    assert status == 201, answer
    token = {"X-Agent-Token": answer["token"]}
    _, task, _ = api.call("POST", "/v1/tasks", {"agent": "worker", "input": {
        "messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "slow"}]}})
    submitted = task["events"][0]
    assert api.call("POST", f"/v1/tasks/{task['id']}/events",
                    {"kind": "artifact", "data": "one"}, token)[0] == 200
    subscribe = {"jsonrpc": "2.0", "id": 9, "method": "SubscribeToTask",
                 "params": {"id": task["id"]}}
    # A plain subscription starts with the task as it is.
    first_id, snapshot = next(sse_events(node, subscribe))
    assert first_id is None and [a["parts"] for a in snapshot["task"]["artifacts"]] == [
        [{"text": "one"}]]
    # A Last-Event-ID that is not one of the task's events is refused.
    req = urllib.request.Request(f"http://127.0.0.1:{node.ports['agent']}/a2a/worker",
                                 data=json.dumps(subscribe).encode(), method="POST")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Last-Event-ID", str(2 ** 64 - 1))
    with urllib.request.urlopen(req, timeout=DEADLINE) as r:
        assert json.loads(r.read())["error"]["code"] == -32602
    # Beyond A2A: resumed, every update after the Last-Event-ID, each with its id, until
    # the task ends.
    events = sse_events(node, subscribe, last_event_id=submitted)
    ids, updates = [], []
    for event_id, result in events:
        ids.append(int(event_id))
        updates.append(result)
        if len(updates) == 1:
            # Appended while the client is connected: streamed as they come.
            for body in ({"kind": "artifact", "data": "two"},
                         {"kind": "status", "state": "completed"}):
                assert api.call("POST", f"/v1/tasks/{task['id']}/events", body, token)[0] == 200
    assert ids == sorted(ids) and ids[0] > submitted and len(set(ids)) == 3
    assert [u["artifactUpdate"]["artifact"]["parts"] for u in updates[:2]] == [
        [{"text": "one"}], [{"text": "two"}]]
    assert updates[2]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    # A finished task is not subscribed to (A2A's rule): a JSON-RPC error, not a stream.
    req = urllib.request.Request(f"http://127.0.0.1:{node.ports['agent']}/a2a/worker",
                                 data=json.dumps(subscribe).encode(), method="POST")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=DEADLINE) as r:
        assert json.loads(r.read())["error"]["code"] == -32004


def test_bad_a2a_input_is_a_json_rpc_error(node_with):
    node = start(node_with)
    api = Api(node)
    assert api.call("POST", "/v1/agents", {"card": {"name": "worker"}})[0] == 201

    def rpc(body):
        req = urllib.request.Request(f"http://127.0.0.1:{node.ports['agent']}/a2a/worker",
                                     data=body, method="POST")
        req.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(req, timeout=DEADLINE) as r:
            return json.loads(r.read())["error"]["code"]
    assert rpc(b"{oops") == -32700
    assert rpc(b"[]") == -32600
    assert rpc(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "Nope"}).encode()) == -32601
    no_parts = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                "params": {"message": {"messageId": "m", "role": "ROLE_USER"}}}
    assert rpc(json.dumps(no_parts).encode()) == -32602
    status, answer, _ = api.call("GET", "/a2a/nobody/.well-known/agent-card.json")
    assert status == 404 and answer["error"]["code"] == "unknown_agent", answer
    m = node.metrics()
    for code in ("a2a_parse_error", "a2a_invalid_request", "a2a_unknown_method",
                 "a2a_bad_params"):
        assert m[f'strata_agent_errors_total{{code="{code}"}}'] >= 1, code
