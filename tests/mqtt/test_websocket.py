"""MQTT over WebSocket (subprotocol "mqtt") with paho-mqtt's websockets transport, talking
to clients on plain TCP through the same broker."""
import pytest

from conftest import Client


@pytest.mark.parametrize("v5", [False, True])
def test_websocket_clients_exchange_with_tcp_clients(node, v5):
    ws = Client(node.ws_port, v5=v5, transport="websockets")
    tcp = Client(node.port, v5=v5)
    ws.subscribe("ws/in", 1)
    tcp.subscribe("ws/out", 2)
    for i in range(10):
        tcp.publish("ws/in", f"to-ws-{i}".encode(), 1)
        ws.publish("ws/out", f"from-ws-{i}".encode(), 2)
    assert [m.payload for m in ws.expect(10)] == [f"to-ws-{i}".encode() for i in range(10)]
    assert [m.payload for m in tcp.expect(10)] == [f"from-ws-{i}".encode() for i in range(10)]
    # A payload larger than one WebSocket frame's worth of typical traffic.
    big = bytes(range(256)) * 1024
    tcp.publish("ws/in", big, 1)
    assert ws.expect(1)[0].payload == big
    ws.close()
    tcp.close()
