"""Authentication, authorization and bans with real clients: users managed through the
admin API and `strata admin`, passwords checked at CONNECT (paho, mosquitto_pub/sub, raw
packets for the exact CONNACK codes of 3.1.1 and 5.0), a client id owned by the user who
created its session, ACL rules applied without a restart, bans and flapping detection, and
an audit record of every change. No password ever reaches the log or the API."""
import json
import socket
import subprocess

from admin_support import (DEADLINE, Api, Client, admin_cli, connack, node_with,  # noqa: F401
                           s, varint, wait_until)

ALICE, BOB = "alice-s3cret-pw", "bob-s3cret-pw"


def with_users(node_with, config="", **env):
    n = node_with(config, **env)
    api = Api(n).started()
    assert api.put("auth", "users", "alice", body={"password": ALICE})[0] == 201
    code, out, err = admin_cli(n, "users", "add", "bob", "--password", BOB)
    assert code == 0, err
    return n, api


def test_passwords_and_connack_codes(node_with):
    n = node_with()
    assert connack(n.port, "anon") == 0, "anonymous while no user exists"
    n, api = n, Api(n).started()
    assert api.put("auth", "users", "alice", body={"password": ALICE})[0] == 201
    assert connack(n.port, "anon") == 0x87, "anonymous off once a user exists"
    assert connack(n.port, "anon3", v5=False) == 0x05
    assert connack(n.port, "a1", "alice", "wrong") == 0x86
    assert connack(n.port, "a2", "alice", "wrong", v5=False) == 0x04
    assert connack(n.port, "a3", "nobody", "x") == 0x86
    assert connack(n.port, "a4", "alice", ALICE) == 0
    assert connack(n.port, "a5", "alice", ALICE, v5=False) == 0
    m = n.metrics()
    assert m['strata_security_authentications_total{result="bad_credentials"}'] == 3
    assert m['strata_security_authentications_total{result="not_authorized"}'] == 2
    # The API never shows a hash; the effective config masks configured ones.
    status, users = api.get("auth", "users")
    assert status == 200 and users == [{"name": "alice", "source": "api"}]
    assert "argon2" not in json.dumps(api.ok("node", "config"))


def test_a_client_id_belongs_to_the_user_that_created_its_session(node_with):
    n, api = with_users(node_with)
    phone = Client(n.port, client_id="alice-phone", expiry=3600, clean=False,
                   username="alice", password=ALICE)
    phone.subscribe("users/alice/inbox", 1)
    phone.close()
    # The attack: bob takes alice's client id with clean start to wipe her session.
    assert connack(n.port, "alice-phone", "bob", BOB, clean=True) == 0x87
    assert connack(n.port, "alice-phone", "bob", BOB, v5=False) == 0x05
    sender = Client(n.port, username="bob", password=BOB)
    sender.publish("users/alice/inbox", b"kept", 1)
    back = Client(n.port, client_id="alice-phone", expiry=3600, clean=False,
                  username="alice", password=ALICE, connect=False)
    flags, rc, _ = back.connect()
    assert rc == 0 and flags.session_present
    assert back.expect(1)[0].payload == b"kept"
    assert n.metrics()['strata_mqtt_errors_total{reason="client_id_owned"}'] == 2
    # A session without expiry ends when its client leaves; its client id stays alice's.
    assert connack(n.port, "alice-tmp", "alice", ALICE) == 0
    wait_until("the session ended", lambda: api.get("mqtt", "sessions", "alice-tmp")[0] == 404)
    assert connack(n.port, "alice-tmp", "bob", BOB) == 0x87
    assert connack(n.port, "alice-tmp", "alice", ALICE) == 0


def test_mosquitto_clients_with_user_and_password(node_with):
    n, _ = with_users(node_with)
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(n.port), "-V", "mqttv311",
                            "-u", "alice", "-P", ALICE, "-t", "m/#", "-C", "1", "-W", "30"],
                           stdout=subprocess.PIPE, text=True)
    wait_until("the subscriber", lambda: n.metrics()["strata_mqtt_subscriptions"] >= 1)
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(n.port), "-u", "bob", "-P", BOB,
                    "-t", "m/x", "-m", "hello", "-q", "1"], check=True, timeout=DEADLINE)
    out, _ = sub.communicate(timeout=DEADLINE)
    assert out.strip() == "hello"
    bad = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(n.port), "-u", "bob",
                          "-P", "wrong", "-t", "m/x", "-m", "x"], capture_output=True,
                         text=True, timeout=DEADLINE)
    assert bad.returncode != 0


