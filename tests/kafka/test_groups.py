"""A consumer group of three confluent-kafka members rebalancing while they consume: members
join one after another and one leaves midway; every record is processed, and none twice
across commits (each member commits after processing, synchronously, and on revocation)."""
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_support import DEADLINE, node, wait_until  # noqa: F401

TOTAL = 6000


def member(bootstrap, name, processed, lock, stop, ready):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rebalancers",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                  "client.id": name})
    pending = {}

    def commit_pending(consumer, partitions=None):
        if pending:
            from confluent_kafka import TopicPartition
            consumer.commit(offsets=[TopicPartition("work", p, o + 1) for p, o in pending.items()],
                            asynchronous=False)
            pending.clear()

    c.subscribe(["work"], on_revoke=lambda consumer, parts: commit_pending(consumer))
    ready.set()
    while not stop.is_set():
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        time.sleep(0.002)  # the work each record stands for, so consumption spans rebalances
        with lock:
            processed.append((m.partition(), m.offset(), name))
        pending[m.partition()] = m.offset()
        if len(processed) % 50 == 0:
            commit_pending(c)
    commit_pending(c)
    c.close()


def test_three_members_rebalance_without_loss_or_duplicates(node):
    a = AdminClient({"bootstrap.servers": node.bootstrap})
    for f in a.create_topics([NewTopic("work", num_partitions=6, replication_factor=1)]).values():
        f.result(DEADLINE)
    p = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 5})
    for i in range(TOTAL):
        p.produce("work", key=str(i), value=str(i))
    assert p.flush(DEADLINE) == 0

    processed, lock = [], threading.Lock()
    stops = [threading.Event() for _ in range(3)]
    threads = []
    for i in range(3):
        ready = threading.Event()
        t = threading.Thread(target=member, args=(node.bootstrap, f"m{i}", processed, lock,
                                                  stops[i], ready))
        t.start()
        threads.append(t)
        ready.wait(DEADLINE)
        # The next member joins while this one is consuming.
        wait_until("progress before the next member joins", lambda: len(processed) > (i + 1) * 300)
    # One member leaves midway; the others take over its partitions.
    stops[0].set()
    threads[0].join(DEADLINE)
    wait_until("every record processed", lambda: len({(p, o) for p, o, _ in processed}) >= TOTAL,
               deadline=DEADLINE * 8)
    for s in stops[1:]:
        s.set()
    for t in threads[1:]:
        t.join(DEADLINE)
    seen = {}
    for part, off, name in processed:
        assert (part, off) not in seen, f"{(part, off)} processed by {seen[(part, off)]} and {name}"
        seen[(part, off)] = name
    assert len(seen) == TOTAL
    assert {name for _, _, name in processed} == {"m0", "m1", "m2"}


def test_a_member_killed_without_leaving_is_expired_and_its_partitions_move(node):
    import os
    import subprocess
    import sys
    from confluent_kafka import Consumer

    a = AdminClient({"bootstrap.servers": node.bootstrap})
    for f in a.create_topics([NewTopic("expire", num_partitions=4, replication_factor=1)]).values():
        f.result(DEADLINE)
    p = Producer({"bootstrap.servers": node.bootstrap})
    for i in range(400):
        p.produce("expire", key=str(i), value=str(i))
    assert p.flush(DEADLINE) == 0
    member = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients", "group_member.py")
    victim = subprocess.Popen([sys.executable, member, node.bootstrap, "expire", "expiring"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    # The victim owns every partition once it prints a record.
    assert victim.stdout.readline().startswith("GOT ")
    survivor = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "expiring",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                         "heartbeat.interval.ms": 500, "enable.auto.commit": False})
    survivor.subscribe(["expire"])
    survivor.poll(0.5)
    victim.kill()  # no LeaveGroup: only the session timeout can take its partitions
    victim.wait()
    seen = set()
    deadline = time.time() + DEADLINE * 4
    while len({p for p, _ in seen}) < 4 and time.time() < deadline:
        m = survivor.poll(0.5)
        if m is not None and not m.error():
            seen.add((m.partition(), m.offset()))
    survivor.close()
    assert {p for p, _ in seen} == {0, 1, 2, 3}, "the survivor took over every partition"
