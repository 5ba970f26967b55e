"""Messages that must be kept (QoS 1/2, retained) are in the journal once acknowledged:
read back offline with `strata journal dump` after the node stops. QoS 0 messages are not
stored."""
import json
import subprocess

from conftest import Client, strata_bin


def dump(data_dir):
    out = subprocess.run([strata_bin(), "journal", "inspect", str(data_dir), "--json"],
                         check=True, capture_output=True, text=True).stdout
    streams = {s["stream"]: s for s in json.loads(out)}
    stream = streams["mqtt.messages"]
    records = []
    for p in stream["partitions"]:
        out = subprocess.run([strata_bin(), "journal", "dump", str(data_dir), "--stream", "mqtt.messages",
                              "--partition", str(p["partition"]), "--count", "1000", "--json"],
                             check=True, capture_output=True, text=True).stdout
        records += [json.loads(line) for line in out.splitlines()]
    return records


def test_acknowledged_messages_are_in_the_journal(node):
    c = Client(node.port, client_id="storer")
    for i in range(5):
        c.publish("kept/q1", f"one-{i}".encode(), 1)
    c.publish("kept/q2", b"two", 2)
    c.publish("kept/retained", b"sticky", 0, retain=True)
    c.publish("kept/q0", b"fleeting", 0)
    c.expect_none()  # a QoS 1 round trip through the broker: everything before it is handled
    c.close()
    assert node.stop() == 0
    records = dump(node.data_dir)
    values = {(r["key"], r["value"]) for r in records}
    for i in range(5):
        assert ('"kept/q1"', f'"one-{i}"') in values
    assert ('"kept/q2"', '"two"') in values
    assert ('"kept/retained"', '"sticky"') in values
    assert not any(r["key"] == '"kept/q0"' for r in records), "QoS 0 is not stored"
    q1 = next(r for r in records if r["key"] == '"kept/q1"')
    headers = {h["key"]: h["value"] for h in q1["headers"]}
    assert headers["mqtt.qos"] == "0x01" and headers["mqtt.client"] == '"storer"'
