"""The MQTT frontend's Prometheus metrics move with real traffic."""
from conftest import Client


def test_metrics_count_connections_packets_and_messages(node):
    c = Client(node.port)
    c.subscribe("m/#", 1)
    for i in range(3):
        c.publish("m/x", b"x", 1)
    c.expect(3)
    m = node.metrics()
    assert m["strata_mqtt_connections"] >= 1
    assert m['strata_mqtt_packets_total{direction="in",type="publish"}'] >= 3
    assert m['strata_mqtt_packets_total{direction="out",type="puback"}'] >= 3
    assert m['strata_mqtt_packets_total{direction="in",type="subscribe"}'] >= 1
    assert m['strata_mqtt_messages_received_total{qos="1"}'] >= 3
    assert m['strata_mqtt_messages_sent_total{qos="1"}'] >= 3
    assert m["strata_mqtt_subscriptions"] >= 1
    assert m["strata_mqtt_received_bytes_total"] > 0 and m["strata_mqtt_sent_bytes_total"] > 0
    assert m['strata_journal_appends_total{class="segment"}'] >= 1, "QoS 1 messages went to the journal"
    c.close()
