"""The audit trail: one row per mutating API request, and per audited read (docs/security.md).

``AuditTrail.record`` only appends to the ``audit`` lane of the durable local outbox (one
``os.write``): the request never waits on PostgreSQL, and an accepted row survives a crash and
a database outage; the lane delivers it to ``audit_log`` (engine.store.pg.audit), where it is
chained. Other modules call :func:`record` with their request (the recordings API: listen,
download, delete).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from engine.auth.roles import Identity
from engine.store.outbox import Lane, Record
from engine.store.pg.audit import AuditLog, NewEntry, check_details

# The identity a request acts as, set by the API's auth middleware (absent on public routes
# called without a token).
IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)


class AuditTrail:
    def __init__(self, lane: Lane | None, *, wall: Callable[[], float] = time.time) -> None:
        # No lane (a bare app in a test): rows are counted but kept nowhere.
        self._lane = lane
        self._wall = wall
        self.dropped = 0

    def record(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        target: str,
        source_ip: str,
        result: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        entry = NewEntry(
            str(uuid.uuid4()),
            self._wall(),
            actor,
            role,
            action,
            target,
            source_ip,
            result,
            check_details(details or {}, f"audit entry {action!r}"),
        )
        if self._lane is None:
            self.dropped += 1
            return
        self._lane.put(entry.to_json())


AUDIT = web.AppKey("audit", AuditTrail)


def source_ip(request: web.Request) -> str:
    # The peer address. Behind a reverse proxy this is the proxy: X-Forwarded-For is not
    # trusted (a client could write anything there).
    return request.remote or ""


def record(
    request: web.Request,
    *,
    action: str,
    target: str = "",
    result: str = "ok",
    details: Mapping[str, Any] | None = None,
) -> None:
    """One audit row for what ``request`` did (for handlers: e.g. a recording listened to).
    The actor is the request's token; the middleware's own row for a mutating request is
    written anyway."""
    trail = request.app.get(AUDIT)
    if trail is None:
        return
    identity = request.get(IDENTITY)
    trail.record(
        actor=identity.actor if identity else "anonymous",
        role=identity.role.value if identity else "",
        action=action,
        target=target,
        source_ip=source_ip(request),
        result=result,
        details=details,
    )


def lane_sink(log: AuditLog) -> Callable[[Sequence[Record]], Any]:
    """The audit lane's sink: a whole batch, chained in one transaction (idempotent on
    ``event_id``, so a batch re-delivered after a crash writes nothing twice)."""

    async def sink(records: Sequence[Record]) -> None:
        await log.append([NewEntry.from_json(r.payload) for r in records])

    return sink
