"""Kafka ACLs with real clients: bindings created, described and deleted through
confluent-kafka's AdminClient (CreateAcls, DescribeAcls, DeleteAcls), and enforced on
Produce, Fetch, Metadata, consumer groups, topic administration and the ACL APIs
themselves with the *_AUTHORIZATION_FAILED codes. Users log in with SASL/PLAIN."""
import json
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType)
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                         KafkaAdminClient, ResourcePatternFilter)
from kafka.admin import ResourceType as KResourceType
from kafka.errors import (ClusterAuthorizationFailedError, SecurityDisabledError,
                          TopicAuthorizationFailedError)

from kafka_support import DEADLINE, node_with, wait_until  # noqa: F401

USERS = {"admin": "admin-password", "alice": "alice-password", "bob": "bob-password"}
CONFIG = ("[kafka]\nauthorizer = true\nsuper_users = [\"admin\"]\n[kafka.sasl_plain_users]\n"
          + "".join(f'{u} = "{p}"\n' for u, p in USERS.items()))


# kafka-python's filter for every binding.
EVERY_ACL = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                      permission_type=ACLPermissionType.ANY,
                      resource_pattern=ResourcePatternFilter(KResourceType.ANY, None,
                                                             ACLResourcePatternType.ANY))


def conf(n, user, **more):
    c = {"bootstrap.servers": n.bootstrap, "security.protocol": "SASL_PLAINTEXT",
         "sasl.mechanisms": "PLAIN", "sasl.username": user, "sasl.password": USERS[user]}
    c.update(more)
    return c


def allow(restype, name, principal, operation, pattern=ResourcePatternType.LITERAL):
    return AclBinding(restype, name, pattern, principal, "*", operation,
                      AclPermissionType.ALLOW)


def produce(n, user, topic, value=b"v"):
    """Produces one message; returns the delivery error code (None when stored)."""
    p = Producer(conf(n, user, **{"message.timeout.ms": 15000, "enable.idempotence": False}))
    out = []
    p.produce(topic, value, on_delivery=lambda err, msg: out.append(err))
    p.flush(DEADLINE)
    assert out, "no delivery report"
    return out[0].code() if out[0] else None


def read_all(n, user, topic):
    """Reads partition 0 of `topic` from the start without a group (kafka-python)."""
    c = KafkaConsumer(bootstrap_servers=n.bootstrap, security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="PLAIN", sasl_plain_username=user,
                      sasl_plain_password=USERS[user], consumer_timeout_ms=3000)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        return [m.value for m in c]
    finally:
        c.close()


def acl_node(node_with):
    n = node_with(CONFIG)
    admin = AdminClient(conf(n, "admin"))
    for f in admin.create_topics([NewTopic("orders", 1), NewTopic("payments", 1)]).values():
        f.result(DEADLINE)
    bindings = [
        allow(ResourceType.TOPIC, "orders", "User:alice", AclOperation.WRITE),
        allow(ResourceType.TOPIC, "orders", "User:bob", AclOperation.READ),
        allow(ResourceType.GROUP, "billing", "User:bob", AclOperation.READ),
        allow(ResourceType.TOPIC, "pay", "User:alice", AclOperation.ALL,
              ResourcePatternType.PREFIXED),
        AclBinding(ResourceType.TOPIC, "payments", ResourcePatternType.LITERAL, "User:alice",
                   "*", AclOperation.DELETE, AclPermissionType.DENY),
    ]
    for f in admin.create_acls(bindings).values():
        assert f.result(DEADLINE) is None
    return n, admin, bindings


def test_acls_are_administered_through_kafka(node_with):
    n, admin, bindings = acl_node(node_with)
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    assert sorted(map(str, admin.describe_acls(everything).result(DEADLINE))) == \
        sorted(map(str, bindings))
    # MATCH: the bindings that apply to the topic `payments` (the prefix and the literal).
    on_payments = AclBindingFilter(ResourceType.TOPIC, "payments", ResourcePatternType.MATCH,
                                   None, None, AclOperation.ANY, AclPermissionType.ANY)
    assert len(admin.describe_acls(on_payments).result(DEADLINE)) == 2
    # Only a principal with Describe/Alter on the cluster administers ACLs. (librdkafka
    # drops DescribeAcls' top-level error and shows an empty list: kafka-python shows it.)
    alice = AdminClient(conf(n, "alice"))
    assert alice.describe_acls(everything).result(DEADLINE) == []
    kp = KafkaAdminClient(bootstrap_servers=n.bootstrap, security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="PLAIN", sasl_plain_username="alice",
                          sasl_plain_password=USERS["alice"])
    with pytest.raises(ClusterAuthorizationFailedError):
        kp.describe_acls(EVERY_ACL)
    kp.close()
    with pytest.raises(KafkaException) as e:
        list(alice.create_acls([bindings[1]]).values())[0].result(DEADLINE)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # A binding Kafka would refuse is refused here too.
    bad = AclBinding(ResourceType.TOPIC, "x", ResourcePatternType.LITERAL, "alice", "*",
                     AclOperation.READ, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException):
        list(admin.create_acls([bad]).values())[0].result(DEADLINE)
    # Deleting by filter returns what went.
    bob_reads = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob",
                                 None, AclOperation.READ, AclPermissionType.ANY)
    gone = list(admin.delete_acls([bob_reads]).values())[0].result(DEADLINE)
    assert len(gone) == 2
    assert len(admin.describe_acls(everything).result(DEADLINE)) == 3
    # Every change is in the node's audit stream: 5 created, 2 deleted.
    url = f"http://127.0.0.1:{n.admin_port}/api/v1/streams/strata.audit"
    audit = json.load(urllib.request.urlopen(url, timeout=DEADLINE))
    assert audit["partitions"][0]["end_offset"] == 7


