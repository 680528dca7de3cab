"""The aiohttp application: routes, middlewares, OpenAPI, health, metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.acd import http as acd_http
from engine.acd.service import AcdService
from engine.api import docs_page, health, security_http, wallboard_page
from engine.api.auth import Auth, audit_middleware, own_call_middleware
from engine.api.disk_full import disk_full_middleware
from engine.api.drain import drain_middleware
from engine.api.errors import errors_middleware
from engine.api.events_ws import DEFAULT_MAX_CLIENTS, setup_events
from engine.api.forward import Forwarder
from engine.api.keys import AUTH, CALLS, CDRS, DRAINING, HEALTH, METRICS, RELOAD, STREAM, TRUNKS
from engine.api.newline import json_newline_middleware
from engine.api.openapi import openapi, openapi_document
from engine.api.query_names import query_names_middleware
from engine.api.reload import ENGINES, FORWARDER, EngineList, admin_reload
from engine.auth.audit import AUDIT, AuditTrail
from engine.calls import http as calls_http
from engine.calls.cdr import CdrReader
from engine.calls.service import CallService
from engine.campaigns import contacts_http
from engine.campaigns import http as campaigns_http
from engine.campaigns.contacts.service import ContactsService
from engine.campaigns.service import CampaignService
from engine.recordings import http as recordings_http
from engine.recordings.service import RecordingService
from engine.store.pg.audit import AuditLog
from engine.store.redis.stream import EventStream
from engine.telemetry.metrics import Metrics
from engine.trunks import http as trunks_http
from engine.trunks.service import TrunkService
from engine.web.validation import MAX_BODY

__all__ = ["build_app", "openapi_document"]


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=await request.app[METRICS].render_live(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


def _service_draining(calls: CallService) -> Callable[[], bool]:
    def draining() -> bool:
        return calls.draining

    return draining


def _service_unwritable(calls: CallService) -> Callable[[], list[str]]:
    def unwritable() -> list[str]:
        # Read at each request: the wiring sets it after the service is built.
        return calls.outbox_unwritable()

    return unwritable


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
    draining: Callable[[], bool] | None = None,
    max_event_clients: int = DEFAULT_MAX_CLIENTS,
    acd: AcdService | None = None,
    campaigns: CampaignService | None = None,
    contacts: ContactsService | None = None,
    recordings: RecordingService | None = None,
    auth: Auth | None = None,
    audit: AuditTrail | None = None,
    audit_log: AuditLog | None = None,
    extra_routes: Iterable[Callable[[web.Application], None]] = (),
    forwarder: Forwarder | None = None,
    engines: EngineList | None = None,
    ivr_flows: Callable[[], Collection[str] | None] | None = None,
    outbox_unwritable: Callable[[], list[str]] | None = None,
    outbox_dir: Path | None = None,
) -> web.Application:
    """``draining`` returns True once the engine is shutting down (SIGTERM):
    new originates then get 503 ``draining`` and readiness turns 503. By
    default it is the call service's own flag (``CallService.drain()``).

    ``auth``: tokens, tickets and rate limits (docs/security.md); without it only the
    bootstrap ``tokens`` are accepted (as admin). ``audit``: where the audit rows of mutating
    requests go; ``audit_log`` serves ``GET /v1/audit``. ``extra_routes`` add other domains'
    routes (webhooks). ``forwarder``: commands for objects another engine owns are sent
    there (engine/api/forward.py); without it every request is served here. ``engines``:
    every engine's API address, for ``POST /v1/admin/reload?engines=all``. ``ivr_flows``: the
    IVR flow names loaded now; a call sent to another is a 400 ``unknown-flow``.
    ``outbox_unwritable``: the outbox journals whose disk refuses writes now (by default the
    call service's ``outbox_unwritable``); while any is, the routes that accept new work or
    data answer 503 ``storage-unavailable`` naming ``outbox_dir`` (engine/api/disk_full.py)."""
    if draining is None:
        draining = _service_draining(calls)
    if outbox_unwritable is None:
        outbox_unwritable = _service_unwritable(calls)
    if auth is None:
        auth = Auth.bootstrap_only(list(tokens))
    app = web.Application(
        # The audit middleware is outermost: it sees the final answer of every request,
        # refusals and errors included.
        # Forwarding comes after auth (a refused request makes no hop) and before the drain
        # check (a draining engine still hands commands to their owners). An agent token's
        # "its own call" check needs the owner's ACD: it runs after forwarding, so on the
        # engine that serves the call.
        # The newline middleware wraps the error middleware: error bodies end with one too.
        # The full-disk check, like the drain check, runs on the engine that serves the request.
        middlewares=[
            audit_middleware,
            json_newline_middleware,
            errors_middleware,
            auth.middleware,
            query_names_middleware,
            *([forwarder.middleware] if forwarder is not None else []),
            own_call_middleware,
            drain_middleware(draining),
            disk_full_middleware(outbox_unwritable, outbox_dir),
        ],
        client_max_size=MAX_BODY,
    )
    app[AUTH] = auth
    if forwarder is not None:
        app[FORWARDER] = forwarder
    if engines is not None:
        app[ENGINES] = engines
    if audit is not None:
        app[AUDIT] = audit
    if auth.authority.repo is not None:
        app[security_http.TOKENS] = auth.authority.repo
    if audit_log is not None:
        app[security_http.AUDIT_LOG] = audit_log
    app[DRAINING] = draining
    app[CALLS] = calls
    app[CDRS] = cdrs
    if ivr_flows is not None:
        app[calls_http.IVR_FLOWS] = ivr_flows
    app[STREAM] = stream
    app[METRICS] = metrics_registry
    app[HEALTH] = health_check
    health.add_routes(app)
    app.router.add_get("/v1/metrics", metrics)
    app.router.add_get("/v1/openapi.json", openapi)
    docs_page.add_routes(app)
    wallboard_page.add_routes(app)
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
    if acd is not None:
        # Agents and queues (docs/acd.md); without an ACD service the routes are absent.
        app[acd_http.ACD] = acd
        acd_http.add_routes(app)
    if campaigns is not None:
        # Outbound campaigns (docs/campaigns.md).
        app[campaigns_http.CAMPAIGNS] = campaigns
        campaigns_http.add_routes(app)
    if recordings is not None:
        # Recordings index, audio and per-call control (docs/recordings.md).
        app[recordings_http.RECORDINGS] = recordings
        recordings_http.add_routes(app)
    if contacts is not None:
        # Contact lists and DNC (docs/contacts.md); absent without a contacts service.
        contacts_http.add_routes(app, contacts)
    security_http.add_routes(app)
    for add in extra_routes:
        add(app)
    return app
