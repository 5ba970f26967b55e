"""The agent API's connections are bounded like every frontend's: `max_connections` (a
connection past it is closed at once and counted), idle connections are closed after
`idle_timeout_ms` (at least `max_wait_ms`, or 15 s, + 5 s), and a request body that does not arrive
within `body_timeout_ms` answers 408 `body_timeout`."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import Api, start, wait_until  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, node_with  # noqa: E402,F401


def closed(sock):
    """Whether the server closed `sock` (waits up to the deadline for it)."""
    sock.settimeout(DEADLINE)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return False


def test_connections_past_the_bound_are_closed_and_counted(node_with):
    node = start(node_with, "[agent]\nmax_connections = 3\n")
    api = Api(node)
    port = node.ports["agent"]
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    # Accepted in order: the fourth comes after the three.
    extra = socket.create_connection(("127.0.0.1", port))
    assert closed(extra), "a fourth connection is closed at once"
    assert node.metrics()['strata_agent_errors_total{code="connection_max"}'] >= 1
    held.pop().close()
    # Its place is given back: a request gets through again.
    wait_until("a place free", lambda: _answers(api))
    for s in held:
        s.close()


def _answers(api):
    try:
        return api.send("jobs", {"n": 1})[0] == 201
    except OSError:
        return False


def test_idle_connections_and_slow_bodies_are_cut(node_with):
    node = start(node_with, "[agent]\nmax_wait_ms = 0\nidle_timeout_ms = 1\nbody_timeout_ms = 500\n")
    port = node.ports["agent"]
    idle = socket.create_connection(("127.0.0.1", port))
    began = time.time()
    assert closed(idle), "an idle connection is closed"
    # Not before the larger of max_wait_ms and the streams' 15 s keepalive, plus 5 s.
    assert time.time() - began >= 19
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nAuthorization: Bearer agent-token-0123456789\r\n"
                 b"Content-Length: 100\r\n\r\n{\"body\":")
    slow.settimeout(DEADLINE)
    answer = slow.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"body_timeout" in answer
    slow.close()


def test_without_a_token_only_requests_to_this_machine_are_answered(node_with):
    node = node_with("", STRATA_AGENT__ENABLED="true")
    port = node.ports["agent"]

    def get(host):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(f"GET /v1/agents HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                      .encode())
            s.settimeout(DEADLINE)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    # A page whose name was made to resolve here (DNS rebinding) sends its own name.
    refused = get("evil.example:8090")
    assert refused.startswith(b"HTTP/1.1 403") and b"bad_host" in refused, refused[:300]
    for host in (f"127.0.0.1:{port}", "localhost", f"[::1]:{port}"):
        assert get(host).startswith(b"HTTP/1.1 200"), host


def test_http2_is_not_served(node_with):
    node = start(node_with)
    with socket.create_connection(("127.0.0.1", node.ports["agent"])) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert closed(s), "an HTTP/2 connection is closed"
