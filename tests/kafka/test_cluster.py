"""Three real nodes on 127.0.0.1, .2 and .3 form one cluster: Kafka clients see three
brokers with each partition's leader, produce and consume across them with a consumer
group, and a request sent to a node that does not lead the partition is answered
NOT_LEADER_OR_FOLLOWER. Topics created or deleted through one node are seen by every
node."""
import json
import socket
import struct
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_support import DEADLINE, Node, wait_until
from strata_node import free_port
from test_raw import Raw, batch, string

SECRET = "cluster-test-secret-0123456789"
NOT_LEADER_OR_FOLLOWER = 6


class ClusterNode:
    def __init__(self, node, host):
        self.node, self.host = node, host

    @property
    def bootstrap(self):
        return f"{self.host}:{self.node.kafka_port}"

    def api(self, *path):
        url = f"http://{self.host}:{self.node.admin_port}/api/v1/" + "/".join(path)
        with urllib.request.urlopen(url, timeout=DEADLINE) as r:
            return json.loads(r.read())

    def metrics(self):
        """The node's /metrics as {"name{labels}": value}."""
        url = f"http://{self.host}:{self.node.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=DEADLINE) as r:
            lines = r.read().decode().splitlines()
        return {k: float(v) for k, v in (l.rsplit(" ", 1) for l in lines if l and l[0] != "#")}

    def restart(self):
        """Starts the node again on its data directory (after it was killed)."""
        self.node = Node(self.home, self.config, node_env(self.host), log_path=self.home / "node.log")


def node_env(host):
    return {f"STRATA_{name}": f"{host}:0" for name in (
        "ADMIN__LISTEN", "MQTT__LISTEN", "MQTT__WS_LISTEN", "KAFKA__LISTEN")}


def start_node(tmp_path, node_id, voters, port=None, mqtt=False, extra=""):
    """Node `node_id` on 127.0.0.<node_id> (its node-to-node listener on `port`, a free one
    by default), its data and log under tmp_path/n<node_id>. MQTT is off unless asked for:
    its message store is a replicated stream of the cluster, whose partitions would count
    in the spread of leaders the Kafka tests check."""
    host = f"127.0.0.{node_id}"
    port = port or free_port(host)
    home = tmp_path / f"n{node_id}"
    home.mkdir()
    config = (f'[cluster]\nnode_id = {node_id}\nlisten = "{host}:{port}"\n'
              f'initial_voters = [{voters}]\nsecret = "{SECRET}"\n')
    if not mqtt:
        config += "[mqtt]\nenabled = false\n"
    config += extra
    n = ClusterNode(Node(home, config, node_env(host), log_path=home / "node.log"), host)
    n.rpc, n.home, n.config = f"{host}:{port}", home, config
    return n


def start_cluster(tmp_path, size=3, mqtt=False, extra=""):
    hosts = [f"127.0.0.{i}" for i in range(1, size + 1)]
    ports = [free_port(h) for h in hosts]
    voters = ", ".join(f'"{i + 1}@{h}:{p}"' for i, (h, p) in enumerate(zip(hosts, ports)))
    nodes = []
    try:
        for i, port in enumerate(ports):
            nodes.append(start_node(tmp_path, i + 1, voters, port, mqtt, extra))
    except Exception:
        for n in nodes:
            n.node.stop()
        raise
    for n in nodes:
        wait_until("every node registered with its Kafka listener",
                   lambda n=n: len([m for m in n.api("cluster", "nodes")["nodes"]
                                    if "kafka" in m["listeners"]]) == size)
    return nodes


def produce_to(host, port, topic, partition, records):
    """Produce v3 of one batch to one partition: (error code, base offset)."""
    raw = Raw.__new__(Raw)
    raw.sock = socket.create_connection((host, port), timeout=DEADLINE)
    raw.corr = 0
    body = struct.pack(">hhi", -1, 1, 30000)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition)
    body += struct.pack(">i", len(records)) + records
    data = raw.request(0, 3, body)
    pos = 4
    (n,) = struct.unpack(">h", data[pos:pos + 2])
    pos += 2 + n + 4
    _, error, base = struct.unpack(">ihq", data[pos:pos + 14])
    raw.sock.close()
    return error, base


