#!/usr/bin/env python3
"""The chaos harness: real `strata serve` nodes on 127.0.0.1, .2, .3 (or five), a topic
with three copies of each partition, an idempotent acks=all confluent-kafka producer and a
consumer working throughout, and seeded faults injected one at a time:

  kill      SIGKILL a node (the leader of a partition, or a follower), restart it later
  wipe      SIGKILL a node, delete its data directory (journal and meta store), restart it
  power-loss  SIGKILL every node at once, restart them all
  pause     SIGSTOP a node for a while (a paused leader wakes believing it leads), SIGCONT
  restart   SIGTERM and restart a node
  rolling   restart every node in turn
  isolate   cut a node (a leader: the leader in the minority) off from every other node
  bridge    cut the nodes into two sides that only one node, the bridge, talks to both of
  move      move a partition's replicas through the admin API: on five nodes to three
            drawn at random, on three to two of its copies and back to three (the copy
            left is emptied, then copied again as a learner), under the writes

With `--fsync always` (the default), every node runs with `fsync = "always"` and with
CHAOS_VOLATILE_WRITES=1 (journal/src/fs/volatile.rs): its journal keeps unsynced writes in
its own memory, so each SIGKILL loses every byte not fsynced, as a power loss would, not
only the process. With another policy (`--fsync interval:100`, the default of a node) a
power loss may take what was acknowledged within the interval, as that policy says: the
nodes keep their writes in the page cache, a kill is a process crash, and `power-loss` is
left out.

Network partitions are iptables rules in a chain of their own (STRATA_CHAOS, jumped to
from INPUT) that drop node-to-node traffic between two nodes' addresses and cluster ports;
each node's connections leave from its own address. Clients' traffic to the Kafka ports
is never cut. They need root (or CAP_NET_ADMIN) and iptables: without them the partition
kinds are left out, and the verdict line says so.

Beside them a paho-mqtt client publishes QoS 1 messages through a node it picks at random
(another one whenever its connection fails or a PUBACK is more than 10 s late, the message
published again): MQTT's message store is a replicated stream of the cluster too.

An agent client sends messages to a work queue through a node it picks at random, each
with an idempotency key, and now and then fetches some on a 5 s lease and acknowledges
each: the agent API is served by one node, the leader of the replicated `agent.state`,
whose state (the queue's marks) fails over with that partition. At the end the queue is
drained to empty.

With `--object-store`, every node offloads to one S3-compatible server (s3s-fs on
loopback): segments of 64 KiB, uploaded by each partition's leader once committed, every
copy's local files dropped at once, so reads, a wiped node's restart and a lagging
follower go through object storage.

Every operation goes to a history file (JSON lines); at the end every partition is read
from its start and a checker applies the rules of Jepsen's Kafka queue checker:

  lost          an acknowledged record is missing, or not at the offset it was acked with
  duplicated    one record at two offsets
  conflict      two records at one offset (between any two reads)
  failed-read   a record whose send failed definitely was read
  backwards     a consumer saw a partition's offsets go backwards
  mqtt-lost     a message acknowledged with a PUBACK is not in MQTT's message store (read
                through Kafka at the end; MQTT QoS 1 allows duplicates)
  mqtt-idle     no MQTT message was acknowledged at all
  agent-lost    a message whose send was acknowledged was never delivered and acknowledged
                (an ack with no answer or a 5xx counts: it may have been applied; so
                does a move to the dead letters)
  agent-failed  a message expired or left the journal before delivery (a delivery_failed
                event on the queue's failure topic)
  agent-idle    no agent message was acknowledged at all

Reported, not a violation (a queue delivers at least once): messages delivered again after
their ack was answered (a deposed owner that has not noticed yet serves what it holds).

Prints one verdict line and exits non-zero on any violation.

    python3 tests/chaos/chaos.py --seed 7 --faults 100 --history /tmp/chaos.jsonl

The node binary is $STRATA_BIN or the debug build (see tests/strata_node.py)."""
import argparse
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from strata_node import Node, free_port  # noqa: E402

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

SECRET = "chaos-harness-secret-0123456789"
AGENT_TOKEN = "chaos-agent-token-0123456789"
QUEUE = "/v1/queues/chaos"
TOPIC = "chaos"
PARTITIONS = 3
DEADLINE = 120.0
KINDS = ["kill", "pause", "restart", "kill-leader", "pause-leader", "rolling", "isolate",
         "isolate-leader", "bridge", "wipe", "power-loss", "move"]
