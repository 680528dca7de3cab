"""Health probes.

``GET /v1/health/live``: the process is up and its event loop answers. It
touches no storage and no switch, so an orchestrator never restarts the
engine because PostgreSQL is slow.

``GET /v1/health/ready``: the engine can take calls: PostgreSQL and Redis
answer a ping and at least one switch link is UP (200), else 503. Anyone may
ask; the per-switch states are added only for a caller with a valid token.
``GET /v1/health`` is the same as ``/ready`` (kept for existing monitors).

A 503 says why: ``reasons`` holds one entry per failing check (``draining``, ``postgres``,
``redis``, ``outbox``, ``switches``) with a one-line problem and ``since``, when this
engine's probes first saw it failing in the run of probes that still sees it (so a
load balancer polling every few seconds gives it to within its interval).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from engine.api.keys import DRAINING, HEALTH
from engine.auth.audit import IDENTITY


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


#: The one-line problem of each readiness check, for ``reasons``.
PROBLEMS: dict[str, str] = {
    "draining": "the engine is draining (SIGTERM): it takes no new calls",
    "postgres": "PostgreSQL did not answer a ping within 2 s",
    "redis": "Redis did not answer a ping within 2 s",
    "outbox": "the disk under data_dir refuses outbox journal writes (full or read-only)",
    "storage": "no storage configured",
}


@dataclass
class FailingSince:
    """When each readiness check was first seen failing, for as long as probes still see it
    (a check that passes once starts afresh)."""

    clock: Callable[[], float] = time.time
    first: dict[str, float] = field(default_factory=dict)

    def track(self, failing: list[str]) -> dict[str, float]:
        now = self.clock()
        self.first = {check: self.first.get(check, now) for check in failing}
        return self.first


def _failing(storage: dict[str, bool], up: int, total: int, draining: bool) -> dict[str, str]:
    """check -> its problem, for every readiness check that fails."""
    out = {"draining": PROBLEMS["draining"]} if draining else {}
    if not storage:
        out["storage"] = PROBLEMS["storage"]
    out.update(
        {name: PROBLEMS.get(name, f"{name} is down") for name, ok in storage.items() if not ok}
    )
    if up == 0:
        out["switches"] = f"no switch control link is up (0 of {total})"
    return out


def readiness(
    report: dict[str, Any], *, draining: bool, since: FailingSince | None = None
) -> dict[str, Any]:
    """The public readiness view of the engine's full health report."""
    storage = {k: bool(v) for k, v in report.get("storage", {}).items()}
    states = [s.get("state") for s in report.get("switches", {}).values()]
    up = sum(1 for s in states if s == "up")
    failing = _failing(storage, up, len(states), draining)
    first = (since or FailingSince()).track(list(failing))
    return {
        "status": "not-ready" if failing else "ready",
        "draining": draining,
        "storage": storage,
        "switches_up": up,
        "switches_total": len(states),
        "reasons": [
            {
                "check": check,
                "problem": problem,
                "since": datetime.fromtimestamp(first[check], UTC).isoformat(timespec="seconds"),
            }
            for check, problem in failing.items()
        ],
    }


async def ready(request: web.Request) -> web.Response:
    report = await request.app[HEALTH]()
    body = readiness(report, draining=request.app[DRAINING](), since=request.app[_SINCE])
    if request.get(IDENTITY) is not None:  # set by the auth middleware when a token was valid
        body["switches"] = report.get("switches", {})
    return web.json_response(body, status=200 if body["status"] == "ready" else 503)


_SINCE = web.AppKey("readiness_failing_since", FailingSince)


def add_routes(app: web.Application) -> None:
    app[_SINCE] = FailingSince()
    app.router.add_get("/v1/health/live", live)
    app.router.add_get("/v1/health/ready", ready)
    app.router.add_get("/v1/health", ready)