ACL = [
    {"permission": "allow", "action": "all", "topic": "users/%u/#"},
    {"permission": "deny", "action": "all", "topic": "users/#"},
    {"permission": "deny", "action": "all", "topic": "secret/#"},
    {"permission": "deny", "action": "retain", "topic": "#"},
    {"permission": "allow", "action": "all", "topic": "#"},
]


def test_acl_rules_apply_without_a_restart(node_with, tmp_path):
    n, api = with_users(node_with)
    alice = Client(n.port, username="alice", password=ALICE)
    assert alice.subscribe("#", 0)[0].value == 0, "everything allowed before the ACL"
    rules = tmp_path / "acl.json"
    rules.write_text(json.dumps(ACL))
    code, out, err = admin_cli(n, "acl", "set", str(rules))
    assert code == 0, err
    assert "users/%u/#" in out
    # A `#` does not slip past the deny on secret/#; placeholders are the client's own.
    assert alice.subscribe("#", 0)[0].value == 0x87
    assert alice.subscribe("users/alice/#", 1)[0].value == 1
    assert alice.subscribe("users/bob/#", 0)[0].value == 0x87
    assert alice.subscribe("public/#", 0)[0].value == 0
    info = alice.c.publish("secret/x", b"no", 1)
    info.wait_for_publish(DEADLINE)
    bob = Client(n.port, username="bob", password=BOB)
    refused = bob.c.publish("users/alice/inbox", b"into alice's space", 1)
    refused.wait_for_publish(DEADLINE)
    bob.publish("public/news", b"for everyone", 1)
    assert alice.expect(1)[0].payload == b"for everyone"
    # Retain is its own action; $delayed publishes are judged by their target; wills too.
    r = Client(n.port, username="bob", password=BOB)
    r.publish("public/r", b"retained?", 1, retain=True)
    fresh = Client(n.port, username="alice", password=ALICE)
    fresh.subscribe("public/#", 0)
    fresh.expect_none()
    assert connack(n.port, "willer", "bob", BOB, will="secret/w") == 0x87
    m = n.metrics()
    assert m['strata_security_acl_denied_total{action="subscribe"}'] >= 2
    assert m['strata_mqtt_dropped_messages_total{reason="acl"}'] >= 2


def test_revocation_reaches_live_connections_and_resumed_sessions(node_with):
    n, api = with_users(node_with)
    live = Client(n.port, client_id="alice-live", username="alice", password=ALICE)
    assert live.subscribe("secret/#", 1)[0].value == 1
    away = Client(n.port, client_id="alice-away", username="alice", password=ALICE,
                  expiry=3600, clean=False)
    assert away.subscribe("secret/#", 1)[0].value == 1
    away.close()
    n.wait_connections(1)
    assert api.put("auth", "acl", body={"rules": ACL})[0] == 200
    # Both subscriptions are judged again and dropped, the live one and the one of the
    # session that is away (as its last connection made it): nothing secret reaches either.
    wait_until("the subscriptions revoked",
               lambda: n.metrics().get('strata_mqtt_errors_total{reason="subscription_revoked"}')
               == 2)
    bob = Client(n.port, username="bob", password=BOB)
    refused = bob.c.publish("secret/x", b"no", 1)  # refused by the ACL for bob too
    refused.wait_for_publish(DEADLINE)
    live.expect_none()
    # The session that was away comes back without it, and nothing was queued for it.
    back = Client(n.port, client_id="alice-away", username="alice", password=ALICE,
                  expiry=3600, clean=False)
    back.expect_none()
    # Deleting a user closes its connections (MQTT 5: DISCONNECT 0x87).
    raw = socket.create_connection(("127.0.0.1", n.port), timeout=DEADLINE)
    body = (s("MQTT") + bytes([5, 0xC2]) + (60).to_bytes(2, "big") + b"\x00" + s("bob-raw")
            + s("bob") + s(BOB))
    raw.sendall(b"\x10" + varint(len(body)) + body)
    ack = raw.recv(64)
    assert ack[0] == 0x20 and ack[3] == 0, ack
    assert api.delete("auth", "users", "bob")[0] == 204
    assert raw.recv(3) == b"\xe0\x01\x87"
    for c in (live, back, bob):
        c.close()