PARTITIONS_KINDS = {"isolate", "isolate-leader", "bridge"}
JAVA_LIBS = os.path.expanduser("~/.cache/strata/tools/kafka-4.4.0/libs")
CHAIN = "STRATA_CHAOS"
S3S_FS = os.path.expanduser("~/.cache/strata/tools/bin/s3s-fs")
MQTT_STORE = "mqtt.messages"


class Firewall:
    """Cuts node-to-node traffic with iptables rules in the STRATA_CHAOS chain."""

    @staticmethod
    def usable():
        return shutil.which("iptables") is not None and subprocess.run(
            ["iptables", "-L", "INPUT", "-n"], capture_output=True).returncode == 0

    def __init__(self):
        self.run("-N", CHAIN, check=False)
        self.run("-F", CHAIN)
        if self.run("-C", "INPUT", "-j", CHAIN, check=False) != 0:
            self.run("-I", "INPUT", "-j", CHAIN)

    @staticmethod
    def run(*args, check=True):
        p = subprocess.run(["iptables", *args], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise RuntimeError(f"iptables {' '.join(args)}: {p.stderr.strip()}")
        return p.returncode

    def cut(self, a, b):
        """No node-to-node traffic between nodes a and b, either way."""
        for src, dst in ((a, b), (b, a)):
            self.run("-A", CHAIN, "-s", src.host, "-d", dst.host, "-p", "tcp", "--dport",
                     str(dst.rpc_port), "-j", "DROP")

    def heal(self):
        self.run("-F", CHAIN)

    def close(self):
        self.heal()
        self.run("-D", "INPUT", "-j", CHAIN, check=False)
        self.run("-X", CHAIN, check=False)


class History:
    """The operations, in the order they were observed, written as they happen."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "w")
        self.ops = []

    def add(self, **op):
        op["t"] = round(time.time(), 3)
        with self.lock:
            self.ops.append(op)
            self.file.write(json.dumps(op) + "\n")
            self.file.flush()

    def close(self):
        self.file.close()


class ObjectStore:
    """A real S3-compatible server (s3s-fs) on loopback, which every node offloads to."""

    def __init__(self, home):
        self.bucket = home / "s3" / "strata"
        self.bucket.mkdir(parents=True)
        self.port = free_port("127.0.0.1")
        self.proc = subprocess.Popen(
            [S3S_FS, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", "AK",
             "--secret-key", "SK", str(self.bucket.parent)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until("s3s-fs to listen", lambda: socket.create_connection(
            ("127.0.0.1", self.port), timeout=1).close() is None)

    def config(self):
        # 64 KiB segments, each uploaded once committed and its local copies dropped at
        # once: every copy reads most of its log back from object storage.
        return ('[journal]\nsegment_bytes = 65536\n'
                '[journal.object_store]\nbackend = "s3"\n'
                f'endpoint = "http://127.0.0.1:{self.port}"\nbucket = "strata"\n'
                'access_key_id = "AK"\nsecret_access_key = "SK"\n'
                '[journal.offload]\nlocal_retention_ms = 0\n')

    def objects(self):
        return sum(1 for p in self.bucket.rglob("*.seg") if p.is_file())

    def close(self):
        self.proc.kill()
        self.proc.wait()


class ClusterNode:
    def __init__(self, home, node_id, voters, rpc_port, fsync, extra=""):
        self.id = node_id
        self.host = f"127.0.0.{node_id}"
        self.home = home / f"n{node_id}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.config = (f'[cluster]\nnode_id = {node_id}\nlisten = "{self.host}:{rpc_port}"\n'
                       f'initial_voters = [{voters}]\nsecret = "{SECRET}"\n'
                       # The final read of MQTT's message store goes through Kafka.
                       '[kafka]\ninternal_stream_readers = ["ANONYMOUS"]\n'
                       f'[agent]\ntoken = "{AGENT_TOKEN}"\nstorage = "local"\n' + extra)
        self.fsync = fsync
        self.node = None
        self.paused = False
        self.rpc_port = rpc_port
        # The Kafka and MQTT listeners keep their ports across restarts, as a real
        # broker's do: clients know the cluster by these addresses.
        self.kafka_port = free_port(self.host)
        self.mqtt_port = free_port(self.host)

    def start(self):
        env = {f"STRATA_{name}": f"{self.host}:0" for name in (
            "ADMIN__LISTEN", "MQTT__WS_LISTEN", "AGENT__LISTEN")}
        env["STRATA_KAFKA__LISTEN"] = f"{self.host}:{self.kafka_port}"
        env["STRATA_MQTT__LISTEN"] = f"{self.host}:{self.mqtt_port}"
        env["STRATA_JOURNAL__FSYNC"] = self.fsync
        if self.fsync == "always":
            env["CHAOS_VOLATILE_WRITES"] = "1"
        self.node = Node(self.home, self.config, env, log_path=self.home / "node.log")

    @property
    def bootstrap(self):
        return f"{self.host}:{self.node.kafka_port}"

    def alive(self):
        return self.node is not None and self.node.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.node.proc.send_signal(sig)

    def kill(self):
        self.signal(signal.SIGKILL)
        if self.node:
            self.node.proc.wait()

    def wipe(self):
        """Deletes the (stopped) node's data directory: its journal and meta store."""
        shutil.rmtree(self.home / "data", ignore_errors=True)

    def stop(self):
        if self.paused:
            self.signal(signal.SIGCONT)
            self.paused = False
        if self.alive():
            self.node.stop()


def agent_call(nodes, rng, method, path, body=None, headers=None, timeout=10.0):
    """One request to the agent API through a live node picked at random: (status,
    answer); status 0 when no node answered."""
    live = [n for n in nodes if n.alive() and not n.paused and "agent" in n.node.ports]
    if not live:
        return 0, None
    n = rng.choice(live)
    c = http.client.HTTPConnection(n.host, n.node.ports["agent"], timeout=timeout)
    try:
        c.request(method, path, None if body is None else json.dumps(body),
                  {"Content-Type": "application/json", "Authorization": f"Bearer {AGENT_TOKEN}",
                   **(headers or {})})
        r = c.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None
    finally:
        c.close()


def agent_take(nodes, rng, history, wait_ms=0):
    """Fetches up to 10 messages of the agent queue on a 5 s lease and acknowledges each:
    how many came."""
    asked = round(time.time(), 3)
    status, answer = agent_call(nodes, rng, "POST", f"{QUEUE}/fetch",
                                {"max": 10, "lease_ms": 5000, "wait_ms": wait_ms},
                                timeout=10.0 + wait_ms / 1000)
    if status != 200:
        return 0
    for m in answer["messages"]:
        history.add(op="agent-got", value=m["body"], asked=asked)
        status, _ = agent_call(nodes, rng, "POST", f"{QUEUE}/ack", {"lease": m["lease"]})
        # 0: no answer, so the ack may or may not have been applied.
        history.add(op="agent-ack", value=m["body"], status=status)
    return len(answer["messages"])


def drain_agent_queue(nodes, history):
    """Takes every message left in the agent queue (the leases given before the end lapse
    within 5 s), until it holds none."""
    rng = random.Random(3)

    def empty():
        if agent_take(nodes, rng, history, wait_ms=1000):
            return False
        status, q = agent_call(nodes, rng, "GET", QUEUE)
        return status == 200 and q["depth"] == 0
    wait_until("the agent queue to be drained", empty)
    # Dead-lettered (delivered too often: not lost, moved) and failed (expired or gone:
    # lost) messages, as the queue's dead-letter queue and failure topic hold them.
    status, dead = agent_call(nodes, rng, "GET", f"{QUEUE}/dead-letters?max=1000")
    for d in (dead or {}).get("messages", []) if status == 200 else []:
        history.add(op="agent-dead", value=d["message"]["body"])
    status, failed = agent_call(nodes, rng, "GET", "/v1/topics/_failed-chaos/events?from=0")
    for e in (failed or {}).get("events", []) if status == 200 else []:
        history.add(op="agent-failed", event=e)


def wait_until(what, done, deadline=DEADLINE):
    end = time.time() + deadline
    while True:
        try:
            if done():
                return
        except Exception:  # noqa: BLE001 - a node restarting refuses connections
            pass
        if time.time() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Workload:
    """A producer writing unique values and a consumer reading them back, each in its own
    thread, recording everything in the history; beside them, when Apache Kafka's tools
    are installed (scripts/install-kafka.sh), the Java client: Kafka's VerifiableProducer,
    idempotent with acks=all, which prints every acknowledgement with its offset."""

    def __init__(self, nodes, history, rate, home):
        self.nodes, self.history, self.rate, self.home = nodes, history, rate, home
        self.stop = threading.Event()
        self.sent = 0
        self.java = None
        self.threads = [threading.Thread(target=self.produce, daemon=True),
                        threading.Thread(target=self.consume, daemon=True),
                        threading.Thread(target=self.publish_mqtt, daemon=True),
                        threading.Thread(target=self.agent_queue, daemon=True)]
        if os.path.isdir(JAVA_LIBS) and shutil.which("java"):
            self.threads.append(threading.Thread(target=self.produce_java, daemon=True))

    def produce_java(self):
        config = self.home / "java-producer.properties"
        config.write_text("enable.idempotence=true\nacks=all\nlinger.ms=5\n"
                          "retries=2147483647\ndelivery.timeout.ms=60000\nrequest.timeout.ms=10000\n")
        self.java = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", os.path.join(JAVA_LIBS, "*"),
             "org.apache.kafka.tools.VerifiableProducer", "--bootstrap-server", self.bootstrap(),
             "--topic", TOPIC, "--throughput", str(max(1, int(self.rate / 4))),
             "--value-prefix", "7", "--command-config", str(config)],
            stdout=subprocess.PIPE, stderr=open(self.home / "java-producer.log", "w"), text=True)
        for line in self.java.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("name") == "producer_send_success":
                self.history.add(op="ack", value=event["value"], partition=event["partition"],
                                 offset=event["offset"], client="java")
            elif event.get("name") == "producer_send_error":
                # Java's errors (timeouts, expired batches) may or may not have been written.
                self.history.add(op="fail", value=event["value"], definite=False,
                                 error=event.get("exception", ""), client="java")

    def stop_java(self):
        """Stops the Java producer; it flushes what it sent before it exits. One that
        exited on its own (a fatal error) is recorded as a client that stopped."""
        if self.java is not None and self.java.poll() is not None and not self.stop.is_set():
            self.history.add(op="stopped", client="java",
                             error=f"exited with {self.java.returncode} before the end; "
                                   f"see {self.home / 'java-producer.log'}")
        if self.java is not None and self.java.poll() is None:
            self.java.send_signal(signal.SIGTERM)
            try:
                self.java.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.java.kill()

    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes if n.alive())

    def produce(self):
        try:
            self.produce_python()
        except Exception as e:  # noqa: BLE001 - a fatal client error fails the run
            self.history.add(op="stopped", client="python", error=str(e))
            raise

    def produce_python(self):
        producer = Producer({"bootstrap.servers": self.bootstrap(), "acks": "all",
                             "enable.idempotence": True, "linger.ms": 5,
                             "message.timeout.ms": 60000, "log_level": 0})
        h = self.history

        def report(err, msg):
            value = msg.value().decode()
            if err is None:
                h.add(op="ack", value=value, partition=msg.partition(), offset=msg.offset())
            else:
                # A retriable error or a timeout may or may not have been written.
                definite = not err.retriable() and err.code() != KafkaError._MSG_TIMED_OUT
                h.add(op="fail", value=value, partition=msg.partition(),
                      definite=definite, error=str(err))
        i = 0
        while not self.stop.is_set():
            value = f"v{i}"
            partition = i % PARTITIONS
            h.add(op="send", value=value, partition=partition)
            producer.produce(TOPIC, value=value.encode(), partition=partition,
                             on_delivery=report)
            producer.poll(0)
            i += 1
            time.sleep(1.0 / self.rate)
        producer.flush(DEADLINE)
        self.sent = i

    def publish_mqtt(self):
        try:
            self.publish_mqtt_messages()
        except Exception as e:  # noqa: BLE001 - a client that gives up fails the run
            self.history.add(op="stopped", client="mqtt", error=repr(e))
            raise

    def mqtt_connect(self, rng):
        """A paho client (MQTT 3.1.1) connected to a live node picked at random."""
        while not self.stop.is_set():
            live = [n for n in self.nodes if n.alive() and not n.paused]
            if live:
                n = rng.choice(live)
                c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="chaos-mqtt",
                                protocol=mqtt.MQTTv311)
                try:
                    c.connect(n.host, n.node.port, keepalive=10)
                    c.loop_start()
                    self.history.add(op="mqtt-connect", node=n.id)
                    return c
                except OSError as e:
                    self.history.add(op="mqtt-connect", node=n.id, error=repr(e))
            time.sleep(0.2)
        return None

    def publish_mqtt_messages(self):
        rng = random.Random(1)
        c = self.mqtt_connect(rng)
        for i in itertools.count():
            if self.stop.is_set():
                break
            value = f"m{i}"
            while c is not None:
                info = c.publish("chaos/mqtt", value.encode(), qos=1)
                try:
                    info.wait_for_publish(timeout=10)
                    published = info.is_published()
                except RuntimeError:
                    published = False  # not connected
                if published:
                    self.history.add(op="mqtt-ack", value=value)
                    break
                self.history.add(op="mqtt-unacked", value=value, rc=info.rc)
                c.loop_stop()
                c.disconnect()
                c = self.mqtt_connect(rng)
            time.sleep(1.0 / 50)
        if c is not None:
            c.loop_stop()
            c.disconnect()

    def agent_queue(self):
        try:
            rng = random.Random(2)
            for i in itertools.count():
                if self.stop.is_set():
                    break
                status, _ = agent_call(self.nodes, rng, "POST", f"{QUEUE}/messages",
                                       {"body": i}, {"Idempotency-Key": f"q{i}"})
                self.history.add(op="agent-send", value=i, ok=status in (200, 201))
                if i % 4 == 3:
                    agent_take(self.nodes, rng, self.history)
                time.sleep(1.0 / 20)
        except Exception as e:  # noqa: BLE001 - a client that gives up fails the run
            self.history.add(op="stopped", client="agent", error=repr(e))
            raise

    def consume(self):
        # CHAOS_CONSUMER_DEBUG=fetch,... turns librdkafka's debug log on (to stderr).
        debug = os.environ.get("CHAOS_CONSUMER_DEBUG")
        consumer = Consumer({"bootstrap.servers": self.bootstrap(), "group.id": "chaos",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             **({"debug": debug, "log_level": 7} if debug else {"log_level": 0})})
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        while not self.stop.is_set():
            for m in consumer.consume(200, 0.5):
                if m.error() is None:
                    self.history.add(op="read", reader="live", value=m.value().decode(),
                                     partition=m.partition(), offset=m.offset())
        consumer.close()


