#!/usr/bin/env python3
"""Agents cooperating through Strata, in one command:

    python3 examples/agents/run.py

It starts a node (agent API, MQTT and Kafka on free loopback ports, data in a fresh
directory), registers the worker pool, then runs, each in its own process:

- a planner that creates one task per job and puts the jobs on the shared work queue
  `jobs`, follows every task's events and publishes each result to topic `results`;
- three workers competing for the jobs: two with the Python SDK and one plain MQTT client
  on the shared subscription `$share/pool/queues/jobs`;
- an approver script answering the one job that asks for human approval;
- a Kafka consumer reading the results as Kafka topic `agent.topic.results`.

Midway it kills (SIGKILL) a worker holding a job, whose job then goes to another worker,
and kills and restarts the node, after which the run goes on where it was. It ends by
checking that every job's task completed, that the Kafka consumer saw every result, and
says what happened; the exit status is 0 only when all of it held.
"""
import argparse
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))
from strata_agent import Client  # noqa: E402

TOKEN = "example-deployment-token"
# Any one wait of the run: generous, as the machine may be slow and busy.
DEADLINE = 120.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def strata_bin():
    """The node binary: $STRATA_BIN, or the tree's own, built (or brought up to date) first."""
    if os.environ.get("STRATA_BIN"):
        return os.environ["STRATA_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR",
                            os.path.join(os.path.expanduser("~"), ".cache", "strata", "target"))
    print("[run] building the node (cargo build; the first build takes a while)", flush=True)
    subprocess.run(["cargo", "build", "--locked", "-p", "strata"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": target})
    return os.path.join(target, "x86_64-unknown-linux-gnu", "debug", "strata")


class Run:
    """The node, the agents' processes, and every line they print (also kept, to check)."""

    def __init__(self, data, keep):
        self.data, self.keep = data, keep
        self.bin = strata_bin()
        self.lines = queue.Queue()
        self.seen = []
        self.procs = {}
        self.ports = {name: free_port() for name in ("agent", "mqtt", "kafka", "admin")}
        self.config = os.path.join(data, "strata.toml")
        with open(self.config, "w") as f:
            f.write(f"""[node]
data_dir = "{data}/node"
[admin]
listen = "127.0.0.1:{self.ports['admin']}"
[mqtt]
listen = "127.0.0.1:{self.ports['mqtt']}"
ws_listen = "127.0.0.1:0"
[kafka]
listen = "127.0.0.1:{self.ports['kafka']}"
[agent]
enabled = true
listen = "127.0.0.1:{self.ports['agent']}"
token = "{TOKEN}"
storage = "local"
mqtt_prefix = "queues/"
""")
        self.url = f"http://127.0.0.1:{self.ports['agent']}"
        self.env = {**os.environ, "STRATA_AGENT_URL": self.url, "STRATA_TOKEN": TOKEN,
                    "STRATA_MQTT_PORT": str(self.ports["mqtt"]),
                    "STRATA_KAFKA": f"127.0.0.1:{self.ports['kafka']}",
                    "PYTHONUNBUFFERED": "1"}

    def start_node(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        log = open(os.path.join(self.data, "node.log"), "a")
        node = subprocess.Popen([self.bin, "serve", "--config", self.config], env=env,
                                stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        end = time.time() + DEADLINE
        listening = set()
        while not {"agent", "mqtt", "kafka", "admin"} <= listening:
            line = node.stdout.readline()
            if not line:
                raise SystemExit("[run] the node exited at start: see node.log")
            if line.startswith("strata: ") and " listening on " in line:
                listening.add(line.split()[1])
            if time.time() > end:
                raise SystemExit("[run] the node did not start in time")
        threading.Thread(target=node.stdout.read, daemon=True).start()
        self.procs["node"] = node

    def start(self, name, *args, env=None):
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "roles.py"), *args],
                             env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        self.procs[name] = p

        def relay():
            for line in p.stdout:
                self.lines.put(line.rstrip("\n"))
        threading.Thread(target=relay, daemon=True).start()

    def kill(self, name):
        p = self.procs.pop(name)
        p.send_signal(signal.SIGKILL)
        p.wait()

    def until(self, what, done):
        """Prints the agents' lines until `done(line)` holds for one: that line."""
        end = time.time() + DEADLINE
        while time.time() < end:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.procs["planner"].poll() not in (None, 0):
                    raise SystemExit("[run] the planner failed")
                continue
            print(line, flush=True)
            self.seen.append(line)
            if done(line):
                return line
        raise SystemExit(f"[run] gave up waiting for {what}")

    def stop(self):
        for name in list(self.procs):
            self.procs[name].send_signal(signal.SIGTERM if name == "node" else signal.SIGKILL)
            self.procs.pop(name).wait()
        if not self.keep:
            shutil.rmtree(self.data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=9)
    ap.add_argument("--data", help="where the node keeps its data (default: a new temporary "
                                   "directory, removed at the end)")
    args = ap.parse_args()
    data = args.data or tempfile.mkdtemp(prefix="strata-agents-")
    os.makedirs(data, exist_ok=True)
    run = Run(os.path.abspath(data), keep=bool(args.data))
    try:
        return scenario(run, args.jobs)
    finally:
        run.stop()


def scenario(run, jobs):
    approval_job = jobs // 2
    run.start_node()
    print(f"[run] node up: agent API {run.url}, MQTT {run.ports['mqtt']}, "
          f"Kafka {run.ports['kafka']}", flush=True)
    c = Client(run.url, token=TOKEN)
    for q in ("jobs", "results"):
        c.create_queue(q)
    for t in ("plan", "results"):
        c.create_topic(t)
    pool = c.register({"name": "pool", "description": "the workers",
                       "skills": [{"id": "square-sums"}]})
    run.env["STRATA_POOL_TOKEN"] = pool
    print("[run] registered agent 'pool'; queues jobs, results; topics plan, results",
          flush=True)
    run.start("kafka", "kafka", "kafka")
    run.start("approver", "approver", "approver")
    run.start("mqtt-worker", "mqtt-worker", "mqtt-worker")
    for w in ("worker-1", "worker-2"):
        run.start(w, "sdk-worker", w)
    run.until("the MQTT worker", lambda line: line.startswith("[mqtt-worker] subscribed"))
    run.start("planner", "planner", str(jobs), str(approval_job))

    # Kill worker-1 while it holds a job: its lease lapses and another worker takes it.
    line = run.until("worker-1 taking a job", lambda line: line.startswith("[worker-1] took"))
    killed_job = int(line.split()[3])
    run.kill("worker-1")
    print(f"[run] killed worker-1 (SIGKILL) while it held job {killed_job}", flush=True)

    # Kill and restart the node once about half the jobs are done.
    run.until("half the jobs", lambda line: line.startswith("[planner] finished")
              and int(line.split()[2].split("/")[0]) >= jobs // 2)
    run.kill("node")
    print("[run] killed the node (SIGKILL) mid-run; starting it again", flush=True)
    run.start_node()
    print("[run] node restarted on the same data", flush=True)

    run.until("the planner's summary", lambda line: line.startswith("[planner] all"))
    # Every result reached Kafka (the reader prints one line per record).
    tasks = {}
    for line in run.seen:
        if line.startswith("[planner] task ") and " created for job " in line:
            tasks[line.split()[2]] = int(line.split()[-1])
    kafka_seen = {line.split("(task ")[1].split(")")[0] for line in run.seen
                  if line.startswith("[kafka] result")}
    while not set(tasks) <= kafka_seen:
        line = run.until("the Kafka reader", lambda line: line.startswith("[kafka] result"))
        kafka_seen.add(line.split("(task ")[1].split(")")[0])

    # Check what happened against the node's own record.
    states = {t: c.task(t).state for t in tasks}
    by_job = {n: t for t, n in tasks.items()}
    _, killed_events = c.task_events(by_job[killed_job])
    finisher = [e.data.get("worker") for e in killed_events if e.kind == "artifact"]
    _, approval_events = c.task_events(by_job[approval_job])
    asked = any(e.state == "input-required" for e in approval_events)
    answered = any(e.kind == "message" and e.data.get("approved") for e in approval_events)
    mqtt_jobs = sum(1 for line in run.seen if line.startswith("[mqtt-worker] finished"))
    checks = [
        (all(s == "completed" for s in states.values()),
         f"all {jobs} tasks completed ({sorted(states.values()) if len(set(states.values())) > 1 else 'every one'})"),
        (bool(finisher) and "worker-1" not in finisher,
         f"job {killed_job}, held by the killed worker-1, was finished by {finisher}"),
        (asked and answered, f"job {approval_job} asked for approval and got it"),
        (mqtt_jobs > 0, f"the MQTT worker finished {mqtt_jobs} jobs"),
        (set(tasks) <= kafka_seen, f"the Kafka consumer read all {jobs} results"),
    ]
    print("\n[run] what happened:")
    for ok, what in checks:
        print(f"  {'ok ' if ok else 'NOT'} {what}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
