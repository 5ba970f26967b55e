"""TLS on every listener with real clients and certificates made here with openssl: MQTT
over TLS (mosquitto_pub/sub with --cafile and client certificates, paho with passwords),
MQTT over WebSocket-TLS (paho), Kafka over SSL and SASL_SSL (confluent-kafka), the admin
API over HTTPS, TLS 1.0 and 1.1 refused (openssl s_client), certificates reloaded when
their files change, and a client certificate's subject as the MQTT username."""
import json
import os
import ssl
import subprocess
import time
import urllib.request
import uuid

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, Producer

from admin_support import DEADLINE, ROOT, Api, node_with, wait_until  # noqa: F401

PASSWORD = "tls-user-password"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=DEADLINE)


def make_pki(d, server_cn="localhost"):
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate (CN alice)."""
    d.mkdir(exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Strata test CA", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn, ext in (("server", server_cn, ["-extfile", "ext.cnf"]),
                          ("client", "alice", ["-extfile", "client.cnf"])):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *ext, cwd=d)
    return d


def tls_section(name, pki, mtls=False):
    extra = f'client_ca_file = "{pki}/ca.pem"\ncert_subject_as_username = true\n' if mtls else ""
    return (f'[{name}.tls]\ncert_file = "{pki}/server.pem"\nkey_file = "{pki}/server.key"\n'
            f'reload_interval_secs = 1\n{extra}')


def tls_node(node_with, tmp_path, admin_tls=False):
    pki = make_pki(tmp_path / "pki")
    config = tls_section("mqtt", pki, mtls=True) + tls_section("kafka", pki)
    if admin_tls:
        config += tls_section("admin", pki)
    n = node_with(config)
    return n, pki


def test_mqtt_over_tls_with_client_certificates_and_passwords(node_with, tmp_path):
    n, pki = tls_node(node_with, tmp_path)
    Api(n).started()
    assert Api(n).put("auth", "users", "bob", body={"password": PASSWORD})[0] == 201
    port = n.ports["mqtt-tls"]
    common = ["-h", "127.0.0.1", "-p", str(port), "--cafile", str(pki / "ca.pem")]
    # alice: her certificate is her username, no password.
    sub = subprocess.Popen(["mosquitto_sub", *common, "--cert", str(pki / "client.pem"),
                            "--key", str(pki / "client.key"), "-t", "tls/#", "-C", "1", "-W", "30",
                            "-i", "alice-sub"], stdout=subprocess.PIPE, text=True)
    wait_until("the TLS subscriber", lambda: n.metrics()["strata_mqtt_subscriptions"] >= 1)
    # Her certificate's subject is her username.
    client = Api(n).ok("mqtt", "clients", "alice-sub")
    assert client["session"]["connection"]["username"] == "alice", client
    # bob: a password over TLS.
    subprocess.run(["mosquitto_pub", *common, "-u", "bob", "-P", PASSWORD, "-t", "tls/x",
                    "-m", "over tls", "-q", "1"], check=True, timeout=DEADLINE)
    out, _ = sub.communicate(timeout=DEADLINE)
    assert out.strip() == "over tls"
    # Without a certificate and without a password: refused.
    bad = subprocess.run(["mosquitto_pub", *common, "-t", "tls/x", "-m", "x"],
                         capture_output=True, timeout=DEADLINE)
    assert bad.returncode != 0
    # Plaintext and TLS side by side.
    plain = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(n.port), "-u", "bob",
                            "-P", PASSWORD, "-t", "p", "-m", "x"], timeout=DEADLINE)
    assert plain.returncode == 0


def paho_tls(port, pki, transport="tcp", username="bob", password=PASSWORD):
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}",
                    protocol=mqtt.MQTTv5, transport=transport)
    c.tls_set(ca_certs=str(pki / "ca.pem"))
    c.username_pw_set(username, password)
    c.on_message = lambda c, u, m: got.append(m.payload)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c, got


def test_paho_over_tls_and_websocket_tls(node_with, tmp_path):
    n, pki = tls_node(node_with, tmp_path)
    Api(n).started()
    assert Api(n).put("auth", "users", "bob", body={"password": PASSWORD})[0] == 201
    ws, got = paho_tls(n.ports["mqtt-wss"], pki, transport="websockets")
    ws.subscribe("w/#", 1)
    wait_until("the WebSocket-TLS subscriber", lambda: n.metrics()["strata_mqtt_subscriptions"] >= 1)
    tcp, _ = paho_tls(n.ports["mqtt-tls"], pki)
    tcp.publish("w/1", b"through both", 1).wait_for_publish(DEADLINE)
    wait_until("the message over WebSocket-TLS", lambda: got == [b"through both"])
    for c in (ws, tcp):
        c.disconnect()
        c.loop_stop()


def first_message(conf, topic):
    """The value of the first message a confluent-kafka consumer with `conf` reads."""
    c = Consumer(conf)
    c.subscribe([topic])
    deadline = time.time() + DEADLINE
    m = None
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            break
    c.close()
    assert m is not None and not m.error(), m
    return m.value()


def test_kafka_over_ssl(node_with, tmp_path):
    n, pki = tls_node(node_with, tmp_path)
    conf = {"bootstrap.servers": f"127.0.0.1:{n.ports['kafka-tls']}", "security.protocol": "SSL",
            "ssl.ca.location": str(pki / "ca.pem")}
    p = Producer(conf)
    p.produce("secure", b"encrypted")
    assert p.flush(DEADLINE) == 0
    assert first_message({**conf, "group.id": "g", "auto.offset.reset": "earliest"},
                         "secure") == b"encrypted"


def test_old_tls_versions_are_refused(node_with, tmp_path):
    n, pki = tls_node(node_with, tmp_path)
    port = n.ports["mqtt-tls"]

    def handshake(flag):
        p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", flag,
                            "-CAfile", str(pki / "ca.pem")], input=b"", capture_output=True,
                           timeout=DEADLINE)
        return p.returncode == 0 and b"Verify return code: 0" in p.stdout
    assert handshake("-tls1_3")
    assert handshake("-tls1_2")
    assert not handshake("-tls1_1")
    assert not handshake("-tls1")


def test_admin_api_over_https_and_certificate_reload(node_with, tmp_path):
    n, pki = tls_node(node_with, tmp_path, admin_tls=True)
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    url = f"https://127.0.0.1:{n.admin_port}/health"
    body = json.load(urllib.request.urlopen(url, context=ctx, timeout=DEADLINE))
    assert body["status"] == "ok"
    served = True
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{n.admin_port}/health", timeout=DEADLINE)
    except Exception:  # noqa: BLE001 - any failure will do: the handshake is not HTTP
        served = False
    assert not served, "plain HTTP must not be served"

    # Reload: a new certificate (another CA) replaces the files; new handshakes use it.
    new = make_pki(tmp_path / "pki2", server_cn="localhost")
    for f in ("server.pem", "server.key"):
        (pki / f).write_bytes((new / f).read_bytes())
    ctx2 = ssl.create_default_context(cafile=str(new / "ca.pem"))

    def reloaded():
        try:
            urllib.request.urlopen(url, context=ctx2, timeout=DEADLINE)
            return True
        except Exception:  # noqa: BLE001 - still the old certificate
            return False
    wait_until("the new certificate", reloaded)


def test_kafka_sasl_plain_over_ssl(node_with, tmp_path):
    from kafka import KafkaProducer
    pki = make_pki(tmp_path / "pki")
    n = node_with(tls_section("kafka", pki) + '[kafka.sasl_plain_users]\ncarol = "carol-password"\n')
    bootstrap = f"127.0.0.1:{n.ports['kafka-tls']}"
    ssl_ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    producer = KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_SSL",
                             ssl_context=ssl_ctx, sasl_mechanism="PLAIN",
                             sasl_plain_username="carol", sasl_plain_password="carol-password")
    producer.send("plain-ssl", b"kafka-python over SASL_SSL").get(timeout=DEADLINE)
    producer.close()
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(pki / "ca.pem"), "sasl.mechanisms": "PLAIN",
            "sasl.username": "carol", "sasl.password": "carol-password",
            "group.id": "g", "auto.offset.reset": "earliest"}
    assert first_message(conf, "plain-ssl") == b"kafka-python over SASL_SSL"
    # A wrong password fails the login, and the broker closes that connection.
    produced = True
    try:
        bad = KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_SSL",
                            ssl_context=ssl_ctx, sasl_mechanism="PLAIN", sasl_plain_username="carol",
                            sasl_plain_password="wrong", max_block_ms=5000)
        bad.send("plain-ssl", b"refused").get(timeout=5)
    except Exception:  # noqa: BLE001 - kafka-python raises on a failed login
        produced = False
    assert not produced, "a wrong password must not produce"
    key = 'strata_kafka_errors_total{api="connection",code="authentication_failed"}'
    wait_until("the failed login", lambda: n.metrics().get(key, 0) >= 1)


def test_the_documented_secure_example_runs(node_with, tmp_path):
    """docs/examples/secure.toml, with this test's certificates and data directory: TLS
    only, anonymous refused, the example user and ACL in force."""
    from admin_support import ROOT
    pki = make_pki(tmp_path / "pki")
    (pki / "clients-ca.pem").write_bytes((pki / "ca.pem").read_bytes())
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(issuer_key.public_key()))
    jwk.update({"kid": "fleet-1", "alg": "ES256"})
    (pki / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    text = open(f"{ROOT}/docs/examples/secure.toml").read()
    # Listeners and the data directory come from the test node's environment, which wins.
    text = text.replace("/etc/strata/tls", str(pki))
    n = node_with(text)
    assert "mqtt" not in n.ports and "mqtt-tls" in n.ports, n.ports
    port = n.ports["mqtt-tls"]
    common = ["-h", "127.0.0.1", "-p", str(port), "--cafile", str(pki / "ca.pem")]
    anonymous = subprocess.run(["mosquitto_pub", *common, "-t", "x", "-m", "x"],
                               capture_output=True, timeout=DEADLINE)
    assert anonymous.returncode != 0
    gw = subprocess.Popen(["mosquitto_sub", *common, "-u", "device-gateway", "-P", "change-me-now",
                           "-t", "telemetry/#", "-C", "1", "-W", "30"], stdout=subprocess.PIPE,
                          text=True)
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    def subscribed():
        text = urllib.request.urlopen(f"https://127.0.0.1:{n.admin_port}/metrics", context=ctx,
                                      timeout=DEADLINE).read().decode()
        return any(line.startswith("strata_mqtt_subscriptions ") and not line.endswith(" 0")
                   for line in text.splitlines())
    wait_until("the gateway's subscription", subscribed)
    # A device (its certificate names it `alice`) publishes under its client id only.
    device = ["mosquitto_pub", *common, "--cert", str(pki / "client.pem"), "--key",
              str(pki / "client.key"), "-i", "sensor-7", "-q", "1"]
    subprocess.run(device + ["-t", "telemetry/sensor-7/t", "-m", "21.5"], check=True,
                   timeout=DEADLINE)
    out, _ = gw.communicate(timeout=DEADLINE)
    assert out.strip() == "21.5"
    # A fleet device with a token from the issuer.
    token = jwt.encode({"sub": "sensor-8", "iss": "https://fleet.example",
                        "exp": int(time.time()) + 300}, issuer_key, algorithm="ES256",
                       headers={"kid": "fleet-1"})
    subprocess.run(["mosquitto_pub", *common, "-i", "sensor-8", "-u", "sensor-8", "-P", token,
                    "-q", "1", "-t", "telemetry/sensor-8/t", "-m", "19"], check=True,
                   timeout=DEADLINE)
    forged = jwt.encode({"sub": "sensor-9", "iss": "https://elsewhere",
                         "exp": int(time.time()) + 300}, issuer_key, algorithm="ES256",
                        headers={"kid": "fleet-1"})
    refused = subprocess.run(["mosquitto_pub", *common, "-i", "sensor-9", "-u", "sensor-9", "-P",
                              forged, "-t", "telemetry/sensor-9/t", "-m", "x"],
                             capture_output=True, timeout=DEADLINE)
    assert refused.returncode != 0


def test_paho_over_tls_and_websocket_tls_with_tokens(node_with, tmp_path):
    """JWTs as passwords over MQTT-TLS and WebSocket-TLS; a token's own ACL rules apply."""
    import jwt
    pki = make_pki(tmp_path / "pki")
    secret = "a-shared-secret-of-at-least-32-bytes!"
    (tmp_path / "secret").write_text(secret)
    n = node_with(tls_section("mqtt", pki) + '[auth]\nacl_default = "deny"\n'
                  f'[auth.jwt]\nalgorithm = "HS256"\nsecret_file = "{tmp_path / "secret"}"\n')
    rules = [{"permission": "allow", "action": "all", "topic": "w/#"}]
    token = jwt.encode({"sub": "tess", "exp": int(time.time()) + 300, "acl": rules}, secret,
                       algorithm="HS256")
    ws, got = paho_tls(n.ports["mqtt-wss"], pki, transport="websockets", username="tess",
                       password=token)
    ws.subscribe("w/#", 1)
    wait_until("the WebSocket-TLS subscriber", lambda: n.metrics()["strata_mqtt_subscriptions"] >= 1)
    tcp, _ = paho_tls(n.ports["mqtt-tls"], pki, username="tess", password=token)
    tcp.publish("w/1", b"token over TLS", 1).wait_for_publish(DEADLINE)
    wait_until("the message over WebSocket-TLS", lambda: got == [b"token over TLS"])
    assert n.metrics()['strata_security_authentications_total{result="token"}'] == 2
    for c in (ws, tcp):
        c.disconnect()
        c.loop_stop()


