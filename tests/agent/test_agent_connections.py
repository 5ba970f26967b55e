"""The agent API's connections are bounded like every frontend's: `max_connections` (a
connection past it is closed at once and counted), idle connections are closed after
`idle_timeout_ms` (at least `max_wait_ms` + 5 s), and a request body that does not arrive
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
    assert time.time() - began >= 4, "not before max_wait_ms + 5 s"
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nAuthorization: Bearer agent-token-0123456789\r\n"
                 b"Content-Length: 100\r\n\r\n{\"body\":")
    slow.settimeout(DEADLINE)
    answer = slow.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"body_timeout" in answer
    slow.close()
