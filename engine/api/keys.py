"""Typed aiohttp application keys: what the composition root hands the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from engine.api.auth import Tokens
from engine.calls.cdr import CdrReader
from engine.calls.service import CallService
from engine.store.redis.stream import EventStream
from engine.telemetry.metrics import Metrics
from engine.trunks.service import TrunkService

CALLS = web.AppKey("calls", CallService)
CDRS = web.AppKey("cdrs", CdrReader)
STREAM = web.AppKey("stream", EventStream)
METRICS = web.AppKey("metrics", Metrics)
TRUNKS = web.AppKey("trunks", TrunkService)
HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
# Returns {"status": "ok"|"degraded", ...}; built by app.py from the live resources.
HEALTH: web.AppKey[HealthCheck] = web.AppKey("health")
# Re-reads IVR flows and re-validates the config; returns a JSON report.
RELOAD: web.AppKey[HealthCheck] = web.AppKey("reload")
AUTH = web.AppKey("auth", Tokens)
# True while the engine drains (SIGTERM): new originates are refused.
DRAINING: web.AppKey[Callable[[], bool]] = web.AppKey("draining")
