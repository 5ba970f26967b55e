"""Debian's mosquitto_pub and mosquitto_sub against Strata, for MQTT 3.1, 3.1.1 and 5.0."""
import subprocess

import pytest

from conftest import DEADLINE


def run_sub(port, version, topic, count, qos):
    return subprocess.Popen(["mosquitto_sub", "-p", str(port), "-V", version, "-t", topic, "-C", str(count),
                             "-q", str(qos), "-v", "-W", str(int(DEADLINE))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pub(port, version, topic, message, qos, *extra):
    subprocess.run(["mosquitto_pub", "-p", str(port), "-V", version, "-t", topic, "-m", message,
                    "-q", str(qos), *extra], check=True, timeout=DEADLINE)


@pytest.mark.parametrize("version", ["mqttv31", "mqttv311", "mqttv5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_sub(node, version, qos):
    # A retained message first: once mosquitto_sub prints it, its subscription is in place.
    pub(node.port, version, f"cli/{version}/{qos}/ready", "ready", 1, "-r")
    sub = run_sub(node.port, version, f"cli/{version}/{qos}/#", 4, qos)
    lines = [sub.stdout.readline().strip()]
    assert lines[0] == f"cli/{version}/{qos}/ready ready"
    for i in range(3):
        pub(node.port, version, f"cli/{version}/{qos}/m", f"msg{i}", qos)
    out, err = sub.communicate(timeout=DEADLINE)
    lines += out.strip().splitlines()
    assert sub.returncode == 0, err
    assert lines[1:] == [f"cli/{version}/{qos}/m msg{i}" for i in range(3)]
