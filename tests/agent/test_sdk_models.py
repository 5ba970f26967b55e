"""The Python SDK's models (sdk/python) checked against the agent API's OpenAPI document
(frontends/agent/openapi.json, served at /v1/openapi.json): every field of a schema is a
field of its model with the matching type, optional exactly when the schema does not
require it; the schemathesis run (test_agent_openapi.py) checks the node's answers
against the same schemas."""
import dataclasses
import json
import os
import sys
import typing

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))
from strata_agent import client  # noqa: E402

SCHEMAS = json.load(open(os.path.join(ROOT, "frontends", "agent", "openapi.json")))[
    "components"]["schemas"]
TYPES = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}


def check(model, schema, outside=()):
    """`model`'s fields against `schema`'s properties; `outside`: fields the model keeps
    elsewhere (an agent's card)."""
    hints = typing.get_type_hints(model)
    fields = {f.name for f in dataclasses.fields(model)}
    props, required = schema["properties"], set(schema["required"])
    assert set(props) - set(outside) == fields - {"card"}, (model.__name__, set(props), fields)
    for name, spec in props.items():
        if name in outside:
            continue
        hint = hints[name]
        optional = type(None) in typing.get_args(hint)
        assert optional == (name not in required), f"{model.__name__}.{name}: optional?"
        base = [a for a in typing.get_args(hint) if a is not type(None)][0] if optional else hint
        want = TYPES.get(spec.get("type"), typing.Any)
        assert base is want or want is typing.Any or base is typing.Any, \
            f"{model.__name__}.{name}: {base} is not {want}"


def test_sdk_models_match_the_openapi_schemas():
    check(client.Message, {**SCHEMAS["Message"], "required": SCHEMAS["Message"]["required"]
                           + ["tags"]})
    check(client.Event, SCHEMAS["Event"])
    check(client.Task, SCHEMAS["Task"])
    check(client.TaskEvent, SCHEMAS["TaskEvent"])
    # An agent's card fields stay in `card`, as the API gives them.
    check(client.Agent, SCHEMAS["Agent"], outside=("description", "skills", "tags",
                                                   "endpoint"))