def test_kafka_clients_produce_and_consume_across_three_nodes(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        admin = AdminClient({"bootstrap.servers": nodes[1].bootstrap})
        for f in admin.create_topics([NewTopic("spread", 6, 1)]).values():
            f.result(DEADLINE)
        md = admin.list_topics(timeout=DEADLINE)
        assert sorted(md.brokers) == [1, 2, 3]
        assert {b.host for b in md.brokers.values()} == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
        leaders = {p.id: p.leader for p in md.topics["spread"].partitions.values()}
        assert sorted(leaders) == list(range(6))
        # Leaders spread evenly: two partitions on each node.
        assert sorted(leaders.values()) == [1, 1, 2, 2, 3, 3]

        # Every node sees the topic, with the same leaders.
        for n in nodes:
            client = AdminClient({"bootstrap.servers": n.bootstrap})

            def same(client=client):
                t = client.list_topics(timeout=DEADLINE).topics.get("spread")
                return t is not None and {
                    p.id: p.leader for p in t.partitions.values()} == leaders
            wait_until(f"node {n.host} to see the topic with the same leaders", same)

        # A produce sent to a node that does not lead the partition is refused.
        for p, leader in leaders.items():
            wrong = nodes[leader % 3]
            error, _ = produce_to(wrong.host, wrong.node.kafka_port, "spread", p, batch())
            assert error == NOT_LEADER_OR_FOLLOWER, (p, leader, wrong.host)
            right = nodes[leader - 1]
            error, base = produce_to(right.host, right.node.kafka_port, "spread", p, batch())
            assert (error, base) == (0, 0), (p, leader)

        # A producer that knows one node finds every leader.
        producer = Producer({"bootstrap.servers": nodes[2].bootstrap, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 5})
        failures = []

        def report(err, msg):
            if err is not None:
                failures.append(err)
        for i in range(600):
            producer.produce("spread", key=b"k%d" % i, value=b"v%d" % i, partition=i % 6,
                             on_delivery=report)
        assert producer.flush(DEADLINE) == 0 and failures == []

        consumer = Consumer({"bootstrap.servers": nodes[0].bootstrap, "group.id": "across",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe(["spread"])
        seen = set()
        end = time.time() + DEADLINE * 4
        while len(seen) < 606:
            assert time.time() < end, f"only {len(seen)} records consumed"
            m = consumer.poll(1.0)
            if m is None or m.error():
                continue
            seen.add((m.partition(), m.offset()))
        assert len(seen) == 606
        assert {p for p, _ in seen} == set(range(6))
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition("spread", p) for p in range(6)],
                                       timeout=DEADLINE)
        assert sorted(tp.offset for tp in committed) == [101] * 6
        consumer.close()

        # Deleting through one node removes it everywhere.
        for f in admin.delete_topics(["spread"]).values():
            f.result(DEADLINE)
        for n in nodes:
            wait_until("the topic gone on every node",
                       lambda n=n: "spread" not in AdminClient(
                           {"bootstrap.servers": n.bootstrap}).list_topics(
                               timeout=DEADLINE).topics)
    finally:
        for n in nodes:
            assert n.node.stop() == 0


def admin_call(n, method, *path, body=None):
    url = f"http://{n.host}:{n.node.admin_port}/api/v1/" + "/".join(path)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=DEADLINE * 2) as r:
        return json.loads(r.read() or b"null")


def placed(n, stream, partitions):
    """The placement of `stream` as node `n` has it, once `n` has applied its creation (a
    node applies the meta service's changes a moment after the one that made them)."""
    leaders = []

    def seen():
        leaders[:] = admin_call(n, "GET", "cluster", f"leaders?stream={stream}")
        return len(leaders) == partitions
    wait_until(f"{stream} placed, as node {n.host} sees it", seen)
    return leaders


def add_node(tmp_path, nodes):
    """Starts node 4 and adds it through a node that may not lead the meta service (the
    request is carried to the leader); returns it once registered with its Kafka listener.
    """
    voters = ", ".join(f'"{i + 1}@{n.rpc}"' for i, n in enumerate(nodes))
    extra = start_node(tmp_path, 4, voters)
    follower = next(n for n in nodes
                    if n.api("cluster", "nodes")["leader"] != int(n.host[-1]))
    cluster = admin_call(follower, "POST", "cluster", "nodes",
                         body={"id": 4, "rpc": extra.rpc})
    assert cluster["node_id"] == int(follower.host[-1])
    wait_until("node 4 registered",
               lambda: all(any(m["id"] == 4 and "kafka" in m["listeners"]
                               for m in n.api("cluster", "nodes")["nodes"]) for n in nodes))
    return extra


