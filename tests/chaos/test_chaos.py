"""A short seeded chaos run (tests/chaos/chaos.py) on three real nodes: SIGKILLs, pauses,
restarts and a rolling restart while an idempotent acks=all producer and a consumer work;
the checker must find no acknowledged record lost, none duplicated, no two records at one
offset and no consumer going backwards. The long run is documented in
docs/benchmarks.md."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos import KINDS, run  # noqa: E402


def test_a_short_seeded_chaos_run_loses_nothing(tmp_path):
    history = tmp_path / "history.jsonl"
    assert run(seed=11, faults=8, size=3, rate=150.0, history_path=str(history),
               kinds=KINDS), f"see {history} and the verdict above"


def test_a_short_chaos_run_over_object_storage_loses_nothing(tmp_path):
    # Every node offloads to one S3 server, its local copies dropped at once: a lagging
    # or wiped copy starts after what the objects hold, and reads go through them.
    history = tmp_path / "history.jsonl"
    assert run(seed=31, faults=8, size=3, rate=150.0, history_path=str(history),
               kinds=KINDS, object_store=True), f"see {history} and the verdict above"
