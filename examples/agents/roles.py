"""The agents of the example, one per process: `python3 roles.py <role> <name>`.

Every role reads where the node is from the environment (STRATA_AGENT_URL, STRATA_TOKEN,
STRATA_POOL_TOKEN, STRATA_MQTT_PORT, STRATA_KAFKA) and prints one line per thing it does.
Every call that meets a node restarting waits and tries again: the node keeps the queues,
topics and tasks, so the agents go on where they were."""
import json
import os
import queue
import sys
import threading
import time

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "sdk", "python"))
from strata_agent import Client, StrataError  # noqa: E402

URL = os.environ.get("STRATA_AGENT_URL", "http://127.0.0.1:8090")
TOKEN = os.environ.get("STRATA_TOKEN")
POOL_TOKEN = os.environ.get("STRATA_POOL_TOKEN")
# Jobs are leased this long: a worker that dies holding one gives it up this soon.
LEASE_MS = 5000
# How long one job takes a worker.
WORK_S = float(os.environ.get("STRATA_WORK_S", "1.0"))


def say(who, what):
    print(f"[{who}] {what}", flush=True)


def patient(call, *args, **kw):
    """`call(*args, **kw)`, tried again while the node cannot answer (restarting)."""
    while True:
        try:
            return call(*args, **kw)
        except httpx.TransportError:
            pass
        except StrataError as e:
            if e.status < 500:
                raise
        time.sleep(0.3)


def answer(n):
    """What job `n` computes (deterministic: no model needed)."""
    return sum(i * i for i in range(n + 1))


# The planner: creates a task per job, dispatches each to the shared work queue, follows
# every task's events until all are done, takes the MQTT worker's results from queue
# `results`, and publishes every finished result to topic `results` (which Kafka reads).

def planner(jobs, approval_job):
    c = Client(URL, token=TOKEN, agent_token=POOL_TOKEN)
    tasks = {}
    for n in range(jobs):
        t = patient(c.create_task, "pool", {"job": n, "approval": n == approval_job})
        tasks[t.id] = n
        say("planner", f"task {t.id} created for job {n}")
    # Each task landed in the pool's mailbox: dispatch it to the shared work queue (the
    # task id as idempotency key: a dispatch retried after a restart is stored once).
    dispatched = 0
    while dispatched < jobs:
        for m in patient(c.fetch, mailbox="pool", max=10, wait_ms=1000):
            task, job = m.body["task"], m.body["input"]
            patient(c.send, "jobs", {"task": task, **job}, idempotency_key=task)
            patient(c.publish, "plan", {"task": task, **job})
            try:
                patient(c.ack, m.lease, mailbox="pool")
            except StrataError:
                pass  # The lease lapsed meanwhile: the next dispatch is a duplicate, stored once.
            dispatched += 1
    say("planner", f"{jobs} jobs on queue 'jobs'")
    done = threading.Event()
    results, finished = {}, set()
    lock = threading.Lock()

    def follow(task):
        after = None
        while True:
            try:
                state, events = c.task_events(task, after, wait_ms=20000)
            except (httpx.TransportError, StrataError):
                time.sleep(0.3)
                continue
            for e in events:
                after = e.id
                detail = e.state or e.kind
                say("planner", f"task {task} (job {tasks[task]}): {e.kind} {detail} "
                               f"{json.dumps(e.data)}")
                if e.kind == "artifact":
                    with lock:
                        results[task] = e.data
            if state in ("completed", "failed", "canceled") and not events:
                with lock:
                    result = results.get(task)
                    finished.add(task)
                    count = len(finished)
                patient(c.publish, "results", {"task": task, "job": tasks[task],
                                               "state": state, "result": result})
                say("planner", f"finished {count}/{jobs}")
                return

    def gate(task, n):
        # A job a worker could not ask approval for: the planner asks, and once the task
        # is answered puts the job back on the queue, approved.
        if not approved(c, task) and patient(c.task, task).state != "input-required":
            patient(c.report, task, "status", state="input-required",
                    data={"question": f"may job {n} be published?"})
        if approved(c, task, wait=True):
            patient(c.send, "jobs", {"task": task, "job": n, "approval": True,
                                     "approved": True}, idempotency_key=f"{task}-approved")
            say("planner", f"job {n} approved: back on the queue")

    def collect():
        # Results the MQTT worker published to queue `results`: the planner reports them
        # on their tasks (the MQTT worker speaks MQTT only).
        while not done.is_set():
            def report(m):
                r = m.body
                if r.get("needs_approval"):
                    threading.Thread(target=gate, args=(r["task"], r["job"]),
                                     daemon=True).start()
                    return
                try:
                    c.report(r["task"], "artifact", data={"worker": r["worker"],
                                                          "result": r["result"]})
                    c.report(r["task"], "status", state="completed")
                except StrataError as e:
                    if e.code != "task_finished":
                        raise
            try:
                c.process("results", report, lease_ms=LEASE_MS, wait_ms=1000)
            except (httpx.TransportError, StrataError):
                time.sleep(0.3)

    threading.Thread(target=collect, daemon=True).start()
    followers = [threading.Thread(target=follow, args=(t,)) for t in tasks]
    for f in followers:
        f.start()
    for f in followers:
        f.join()
    done.set()
    states = [patient(c.task, t).state for t in tasks]
    say("planner", f"all {jobs} tasks finished: "
                   f"{sum(s == 'completed' for s in states)} completed")


# An SDK worker: takes jobs from the shared queue (its lease extended while it works),
# reports on the job's task, and asks for approval when the job needs it.

