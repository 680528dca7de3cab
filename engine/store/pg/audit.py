"""Audit log: who did what through the control API."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from engine.store.pg.errors import PG_ERRORS, translate


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: Mapping[str, Any] = field(default_factory=dict)


class AuditLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(
        self, actor: str, action: str, target: str = "", details: Mapping[str, Any] | None = None
    ) -> int:
        """Append one entry; returns its id. ``details`` must be JSON-serialisable."""
        payload = dict(details or {})
        try:
            json.dumps(payload)
        except (TypeError, ValueError) as err:
            msg = f"audit details for {action!r} are not JSON-serialisable: {err}"
            raise ValueError(msg) from err
        try:
            value = await self._pool.fetchval(
                "INSERT INTO audit_log (actor, action, target, details) "
                "VALUES ($1, $2, $3, $4) RETURNING id",
                actor,
                action,
                target,
                payload,
            )
        except PG_ERRORS as err:
            raise translate(err, f"recording audit entry {action}") from err
        return int(value)

    async def recent(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        """Newest first; pass the last entry's id as ``before_id`` for the next page."""
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit: expected 1..10000, got {limit}")
        try:
            rows = await self._pool.fetch(
                "SELECT id, at, actor, action, target, details FROM audit_log "
                "WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
                before_id,
                limit,
            )
        except PG_ERRORS as err:
            raise translate(err, "listing audit entries") from err
        return [
            AuditEntry(r["id"], r["at"], r["actor"], r["action"], r["target"], r["details"])
            for r in rows
        ]
