"""kafkajs 2.2.4 (npm) against a real `strata serve`: admin, idempotent producer with and
without GZIP, a consumer group, committed offsets (tests/kafka/clients/kafkajs_check.js)."""
import os
import subprocess

from kafka_support import DEADLINE, node  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))


def test_kafkajs_produces_consumes_and_commits(node):
    out = subprocess.run(["node", os.path.join(HERE, "clients", "kafkajs_check.js"),
                          node.bootstrap, "js-topic", "1000"],
                         capture_output=True, text=True, timeout=DEADLINE * 4)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "OK 1000"
