"""Errors of the trunks domain, each with its HTTP mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.core.errors import EngineError, NotFound, ServiceUnavailable


class TrunkNotFound(NotFound):
    error_id = "trunk-not-found"


class UnknownTrunkGroup(EngineError):
    status = 400
    error_id = "unknown-trunk-group"


class TrunksUnavailable(ServiceUnavailable):
    """No member of the group could take the call: every one is full (after
    the queue timeout), down, drained or already tried. ``retry_after_s`` goes
    into the HTTP ``Retry-After`` header (whole seconds)."""

    error_id = "trunks-unavailable"

    def __init__(
        self, message: str, *, retry_after_s: float, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s
