"""Helpers for the Kafka tests: a real `strata serve` (see tests/strata_node.py) and
condition waits with generous deadlines."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, Node, node, node_with  # noqa: E402,F401


def wait_until(what, done, deadline=DEADLINE * 4):
    end = time.time() + deadline
    while not done():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.05)
