"""The Java kafka-clients 4.4 producer and consumer (Maven Central, installed by
scripts/install-kafka.sh) against a real `strata serve`, with their default settings:
idempotent producer, acks=all, every codec, a consumer group and commits
(tests/kafka/clients/JavaClientCheck.java)."""
import os
import subprocess

from kafka_support import DEADLINE, node  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
LIBS = os.path.expanduser("~/.cache/strata/tools/kafka-4.4.0/libs")


def test_java_producer_and_consumer_with_defaults(node):
    out = subprocess.run(["java", "-cp", os.path.join(LIBS, "*"),
                          os.path.join(HERE, "clients", "JavaClientCheck.java"),
                          node.bootstrap, "java-topic", "1000"],
                         capture_output=True, text=True, timeout=DEADLINE * 6)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "OK 1000"
