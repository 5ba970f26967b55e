"""The admin API's node, stream and log endpoints against a real node: status and
effective configuration (secrets masked), streams and partitions with their tiers (an
offloading node with a filesystem object store), JSON errors, and the log level raised at
runtime for one client id or one topic with real MQTT and Kafka clients."""
import json
import time
import urllib.request

from confluent_kafka import Consumer, Producer

from admin_support import (  # noqa: F401 (fixtures)
    DEADLINE, admin_cli, Api, assert_error, Client, node, node_with, offloading_node, wait_until)


def test_status_and_masked_config(node_with):
    n = node_with('[kafka]\nsasl_plain_users = { alice = "pw-secret-1" }\n')
    api = Api(n)
    status = api.ok("node")
    assert status["frontends"] == ["mqtt", "kafka", "agent"]
    listeners = {x["name"]: x["address"] for x in status["listeners"]}
    assert listeners["admin"] == f"127.0.0.1:{n.admin_port}"
    assert listeners["mqtt"] == f"127.0.0.1:{n.port}"
    assert listeners["kafka"] == f"127.0.0.1:{n.kafka_port}"
    assert status["data_dir"] == str(n.data_dir)
    config = api.ok("node", "config")
    assert config["admin"]["listen"] == "127.0.0.1:0"
    assert config["kafka"]["sasl_plain_users"] == {"alice": "***"}
    assert "pw-secret-1" not in json.dumps(config)
    code, out, err = admin_cli(n, "status")
    assert code == 0 and "kafka" in out and str(n.admin_port) in out, err
    code, out, err = admin_cli(n, "config")
    assert code == 0 and json.loads(out)["node"]["data_dir"] == str(n.data_dir), err


def test_token_guards_the_api_but_not_health_or_metrics(node_with):
    token = "s3cret-admin-token-0123"
    n = node_with(f'[admin]\ntoken = "{token}"\n')
    anonymous, wrong, right = Api(n), Api(n, token="not-the-token-at-all"), Api(n, token)
    for api in (anonymous, wrong):
        assert_error(api.get("node"), 401, "unauthorized")
        assert_error(api.delete("mqtt", "sessions", "x"), 401, "unauthorized")
    assert right.ok("node")["frontends"] == ["mqtt", "kafka", "agent"]
    assert right.ok("node", "config")["admin"]["token"] == "***"
    for path in ("/health", "/metrics"):
        with urllib.request.urlopen(anonymous.base + path, timeout=DEADLINE) as r:
            assert r.status == 200
    code, out, err = admin_cli(n, "status")
    assert code == 1 and "unauthorized" in err
    code, out, err = admin_cli(n, "status", token=token)
    assert code == 0 and "kafka" in out, err
    assert n.metrics()['strata_admin_requests_total{method="GET",route="/api/v1/node",status="401"}'] == 3