def partition_leaders(admin):
    t = admin.list_topics(timeout=10).topics.get(TOPIC)
    if t is None or t.error is not None:
        return None
    return {p.id: p.leader for p in t.partitions.values()}


def healthy(nodes):
    """Every node is up and every partition has a live leader."""
    live = [n for n in nodes if n.alive() and not n.paused]
    if len(live) != len(nodes):
        return False
    admin = AdminClient({"bootstrap.servers": live[0].bootstrap, "log_level": 0})
    leaders = partition_leaders(admin)
    return leaders is not None and len(leaders) == PARTITIONS and all(
        1 <= l <= len(nodes) for l in leaders.values())


def all_in_sync(nodes):
    """Every partition lists three in-sync replicas."""
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap, "log_level": 0})
    t = admin.list_topics(TOPIC, timeout=10).topics[TOPIC]
    return len(t.partitions) == PARTITIONS and all(
        len(p.isrs) == 3 for p in t.partitions.values())


def inject(kind, nodes, rng, history, firewall=None):
    """One fault, undone before returning (the cluster is left to heal)."""
    live = [n for n in nodes if n.alive()]
    admin = AdminClient({"bootstrap.servers": ",".join(n.bootstrap for n in live),
                         "log_level": 0})
    target = rng.choice(nodes)
    if kind.endswith("-leader"):
        leaders = partition_leaders(admin) or {}
        ids = sorted(set(leaders.values()) - {-1})
        if ids:
            target = nodes[rng.choice(ids) - 1]
    hold = rng.uniform(1.0, 6.0)
    history.add(op="fault", kind=kind, node=target.id, hold=round(hold, 2))
    if kind.startswith("kill"):
        target.kill()
        time.sleep(hold)
        target.start()
    elif kind == "wipe":
        target.kill()
        target.wipe()
        time.sleep(hold)
        target.start()
    elif kind == "power-loss":
        for n in nodes:
            n.kill()
        time.sleep(hold)
        for n in nodes:
            n.start()
    elif kind.startswith("pause"):
        target.signal(signal.SIGSTOP)
        target.paused = True
        time.sleep(hold)
        target.signal(signal.SIGCONT)
        target.paused = False
    elif kind == "restart":
        target.stop()
        target.start()
    elif kind.startswith("isolate"):
        for other in nodes:
            if other is not target:
                firewall.cut(target, other)
        time.sleep(hold)
        firewall.heal()
    elif kind == "bridge":
        # The target bridges two sides: the others split in halves that do not meet.
        others = [n for n in nodes if n is not target]
        rng.shuffle(others)
        half = len(others) // 2
        for a in others[:half]:
            for b in others[half:]:
                firewall.cut(a, b)
        time.sleep(hold)
        firewall.heal()
    elif kind == "rolling":
        for n in nodes:
            n.stop()
            n.start()
            wait_until("the cluster to heal during a rolling restart", lambda: healthy(nodes))
    elif kind == "move":
        move_a_partition(nodes, rng, history)
    history.add(op="healed", kind=kind, node=target.id)


