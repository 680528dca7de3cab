"""Refuse query parameters the contract does not declare.

Every handler reads only the query names it knows, so an undeclared one
(``?limt=5``, ``?=x``) used to be ignored: the caller got a 200 for a filter
the server never applied. This middleware answers 400 ``invalid-query`` naming
the parameter and what the operation takes, from the same OpenAPI document
that ``/v1/openapi.json`` serves, so the document and the server cannot drift.

Routes the document does not describe (none today) are left alone;
``tests/api/test_api.py`` keeps every route in the document.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from functools import cache

from aiohttp import web

from engine.api.openapi import openapi_document
from engine.core.errors import InvalidRequest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def route_key(method: str, template: str) -> tuple[str, str]:
    """``("GET", "/v1/calls/{}")`` for ``GET /v1/calls/{call_id}``: aiohttp and the
    document may name a path parameter differently; HEAD is served by the GET route."""
    method = method.upper()
    return ("GET" if method == "HEAD" else method, _PLACEHOLDER.sub("{}", template))


@cache
def declared_query_names() -> dict[tuple[str, str], frozenset[str]]:
    doc = openapi_document()
    shared = doc.get("components", {}).get("parameters", {})

    def resolve(param: dict[str, str]) -> dict[str, str]:
        ref = param.get("$ref")
        return shared[ref.rsplit("/", 1)[-1]] if ref else param

    names: dict[tuple[str, str], frozenset[str]] = {}
    for path, item in doc["paths"].items():
        common = [resolve(p) for p in item.get("parameters", [])]
        for method, operation in item.items():
            if method == "parameters":
                continue
            params = common + [resolve(p) for p in operation.get("parameters", [])]
            names[route_key(method, path)] = frozenset(
                p["name"] for p in params if p.get("in") == "query"
            )
    return names


@web.middleware
async def query_names_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.query:
        resource = request.match_info.route.resource
        if resource is not None:
            allowed = declared_query_names().get(route_key(request.method, resource.canonical))
            if allowed is not None:
                _check(request.query.keys(), allowed)
    return await handler(request)


def _check(given: Iterable[str], allowed: frozenset[str]) -> None:
    for name in given:
        if name not in allowed:
            expected = ", ".join(sorted(allowed)) if allowed else "none"
            raise InvalidRequest(
                f"unknown query parameter {name!r}: this operation takes {expected}",
                error_id="invalid-query",
                details={"parameter": name, "expected": sorted(allowed)},
            )
