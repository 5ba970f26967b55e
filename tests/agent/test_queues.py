"""Agent work queues over real HTTP (urllib, one request per connection) against a real
`strata serve`: priorities, leases, redelivery, idempotent sends, dead letters, a SIGKILL
restart, and bad input answered with JSON errors that are counted."""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, Node, node_with  # noqa: E402,F401

TOKEN = "agent-token-0123456789"
# The longest long-poll (the node bounds it at 50 s).
WAIT = 45000


class Api:
    def __init__(self, node, token=TOKEN):
        self.base = f"http://127.0.0.1:{node.ports['agent']}"
        self.token = token

    def call(self, method, path, body=None, headers=None, raw=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=DEADLINE * 2) as r:
                return r.status, json.loads(r.read() or b"null"), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), dict(e.headers)

    def send(self, queue, body, **kw):
        headers = {}
        if "idempotency_key" in kw:
            headers["Idempotency-Key"] = kw.pop("idempotency_key")
        return self.call("POST", f"/v1/queues/{queue}/messages", {"body": body, **kw}, headers)

    def fetch(self, queue, **kw):
        status, answer, _ = self.call("POST", f"/v1/queues/{queue}/fetch", kw)
        assert status == 200, answer
        return answer["messages"]

    def ack(self, queue, lease):
        return self.call("POST", f"/v1/queues/{queue}/ack", {"lease": lease})

    def describe(self, queue):
        status, answer, _ = self.call("GET", f"/v1/queues/{queue}")
        assert status == 200, answer
        return answer


def killed_and_restarted(node, tmp_path):
    """SIGKILLs `node` and starts it again on the same data and configuration."""
    node.proc.kill()
    node.proc.wait()
    config = (tmp_path / "strata.toml").read_text()
    return Node(tmp_path, config, {"STRATA_AGENT__ENABLED": "true", "STRATA_AGENT__TOKEN": TOKEN})


def start(node_with, config=""):
    return node_with(config, STRATA_AGENT__ENABLED="true", STRATA_AGENT__TOKEN=TOKEN)


def wait_until(what, done, deadline=DEADLINE * 4):
    end = time.time() + deadline
    while not done():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_most_urgent_goes_first_and_an_ack_is_final(node_with):
    api = Api(start(node_with))
    for body, priority in [("low", "low"), ("n1", "normal"), ("high", "high"), ("n2", "normal")]:
        status, answer, _ = api.send("jobs", {"task": body}, priority=priority, key=f"k-{body}",
                                     tags=["t"])
        assert status == 201 and not answer["duplicate"], answer
    got = api.fetch("jobs", max=10, lease_ms=60000)
    assert [m["body"]["task"] for m in got] == ["high", "n1", "n2", "low"]
    assert [m["priority"] for m in got] == [0, 1, 1, 2]
    assert got[0]["key"] == "k-high" and got[0]["tags"] == ["t"] and got[0]["attempt"] == 1
    assert api.describe("jobs") == {"name": "jobs", "storage": "local", "depth": 4, "in_flight": 4}
    for m in got[:3]:
        status, answer, _ = api.ack("jobs", m["lease"])
        assert status == 200 and answer["id"] == m["id"]
    # Settled once: the same lease cannot settle again.
    status, answer, _ = api.ack("jobs", got[0]["lease"])
    assert status == 404 and answer["error"]["code"] == "unknown_lease"
    assert api.describe("jobs")["depth"] == 1
    assert api.fetch("jobs", max=10) == []


def test_a_lapsed_lease_redelivers_and_its_holder_can_no_longer_ack(node_with):
    api = Api(start(node_with))
    api.send("work", {"n": 1})
    first = api.fetch("work", lease_ms=300)
    assert len(first) == 1
    # Another consumer waits: the message comes back to it once the lease lapses.
    second = api.fetch("work", lease_ms=60000, wait_ms=WAIT)
    assert [m["id"] for m in second] == [first[0]["id"]] and second[0]["attempt"] == 2
    status, answer, _ = api.ack("work", first[0]["lease"])
    assert status == 404 and answer["error"]["code"] == "unknown_lease"
    assert api.ack("work", second[0]["lease"])[0] == 200


def test_a_nack_with_a_delay_and_an_extended_lease(node_with):
    api = Api(start(node_with))
    api.send("later", {"n": 1})
    m = api.fetch("later", lease_ms=60000)[0]
    status, answer, _ = api.call("POST", "/v1/queues/later/extend",
                                 {"lease": m["lease"], "lease_ms": 120000})
    assert status == 200 and answer["lease_until_ms"] > m["lease_until_ms"]
    status, _, _ = api.call("POST", "/v1/queues/later/nack", {"lease": m["lease"], "delay_ms": 500})
    assert status == 200
    # Back after the delay, not before a long-poll asks for it.
    again = api.fetch("later", wait_ms=WAIT)
    assert [x["id"] for x in again] == [m["id"]] and again[0]["attempt"] == 2


