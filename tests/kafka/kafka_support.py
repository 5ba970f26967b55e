"""Helpers for the Kafka tests: a real `strata serve` (see tests/strata_node.py) and
condition waits with generous deadlines."""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, Node  # noqa: E402,F401


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    assert n.stop() == 0


@pytest.fixture
def node_with(tmp_path):
    started = []

    def start(config="", **env):
        n = Node(tmp_path, config, env)
        started.append(n)
        return n
    yield start
    for n in started:
        n.stop()


def wait_until(what, done, deadline=DEADLINE * 4):
    end = time.time() + deadline
    while not done():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.05)
