"""Tasks over real HTTP: a requester creates a task for an agent, the agent finds it in its
mailbox and reports status, artifacts and a request for input, the requester waits,
answers, reads the events with resume, and all of it survives a SIGKILL."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_agents import card, register  # noqa: E402
from test_queues import TOKEN, Api, killed_and_restarted, start, wait_until  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import node_with  # noqa: E402,F401


def worker(api, name):
    token = register(api, card(name, "work"))[1]["token"]
    return {"X-Agent-Token": token}


def take_task(api, name, me):
    status, got, _ = api.call("POST", f"/v1/agents/{name}/mailbox/fetch", {"wait_ms": 30000}, me)
    assert status == 200 and len(got["messages"]) == 1, got
    m = got["messages"][0]
    assert api.call("POST", f"/v1/agents/{name}/mailbox/ack", {"lease": m["lease"]}, me)[0] == 200
    return m["body"]


def report(api, task, me, kind, state=None, data=None):
    body = {"kind": kind, "data": data}
    if state:
        body["state"] = state
    status, answer, _ = api.call("POST", f"/v1/tasks/{task}/events", body, me)
    assert status == 200, answer
    return answer


def test_a_task_goes_through_input_required_to_completed(node_with):
    api = Api(start(node_with))
    me = worker(api, "w1")
    status, task, _ = api.call("POST", "/v1/tasks", {"agent": "w1", "input": {"q": "2+2"}})
    assert status == 201 and task["state"] == "submitted"
    got = take_task(api, "w1", me)
    assert got == {"task": task["id"], "input": {"q": "2+2"}}
    report(api, task["id"], me, "status", "working")
    report(api, task["id"], me, "artifact", data={"partial": 4})
    # The requester waits until the agent needs something.
    waited = {}
    t = threading.Thread(target=lambda: waited.update(
        api.call("GET", f"/v1/tasks/{task['id']}/wait?wait_ms=45000")[1]))
    t.start()
    report(api, task["id"], me, "status", "input-required", {"question": "approve?"})
    t.join(60)
    assert waited["state"] == "input-required"
    # Only a task waiting for input takes an answer.
    status, answer, _ = api.call("POST", f"/v1/tasks/{task['id']}/respond", {"data": "yes"})
    assert status == 200 and answer["state"] == "working"
    status, answer, _ = api.call("POST", f"/v1/tasks/{task['id']}/respond", {"data": "again"})
    assert status == 409 and answer["error"]["code"] == "no_input_required"
    report(api, task["id"], me, "status", "completed", {"answer": 4})
    status, done, _ = api.call("GET", f"/v1/tasks/{task['id']}/wait?wait_ms=45000")
    assert done["state"] == "completed"
    status, page, _ = api.call("GET", f"/v1/tasks/{task['id']}/events")
    kinds = [(e["kind"], e.get("state"), e["by"]) for e in page["events"]]
    assert kinds == [("status", "submitted", "requester"), ("status", "working", "agent"),
                     ("artifact", None, "agent"), ("status", "input-required", "agent"),
                     ("message", None, "requester"), ("status", "completed", "agent")]
    # Resumed after an event: only those after it.
    status, later, _ = api.call("GET", f"/v1/tasks/{task['id']}/events?after={page['events'][3]['id']}")
    assert [e["kind"] for e in later["events"]] == ["message", "status"]
    # Finished: nothing more.
    status, answer, _ = api.call("POST", f"/v1/tasks/{task['id']}/events",
                                 {"kind": "message", "data": 1}, me)
    assert status == 409 and answer["error"]["code"] == "task_finished"


def test_only_the_tasks_agent_reports_and_bad_events_are_refused(node_with):
    api = Api(start(node_with))
    me = worker(api, "w2")
    other = worker(api, "w3")
    task = api.call("POST", "/v1/tasks", {"agent": "w2", "input": 1})[1]
    status, answer, _ = api.call("POST", f"/v1/tasks/{task['id']}/events",
                                 {"kind": "status", "state": "completed"}, other)
    assert status == 403 and answer["error"]["code"] == "not_owner"
    status, answer, _ = api.call("POST", f"/v1/tasks/{task['id']}/events", {"kind": "dance"}, me)
    assert status == 400 and answer["error"]["code"] == "bad_event"
    status, answer, _ = api.call("POST", "/v1/tasks", {"agent": "nobody"})
    assert status == 404 and answer["error"]["code"] == "unknown_agent"
    assert api.call("GET", "/v1/tasks/0123")[0] == 404
    status, answer, _ = api.call("POST", f"/v1/tasks/{task['id']}/cancel")
    assert status == 200 and answer["state"] == "canceled"


def test_a_task_survives_a_sigkill(node_with, tmp_path):
    node = start(node_with)
    api = Api(node)
    me = worker(api, "w4")
    task = api.call("POST", "/v1/tasks", {"agent": "w4", "input": "long job"})[1]
    take_task(api, "w4", me)
    report(api, task["id"], me, "status", "working")
    again = killed_and_restarted(node, tmp_path)
    try:
        api = Api(again)
        status, got, _ = api.call("GET", f"/v1/tasks/{task['id']}")
        assert status == 200 and got["state"] == "working"
        report(api, task["id"], me, "status", "completed", "done")
        status, page, _ = api.call("GET", f"/v1/tasks/{task['id']}/events")
        assert [e.get("state") for e in page["events"]] == ["submitted", "working", "completed"]
    finally:
        assert again.stop() == 0


def test_a_name_registered_again_is_another_agent(node_with):
    api = Api(start(node_with))
    old = worker(api, "reborn")
    task = api.call("POST", "/v1/tasks", {"agent": "reborn", "input": "secret"})[1]
    assert api.call("DELETE", "/v1/agents/reborn", headers=old)[0] == 200
    new = worker(api, "reborn")
    # The new holder of the name sees neither the old mailbox nor the old task.
    status, got, _ = api.call("POST", "/v1/agents/reborn/mailbox/fetch", {}, new)
    assert status == 200 and got["messages"] == []
    status, answer, _ = api.call("POST", f"/v1/tasks/{task['id']}/events",
                                 {"kind": "status", "state": "completed"}, new)
    assert status == 403 and answer["error"]["code"] == "not_owner"


def test_a_tasks_events_stream_as_server_sent_events_and_resume(node_with):
    from test_a2a import sse_frames
    api = Api(start(node_with))
    me = worker(api, "streamer")
    _, task, _ = api.call("POST", "/v1/tasks", {"agent": "streamer", "input": {"x": 1}})
    frames = sse_frames(api, f"/v1/tasks/{task['id']}/events")
    first = next(frames)
    assert first["event"] == "status" and first["data"]["state"] == "submitted"
    # Appended while the client is connected: streamed as they come, then the end.
    report(api, task["id"], me, "artifact", data="half")
    report(api, task["id"], me, "status", "completed")
    rest = list(frames)
    assert [(f["event"], f["data"].get("state")) for f in rest] == [
        ("artifact", None), ("status", "completed")]
    ids = [int(f["id"]) for f in [first, *rest]]
    assert ids == sorted(ids) and len(set(ids)) == 3
    # Resumed after the first: the others again, then the end (the task is over).
    again = list(sse_frames(api, f"/v1/tasks/{task['id']}/events", last_event_id=ids[0]))
    assert [int(f["id"]) for f in again] == ids[1:]


def test_finished_tasks_are_deleted_after_their_retention(node_with):
    node = start(node_with, "[agent]\ntask_retention_ms = 1\nmax_tasks = 2\n")
    api = Api(node)
    me = worker(api, "short")
    done = api.call("POST", "/v1/tasks", {"agent": "short"})[1]["id"]
    open_one = api.call("POST", "/v1/tasks", {"agent": "short"})[1]["id"]
    status, answer, _ = api.call("POST", "/v1/tasks", {"agent": "short"})
    assert status == 429 and answer["error"]["code"] == "max_tasks", answer
    report(api, done, me, "status", "completed")
    # Deleted by the next sweep (every 10 s); the unfinished one stays, and the node takes
    # a new task in the room it left.
    wait_until("the finished task deleted",
               lambda: api.call("GET", f"/v1/tasks/{done}")[0] == 404)
    assert api.call("GET", f"/v1/tasks/{done}")[1]["error"]["code"] == "unknown_task"
    assert api.call("GET", f"/v1/tasks/{open_one}")[1]["state"] == "submitted"
    assert api.call("POST", "/v1/tasks", {"agent": "short"})[0] == 201