def test_a_long_poll_returns_when_a_message_arrives(node_with):
    api = Api(start(node_with))
    # A send creates the queue; a fetch of one that does not exist answers 404.
    status, answer, _ = api.call("POST", "/v1/queues/poll/fetch", {})
    assert status == 404 and answer["error"]["code"] == "unknown_queue"
    api.send("poll", {"first": True})
    api.ack("poll", api.fetch("poll")[0]["lease"])
    got = []
    waiter = threading.Thread(target=lambda: got.extend(api.fetch("poll", wait_ms=45000)))
    waiter.start()
    wait_until("the node to hold the long-poll",
               lambda: api.describe("poll")["depth"] == 0 and waiter.is_alive())
    api.send("poll", {"hello": "world"})
    waiter.join(DEADLINE)
    assert not waiter.is_alive()
    assert [m["body"] for m in got] == [{"hello": "world"}]


def test_a_delayed_message_is_not_delivered_before_its_time(node_with):
    api = Api(start(node_with))
    status, sent, _ = api.send("delayed", {"n": 1}, delay_ms=800)
    assert status == 201
    api.send("delayed", {"n": 2})
    # Only the undelayed one now; the delayed one once its time has come.
    now = api.fetch("delayed", max=10)
    assert [m["body"] for m in now] == [{"n": 2}]
    later = api.fetch("delayed", max=10, wait_ms=WAIT)
    assert [m["id"] for m in later] == [sent["id"]] and later[0]["attempt"] == 1
    assert later[0]["not_before_ms"] <= int(time.time() * 1000)
    status, answer, _ = api.send("delayed", {"n": 3}, delay_ms=-1)
    assert status == 400 and answer["error"]["code"] == "bad_delay"


def test_an_expired_message_is_not_delivered_and_its_sender_hears_of_it(node_with):
    api = Api(start(node_with))
    status, sent, _ = api.send("short", {"n": 1}, ttl_ms=20)
    assert status == 201
    sent_by = time.time()
    # Once its time to live has passed by this clock (the node's is the same one).
    wait_until("the message's time to live to pass", lambda: time.time() > sent_by + 0.05)
    assert api.fetch("short", max=10) == []
    assert api.describe("short")["depth"] == 0
    status, failed, _ = api.call("GET", "/v1/topics/_failed-short/events?from=0")
    assert [(e["type"], e["data"]["id"], e["data"]["reason"]) for e in failed["events"]] == \
        [("delivery_failed", sent["id"], "expired")]


def test_a_retried_send_with_the_same_idempotency_key_is_stored_once(node_with):
    api = Api(start(node_with))
    first = api.send("once", {"n": 1}, idempotency_key="order-42")
    again = api.send("once", {"n": 1}, idempotency_key="order-42")
    other = api.send("once", {"n": 2}, idempotency_key="order-43")
    assert first[0] == 201 and again[0] == 200
    assert again[1] == {"id": first[1]["id"], "duplicate": True}
    assert other[1]["id"] != first[1]["id"]
    assert api.describe("once")["depth"] == 2


def test_too_many_deliveries_dead_letter_the_message(node_with):
    node = node_with("[agent]\nmax_deliveries = 2\n", STRATA_AGENT__ENABLED="true",
                     STRATA_AGENT__TOKEN=TOKEN)
    api = Api(node)
    api.send("poison", {"n": 1})
    for attempt in (1, 2):
        got = api.fetch("poison", lease_ms=200, wait_ms=WAIT)
        assert [m["attempt"] for m in got] == [attempt]
    wait_until("the message dead-lettered", lambda: api.describe("poison")["depth"] == 0)
    assert node.metrics()["strata_agent_dead_letters_total"] == 1
    assert api.fetch("poison", wait_ms=300) == []
    # Listed in the dead-letter queue, with why; its sender reads a delivery_failed event.
    status, dead, _ = api.call("GET", "/v1/queues/poison/dead-letters")
    assert status == 200 and len(dead["messages"]) == 1
    d = dead["messages"][0]
    assert d["reason"] == "max_deliveries" and d["message"]["body"] == {"n": 1}
    status, failed, _ = api.call("GET", "/v1/topics/_failed-poison/events?from=0")
    assert [(e["type"], e["data"]["id"]) for e in failed["events"]] == \
        [("delivery_failed", d["id"])]
    # Redriven: back in its queue, delivered afresh; the dead-letter queue is empty.
    status, answer, _ = api.call("POST", "/v1/queues/poison/dead-letters/redrive", {"max": 10})
    assert status == 200 and answer == {"redriven": 1}
    back = api.fetch("poison", wait_ms=WAIT)
    assert [m["body"] for m in back] == [{"n": 1}] and back[0]["attempt"] == 1
    assert api.call("GET", "/v1/queues/poison/dead-letters")[1] == {"messages": []}


