"""Fixtures for the MQTT tests: a real `strata serve` on free loopback ports (see
tests/strata_node.py), and paho-mqtt clients that record what they receive (see
tests/mqtt_client.py). Every wait has a generous deadline; none sleeps for a fixed time."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, ROOT, Node, node, node_with, strata_bin  # noqa: E402,F401
from mqtt_client import Client  # noqa: E402,F401
