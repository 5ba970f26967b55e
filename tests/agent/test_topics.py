"""Agent topics over real HTTP: events read as JSON pages and as Server-Sent Events, resumed
with Last-Event-ID after a disconnect and after a SIGKILL restart, every event once and in
order; bad positions and too many streams refused."""
import json
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import TOKEN, Api, killed_and_restarted, start  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, node_with  # noqa: E402,F401


def publish(api, topic, data, kind=None):
    body = {"data": data} if kind is None else {"data": data, "type": kind}
    status, answer, _ = api.call("POST", f"/v1/topics/{topic}/events", body)
    assert status == 201, answer
    return answer["id"]


class Sse:
    """One Server-Sent Events connection, read event by event."""

    def __init__(self, api, topic, last_event_id=None, query=""):
        req = urllib.request.Request(f"{api.base}/v1/topics/{topic}/events{query}")
        req.add_header("Accept", "text/event-stream")
        req.add_header("Authorization", f"Bearer {TOKEN}")
        if last_event_id is not None:
            req.add_header("Last-Event-ID", str(last_event_id))
        self.r = urllib.request.urlopen(req, timeout=DEADLINE)
        assert self.r.headers["Content-Type"] == "text/event-stream"

    def next(self):
        """The next event as (id, type, data); comments are skipped."""
        fields = {}
        while True:
            line = self.r.readline().decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line == "":
                if "data" in fields:
                    return int(fields["id"]), fields.get("event"), json.loads(fields["data"])
                fields = {}
            elif not line.startswith(":"):
                k, _, v = line.partition(": ")
                fields[k] = v

    def close(self):
        self.r.close()


def test_events_read_as_pages_in_order(node_with):
    api = Api(start(node_with))
    ids = [publish(api, "news", {"n": i}, kind="tick" if i % 2 else None) for i in range(5)]
    assert ids == [0, 1, 2, 3, 4]
    status, page, _ = api.call("GET", "/v1/topics/news/events?from=0")
    assert status == 200 and page["next"] == 5
    assert [(e["id"], e["data"]["n"], e.get("type")) for e in page["events"]] == \
        [(0, 0, None), (1, 1, "tick"), (2, 2, None), (3, 3, "tick"), (4, 4, None)]
    status, page, _ = api.call("GET", "/v1/topics/news/events?from=1&max=2")
    assert [e["id"] for e in page["events"]] == [1, 2] and page["next"] == 3
    status, page, _ = api.call("GET", "/v1/topics/news/events?from=5")
    assert page == {"events": [], "next": 5}


def test_a_stream_resumes_after_the_last_event_id_with_nothing_lost_or_repeated(node_with):
    api = Api(start(node_with))
    for i in range(3):
        publish(api, "feed", {"n": i})
    s = Sse(api, "feed", query="?from=0")
    got = [s.next() for _ in range(2)]
    s.close()
    # Published while nobody listens, then resumed after the last id seen.
    for i in range(3, 6):
        publish(api, "feed", {"n": i})
    s = Sse(api, "feed", last_event_id=got[-1][0])
    got += [s.next() for _ in range(4)]
    # Live: an event published now arrives on the open stream.
    publish(api, "feed", {"n": 6}, kind="done")
    got.append(s.next())
    s.close()
    assert [g[0] for g in got] == list(range(7))
    assert [g[2]["data"]["n"] for g in got] == list(range(7))
    assert got[-1][1] == "done"


def test_a_stream_resumes_across_a_sigkill(node_with, tmp_path):
    node = start(node_with)
    api = Api(node)
    for i in range(10):
        publish(api, "durable", {"n": i})
    s = Sse(api, "durable", query="?from=0")
    seen = [s.next()[0] for _ in range(4)]
    s.close()
    again = killed_and_restarted(node, tmp_path)
    try:
        api = Api(again)
        s = Sse(api, "durable", last_event_id=seen[-1])
        seen += [s.next()[0] for _ in range(6)]
        s.close()
        assert seen == list(range(10))
    finally:
        assert again.stop() == 0


def test_bad_positions_and_too_many_streams_are_refused(node_with):
    node = node_with("[agent]\nmax_sse_clients = 1\n", STRATA_AGENT__ENABLED="true",
                     STRATA_AGENT__TOKEN=TOKEN)
    api = Api(node)
    publish(api, "t", {"n": 0})
    cases = [
        (api.call("GET", "/v1/topics/t/events?from=9"), 400, "bad_position"),
        (api.call("GET", "/v1/topics/t/events", headers={"Last-Event-ID": "abc"}), 400,
         "bad_position"),
        (api.call("GET", "/v1/topics/t/events?colour=red"), 400, "bad_query"),
        (api.call("POST", "/v1/topics/t/events", {"data": 1, "type": "a\nb"}), 400, "bad_type"),
    ]
    cases.append((api.call("GET", "/v1/topics/never/events"), 404, "unknown_topic"))
    for (status, answer, _), want_status, want_code in cases:
        assert status == want_status and answer["error"]["code"] == want_code, answer
    s = Sse(api, "t", query="?from=0")
    assert s.next()[0] == 0
    try:
        Sse(api, "t")
        raise AssertionError("a second stream was served")
    except urllib.error.HTTPError as e:
        assert e.code == 429 and json.loads(e.read())["error"]["code"] == "max_streams"
    s.close()
