"""Typed aiohttp application keys: what the composition root hands the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from engine.api.auth import Auth

# The domains' keys are declared next to their routes (a domain never imports
# engine.api); they are gathered here for the API's own modules.
from engine.calls.http import CALLS, CDRS
from engine.store.redis.stream import EventStream
from engine.telemetry.metrics import Metrics
from engine.trunks.http import TRUNKS

__all__ = ["CALLS", "CDRS", "HEALTH", "METRICS", "RELOAD", "STREAM", "TRUNKS", "HealthCheck"]

STREAM = web.AppKey("stream", EventStream)
METRICS = web.AppKey("metrics", Metrics)
HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
# Returns {"status": "ok"|"degraded", ...}; built by app.py from the live resources.
HEALTH: web.AppKey[HealthCheck] = web.AppKey("health")
# Re-reads IVR flows and re-validates the config; returns a JSON report.
RELOAD: web.AppKey[HealthCheck] = web.AppKey("reload")
AUTH = web.AppKey("auth", Auth)
# True while the engine drains (SIGTERM): new originates are refused.
DRAINING: web.AppKey[Callable[[], bool]] = web.AppKey("draining")
