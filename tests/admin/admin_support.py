"""Helpers for the admin API tests: a real `strata serve` (tests/strata_node.py), real
MQTT (paho-mqtt) and Kafka (confluent-kafka) clients, and a small HTTP client for the
admin API that returns status and JSON body."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, ROOT, Node, node, node_with, strata_bin  # noqa: E402,F401
from mqtt_client import Client  # noqa: E402,F401


class Api:
    """The admin API of one node: `get("mqtt", "clients", limit=5)` -> (status, body)."""

    def __init__(self, node, token=None):
        self.base = f"http://127.0.0.1:{node.admin_port}"
        self.token = token

    def url(self, *segments, **query):
        path = "/".join(urllib.parse.quote(str(s), safe="") for s in segments)
        q = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return f"{self.base}/api/v1/{path}" + (f"?{q}" if q else "")

    def request(self, method, url, body=None, content_type="application/json"):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=DEADLINE) as r:
                status, raw, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, raw, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
        if not raw:
            return status, None
        assert ctype.startswith("application/json"), (status, ctype, raw)
        return status, json.loads(raw)

    def get(self, *segments, **query):
        return self.request("GET", self.url(*segments, **query))

    def post(self, *segments, body=None):
        return self.request("POST", self.url(*segments), body)

    def put(self, *segments, body=None):
        return self.request("PUT", self.url(*segments), body)

    def delete(self, *segments):
        return self.request("DELETE", self.url(*segments))

    def started(self):
        """Waits until both frontends answer: right after start a frontend still
        recovering its state answers 503 `unavailable`."""
        for probe in (("mqtt", "sessions"), ("kafka", "groups")):
            wait_until(f"{probe[0]} to start", lambda: self.get(*probe)[0] != 503)
        return self

    def ok(self, *segments, **query):
        status, body = self.get(*segments, **query)
        assert status == 200, (segments, status, body)
        return body


def offloading_node(node_with, tmp_path, **env):
    """A node that uploads every sealed segment (4 KiB segments) to a filesystem object
    store at once and drops its local copy; without the in-memory tail, readers read
    uploaded segments back through the block cache."""
    objects = tmp_path / "objects"
    objects.mkdir()
    return node_with(f'''
[journal]
segment_bytes = 4096
tail_cache_bytes = 0
[journal.object_store]
backend = "fs"
root = "{objects}"
[journal.offload]
local_retention_ms = 0
''', **env)


def assert_error(answer, status, code):
    """An error answer: the HTTP status and the JSON body's code (with a message)."""
    got, body = answer
    assert got == status, answer
    assert body["code"] == code and body["message"], answer


def wait_until(what, done, deadline=DEADLINE):
    end = time.time() + deadline
    while True:
        value = done()
        if value:
            return value
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def admin_cli(node, *args, token=None):
    """Runs `strata admin <args>` against the node; (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "STRATA_ADMIN_TOKEN"}
    env["STRATA_ADMIN_URL"] = f"http://127.0.0.1:{node.admin_port}"
    if token:
        env["STRATA_ADMIN_TOKEN"] = token
    p = subprocess.run([strata_bin(), "admin", *args], env=env, capture_output=True,
                       text=True, timeout=DEADLINE)
    return p.returncode, p.stdout, p.stderr


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return len(b).to_bytes(2, "big") + b


def varint(n):
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connack(port, client_id, username=None, password=None, v5=True, clean=True, will=None):
    """Sends a raw CONNECT and returns the CONNACK's reason code."""
    flags = 0x02 if clean else 0
    payload = s(client_id)
    if will:
        flags |= 0x04
        payload += (b"\x00" if v5 else b"") + s(will) + s(b"w")
    if username is not None:
        flags |= 0x80
        payload += s(username)
    if password is not None:
        flags |= 0x40
        payload += s(password)
    body = s("MQTT") + bytes([5 if v5 else 4, flags]) + (60).to_bytes(2, "big")
    body += (b"\x00" if v5 else b"") + payload
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    try:
        sock.sendall(b"\x10" + varint(len(body)) + body)
        data = sock.recv(64)
    except (ConnectionResetError, BrokenPipeError):
        data = b""  # closed at accept
    sock.close()
    if not data:
        return None
    assert data[0] == 0x20, data
    return data[3]
