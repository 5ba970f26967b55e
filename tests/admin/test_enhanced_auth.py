"""MQTT 5 enhanced authentication with SCRAM-SHA-256/512 (MQTT 5 §4.12, RFC 5802/7677),
over a real socket: the exchange at CONNECT (CONNACK carrying the server's signature, which
the client checks), re-authentication on a live connection, wrong passwords, unknown users
and methods, and AUTH from a client that agreed no method. No common MQTT client library
implements the SCRAM exchange, so the client side is written out here from the RFC."""
import base64
import hashlib
import hmac
import os
import socket

from admin_support import DEADLINE, Api, node_with, varint  # noqa: F401

PASSWORD = "carol-s3cret-pw"


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return len(b).to_bytes(2, "big") + b


def props(method, data=None):
    p = b"\x15" + s(method)
    if data is not None:
        p += b"\x16" + s(data)
    return varint(len(p)) + p


class Scram:
    """The client's side of one SCRAM exchange."""

    def __init__(self, user, password, hash_name="sha256"):
        self.password, self.hash = password, hash_name
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.bare = f"n={user},r={self.nonce}"

    def first(self):
        return ("n,," + self.bare).encode()

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac(self.hash, self.password.encode(),
                                     base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", self.hash).digest()
        stored_key = hashlib.new(self.hash, client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{self.bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, self.hash).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", self.hash).digest()
        self.expected = "v=" + base64.b64encode(
            hmac.new(server_key, auth_message, self.hash).digest()).decode()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = b""

    def send(self, first, body):
        self.sock.sendall(bytes([first]) + varint(len(body)) + body)

    def recv(self):
        """(packet type byte, body), or None when the server closed the connection."""
        while True:
            if len(self.buf) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self.buf):
                    length |= (self.buf[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not self.buf[i - 1] & 0x80:
                        break
                if len(self.buf) >= i + length and not self.buf[i - 1] & 0x80:
                    first, body = self.buf[0], self.buf[i:i + length]
                    self.buf = self.buf[i + length:]
                    return first, body
            try:
                chunk = self.sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk

    def connect(self, client_id, method, data, username=None):
        flags = 0x02 | (0x80 if username else 0)
        body = s("MQTT") + bytes([5, flags]) + (60).to_bytes(2, "big") + props(method, data)
        body += s(client_id) + (s(username) if username else b"")
        self.send(0x10, body)

    def auth(self, reason, method, data):
        self.send(0xF0, bytes([reason]) + props(method, data))


def properties(body):
    """{id: value} of a property block (method 0x15 and data 0x16 as bytes)."""
    length, shift, i = 0, 0, 0
    while True:
        length |= (body[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not body[i - 1] & 0x80:
            break
    out, p, end = {}, i, i + length
    while p < end:
        pid = body[p]
        p += 1
        if pid in (0x15, 0x16, 0x1F, 0x12):
            n = int.from_bytes(body[p:p + 2], "big")
            out[pid] = body[p + 2:p + 2 + n]
            p += 2 + n
        elif pid in (0x11, 0x27):
            out[pid] = body[p:p + 4]
            p += 4
        elif pid in (0x21, 0x22, 0x13):
            out[pid] = body[p:p + 2]
            p += 2
        elif pid in (0x24, 0x25, 0x28, 0x29, 0x2A):
            out[pid] = body[p:p + 1]
            p += 1
        else:
            raise AssertionError(f"unexpected property {pid:#x}")
    return out


def exchange(port, user, password, method="SCRAM-SHA-256", hash_name="sha256"):
    """Runs the exchange at CONNECT: (connection, CONNACK reason, the client's Scram)."""
    c, sc = Conn(port), Scram(user, password, hash_name)
    c.connect(f"scram-{user}", method, sc.first())
    first, body = c.recv()
    if first == 0x20:  # refused before the exchange
        return c, body[1], sc
    assert first == 0xF0 and body[0] == 0x18, (hex(first), body)
    server_first = properties(body[1:])[0x16].decode()
    c.auth(0x18, method, sc.final(server_first))
    answer = c.recv()
    assert answer is not None and answer[0] == 0x20, answer
    return c, answer[1][1], sc


def carol(node_with):
    n = node_with()
    api = Api(n).started()
    assert api.put("auth", "users", "carol", body={"password": PASSWORD})[0] == 201
    return n


def test_scram_at_connect_and_the_servers_signature(node_with):
    n = carol(node_with)
    for method, hash_name in [("SCRAM-SHA-256", "sha256"), ("SCRAM-SHA-512", "sha512")]:
        c = Conn(n.port)
        sc = Scram("carol", PASSWORD, hash_name)
        c.connect("scram-ok", method, sc.first())
        first, body = c.recv()
        assert first == 0xF0 and body[0] == 0x18
        got = properties(body[1:])
        assert got[0x15] == method.encode()
        c.auth(0x18, method, sc.final(got[0x16].decode()))
        first, body = c.recv()
        assert first == 0x20 and body[1] == 0, body
        connack_props = properties(body[2:])
        assert connack_props[0x15] == method.encode()
        assert connack_props[0x16].decode() == sc.expected, "the server proves it knows the key"
        # The connection works: PINGREQ answered.
        c.send(0xC0, b"")
        assert c.recv() == (0xD0, b"")
        c.sock.close()
    assert n.metrics()['strata_security_authentications_total{result="ok"}'] >= 2


def test_wrong_passwords_unknown_users_and_methods(node_with):
    n = carol(node_with)
    assert exchange(n.port, "carol", "not-the-password")[1] == 0x86
    assert exchange(n.port, "nobody", PASSWORD)[1] == 0x86, "looks like a wrong password"
    c = Conn(n.port)
    c.connect("scram-x", "SCRAM-SHA-1", b"n,,n=carol,r=abc")
    first, body = c.recv()
    assert first == 0x20 and body[1] == 0x8C, "bad authentication method"
    # A client naming another user than its exchange proves is refused.
    c = Conn(n.port)
    sc = Scram("carol", PASSWORD)
    c.connect("scram-y", "SCRAM-SHA-256", sc.first(), username="mallory")
    first, body = c.recv()
    c.auth(0x18, "SCRAM-SHA-256", sc.final(properties(body[1:])[0x16].decode()))
    assert c.recv()[1][1] == 0x86
    # A client first message that is not SCRAM: protocol error.
    c = Conn(n.port)
    c.connect("scram-z", "SCRAM-SHA-256", b"garbage")
    first, body = c.recv()
    assert first == 0x20 and body[1] == 0x82
    assert n.metrics()['strata_security_authentications_total{result="bad_credentials"}'] >= 3


def test_reauthentication(node_with):
    n = carol(node_with)
    c, code, _ = exchange(n.port, "carol", PASSWORD)
    assert code == 0
    again = Scram("carol", PASSWORD)
    c.auth(0x19, "SCRAM-SHA-256", again.first())
    first, body = c.recv()
    assert first == 0xF0 and body[0] == 0x18
    c.auth(0x18, "SCRAM-SHA-256", again.final(properties(body[1:])[0x16].decode()))
    first, body = c.recv()
    assert first == 0xF0 and body[0] == 0x00, "re-authenticated"
    assert properties(body[1:])[0x16].decode() == again.expected
    # A re-authentication with a wrong password ends the connection: DISCONNECT 0x86.
    wrong = Scram("carol", "not-the-password")
    c.auth(0x19, "SCRAM-SHA-256", wrong.first())
    first, body = c.recv()
    c.auth(0x18, "SCRAM-SHA-256", wrong.final(properties(body[1:])[0x16].decode()))
    first, body = c.recv()
    assert first == 0xE0 and body[0] == 0x86, (hex(first), body)
    assert c.recv() is None


def test_auth_without_a_method_at_connect_is_a_protocol_error(node_with):
    n = node_with()
    c = Conn(n.port)
    c.send(0x10, s("MQTT") + bytes([5, 0x02]) + (60).to_bytes(2, "big") + b"\x00" + s("plain"))
    first, body = c.recv()
    assert first == 0x20 and body[1] == 0
    c.auth(0x19, "SCRAM-SHA-256", b"n,,n=carol,r=abc")
    first, body = c.recv()
    assert first == 0xE0 and body[0] == 0x82
