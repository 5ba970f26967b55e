"""A consumer group member in its own process, for tests that kill it without warning:
consumes `topic` in group `group` and prints each record as `GOT <partition> <offset>`."""
import sys

from confluent_kafka import Consumer

bootstrap, topic, group = sys.argv[1:4]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
              "enable.auto.commit": False})
c.subscribe([topic])
while True:
    m = c.poll(0.5)
    if m is not None and not m.error():
        print(f"GOT {m.partition()} {m.offset()}", flush=True)
