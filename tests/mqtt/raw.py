"""Raw MQTT 5 packets for tests that need exact bytes (paho hides or forbids them)."""
import socket

from conftest import DEADLINE


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return len(b).to_bytes(2, "big") + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect(client_id="raw", props=b"", v5=True, keep_alive=60, clean=True):
    level = 5 if v5 else 4
    body = s("MQTT") + bytes([level, 0x02 if clean else 0x00]) + keep_alive.to_bytes(2, "big")
    if v5:
        body += varint(len(props)) + props
    body += s(client_id)
    return packet(0x10, body)


def publish(topic, payload, qos=0, packet_id=1, props=b"", v5=True, dup=False):
    body = s(topic)
    if qos:
        body += packet_id.to_bytes(2, "big")
    if v5:
        body += varint(len(props)) + props
    body += payload
    return packet(0x30 | (qos << 1) | (0x08 if dup else 0), body)


def subscribe(topic, qos, packet_id=1, v5=True):
    body = packet_id.to_bytes(2, "big") + (b"\x00" if v5 else b"") + s(topic) + bytes([qos])
    return packet(0x82, body)


def ack(kind, packet_id):
    """PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70), 3.1.1 form."""
    return packet(kind, packet_id.to_bytes(2, "big"))


def parse_publish(first, body, v5=True):
    """(dup, qos, topic, packet id, payload) of a PUBLISH."""
    qos = (first >> 1) & 3
    n = int.from_bytes(body[:2], "big")
    topic, rest = body[2:2 + n].decode(), body[2 + n:]
    packet_id = None
    if qos:
        packet_id, rest = int.from_bytes(rest[:2], "big"), rest[2:]
    if v5:
        plen = rest[0]  # short property lists only
        rest = rest[1 + plen:]
    return bool(first & 0x08), qos, topic, packet_id, rest


def split_packet(buf):
    """((first byte, body), rest) when `buf` starts with a whole packet, else (None, buf)."""
    n, mult, i = 0, 1, 1
    while i < len(buf):
        b = buf[i]
        n += (b & 0x7F) * mult
        mult *= 128
        i += 1
        if not b & 0x80:
            if len(buf) >= i + n:
                return (buf[0], bytes(buf[i:i + n])), buf[i + n:]
            break
    return None, buf


class Raw:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(DEADLINE)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_packet(self):
        """Returns (first byte, body), or None at end of stream."""
        while True:
            got, self.buf = split_packet(self.buf)
            if got:
                return got
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def connect(self, **kw):
        self.send(connect(**kw))
        first, body = self.read_packet()
        assert first == 0x20
        return body

    def close(self):
        self.sock.close()
