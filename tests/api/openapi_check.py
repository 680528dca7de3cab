"""Validate API responses against engine/api/openapi.json with jsonschema.

OpenAPI 3.0 schemas are almost JSON Schema; the one difference we use is
``nullable: true``, translated here to a ``null`` type.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

from engine.api.app import openapi_document

DOC = openapi_document()


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, dict):
        out = {
            k: _to_json_schema(v) for k, v in node.items() if k not in ("nullable", "discriminator")
        }
        if node.get("nullable") and "type" in node:
            out["type"] = [node["type"], "null"]
        if "$ref" in out:
            out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/definitions/")
        return out
    if isinstance(node, list):
        return [_to_json_schema(v) for v in node]
    return node


DEFINITIONS = _to_json_schema(copy.deepcopy(DOC["components"]["schemas"]))


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    op = DOC["paths"][path][method.lower()]
    resp = op["responses"].get(str(status))
    assert resp is not None, f"{method} {path} does not document status {status}"
    if "$ref" in resp:
        resp = DOC["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    schema = resp["content"]["application/json"]["schema"]
    return {**_to_json_schema(schema), "definitions": DEFINITIONS}


def check(path: str, method: str, status: int, body: Any) -> None:
    """Raise if ``body`` does not match what the document promises."""
    jsonschema.validate(body, response_schema(path, method, status))
