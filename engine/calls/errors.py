"""Errors of the calls domain, each with its HTTP mapping."""

from __future__ import annotations

from engine.core.errors import Conflict, EngineError, NotFound, ServiceUnavailable


class CallNotFound(NotFound):
    error_id = "call-not-found"


class CallAlreadyEnded(Conflict):
    error_id = "call-ended"


class IdempotencyKeyReused(Conflict):
    error_id = "idempotency-key-reused"


class SwitchUnavailable(ServiceUnavailable):
    error_id = "switch-unavailable"


class SwitchNotOwned(ServiceUnavailable):
    """Another engine owns this switch link (lease ``switch:<name>``), or nobody does during
    a takeover (engine/calls/ownership.py)."""

    error_id = "switch-not-owned"
    retry_after_s = 1.0


class UnknownSwitch(EngineError):
    status = 400
    error_id = "unknown-switch"


class SwitchActionFailed(EngineError):
    status = 502
    error_id = "switch-action-failed"


class EngineDraining(ServiceUnavailable):
    """The engine is shutting down (SIGTERM): live calls go on, new ones are
    refused until another instance (or this one, restarted) takes them."""

    error_id = "draining"
    retry_after_s = 5.0


class OutboxUnwritable(ServiceUnavailable):
    """The outbox's disk refuses writes (a full or read-only ``data_dir``): the engine takes
    no new calls until it accepts them again; live calls go on (docs/durability.md)."""

    error_id = "storage-unavailable"
    retry_after_s = 5.0


class UnsafeCallValue(EngineError):
    """A value of the request (variable, caller id, number, flow name) that the
    switch could misread as syntax; refused before anything was sent."""

    status = 400  # like every other invalid request of this API
    error_id = "unsafe-value"
