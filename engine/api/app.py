"""The aiohttp application: routes, middlewares, OpenAPI, health, metrics."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from typing import Any

from aiohttp import web

from engine.api import docs_page
from engine.api.events_ws import DEFAULT_MAX_CLIENTS, setup_events
from engine.api.keys import CALLS, CDRS, HEALTH, METRICS, RELOAD, STREAM, TRUNKS
from engine.api.middleware import auth_middleware, errors_middleware
from engine.calls import http as calls_http
from engine.calls.cdr import CdrReader
from engine.calls.service import CallService
from engine.store.redis.stream import EventStream
from engine.telemetry.metrics import Metrics
from engine.trunks import http as trunks_http
from engine.trunks.service import TrunkService


def openapi_document() -> dict[str, Any]:
    text = resources.files("engine.api").joinpath("openapi.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


async def health(request: web.Request) -> web.Response:
    report = await request.app[HEALTH]()
    return web.json_response(report, status=200 if report["status"] == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def admin_reload(request: web.Request) -> web.Response:
    report = await request.app[RELOAD]()
    return web.json_response(report)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def build_app(
    *,
    calls: CallService,
    cdrs: CdrReader,
    stream: EventStream,
    metrics_registry: Metrics,
    health_check: Callable[[], Awaitable[dict[str, Any]]],
    tokens: Iterable[str],
    trunks: TrunkService | None = None,
    reload: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    max_event_clients: int = DEFAULT_MAX_CLIENTS,
) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware(tokens)],
        client_max_size=256 * 1024,
    )
    app[CALLS] = calls
    app[CDRS] = cdrs
    app[STREAM] = stream
    app[METRICS] = metrics_registry
    app[HEALTH] = health_check
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/metrics", metrics)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/v1/docs", docs_page.docs)
    setup_events(app, stream, max_clients=max_event_clients)
    if reload is not None:
        app[RELOAD] = reload
        app.router.add_post("/v1/admin/reload", admin_reload)
    calls_http.add_routes(app)
    # Without a trunk service (tools, old callers) the trunk routes still
    # answer, with an empty fleet.
    app[TRUNKS] = (
        trunks
        if trunks is not None
        else (calls.trunks or TrunkService([], [], metrics=metrics_registry))
    )
    trunks_http.add_routes(app)
    return app