def admin_api(node, method, path, body=None):
    url = f"http://{node.host}:{node.node.admin_port}/api/v1/{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def move_a_partition(nodes, rng, history):
    """Moves a partition of the topic and waits until each move ended (an election among
    the new replicas)."""
    p = rng.randrange(PARTITIONS)
    ids = list(range(1, len(nodes) + 1))

    def view():
        return next(v for v in admin_api(nodes[0], "GET", f"cluster/leaders?stream={TOPIC}")
                    if v["partition"] == p)
    current = view()["replicas"]
    if len(nodes) > 3:
        plans = [rng.sample(ids, 3)]
    else:
        kept = rng.sample(current, 2)
        grown = kept + [n for n in ids if n not in kept]
        rng.shuffle(grown)
        plans = [kept, grown]
    for plan in plans:
        history.add(op="move", partition=p, replicas=plan)
        admin_api(nodes[0], "POST", f"cluster/partitions/{TOPIC}/{p}/replicas",
                  {"replicas": plan})
        wait_until(f"partition {p} to move to {plan}", lambda plan=plan: (
            lambda v: v["replicas"] == plan and not v["moving_to"] and v["leader"])(view()))


def read_everything(nodes, history):
    """Reads every partition from its start to its end through a fresh consumer."""
    consumer = Consumer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes),
                         "group.id": "chaos-final", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "log_level": 0})
    ends = {}
    for p in range(PARTITIONS):
        def end_known(p=p):
            ends[p] = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
            return True
        wait_until("the partition's end", end_known)
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    got = {p: -1 for p in range(PARTITIONS)}

    def caught_up():
        for m in consumer.consume(500, 1.0):
            if m.error() is None:
                history.add(op="read", reader="final", value=m.value().decode(),
                            partition=m.partition(), offset=m.offset())
                got[m.partition()] = max(got[m.partition()], m.offset())
        # The position, not the last record: a partition may end with a leader's marker,
        # which consumers step over.
        positions = consumer.position([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        return all(got[tp.partition] + 1 >= ends[tp.partition] or tp.offset >= ends[tp.partition]
                   for tp in positions)
    wait_until("the final read to reach every partition's end", caught_up)
    consumer.close()


def read_mqtt_store(nodes, history):
    """Reads every partition of MQTT's message store to its end (through Kafka, as a
    listed reader of internal streams)."""
    consumer = Consumer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes),
                         "group.id": "chaos-mqtt", "enable.auto.commit": False, "log_level": 0})
    meta = {}
    wait_until("the MQTT store's partitions", lambda: meta.update(
        t=consumer.list_topics(MQTT_STORE, timeout=10).topics[MQTT_STORE]) or
        (meta["t"].error is None and len(meta["t"].partitions) > 0))
    partitions = sorted(meta["t"].partitions)
    ends = {}
    for p in partitions:
        def end_known(p=p):
            ends[p] = consumer.get_watermark_offsets(TopicPartition(MQTT_STORE, p),
                                                     timeout=10)[1]
            return True
        wait_until("the MQTT store partition's end", end_known)
    consumer.assign([TopicPartition(MQTT_STORE, p, 0) for p in partitions])

    def caught_up():
        for m in consumer.consume(500, 1.0):
            if m.error() is None:
                history.add(op="mqtt-read", value=m.value().decode())
        positions = consumer.position([TopicPartition(MQTT_STORE, p) for p in partitions])
        return all(tp.offset >= ends[tp.partition] for tp in positions)
    wait_until("the MQTT store read to its end", caught_up)
    consumer.close()