def test_a_node_added_through_any_node_takes_new_partitions_and_a_removed_one_none(tmp_path):
    nodes = start_cluster(tmp_path)
    extra = None
    try:
        extra = add_node(tmp_path, nodes)
        host = extra.host
        admin = AdminClient({"bootstrap.servers": extra.bootstrap})
        for f in admin.create_topics([NewTopic("after-join", 4, 1)]).values():
            f.result(DEADLINE)
        leaders = placed(nodes[0], "after-join", 4)
        assert sorted(p["leader"] for p in leaders) == [1, 2, 3, 4]

        # Node 4 leads a partition: removal only marks it leaving; new topics avoid it.
        removal = admin_call(nodes[2], "DELETE", "cluster", "nodes", "4")
        assert removal == {"state": "leaving", "partitions_led": 1, "copies": 0}
        for f in admin.create_topics([NewTopic("after-leave", 6, 1)]).values():
            f.result(DEADLINE)
        leaders = placed(nodes[1], "after-leave", 6)
        assert sorted(p["leader"] for p in leaders) == [1, 1, 2, 2, 3, 3]
        # Its partition is still served where its records are.
        p4 = next(p for p in admin_call(nodes[0], "GET", "cluster", "leaders?stream=after-join")
                  if p["leader"] == 4)["partition"]
        error, base = produce_to(host, extra.node.kafka_port, "after-join", p4, batch())
        assert (error, base) == (0, 0)
        # Once it leads nothing, it is removed outright, and its vote with it.
        for f in admin.delete_topics(["after-join"]).values():
            f.result(DEADLINE)
        wait_until("node 4 leads nothing",
                   lambda: next(m for m in nodes[0].api("cluster", "nodes")["nodes"]
                                if m["id"] == 4)["partitions_led"] == 0)
        removal = admin_call(nodes[0], "DELETE", "cluster", "nodes", "4")
        assert removal == {"state": "removed", "partitions_led": 0, "copies": 0}
        assert [m["id"] for m in nodes[0].api("cluster", "nodes")["nodes"]] == [1, 2, 3]
        wait_until("every node to see node 4 gone",
                   lambda: all([m["id"] for m in n.api("cluster", "nodes")["nodes"]] == [1, 2, 3]
                               for n in nodes))
    finally:
        for n in nodes + ([extra] if extra else []):
            n.node.stop()


