"""The OpenAPI document says exactly what the server validates.

Before issue 8 the document declared no patterns (a client could not tell
that ``to`` must be digits or that a NUL in ``call_id`` is refused) and its
``trunk_group`` example named a group that does not exist.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel

from engine.api.disk_full import REFUSED_WHILE_DISK_FULL
from engine.api.openapi import live_document, openapi_document
from engine.calls.schemas import (
    CALL_ID,
    IDEMPOTENCY_KEY,
    DtmfBody,
    OriginateBody,
    RedirectBody,
    ThenDialplan,
    ThenIvr,
)
from tests.api.openapi_check import DOC, request_schema
from tests.harness import ROOT

KEYWORDS = ("pattern", "maxLength", "minimum", "maximum", "maxProperties", "enum", "type")


def _flat(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One property's constraints, looking through $ref and an Optional's anyOf."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        (schema,) = [s for s in schema["anyOf"] if s.get("type") != "null"]
    return schema


def _constraints(schema: dict[str, Any]) -> dict[str, Any]:
    """The validation keywords, in one spelling: pydantic writes a Literal as
    ``const`` and a dict with constrained keys as ``patternProperties``."""
    found = {k: schema[k] for k in KEYWORDS if k in schema and k != "type"}
    if "const" in schema:
        found["enum"] = [schema["const"]]
    if "propertyNames" in schema:
        found["propertyNames"] = schema["propertyNames"]["pattern"]
        found["values"] = _constraints(schema["additionalProperties"])
    if "patternProperties" in schema:
        ((names, values),) = schema["patternProperties"].items()
        found["propertyNames"] = names
        found["values"] = _constraints(values)
    return found


def pairs() -> Iterator[tuple[str, str, type[BaseModel], str]]:
    models: list[tuple[str, type[BaseModel]]] = [
        ("OriginateRequest", OriginateBody),
        ("DtmfRequest", DtmfBody),
        ("RedirectRequest", RedirectBody),
        ("ThenDialplan", ThenDialplan),
        ("ThenIvr", ThenIvr),
    ]
    for spec_name, model in models:
        for field in model.model_fields:
            yield spec_name, field, model, f"{spec_name}.{field}"


@pytest.mark.parametrize(
    ("spec_name", "field", "model"), [p[:3] for p in pairs()], ids=[p[3] for p in pairs()]
)
def test_field_constraints_match_the_server(
    spec_name: str, field: str, model: type[BaseModel]
) -> None:
    server = model.model_json_schema()
    defs = server.get("$defs", {})
    spec = DOC["components"]["schemas"][spec_name]
    assert spec.get("additionalProperties") is False, f"{spec_name} must refuse unknown fields"
    documented = spec["properties"][field]
    enforced = _flat(server["properties"][field], defs)
    if enforced.get("type") == "object" and "properties" in enforced:
        # A nested object (caller_id): compare each of its fields.
        for name, sub in enforced["properties"].items():
            assert _constraints(documented["properties"][name]) == _constraints(sub), name
        return
    if "discriminator" in enforced or "oneOf" in enforced:
        # A `then`: the documented union must offer exactly the kinds the server takes
        # (an originate also takes `amd`, a redirect does not).
        union = DOC["components"]["schemas"][documented["$ref"].rsplit("/", 1)[1]]
        kinds = {
            kind
            for ref in union["oneOf"]
            for kind in DOC["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]["properties"][
                "kind"
            ]["enum"]
        }
        assert kinds == set(enforced["discriminator"]["mapping"]), field
        return
    assert _constraints(documented) == _constraints(enforced)


def test_query_and_header_patterns_match_the_server() -> None:
    cdrs = {p["name"]: p for p in DOC["paths"]["/v1/cdrs"]["get"]["parameters"]}
    assert cdrs["call_id"]["schema"]["pattern"] == CALL_ID
    assert cdrs["limit"]["schema"] | {"type": "integer"} == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    assert DOC["components"]["parameters"]["CallId"]["schema"]["pattern"] == CALL_ID
    (idem,) = DOC["paths"]["/v1/calls"]["post"]["parameters"]
    assert idem["schema"]["pattern"] == IDEMPOTENCY_KEY


def examples() -> list[tuple[str, dict[str, Any]]]:
    body = DOC["paths"]["/v1/calls"]["post"]["requestBody"]["content"]["application/json"]
    return [(name, ex["value"]) for name, ex in body["examples"].items()]


@pytest.mark.parametrize(("name", "value"), examples(), ids=[n for n, _ in examples()])
def test_originate_examples_are_valid_on_both_sides(name: str, value: dict[str, Any]) -> None:
    OriginateBody.model_validate(value)
    jsonschema.Draft202012Validator(request_schema("OriginateRequest")).validate(value)


def test_example_names_exist_in_the_sandbox_config() -> None:
    config = tomllib.loads((ROOT / "telephony-config" / "engine.toml").read_text())
    groups = {g["name"] for g in config.get("trunk_groups", [])}
    trunks = {t["name"] for t in config.get("trunks", [])}
    for name, value in examples():
        if "trunk_group" in value:
            assert value["trunk_group"] in groups, name
        if "trunk" in value:
            assert value["trunk"] in trunks, name


@pytest.mark.parametrize(
    "body",
    [
        {"to": "1001"},
        {"to": "1001", "trunk": "a", "endpoint": "b"},
        {"to": "1001", "trunk_group": "g", "switch": "s"},
        {"to": "1001", "trunk": "a@b"},
        {"to": "1001", "trunk": "a", "variables": {"9bad": "x"}},
    ],
)
def test_bodies_the_server_refuses_are_invalid_in_the_document(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        OriginateBody.model_validate(body)
    validator = jsonschema.Draft202012Validator(request_schema("OriginateRequest"))
    assert not validator.is_valid(body)


def test_every_503_carries_retry_after_and_bodies_document_413_415() -> None:
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            for status, resp in op["responses"].items():
                if "$ref" in resp:
                    resp = DOC["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
                if status == "503" and path.startswith("/v1/health") is False:
                    assert resp["headers"]["Retry-After"]["required"], (method, path)
            if "requestBody" in op:
                assert {"413", "415"} <= set(op["responses"]), (method, path)


def test_live_document_lists_configured_names() -> None:
    doc = live_document(switches=["b", "a"], trunks=["t1"], groups=["g1"])
    props = doc["components"]["schemas"]["OriginateRequest"]["properties"]
    assert props["switch"]["enum"] == ["a", "b"]
    assert props["trunk_group"]["enum"] == ["g1"]
    assert doc["components"]["parameters"]["TrunkName"]["schema"]["enum"] == ["t1"]
    bare = live_document(switches=["a"], trunks=[], groups=[])
    bare_originate = bare["components"]["schemas"]["OriginateRequest"]
    # No groups: a trunk_group can only be refused, so it is not offered.
    assert "trunk_group" not in bare_originate["properties"]
    # Filling in names never changes the packaged contract.
    assert (
        "enum"
        not in openapi_document()["components"]["schemas"]["OriginateRequest"]["properties"][
            "switch"
        ]
    )


def test_every_mutating_operation_says_whether_a_full_disk_refuses_it() -> None:
    """The document's ``x-while-disk-full`` is the server's list (engine/api/disk_full.py):
    every mutating operation is marked, the refused ones are exactly the list, and each
    documents the 503 (with Retry-After) it then answers."""
    marked: dict[tuple[str, str], str] = {}
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            if method in ("post", "put", "patch", "delete"):
                mark = op.get("x-while-disk-full")
                assert mark in ("refused", "served"), (method, path, mark)
                marked[(method.upper(), path)] = mark
    refused = {key for key, mark in marked.items() if mark == "refused"}
    assert refused == REFUSED_WHILE_DISK_FULL
    for method, path in refused:
        resp = DOC["paths"][path][method.lower()]["responses"]["503"]
        resp = DOC["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
        assert "outbox" in resp["description"], (method, path)
        assert resp["headers"]["Retry-After"]["required"], (method, path)
