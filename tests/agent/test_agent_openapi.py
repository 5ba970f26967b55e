"""schemathesis over the agent API's OpenAPI document (GET /v1/openapi.json) against a real
node: generated requests, valid and not, to every operation; no answer is a server error,
and every answer's status, content type and body are the ones the document gives. The
node's long-polls are bounded at 200 ms so generated waits stay short. The seed is fixed
so a failure reproduces; set STRATA_SCHEMATHESIS_SEED to explore others."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_queues import TOKEN, Api, start  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from strata_node import DEADLINE, node_with  # noqa: E402,F401


def test_schemathesis_finds_nothing(node_with, tmp_path):
    node = start(node_with, "[agent]\nmax_wait_ms = 200\n")
    api = Api(node)
    status, doc, _ = api.call("GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1") and len(doc["paths"]) >= 20
    # Some state, so reads find things.
    api.send("q", {"n": 1})
    api.call("POST", "/v1/topics/t/events", {"data": 1})
    api.call("POST", "/v1/agents", {"card": {"name": "a"}})
    st = shutil.which("schemathesis") or shutil.which("st")
    cmd = [st] if st else [sys.executable, "-m", "schemathesis.cli"]
    seed = os.environ.get("STRATA_SCHEMATHESIS_SEED", "20261206")
    base = f"http://127.0.0.1:{node.ports['agent']}"
    run = subprocess.run(cmd + ["run", f"{base}/v1/openapi.json", "--url", base,
                                "--header", f"Authorization: Bearer {TOKEN}",
                                "--checks", "not_a_server_error,status_code_conformance,"
                                "content_type_conformance,response_schema_conformance",
                                "--max-examples", "40", "--seed", seed,
                                "--request-timeout", "30"],
                         capture_output=True, text=True, timeout=DEADLINE * 20, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
