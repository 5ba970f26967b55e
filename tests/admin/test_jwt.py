"""JSON Web Tokens as MQTT credentials, signed here with PyJWT: HS256 from a secret file,
RS256 from a PEM public key, ES256 from a JWKS file whose keys rotate without a restart.
Tokens are checked for signature, algorithm, exp and nbf; the user they name and the ACL
rules they carry apply to the connection, which is closed when the token expires."""
import json
import socket
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from admin_support import (DEADLINE, Client, connack, node_with, s,  # noqa: F401
                           varint, wait_until)

SECRET = "a-shared-secret-of-at-least-32-bytes!"


def hs256(claims, secret=SECRET):
    return jwt.encode(claims, secret, algorithm="HS256")


def claims(sub="ann", ttl=60, **more):
    now = int(time.time())
    c = {"sub": sub, "exp": now + ttl}
    c.update(more)
    return c


def hs_node(node_with, tmp_path, extra=""):
    (tmp_path / "secret").write_text(SECRET + "\n")
    return node_with(f'[auth]\n{extra}\n[auth.jwt]\nalgorithm = "HS256"\n'
                     f'secret_file = "{tmp_path / "secret"}"\n')


def test_tokens_are_checked_at_connect(node_with, tmp_path):
    n = hs_node(node_with, tmp_path)
    assert connack(n.port, "anon") == 0x87, "anonymous off once tokens are configured"
    good = hs256(claims())
    assert connack(n.port, "c1", None, good) == 0, "the token names the user"
    assert connack(n.port, "c2", "ann", good) == 0
    assert connack(n.port, "c3", "ann", good, v5=False) == 0
    assert connack(n.port, "c4", "bob", good) == 0x86, "another user's token"
    now = int(time.time())
    for bad in [
        hs256(claims(ttl=-30)),                              # expired
        hs256(claims(nbf=now + 600)),                        # not yet good
        hs256({"sub": "ann"}),                               # no exp
        hs256(claims(), secret="another secret of at least 32 bytes."),
        jwt.encode(claims(), None, algorithm="none"),        # unsigned
        hs256(claims(acl="everything")),                     # rules that do not parse
    ]:
        assert connack(n.port, "c5", "ann", bad) == 0x86, jwt.decode(
            bad, options={"verify_signature": False})
    assert connack(n.port, "c6", "ann", hs256(claims(ttl=-30)), v5=False) == 0x04
    m = n.metrics()
    assert m['strata_security_authentications_total{result="token"}'] == 3
    assert m['strata_security_authentications_total{result="bad_credentials"}'] >= 8


def test_token_rules_apply_before_the_nodes(node_with, tmp_path):
    n = hs_node(node_with, tmp_path, 'acl_default = "deny"')
    rules = [
        {"permission": "allow", "action": "all", "topic": "users/%u/#"},
        {"permission": "allow", "action": "subscribe", "topic": "news/+"},
    ]
    ann = Client(n.port, username="ann", password=hs256(claims(acl=rules)))
    assert ann.subscribe("users/ann/#", 1)[0].value < 0x80
    assert ann.subscribe("news/+", 1)[0].value < 0x80
    assert ann.subscribe("#", 1)[0].value == 0x87, "# could match what no rule allows"
    assert ann.subscribe("users/bob/#", 1)[0].value == 0x87
    ann.publish("users/ann/x", b"mine", 1)
    assert ann.expect()[0].payload == b"mine"
    # A publish the rules do not allow is acknowledged (0x87) and goes nowhere.
    info = ann.c.publish("news/today", b"forged", 1)
    info.wait_for_publish(timeout=DEADLINE)
    wait_until("the refusal counted",
               lambda: n.metrics()['strata_security_acl_denied_total{action="publish"}'] >= 1)
    # Without rules of its own a token's user has only the node's (deny everything).
    bare = Client(n.port, username="bob", password=hs256(claims(sub="bob")))
    assert bare.subscribe("users/bob/#", 1)[0].value == 0x87
    ann.close()
    bare.close()


def test_a_connection_ends_when_its_token_expires(node_with, tmp_path):
    n = hs_node(node_with, tmp_path)
    # A raw MQTT 5 client, to read the DISCONNECT's reason code as sent.
    token = hs256(claims(ttl=2))
    body = (s("MQTT") + bytes([5, 0xC2]) + (60).to_bytes(2, "big") + b"\x00" + s("short-lived")
            + s("ann") + s(token))
    sock = socket.create_connection(("127.0.0.1", n.port), timeout=DEADLINE)
    sock.sendall(b"\x10" + varint(len(body)) + body)
    connack = sock.recv(64)
    assert connack[0] == 0x20 and connack[3] == 0, connack
    assert sock.recv(3) == b"\xe0\x01\x87", "DISCONNECT: not authorized"
    assert sock.recv(1) == b"", "then closed"
    wait_until("the expiry counted",
               lambda: n.metrics().get('strata_mqtt_errors_total{reason="credentials_expired"}')
               == 1)


def test_rs256_from_a_pem_key(node_with, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "issuer.pem").write_bytes(pem)
    n = node_with(f'[auth.jwt]\nalgorithm = "RS256"\nkey_file = "{tmp_path / "issuer.pem"}"\n'
                  'issuer = "https://issuer.example"\n')
    good = jwt.encode(claims(iss="https://issuer.example"), key, algorithm="RS256")
    assert connack(n.port, "r1", "ann", good) == 0
    wrong_iss = jwt.encode(claims(iss="https://elsewhere"), key, algorithm="RS256")
    assert connack(n.port, "r2", "ann", wrong_iss) == 0x86
    # An HMAC token "signed" with the public key is the classic confusion: refused.
    confused = jwt.encode(claims(), "x" * 40, algorithm="HS256")
    assert connack(n.port, "r3", "ann", confused) == 0x86
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(iss="https://issuer.example"), other, algorithm="RS256")
    assert connack(n.port, "r4", "ann", forged) == 0x86


def es_jwk(key, kid):
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": "ES256", "use": "sig"})
    return jwk


def test_es256_from_a_jwks_file_that_rotates(node_with, tmp_path):
    first, second = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [es_jwk(first, "k1")]}))
    log = tmp_path / "node.log"
    n = node_with(f'[auth.jwt]\nalgorithm = "ES256"\njwks_file = "{jwks}"\n', log_path=log)

    def token(key, kid):
        return jwt.encode(claims(), key, algorithm="ES256", headers={"kid": kid})

    assert connack(n.port, "e1", "ann", token(first, "k1")) == 0
    assert connack(n.port, "e2", "ann", token(second, "k2")) == 0x86, "unknown kid"
    assert connack(n.port, "e3", "ann", token(second, "k1")) == 0x86, "wrong key for k1"
    # The issuer rotates: k2 is added, k1 retired. No restart.
    jwks.write_text(json.dumps({"keys": [es_jwk(second, "k2")]}))
    wait_until("the new key", lambda: connack(n.port, "e4", "ann", token(second, "k2")) == 0)
    assert connack(n.port, "e5", "ann", token(first, "k1")) == 0x86, "retired key"
    # A JWKS file that stops parsing leaves the keys in use.
    jwks.write_text("{not json")
    wait_until("the bad file noticed", lambda: connack(n.port, "e6", "ann", token(second, "k2")) == 0
               and "do not load" in log.read_text())
    assert connack(n.port, "e6", "ann", token(second, "k2")) == 0