def test_streams_partitions_and_tiers(node_with, tmp_path):
    n = offloading_node(node_with, tmp_path)
    api = Api(n)
    p = Producer({"bootstrap.servers": n.bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    for i in range(200):
        p.produce("tiered", value=b"v" * 200, key=b"k%d" % i)
        p.flush(DEADLINE)

    def offloaded():
        part = api.ok("streams", "tiered", "partitions", 0)
        remote = [s for s in part["segments"] if s["location"] == "remote"]
        return remote and part
    part = wait_until("segments uploaded and their local copies dropped", offloaded, DEADLINE * 2)
    view = part["partition"]
    assert (view["log_start"], view["end_offset"]) == (0, 200)
    assert view["remote_segments"] >= 1 and view["remote_bytes"] > 0
    assert view["local_segments"] + view["remote_segments"] + view["both_segments"] == view["segments"]
    for s in part["segments"]:
        if s["location"] == "remote":
            assert s["file"] is None and s["object_key"]
    assert part["segments"][-1]["location"] == "local", "the active segment stays local"

    detail = api.ok("streams", "tiered")
    assert detail["stream"]["class"] == "segment" and detail["stream"]["records"] == 200
    assert detail["stream"]["config"]["offload"] is not None
    assert [x["partition"] for x in detail["partitions"]] == [0]
    listed = {s["name"]: s for s in api.ok("streams")}
    assert listed["tiered"]["size_bytes"] == detail["stream"]["size_bytes"] > 200 * 200

    # A consumer reading from the start reads the remote segments back.
    c = Consumer({"bootstrap.servers": n.bootstrap, "group.id": "replay",
                  "auto.offset.reset": "earliest"})
    c.subscribe(["tiered"])
    got = 0
    end = time.time() + DEADLINE * 2
    while got < 200 and time.time() < end:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.close()
    assert got == 200
    # Through the block cache (the upload left the blocks in its memory tier).
    reads = sum(v for k, v in n.metrics().items() if k.startswith("strata_tier_block_reads_total"))
    assert reads >= 1

    assert_error(api.get("streams", "nope"), 404, "not_found")
    assert_error(api.get("streams", "tiered", "partitions", 9), 404, "not_found")
    assert_error(api.get("streams", "tiered", "partitions", "x"), 400, "bad_request")
    code, out, err = admin_cli(n, "streams", "partition", "tiered", "0")
    assert code == 0 and "remote" in out, err
    code, out, err = admin_cli(n, "streams", "list")
    assert code == 0 and "tiered" in out, err


def test_errors_are_json(node):
    api = Api(node).started()
    assert_error(api.get("no", "such", "route"), 404, "not_found")
    assert_error(api.request("PATCH", api.url("log", "level")), 405, "method_not_allowed")
    assert_error(api.request("POST", api.url("log", "overrides"), b"{not json"), 400, "bad_request")
    assert_error(api.request("POST", api.url("log", "overrides"), b"{}", content_type="text/plain"),
                 415, "unsupported_media_type")
    assert_error(api.post("log", "overrides", body={"client_id": "a", "topic": "b", "level": "debug"}),
                 400, "bad_request")
    assert_error(api.post("log", "overrides", body={"client_id": "a", "level": "loud"}),
                 400, "bad_request")
    assert_error(api.post("log", "overrides", body={"client_id": "a", "level": "debug", "ttl_secs": 0}),
                 400, "bad_request")
    assert_error(api.delete("log", "overrides", "abc"), 400, "bad_request")
    assert_error(api.delete("log", "overrides", 999), 404, "not_found")
    assert_error(api.put("log", "level", body={"level": "inof"}), 400, "bad_request")
    code, out, err = admin_cli(node, "mqtt", "client", "nobody")
    assert code == 1 and "not_found" in err and out == ""


class Log:
    """The node's JSON log lines, read as they come."""

    def __init__(self, path):
        self.path = path

    def lines(self):
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_for(self, what, match):
        return wait_until(what, lambda: [x for x in self.lines() if match(x)])


def span_client(line):
    return [s.get("client_id") for s in line.get("spans", [])]


def test_log_level_raised_for_one_client_and_one_topic(node_with, tmp_path):
    log = Log(tmp_path / "node.log")
    n = node_with('[log]\nformat = "json"\n', log_path=log.path)
    api = Api(n)
    noisy = Client(n.port, client_id="noisy")
    quiet = Client(n.port, client_id="quiet")
    try:
        status, o = api.post("log", "overrides", body={"client_id": "noisy", "level": "debug"})
        assert status == 201 and o["client_id"] == "noisy" and o["level"] == "debug"
        noisy.publish("plain/n", b"1", 1)
        quiet.publish("plain/q", b"1", 1)
        log.wait_for("noisy's publish at debug", lambda x: x["level"] == "DEBUG"
                     and x.get("topic") == "plain/n" and "noisy" in span_client(x))

        status, t = api.post("log", "overrides", body={"topic": "watch/me", "level": "trace",
                                                        "ttl_secs": 600})
        assert status == 201 and 0 < t["expires_in_secs"] <= 600
        quiet.publish("watch/me", b"1", 1)
        log.wait_for("the watched topic at debug", lambda x: x["level"] == "DEBUG"
                     and x.get("topic") == "watch/me" and "quiet" in span_client(x))
        state = api.ok("log")
        assert state["level"] == "info" and {x["id"] for x in state["overrides"]} == {o["id"], t["id"]}

        for override in (o, t):
            status, _ = api.delete("log", "overrides", override["id"])
            assert status == 204
        assert api.ok("log")["overrides"] == []
        noisy.publish("plain/after", b"1", 1)
        quiet.publish("watch/me", b"2", 1)
        # An info line written after those publishes bounds the wait below.
        status, _ = api.put("log", "level", body={"level": "info"})
        assert status == 200
        log.wait_for("the level change", lambda x: x.get("message") == "log level changed by the admin API")
        debug = [x for x in log.lines() if x["level"] == "DEBUG"]
        assert len([x for x in debug if x.get("topic") == "plain/n"]) == 1, "one line per publish"
        assert not [x for x in debug if x.get("topic") == "plain/after"], debug
        assert len([x for x in debug if x.get("topic") == "watch/me"]) == 1, debug
        assert not [x for x in debug if "quiet" in span_client(x) and x.get("topic") != "watch/me"]
        # Nothing per message at info.
        assert not [x for x in log.lines() if x["level"] == "INFO" and x.get("topic")]

        # A Kafka client id.
        status, _ = api.post("log", "overrides", body={"client_id": "kprod", "level": "debug"})
        assert status == 201
        p = Producer({"bootstrap.servers": n.bootstrap, "client.id": "kprod"})
        p.produce("ktopic", b"v")
        assert p.flush(DEADLINE) == 0
        line = log.wait_for("the Kafka producer's batch at debug", lambda x: x["level"] == "DEBUG"
                            and x.get("message") == "batch stored" and "kprod" in span_client(x))[0]
        assert line["topic"] == "ktopic" and line["partition"] == 0

        # The base level itself, through the CLI.
        code, out, err = admin_cli(n, "log", "level", "warn")
        assert code == 0 and "warn" in out, err
        assert api.ok("log")["level"] == "warn"
    finally:
        noisy.close()
        quiet.close()


def test_a_node_alone_is_a_cluster_of_one(node):
    """Without [cluster] the node runs the meta service as its only voter, leads it, and
    registers itself with its client listeners."""
    api = Api(node)
    wait_until("the node to register with the meta service",
               lambda: api.ok("cluster", "nodes")["nodes"])
    cluster = api.ok("cluster", "nodes")
    assert cluster["node_id"] == 1 and cluster["leader"] == 1 and cluster["term"] >= 1
    [me] = cluster["nodes"]
    assert me["id"] == 1 and me["state"] == "active"
    assert me["listeners"]["kafka"] == f"127.0.0.1:{node.kafka_port}"
    assert me["listeners"]["mqtt"] == f"127.0.0.1:{node.port}"
    assert (node.data_dir / "meta").is_dir()
    code, out, err = admin_cli(node, "cluster", "nodes")
    assert code == 0 and "meta leader 1" in out and str(node.kafka_port) in out, err


def test_a_disabled_frontends_routes_say_so_behind_the_token(node_with):
    token = "s3cret-admin-token-0123"
    n = node_with(f'[admin]\ntoken = "{token}"\n[kafka]\nenabled = false\n')
    assert n.kafka_port is None
    api = Api(n, token)
    assert api.ok("node")["frontends"] == ["mqtt", "agent"]
    for path in (("kafka", "groups"), ("kafka", "groups", "g1"), ("kafka",)):
        assert_error(api.get(*path), 404, "disabled")
        assert_error(Api(n).get(*path), 401, "unauthorized")
    assert_error(api.delete("kafka", "groups", "g1"), 404, "disabled")