def check(ops):
    """The verdict: counts of each violation and what was seen."""
    acked = {o["value"]: (o["partition"], o["offset"]) for o in ops if o["op"] == "ack"}
    failed = {o["value"] for o in ops if o["op"] == "fail" and o["definite"]}
    at = {}        # (partition, offset) -> value
    where = {}     # value -> set of (partition, offset)
    final = set()  # values the final read saw
    last = {}      # (reader, partition) -> last offset, for `backwards`
    v = {"lost": [], "duplicated": [], "conflict": [], "failed-read": [], "backwards": [],
         # A producer that gave up (an idempotent producer's fatal error): clients must
         # carry on through every fault.
         "client-stopped": [(o["client"], o["error"]) for o in ops if o["op"] == "stopped"]}
    stored = {o["value"] for o in ops if o["op"] == "mqtt-read"}
    mqtt_acked = [o["value"] for o in ops if o["op"] == "mqtt-ack"]
    v["mqtt-lost"] = [value for value in mqtt_acked if value not in stored]
    # A publisher that never got a PUBACK proves nothing.
    v["mqtt-idle"] = [] if mqtt_acked else ["no MQTT message was acknowledged"]
    agent_sent = {o["value"] for o in ops if o["op"] == "agent-send" and o["ok"]}
    # Done: acked (answered 200), perhaps acked (no answer, or a 5xx: a replicated write
    # that failed may still be kept), or moved to the dead letters.
    agent_done = {o["value"] for o in ops
                  if o["op"] == "agent-ack" and (o["status"] in (0, 200) or o["status"] >= 500)}
    agent_done |= {o["value"] for o in ops if o["op"] == "agent-dead"}
    v["agent-lost"] = sorted(agent_sent - agent_done)
    v["agent-failed"] = [o["event"] for o in ops if o["op"] == "agent-failed"]
    v["agent-idle"] = [] if agent_sent else ["no agent message was acknowledged"]
    for o in ops:
        if o["op"] != "read":
            continue
        key = (o["partition"], o["offset"])
        if at.setdefault(key, o["value"]) != o["value"]:
            v["conflict"].append((key, at[key], o["value"]))
        where.setdefault(o["value"], set()).add(key)
        if o["value"] in failed:
            v["failed-read"].append(o["value"])
        cursor = (o["reader"], o["partition"])
        if o["offset"] < last.get(cursor, -1):
            v["backwards"].append((cursor, last[cursor], o["offset"]))
        last[cursor] = o["offset"]
        if o["reader"] == "final":
            final.add(o["value"])
    for value, key in acked.items():
        if value not in final or key not in where.get(value, set()):
            v["lost"].append((value, key))
    for value, keys in where.items():
        if len(keys) > 1:
            v["duplicated"].append((value, sorted(keys)))
    return acked, v


