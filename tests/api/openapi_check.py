"""Validate API responses against engine/api/openapi.json with jsonschema.

The document is OpenAPI 3.1, whose schemas are JSON Schema 2020-12: the
component schemas become ``$defs`` of each response schema.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from engine.api.app import openapi_document

DOC = openapi_document()


def _refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _refs(v) for k, v in node.items()}
        if "$ref" in out:
            out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
        return out
    if isinstance(node, list):
        return [_refs(v) for v in node]
    return node


DEFS = _refs(DOC["components"]["schemas"])


def _resolve(resp: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in resp:
        found: dict[str, Any] = DOC["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
        return found
    return resp


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    op = DOC["paths"][path][method.lower()]
    resp = op["responses"].get(str(status))
    assert resp is not None, f"{method} {path} does not document status {status}"
    schema = _resolve(resp)["content"]["application/json"]["schema"]
    return {**_refs(schema), "$defs": DEFS}


def response_headers(path: str, method: str, status: int) -> dict[str, Any]:
    """The headers the document declares for this response."""
    resp = _resolve(DOC["paths"][path][method.lower()]["responses"][str(status)])
    headers: dict[str, Any] = resp.get("headers", {})
    return headers


def request_schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}", "$defs": DEFS}


def check(path: str, method: str, status: int, body: Any) -> None:
    """Raise if ``body`` does not match what the document promises."""
    jsonschema.Draft202012Validator(response_schema(path, method, status)).validate(body)