def test_java_client_with_scram_over_ssl(node_with, tmp_path):
    """The Java kafka-clients producer, consumer group and admin client with SCRAM-SHA-512
    over SASL_SSL, trusting the node's CA as a PEM trust store."""
    pki = make_pki(tmp_path / "pki")
    n = node_with(tls_section("kafka", pki) + '[auth]\nanonymous = "deny"\n')
    api = Api(n).started()
    assert api.put("auth", "users", "erin", body={"password": "erin-scram-pw"})[0] == 201
    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="erin" password="erin-scram-pw";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={pki / 'ca.pem'}\n")
    java_check = os.path.join(ROOT, "tests", "kafka", "clients", "JavaClientCheck.java")
    libs = os.path.expanduser("~/.cache/strata/tools/kafka-4.4.0/libs")
    out = subprocess.run(["java", "-cp", os.path.join(libs, "*"), java_check,
                          f"localhost:{n.ports['kafka-tls']}", "java-scram", "500", str(props)],
                         capture_output=True, text=True, timeout=DEADLINE * 6)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "OK 500"


def test_kafka_scram_over_sasl_ssl_and_plaintext(node_with, tmp_path):
    from kafka import KafkaProducer
    pki = make_pki(tmp_path / "pki")
    n = node_with(tls_section("kafka", pki))
    api = Api(n).started()
    assert api.put("auth", "users", "dave", body={"password": "dave-scram-pw"})[0] == 201
    ssl_conf = {"bootstrap.servers": f"127.0.0.1:{n.ports['kafka-tls']}",
                "security.protocol": "SASL_SSL", "ssl.ca.location": str(pki / "ca.pem"),
                "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "dave",
                "sasl.password": "dave-scram-pw"}
    p = Producer(ssl_conf)
    p.produce("scram", b"sha-512 over ssl")
    assert p.flush(DEADLINE) == 0
    # kafka-python with SCRAM-SHA-256 on the plaintext listener.
    producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{n.kafka_port}",
                             security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                             sasl_plain_username="dave", sasl_plain_password="dave-scram-pw")
    producer.send("scram", b"sha-256 in plain").get(timeout=DEADLINE)
    producer.close()
    # kcat reads both back with SCRAM-SHA-512 over SSL. Debian's kcat links librdkafka
    # 2.0.2, whose SCRAM client repeats its own nonce in its final message when that nonce
    # starts with `=` (refused by Kafka brokers as by this one): run it with the newer
    # librdkafka confluent-kafka ships.
    import confluent_kafka
    libs = os.path.join(os.path.dirname(confluent_kafka.__file__), "..", "confluent_kafka.libs")
    lib = next(f for f in os.listdir(libs) if f.startswith("librdkafka"))
    shim = tmp_path / "lib"
    shim.mkdir()
    (shim / "librdkafka.so.1").symlink_to(os.path.join(os.path.abspath(libs), lib))
    env = {**os.environ, "LD_LIBRARY_PATH": str(shim)}
    out = subprocess.run(["kcat", "-C", "-b", ssl_conf["bootstrap.servers"], "-t", "scram", "-e",
                          "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={pki}/ca.pem",
                          "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=dave",
                          "-X", "sasl.password=dave-scram-pw"],
                         capture_output=True, text=True, timeout=DEADLINE, env=env)
    assert out.stdout.split("\n")[:2] == ["sha-512 over ssl", "sha-256 in plain"], out
    # Without SASL (users exist, anonymous is off) or with a wrong password: refused.
    for conf in ({"bootstrap.servers": n.bootstrap}, {**ssl_conf, "sasl.password": "wrong"}):
        outcome = []
        refused = Producer({**conf, "message.timeout.ms": 3000})
        refused.produce("scram", b"refused", on_delivery=lambda e, m: outcome.append(e))
        refused.flush(DEADLINE)
        assert len(outcome) == 1 and outcome[0] is not None, outcome
    key = 'strata_kafka_errors_total{api="SaslAuthenticate",code="58"}'
    wait_until("the failed SCRAM login", lambda: n.metrics().get(key, 0) >= 1)
