"""Debian's kcat, with its librdkafka 2.0.2 (which mis-parses tagged fields holding their
default: the broker must not write them) and with the current librdkafka 2.16 of the
confluent-kafka wheel, and kafka-python 3.0 against a real `strata serve`."""
import glob
import os
import subprocess

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from kafka_support import DEADLINE, node  # noqa: F401


def current_librdkafka(tmp_path_factory):
    """A directory where librdkafka.so.1 is the confluent-kafka wheel's librdkafka."""
    import confluent_kafka
    libs = os.path.join(os.path.dirname(os.path.dirname(confluent_kafka.__file__)),
                        "confluent_kafka.libs")
    found = glob.glob(os.path.join(libs, "librdkafka-*.so.1"))
    assert found, f"no librdkafka in {libs}"
    d = tmp_path_factory.mktemp("librdkafka")
    os.symlink(found[0], d / "librdkafka.so.1")
    return str(d)


def kcat(*args, stdin=None, lib=None):
    env = dict(os.environ)
    if lib:
        env["LD_LIBRARY_PATH"] = lib
    return subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True,
                          timeout=DEADLINE * 2, env=env)


def test_kcat_with_the_current_librdkafka(node, tmp_path_factory):
    lib = current_librdkafka(tmp_path_factory)
    assert "librdkafka 2.16" in kcat("-V", lib=lib).stdout
    lines = [f"zstd-line-{i}" for i in range(200)]
    out = kcat("-b", node.bootstrap, "-P", "-t", "kc-new", "-z", "zstd",
               stdin="\n".join(lines) + "\n", lib=lib)
    assert out.returncode == 0, out.stderr
    out = kcat("-b", node.bootstrap, "-C", "-t", "kc-new", "-o", "beginning", "-e", "-q", lib=lib)
    assert out.stdout.splitlines() == lines, out.stderr


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4"])
def test_kcat_produces_lists_and_consumes(node, codec):
    lines = [f"{codec}-line-{i}" for i in range(200)]
    out = kcat("-b", node.bootstrap, "-P", "-t", f"kc-{codec}", "-z", codec,
               stdin="\n".join(lines) + "\n")
    assert out.returncode == 0, out.stderr
    out = kcat("-b", node.bootstrap, "-C", "-t", f"kc-{codec}", "-o", "beginning", "-e", "-q")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == lines
    out = kcat("-b", node.bootstrap, "-L", "-t", f"kc-{codec}")
    assert f'topic "kc-{codec}" with 1 partitions' in out.stdout, out.stdout


def test_kafka_python_produces_consumes_and_administers(node):
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    admin.create_topics([NewTopic("kp", num_partitions=2, replication_factor=1)])
    assert "kp" in admin.list_topics()
    producer = KafkaProducer(bootstrap_servers=node.bootstrap, acks="all",
                             compression_type="gzip")
    for i in range(300):
        producer.send("kp", key=str(i % 4).encode(), value=f"kp-{i}".encode())
    producer.flush(DEADLINE)
    producer.close()
    consumer = KafkaConsumer("kp", bootstrap_servers=node.bootstrap, group_id="kp-group",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=int(DEADLINE * 1000))
    got = []
    for m in consumer:
        got.append(m.value.decode())
        if len(got) == 300:
            break
    consumer.commit()
    consumer.close()
    assert sorted(got) == sorted(f"kp-{i}" for i in range(300))
    offsets = admin.list_group_offsets("kp-group")["kp-group"]
    assert sum(o.offset for o in offsets.values()) == 300
    admin.delete_topics(["kp"])
    assert "kp" not in admin.list_topics()
    admin.close()