def coordinators(bootstrap, groups):
    """The broker coordinating each group, as FindCoordinator answers. A fresh client each
    time: librdkafka's admin client caches coordinators and does not look again on
    NOT_COORDINATOR."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return {g.group_id: g.coordinator.id for g in (
        f.result(DEADLINE) for f in admin.describe_consumer_groups(groups).values())}


def consume_all(bootstrap, group, topic, count):
    """Reads `count` records of `topic` as a member of `group`, commits, leaves: the
    values read."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    end = time.time() + DEADLINE * 4
    while len(got) < count:
        assert time.time() < end, f"{group}: only {len(got)} of {count} records"
        m = consumer.poll(1.0)
        if m is not None and not m.error():
            got.append(m.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    return got


def test_group_offsets_are_served_by_the_new_coordinator_after_it_moves(tmp_path):
    """Groups commit through their coordinators; a node joins, so some groups are
    coordinated elsewhere: the new coordinator serves the offsets committed through the old
    one, and each group's next consumer resumes exactly where the last one stopped."""
    nodes = start_cluster(tmp_path)
    extra = None
    try:
        admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
        for f in admin.create_topics([NewTopic("moving", 3, 1)]).values():
            f.result(DEADLINE)
        placed(nodes[2], "moving", 3)
        producer = Producer({"bootstrap.servers": nodes[1].bootstrap, "acks": "all"})
        failed = []

        def produce(first, count):
            for i in range(first, first + count):
                producer.produce("moving", value=b"m%d" % i, partition=i % 3,
                                 on_delivery=lambda err, _m: err and failed.append(err))
            assert producer.flush(DEADLINE) == 0 and failed == []
        produce(0, 90)
        groups = [f"g{i}" for i in range(8)]
        for i, g in enumerate(groups):
            assert len(consume_all(nodes[i % 3].bootstrap, g, "moving", 90)) == 90
        before = coordinators(nodes[0].bootstrap, groups)
        assert set(before.values()) <= {1, 2, 3}

        extra = add_node(tmp_path, nodes)
        after = {}

        def settled():
            after.update(coordinators(nodes[0].bootstrap, groups))
            return 4 in after.values()
        wait_until("node 4 coordinating some groups", settled)
        moved = [g for g in groups if after[g] != before[g]]
        assert moved, (before, after)

        # Every group's offsets, asked of any node, are those committed before the move.
        for i, g in enumerate(groups):
            consumer = Consumer({"bootstrap.servers": (nodes + [extra])[i % 4].bootstrap,
                                 "group.id": g})
            committed = consumer.committed([TopicPartition("moving", p) for p in range(3)],
                                           timeout=DEADLINE)
            consumer.close()
            assert [tp.offset for tp in committed] == [30, 30, 30], (g, committed)
        # A moved group's next member resumes after what was read: only the new records.
        produce(90, 6)
        for g in moved:
            got = consume_all(extra.bootstrap, g, "moving", 6)
            assert sorted(got) == sorted(b"m%d" % i for i in range(90, 96)), (g, got)
    finally:
        for n in nodes + ([extra] if extra else []):
            n.node.stop()


def test_the_cluster_survives_its_meta_leader_being_killed(tmp_path):
    """SIGKILL the node leading the meta service: the others elect a new leader, topics can
    be created again (on the live nodes once the dead one's heartbeats stopped), the dead
    node's partitions are reported offline, and after it restarts every record it had
    acknowledged is there."""
    nodes = start_cluster(tmp_path)
    try:
        admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
        for f in admin.create_topics([NewTopic("before", 3, 1)]).values():
            f.result(DEADLINE)
        producer = Producer({"bootstrap.servers": nodes[0].bootstrap, "acks": "all"})
        failed = []
        for i in range(300):
            producer.produce("before", value=b"b%d" % i, partition=i % 3,
                             on_delivery=lambda err, _m: err and failed.append(err))
        assert producer.flush(DEADLINE) == 0 and failed == []

        leader = nodes[0].api("cluster", "nodes")["leader"]
        victim = nodes[leader - 1]
        victim.node.proc.kill()
        victim.node.proc.wait()
        alive = [n for n in nodes if n is not victim]

        def new_leader():
            seen = {n.api("cluster", "nodes")["leader"] for n in alive}
            return len(seen) == 1 and None not in seen and leader not in seen
        wait_until("a new meta leader", new_leader)
        def victim_state():
            return next(m for m in alive[0].api("cluster", "nodes")["nodes"] if m["id"] == leader)
        wait_until("the killed node taken for down",
                   lambda: not victim_state()["alive"] and not victim_state()["takes_partitions"])

        survivor = AdminClient({"bootstrap.servers": alive[1].bootstrap})
        for f in survivor.create_topics([NewTopic("after", 4, 1)]).values():
            f.result(DEADLINE)
        md = survivor.list_topics(timeout=DEADLINE)
        assert leader not in md.brokers
        assert {p.leader for p in md.topics["after"].partitions.values()} == \
            {int(n.host[-1]) for n in alive}
        offline = [p for p in md.topics["before"].partitions.values() if p.leader == -1]
        assert len(offline) == 1 and offline[0].error is not None

        # Back from the dead with the same data: its partition is served again, whole.
        home = tmp_path / f"n{leader}"
        config = (home / "strata.toml").read_text()
        victim.node = Node(home, config, node_env(victim.host), log_path=home / "node.log")
        wait_until("the restarted node back in the metadata",
                   lambda: leader in AdminClient({"bootstrap.servers": alive[0].bootstrap})
                   .list_topics(timeout=DEADLINE).brokers)
        consumer = Consumer({"bootstrap.servers": alive[0].bootstrap, "group.id": "after-kill",
                             "auto.offset.reset": "earliest"})
        consumer.assign([TopicPartition("before", p, 0) for p in range(3)])
        got = set()
        end = time.time() + DEADLINE * 4
        while len(got) < 300:
            assert time.time() < end, f"only {len(got)} of 300 records back"
            m = consumer.poll(1.0)
            if m is not None and not m.error():
                got.add(m.value())
        consumer.close()
        assert got == {b"b%d" % i for i in range(300)}
    finally:
        for n in nodes:
            n.node.stop()
