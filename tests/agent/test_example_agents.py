"""The multi-agent example (examples/agents/run.py) runs from its one command against the
node this tree builds and ends with every check it makes holding: all tasks completed, the
job a killed worker held finished by another, the approval asked and answered, the MQTT
worker doing its share, and the Kafka consumer reading every result, across a node
SIGKILL and restart."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import ROOT, strata_bin  # noqa: E402


def test_the_example_runs_and_every_check_holds(tmp_path):
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "agents", "run.py"),
         "--data", str(tmp_path / "run")],
        env={**os.environ, "STRATA_BIN": strata_bin()}, capture_output=True, text=True,
        timeout=600)
    out = run.stdout
    assert run.returncode == 0, out[-4000:] + run.stderr[-2000:]
    checks = out[out.index("[run] what happened:"):].splitlines()[1:]
    assert len(checks) == 5 and all(c.strip().startswith("ok ") for c in checks), checks
    assert "[run] killed worker-1 (SIGKILL) while it held job" in out
    assert "[run] node restarted on the same data" in out