def test_after_a_sigkill_only_what_was_not_acknowledged_comes_back(node_with, tmp_path):
    node = start(node_with)
    api = Api(node)
    ids = [api.send("durable", {"n": i})[1]["id"] for i in range(5)]
    got = api.fetch("durable", max=5, lease_ms=60000)
    for m in got[:2] + got[3:4]:
        assert api.ack("durable", m["lease"])[0] == 200
    again = killed_and_restarted(node, tmp_path)
    try:
        api = Api(again)
        back = api.fetch("durable", max=10, lease_ms=60000)
        assert sorted(m["id"] for m in back) == sorted([ids[2], ids[4]])
        assert {m["body"]["n"] for m in back} == {2, 4}
    finally:
        assert again.stop() == 0


def test_bad_input_gets_a_json_error_is_counted_and_changes_nothing(node_with):
    node = start(node_with)
    api = Api(node)
    assert api.send("q", {"n": 0})[0] == 201
    held = api.fetch("q", lease_ms=60000)[0]
    cases = [
        (api.call("POST", "/v1/queues/q/messages", {"body": 1, "color": "red"}), 400, "bad_json"),
        (api.call("POST", "/v1/queues/q/messages", raw=b"{not json"), 400, "bad_json"),
        # A send may carry up to max_claim_bytes (8 MiB: claim-checked), other requests
        # max_body_bytes (256 KiB).
        (api.call("POST", "/v1/queues/q/messages", raw=b'{"body": "' + b"x" * 9_000_000 + b'"}'),
         413, "too_large"),
        (api.call("POST", "/v1/queues/q/fetch", raw=b'{"max": 1, "x": "' + b"x" * 300000 + b'"}'),
         413, "too_large"),
        (api.call("POST", "/v1/queues/bad%2Fname/messages", {"body": 1}), 400, "bad_name"),
        (api.call("POST", "/v1/queues/q/ack", {"lease": "not-a-lease"}), 404, "unknown_lease"),
        (api.call("POST", "/v1/queues/q/fetch", {"max": 0}), 400, "bad_max"),
        (api.call("POST", "/v1/queues/q/nack", {"lease": held["lease"], "delay_ms": 10 ** 15}),
         400, "bad_delay"),
        (api.call("GET", "/v1/queues/never"), 404, "unknown_queue"),
        (api.call("POST", "/v1/queues/q/messages", {"body": 1, "ttl_ms": -5}), 400, "bad_ttl"),
        (Api(node, token="wrong-token-000000000").call("POST", "/v1/queues/q/messages",
                                                       {"body": 1}), 401, "unauthorized"),
        (Api(node, token=None).call("GET", "/v1/queues/q"), 401, "unauthorized"),
        (api.call("GET", "/v1/nothing/here"), 404, "not_found"),
    ]
    for (status, answer, _), want_status, want_code in cases:
        assert status == want_status and answer["error"]["code"] == want_code, answer
    assert api.describe("q") == {"name": "q", "storage": "local", "depth": 1, "in_flight": 1}
    assert api.ack("q", held["lease"])[0] == 200
    m = node.metrics()
    for code in ("bad_json", "too_large", "bad_name", "unknown_lease", "unauthorized"):
        assert m[f'strata_agent_errors_total{{code="{code}"}}'] >= 1, code


def test_a_full_queue_answers_429_with_retry_after(node_with):
    node = node_with("[agent]\nmax_queue_depth = 3\n", STRATA_AGENT__ENABLED="true",
                     STRATA_AGENT__TOKEN=TOKEN)
    api = Api(node)
    for i in range(3):
        assert api.send("small", {"n": i})[0] == 201
    status, answer, headers = api.send("small", {"n": 3})
    assert status == 429 and answer["error"]["code"] == "queue_full"
    assert headers.get("retry-after") == "1" or headers.get("Retry-After") == "1"
    # Room again once one is done.
    m = api.fetch("small")[0]
    api.ack("small", m["lease"])
    assert api.send("small", {"n": 3})[0] == 201


def test_many_leases_are_acked_at_once(node_with, tmp_path):
    node = start(node_with)
    api = Api(node)
    for n in range(3):
        api.send("batch", {"n": n})
    got = api.fetch("batch", max=10, lease_ms=60000)
    assert len(got) == 3
    status, answer, _ = api.call("POST", "/v1/queues/batch/ack",
                                 {"leases": [got[0]["lease"], got[1]["lease"], "bogus"]})
    assert status == 200 and answer == {"ids": [got[0]["id"], got[1]["id"]], "unknown": ["bogus"]}, answer
    for bad in ({"leases": []}, {}, {"lease": got[2]["lease"], "leases": [got[2]["lease"]]},
                {"leases": ["x"] * 101}):
        status, answer, _ = api.call("POST", "/v1/queues/batch/ack", bad)
        assert status == 400 and answer["error"]["code"] == "bad_lease", (bad, answer)
    assert api.describe("batch")["depth"] == 1
    # What a batch acked stays done after a SIGKILL.
    node = killed_and_restarted(node, tmp_path)
    api = Api(node)
    assert [m["body"]["n"] for m in api.fetch("batch", max=10)] == [2]
