"""A real `strata serve` for the protocol tests: free loopback ports for every listener,
data in a temporary directory, every wait bounded by a generous deadline."""
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

DEADLINE = 30.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def strata_bin():
    if os.environ.get("STRATA_BIN"):
        return os.environ["STRATA_BIN"]
    # The same default as scripts/test.sh.
    target = os.environ.get("CARGO_TARGET_DIR",
                            os.path.join(os.path.expanduser("~"), ".cache", "strata", "target"))
    return os.path.join(target, "x86_64-unknown-linux-gnu", "debug", "strata")


def free_port(host="127.0.0.1"):
    """A TCP port nothing listens on at `host` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# Every node started, so a fixture can stop those a test started another way (a node
# restarted by the test itself, say) even when the test fails.
STARTED = []


class Node:
    """A running `strata serve`; `ports` maps each listener (mqtt, mqtt-ws, kafka, admin) to
    its bound port."""

    def __init__(self, tmp_path, config="", env_extra=None, log_path=None):
        self.data_dir = tmp_path / "data"
        cfg = tmp_path / "strata.toml"
        cfg.write_text(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update({
            "STRATA_NODE__DATA_DIR": str(tmp_path / "data"),
            "STRATA_ADMIN__LISTEN": "127.0.0.1:0",
            "STRATA_MQTT__LISTEN": "127.0.0.1:0",
            "STRATA_MQTT__WS_LISTEN": "127.0.0.1:0",
            "STRATA_KAFKA__LISTEN": "127.0.0.1:0",
            "STRATA_AGENT__LISTEN": "127.0.0.1:0",
            # Used only when a test's configuration turns TLS on.
            "STRATA_MQTT__TLS_LISTEN": "127.0.0.1:0",
            "STRATA_MQTT__WSS_LISTEN": "127.0.0.1:0",
            "STRATA_KAFKA__TLS_LISTEN": "127.0.0.1:0",
        })
        env.update(env_extra or {})
        # The node's log goes to `log_path` when given (opened for appending: a restarted
        # node adds to it), nowhere otherwise.
        stderr = open(log_path, "a") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([strata_bin(), "serve", "--config", str(cfg)], env=env,
                                     stdout=subprocess.PIPE, stderr=stderr, text=True)
        STARTED.append(self)
        if log_path:
            stderr.close()
        self.ports = {}
        deadline = time.time() + DEADLINE
        while "admin" not in self.ports:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("strata serve exited before listening")
            if line.startswith("strata: ") and " listening on " in line:
                name = line[len("strata: "):].split(" ", 1)[0]
                self.ports[name] = int(line.rsplit(":", 1)[1])
            if time.time() > deadline:
                raise RuntimeError("strata serve did not start in time")
        self.port = self.ports.get("mqtt")
        self.ws_port = self.ports.get("mqtt-ws")
        self.kafka_port = self.ports.get("kafka")
        self.admin_port = self.ports["admin"]
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.kafka_port}"

    def metrics(self):
        """The node's /metrics as {"name{labels}": value}."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics",
                                      timeout=DEADLINE).read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def wait_connections(self, n):
        """Waits until the node has `n` open MQTT connections: a client's close() returns
        before the node has ended that connection (and, say, its session)."""
        deadline = time.time() + DEADLINE
        while self.metrics().get("strata_mqtt_connections") != n:
            assert time.time() < deadline, "connections did not settle"
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def node(tmp_path):
    """A node with the default configuration, stopped (cleanly) after the test."""
    n = Node(tmp_path)
    yield n
    assert n.stop() == 0


@pytest.fixture
def node_with(tmp_path):
    """Starts nodes with a given configuration (and environment); stops them afterwards,
    and every other node the test started (restarted ones included)."""
    first = len(STARTED)

    def start(config="", log_path=None, **env):
        return Node(tmp_path, config, env, log_path)
    yield start
    for n in STARTED[first:]:
        n.stop()
    del STARTED[first:]