def test_acls_are_enforced_on_data_and_groups(node_with):
    n, admin, _ = acl_node(node_with)
    assert produce(n, "alice", "orders", b"o1") is None
    assert produce(n, "bob", "orders") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce(n, "alice", "payments", b"p1") is None, "prefixed ALL"
    assert read_all(n, "bob", "orders") == [b"o1"]
    # Describe lets bob see `payments`, not read it: Fetch answers 29.
    describe = [allow(ResourceType.TOPIC, t, "User:bob", AclOperation.DESCRIBE)
                for t in ("payments", "orders")]
    for f in admin.create_acls(describe).values():
        f.result(DEADLINE)
    with pytest.raises(TopicAuthorizationFailedError):
        read_all(n, "bob", "payments")
    # Metadata lists only what a principal may describe.
    assert set(AdminClient(conf(n, "bob")).list_topics(timeout=DEADLINE).topics) == \
        {"orders", "payments"}
    assert set(AdminClient(conf(n, "alice")).list_topics(timeout=DEADLINE).topics) == \
        {"orders", "payments"}
    list(admin.create_topics([NewTopic("hidden", 1)]).values())[0].result(DEADLINE)
    assert "hidden" not in AdminClient(conf(n, "bob")).list_topics(timeout=DEADLINE).topics
    assert {"orders", "payments"} <= set(admin.list_topics(timeout=DEADLINE).topics)
    # A group needs Read on the group: bob may consume as `billing`, not as `other`.
    def consume(group):
        c = Consumer(conf(n, "bob", **{"group.id": group, "auto.offset.reset": "earliest"}))
        c.subscribe(["orders"])
        try:
            for _ in range(int(DEADLINE * 2)):
                m = c.poll(0.5)
                if m is not None:
                    return m.error().code() if m.error() else m.value()
            return None
        finally:
            c.close()
    assert consume("billing") == b"o1"
    assert consume("other") == KafkaError.GROUP_AUTHORIZATION_FAILED
    # Topic administration: alice may create `pay*` topics, not others, and is denied
    # deleting `payments` although ALL on `pay*` allows it (deny wins).
    alice = AdminClient(conf(n, "alice"))
    list(alice.create_topics([NewTopic("pay-eu", 1)]).values())[0].result(DEADLINE)
    with pytest.raises(KafkaException) as e:
        list(alice.create_topics([NewTopic("elsewhere", 1)]).values())[0].result(DEADLINE)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as e:
        list(alice.delete_topics(["payments"]).values())[0].result(DEADLINE)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    list(alice.delete_topics(["pay-eu"]).values())[0].result(DEADLINE)
    # Revoking applies at the next request, no restart (bob still may describe `orders`,
    # so the refusal comes from Fetch).
    bob_reads = AclBindingFilter(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL,
                                 "User:bob", None, AclOperation.READ, AclPermissionType.ALLOW)
    list(admin.delete_acls([bob_reads]).values())[0].result(DEADLINE)
    with pytest.raises(TopicAuthorizationFailedError):
        read_all(n, "bob", "orders")
    m = n.metrics()
    assert m['strata_kafka_errors_total{api="Produce",code="29"}'] >= 1
    assert m['strata_kafka_errors_total{api="authorizer",code="group"}'] >= 1


def test_acl_apis_without_an_authorizer(node_with):
    n = node_with()
    kp = KafkaAdminClient(bootstrap_servers=n.bootstrap)
    with pytest.raises(SecurityDisabledError):
        kp.describe_acls(EVERY_ACL)
    kp.close()
    # And every client may do everything (but touch internal streams).
    topic = f"free-{uuid.uuid4().hex[:6]}"
    p = Producer({"bootstrap.servers": n.bootstrap})
    p.produce(topic, b"x")
    assert p.flush(DEADLINE) == 0