def test_bans_and_flapping(node_with):
    n, api = with_users(node_with, "[auth.flapping]\nmax_connects = 3\nwindow_secs = 60\nban_secs = 600\n")
    # A ban reaches a client already connected: closed as by an operator (0x98).
    online = socket.create_connection(("127.0.0.1", n.port), timeout=DEADLINE)
    body = s("MQTT") + bytes([5, 0x02 | 0x80 | 0x40]) + (60).to_bytes(2, "big") + b"\x00"
    body += s("online") + s("bob") + s(BOB)
    online.sendall(bytes([0x10, len(body)]) + body)
    head = online.recv(2)
    ack = online.recv(head[1])
    assert head[0] == 0x20 and ack[1] == 0, "connected"
    assert api.post("auth", "bans", body={"kind": "username", "value": "bob"})[0] == 204
    assert online.recv(3) == b"\xe0\x01\x98", "DISCONNECT 0x98 administrative action"
    assert api.delete("auth", "bans", "username", "bob")[0] == 204
    code, _, err = admin_cli(n, "ban", "add", "client_id", "evil", "--reason", "test")
    assert code == 0, err
    assert connack(n.port, "evil", "alice", ALICE) == 0x8A
    assert connack(n.port, "evil", "alice", ALICE, v5=False) == 0x05
    assert api.post("auth", "bans", body={"kind": "username", "value": "bob"})[0] == 204
    assert connack(n.port, "b1", "bob", BOB) == 0x8A
    assert api.delete("auth", "bans", "username", "bob")[0] == 204
    assert connack(n.port, "b2", "bob", BOB) == 0
    # An address ban closes sockets at accept.
    assert api.post("auth", "bans", body={"kind": "ip", "value": "127.0.0.0/8", "until_ms": None})[0] == 204
    assert connack(n.port, "any", "alice", ALICE) is None
    code, out, _ = admin_cli(n, "ban", "list")
    assert "127.0.0.0/8" in out and "evil" in out
    assert api.delete("auth", "bans", "ip", "127.0.0.0/8")[0] == 204
    # Flapping: a fourth connect within the window bans the client id.
    for _ in range(3):
        assert connack(n.port, "flappy", "alice", ALICE) == 0
    assert connack(n.port, "flappy", "alice", ALICE) == 0x8A
    bans = api.ok("auth", "bans")
    flapping = [b for b in bans if b["value"] == "flappy"]
    assert flapping and flapping[0]["reason"].startswith("flapping") and flapping[0]["until_ms"]
    assert n.metrics()["strata_security_flapping_bans_total"] == 1


def test_changes_are_audited_and_passwords_never_logged(node_with, tmp_path):
    log = tmp_path / "node.log"
    n = node_with('[log]\nlevel = "debug"\n', log_path=str(log))
    api = Api(n).started()
    assert api.put("auth", "users", "alice", body={"password": ALICE})[0] == 201
    assert connack(n.port, "c", "alice", ALICE) == 0
    assert connack(n.port, "c", "alice", "guess-" + ALICE) == 0x86
    assert api.put("auth", "acl", body={"rules": ACL})[0] == 200
    assert api.delete("auth", "users", "alice")[0] == 204

    def audited():
        status, body = api.get("streams", "strata.audit")
        return status == 200 and body["partitions"][0]["end_offset"] >= 3
    wait_until("the audit records", audited)
    text = log.read_text()
    assert "auth.user.put" in text
    assert ALICE not in text


def test_admin_tokens_and_roles(node_with):
    n = node_with()
    api = Api(n).started()
    # Open until the first token exists (the API listens on loopback by default).
    status, viewer = api.post("auth", "tokens", body={"name": "dashboards", "role": "viewer"})
    assert status == 201 and len(viewer["token"]) == 64
    assert api.get("node")[0] == 401, "a token is needed from now on"
    code, out, err = admin_cli(n, "tokens", "create", "ops", "--role", "administrator",
                               token=viewer["token"])
    assert code != 0 and "forbidden" in err, "a viewer cannot create tokens"
    as_viewer = Api(n, token=viewer["token"])
    assert as_viewer.get("node")[0] == 200
    status, body = as_viewer.put("auth", "users", "eve", body={"password": "eve-password-1"})
    assert status == 403 and body["code"] == "forbidden"
    assert "token" not in json.dumps(as_viewer.ok("auth", "tokens"))
    # The audit log records the token's creation.
    status, body = as_viewer.get("streams", "strata.audit")
    assert status == 200 and body["partitions"][0]["end_offset"] >= 1


def test_configured_token_is_an_administrator(node_with):
    secret = "configured-admin-token-0123456789"
    n = node_with(f'[admin]\ntoken = "{secret}"\n')
    admin = Api(n, token=secret).started()
    status, ops = admin.post("auth", "tokens", body={"name": "ops", "role": "administrator"})
    assert status == 201
    assert Api(n, token=ops["token"]).put("auth", "users", "eve",
                                          body={"password": "eve-password-1"})[0] == 201
    assert admin.delete("auth", "tokens", "ops")[0] == 204
    assert Api(n, token=ops["token"]).get("node")[0] == 401, "revoked"
