"""Health probes.

``GET /v1/health/live``: the process is up and its event loop answers. It
touches no storage and no switch, so an orchestrator never restarts the
engine because PostgreSQL is slow.

``GET /v1/health/ready``: the engine can take calls: PostgreSQL and Redis
answer a ping and at least one switch link is UP (200), else 503. Anyone may
ask; the per-switch states are added only for a caller with a valid token.
``GET /v1/health`` is the same as ``/ready`` (kept for existing monitors).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.keys import DRAINING, HEALTH
from engine.auth.audit import IDENTITY


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def readiness(report: dict[str, Any], *, draining: bool) -> dict[str, Any]:
    """The public readiness view of the engine's full health report."""
    storage = {k: bool(v) for k, v in report.get("storage", {}).items()}
    states = [s.get("state") for s in report.get("switches", {}).values()]
    up = sum(1 for s in states if s == "up")
    ready = bool(storage) and all(storage.values()) and up > 0 and not draining
    return {
        "status": "ready" if ready else "not-ready",
        "draining": draining,
        "storage": storage,
        "switches_up": up,
        "switches_total": len(states),
    }


async def ready(request: web.Request) -> web.Response:
    report = await request.app[HEALTH]()
    body = readiness(report, draining=request.app[DRAINING]())
    if request.get(IDENTITY) is not None:  # set by the auth middleware when a token was valid
        body["switches"] = report.get("switches", {})
    return web.json_response(body, status=200 if body["status"] == "ready" else 503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/health/live", live)
    app.router.add_get("/v1/health/ready", ready)
    app.router.add_get("/v1/health", ready)