def sdk_worker(name):
    c = Client(URL, token=TOKEN, agent_token=POOL_TOKEN)

    def work(m):
        task, n = m.body["task"], m.body["job"]
        try:
            finished = c.task(task).final
        except StrataError as e:
            if e.code != "unknown_task":
                raise
            finished = True  # Deleted after its retention: long finished.
        if finished:
            say(name, f"job {n}: its task is finished already (a redelivery), acknowledged")
            return
        say(name, f"took job {n} (task {task}, delivery {m.attempt})")
        c.report(task, "status", state="working", data={"worker": name})
        time.sleep(WORK_S)
        if m.body.get("approval") and not m.body.get("approved") and not approved(c, task):
            # Asked once: a worker taking the job over after a crash waits for the same
            # question's answer.
            if c.task(task).state != "input-required":
                c.report(task, "status", state="input-required",
                         data={"question": f"may {name} publish job {n}?"})
            say(name, f"job {n} needs approval: waiting")
            if not approved(c, task, wait=True):
                c.report(task, "status", state="failed", data={"reason": "not approved"})
                return
            say(name, f"job {n} approved")
        c.report(task, "artifact", data={"worker": name, "result": answer(n)})
        c.report(task, "status", state="completed")
        say(name, f"finished job {n}: {answer(n)}")

    while True:
        try:
            c.process("jobs", work, lease_ms=LEASE_MS, wait_ms=5000)
        except httpx.TransportError as e:
            say(name, f"the node did not answer ({type(e).__name__}); trying again")
            time.sleep(0.5)
        except StrataError as e:
            # A lease lost to a node restart, or a task another worker finished first: the
            # queue hands the job out again, and whoever takes it sees where its task is.
            say(name, f"could not settle the job ({e.code}): it comes back")
            time.sleep(0.5)


def approved(c, task, wait=False):
    """Whether the task holds an approval (an answer with `approved`); with `wait`, waits
    for the answer (long-polling the task's events) and says whether it approved."""
    after = None
    while True:
        state, events = patient(c.task_events, task, after, wait_ms=20000 if wait else 0)
        for e in events:
            after = e.id
            if e.kind == "message" and isinstance(e.data, dict) and "approved" in e.data:
                return bool(e.data["approved"])
        if not wait or state in ("completed", "failed", "canceled"):
            return False


# The MQTT worker: a plain MQTT 3.1.1 client on a shared subscription to the same queue.
# Its PUBACK acknowledges the job; it publishes its result to queue `results`.

def mqtt_worker(name):
    import paho.mqtt.client as mqtt

    got = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                    protocol=mqtt.MQTTv311, manual_ack=True)
    c.on_connect = lambda c, u, f, rc, p: c.subscribe("$share/pool/queues/jobs", 1)
    c.on_message = lambda c, u, m: got.put(m)
    c.reconnect_delay_set(0.2, 1)
    port = int(os.environ["STRATA_MQTT_PORT"])
    c.connect("127.0.0.1", port)
    c.loop_start()
    say(name, f"subscribed to $share/pool/queues/jobs on port {port}")
    while True:
        m = got.get()
        job = json.loads(m.payload)
        n = job["job"]
        if job.get("approval") and not job.get("approved"):
            # It cannot hold a conversation: it asks the planner, which gets the approval
            # and puts the job back on the queue, approved.
            say(name, f"job {n} needs approval: asking the planner")
            ask = {"task": job["task"], "job": n, "worker": name, "needs_approval": True}
            c.publish("queues/results", json.dumps(ask), 1).wait_for_publish(30)
        else:
            say(name, f"took job {n} (task {job['task']})")
            time.sleep(WORK_S)
            result = {"task": job["task"], "job": n, "worker": name, "result": answer(n)}
            info = c.publish("queues/results", json.dumps(result), 1)
            info.wait_for_publish(30)
            if not info.is_published():
                continue  # Not acknowledged: the job comes back, after its lease.
            say(name, f"finished job {n}: {answer(n)}")
        c.ack(m.mid, m.qos)


# The approver: a script standing in for a person. It reads the plan as it is published
# (resuming by itself across restarts) and answers every task that asks for input.

def approver(name):
    c = Client(URL, token=TOKEN)

    def decide(task, n):
        while True:
            t = patient(c.wait_task, task, timeout_s=30)
            if t.final:
                return
            if t.state == "input-required":
                say(name, f"job {n} asks for approval: approved")
                patient(c.respond, task, {"approved": True, "by": name})
                return

    for e in c.subscribe("plan", from_id=0):
        if e.data.get("approval"):
            threading.Thread(target=decide, args=(e.data["task"], e.data["job"]),
                             daemon=True).start()


# The Kafka reader: an unmodified Kafka consumer reading the agent topic `results` as the
# Kafka topic `agent.topic.results`, the same log the planner publishes to.

def kafka_reader(name):
    from confluent_kafka import Consumer

    k = Consumer({"bootstrap.servers": os.environ["STRATA_KAFKA"], "group.id": name,
                  "auto.offset.reset": "earliest", "auto.commit.interval.ms": 500,
                  # The node's restart is part of the example: no connection-refused noise.
                  "log_level": 2})
    k.subscribe(["agent.topic.results"])
    while True:
        m = k.poll(0.5)
        if m is None or m.error():
            continue
        event = json.loads(m.value())
        r = event["data"]
        say(name, f"result of job {r['job']} (task {r['task']}): {r['result']} "
                  f"[offset {m.offset()}]")


if __name__ == "__main__":
    role, rest = sys.argv[1], sys.argv[2:]
    {"planner": lambda: planner(int(rest[0]), int(rest[1])),
     "sdk-worker": lambda: sdk_worker(rest[0]),
     "mqtt-worker": lambda: mqtt_worker(rest[0]),
     "approver": lambda: approver(rest[0]),
     "kafka": lambda: kafka_reader(rest[0])}[role]()