def again_after_ack(ops):
    """Agent messages delivered by a fetch asked after their ack was answered."""
    acked = {}
    for o in ops:
        if o["op"] == "agent-ack" and o["status"] == 200:
            acked.setdefault(o["value"], o["t"])
    return sum(1 for o in ops if o["op"] == "agent-got" and o["asked"] > acked.get(o["value"], 1e18))


def run(seed, faults, size, rate, history_path, kinds, keep=False, fsync="always",
        object_store=False):
    rng = random.Random(seed)
    home = Path(tempfile.mkdtemp(prefix="strata-chaos-"))
    history = History(history_path)
    hosts = [f"127.0.0.{i}" for i in range(1, size + 1)]
    ports = [free_port(h) for h in hosts]
    voters = ", ".join(f'"{i + 1}@{h}:{p}"' for i, (h, p) in enumerate(zip(hosts, ports)))
    store = ObjectStore(home) if object_store else None
    nodes = [ClusterNode(home, i + 1, voters, ports[i], fsync, store.config() if store else "")
             for i in range(size)]
    workload = None
    firewall = None
    left_out = sorted(PARTITIONS_KINDS & set(kinds))
    if left_out and Firewall.usable():
        firewall, left_out = Firewall(), []
    if fsync != "always" and "power-loss" in kinds:
        left_out.append("power-loss")
    kinds = [k for k in kinds if k not in left_out]
    try:
        for n in nodes:
            n.start()
        admin = AdminClient({"bootstrap.servers": ",".join(n.bootstrap for n in nodes)})
        wait_until("every node to register", lambda: all(
            len(AdminClient({"bootstrap.servers": n.bootstrap}).list_topics(
                timeout=10).brokers) == size for n in nodes))
        for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)]).values():
            f.result(DEADLINE)
        wait_until("the topic to have leaders", lambda: healthy(nodes))
        workload = Workload(nodes, history, rate, home)
        for t in workload.threads:
            t.start()
        time.sleep(2)
        for i in range(faults):
            kind = rng.choice(kinds)
            inject(kind, nodes, rng, history, firewall)
            wait_until("the cluster to heal", lambda: healthy(nodes))
            time.sleep(rng.uniform(0.5, 2.0))
        time.sleep(2)
        workload.stop_java()
        workload.stop.set()
        for t in workload.threads:
            t.join(DEADLINE)
        # Every replica (a wiped one too) is back in sync: every partition keeps its copies.
        wait_until("every replica to be in sync again", lambda: all_in_sync(nodes))
        read_everything(nodes, history)
        read_mqtt_store(nodes, history)
        drain_agent_queue(nodes, history)
    finally:
        if firewall:
            firewall.close()
        if workload:
            workload.stop.set()
            workload.stop_java()
        for n in nodes:
            n.stop()
        history.close()
        objects = store.objects() if store else 0
        if store:
            store.close()
    ops = [json.loads(line) for line in open(history_path)]
    acked, v = check(ops)
    bad = {k: len(x) for k, x in v.items() if x}
    verdict = "PASS" if not bad else "FAIL"
    print(f"chaos {verdict}: seed {seed}, {faults} faults on {size} nodes (fsync {fsync}), "
          f"{sum(1 for o in ops if o['op'] == 'send')} sent, {len(acked)} acked "
          f"({sum(1 for o in ops if o['op'] == 'ack' and o.get('client') == 'java')} by the Java client), "
          f"{sum(1 for o in ops if o['op'] == 'fail')} failed, "
          f"{sum(1 for o in ops if o['op'] == 'mqtt-ack')} MQTT messages acked, "
          f"{sum(1 for o in ops if o['op'] == 'agent-send' and o['ok'])} agent messages sent "
          f"({again_after_ack(ops)} delivered again after their ack), "
          + (", ".join(f"{k} {n}" for k, n in bad.items()) or "no violations")
          + (f"; {objects} objects in object storage" if store else "")
          + f"; history {history_path}"
          + (f"; left out: {', '.join(left_out)}" if left_out else ""))
    for k, x in v.items():
        for item in x[:5]:
            print(f"  {k}: {item}")
    if not bad and not keep:
        shutil.rmtree(home, ignore_errors=True)
    else:
        print(f"  node logs kept in {home}")
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--faults", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=3, choices=[3, 5])
    ap.add_argument("--fsync", default="always",
                    help="the nodes' journal fsync policy (always: every kill loses what "
                         "was not fsynced)")
    ap.add_argument("--rate", type=float, default=200.0, help="records per second sent")
    ap.add_argument("--history", default="chaos-history.jsonl")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--keep", action="store_true", help="keep the nodes' data and logs")
    ap.add_argument("--object-store", action="store_true",
                    help="every node offloads to one S3 server (s3s-fs), its 64 KiB segments "
                         "uploaded at once and their local copies dropped")
    a = ap.parse_args()
    ok = run(a.seed, a.faults, a.nodes, a.rate, a.history, a.kinds.split(","), a.keep, a.fsync,
             a.object_store)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
