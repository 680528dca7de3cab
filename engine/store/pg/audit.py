"""The audit log: append-only, each row hash-chained to the one before (docs/security.md).

Rows are chained in ``id`` order: ``hash = SHA-256(prev_hash || canonical(row))`` with
``prev_hash`` the previous row's ``hash`` (32 zero bytes for the first). Writers take one
transaction-scoped advisory lock, read the last hash and insert, so rows from several engines
form one chain. ``verify`` recomputes the chain from the columns as stored: an edited column,
a deleted row or a row inserted out of band breaks it at that row.

Why the chain is computed here and not in a trigger: the same canonical form must be computed
again by ``verify`` (in Python, from the columns); one implementation of it is safer than a
PL/pgSQL and a Python one that must agree byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from engine.store.pg.errors import PG_ERRORS, translate

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Fixed key of the chain's advisory lock (any 64-bit value no other lock uses).
CHAIN_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"telephony-engine:audit-chain").digest()[:8], "big", signed=True
)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: Mapping[str, Any] = field(default_factory=dict)
    role: str = ""
    source_ip: str = ""
    result: str = ""
    event_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "source_ip": self.source_ip,
            "result": self.result,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class NewEntry:
    """One row to append. ``at`` is when it happened (the request), not when it was stored."""

    event_id: str
    at: float
    actor: str
    role: str
    action: str
    target: str
    source_ip: str
    result: str
    details: Mapping[str, Any]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NewEntry:
        return cls(
            str(d["event_id"]),
            float(d["at"]),
            str(d["actor"]),
            str(d.get("role", "")),
            str(d["action"]),
            str(d.get("target", "")),
            str(d.get("source_ip", "")),
            str(d.get("result", "")),
            dict(d.get("details") or {}),
        )

    def storable(self) -> NewEntry:
        """The entry as PostgreSQL can hold it: text and jsonb refuse NUL
        characters, and one request with ``%00`` in what it audits (a query
        value, a path) would otherwise stop the audit lane on that row for
        good. NUL becomes U+FFFD, before the chain hashes the row."""
        return NewEntry(
            self.event_id,
            self.at,
            _no_nul(self.actor),
            _no_nul(self.role),
            _no_nul(self.action),
            _no_nul(self.target),
            _no_nul(self.source_ip),
            _no_nul(self.result),
            _no_nul(dict(self.details)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "at": self.at,
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "target": self.target,
            "source_ip": self.source_ip,
            "result": self.result,
            "details": dict(self.details),
        }


def _no_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {_no_nul(k): _no_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nul(v) for v in value]
    return value


def check_details(details: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``details`` as stored: JSON without floats (a float may not survive jsonb byte for
    byte, and the chain hashes what is stored)."""

    def walk(value: Any, path: str) -> None:
        if isinstance(value, float):
            raise ValueError(f"{where}: details{path} is a float; send it as a string")
        if isinstance(value, Mapping):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ValueError(f"{where}: details{path} has a non-string key {k!r}")
                walk(v, f"{path}.{k}")
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif not (value is None or isinstance(value, str | int | bool)):
            raise ValueError(
                f"{where}: details{path} is not JSON-serialisable ({type(value).__name__})"
            )

    payload = dict(details)
    walk(payload, "")
    return payload


def at_micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def canonical(
    event_id: str,
    at_us: int,
    actor: str,
    role: str,
    action: str,
    target: str,
    source_ip: str,
    result: str,
    details: Mapping[str, Any],
) -> bytes:
    row = [event_id, at_us, actor, role, action, target, source_ip, result, details]
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev: bytes, row: bytes) -> bytes:
    return hashlib.sha256(prev + row).digest()


@dataclass(frozen=True, slots=True)
class VerifyReport:
    rows: int
    unchained: int  # rows from before the chain existed (migration 0008)
    broken_at: int | None  # id of the first row whose chain does not hold
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 5.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def record(
        self,
        actor: str,
        action: str,
        target: str = "",
        details: Mapping[str, Any] | None = None,
        *,
        role: str = "",
        source_ip: str = "",
        result: str = "",
    ) -> int:
        """Append one entry now (tools and tests; the API goes through the outbox); its id."""
        entry = NewEntry(
            str(uuid.uuid4()),
            datetime.now(UTC).timestamp(),
            actor,
            role,
            action,
            target,
            source_ip,
            result,
            check_details(details or {}, f"audit entry {action!r}"),
        )
        await self.append([entry])
        value = await self._fetchval("SELECT id FROM audit_log WHERE event_id = $1", entry.event_id)
        return int(value)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        try:
            return await self._pool.fetchval(sql, *args, timeout=self._timeout_s)
        except PG_ERRORS as err:
            raise translate(err, "reading the audit log") from err

    async def append(self, entries: Sequence[NewEntry]) -> int:
        """Append ``entries`` in order, chained; rows already stored (same ``event_id``, an
        outbox re-delivery) are skipped. Returns how many were written."""
        if not entries:
            return 0
        entries = [e.storable() for e in entries]
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn, conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1)", CHAIN_LOCK_KEY, timeout=self._timeout_s
                )
                # What is stored already and the chain's head, in one statement (one round
                # trip): read after the lock is held, so no other writer can move either.
                head = await conn.fetchrow(
                    "SELECT ARRAY(SELECT event_id FROM audit_log"
                    " WHERE event_id = ANY($1::text[])) AS seen,"
                    " (SELECT hash FROM audit_log WHERE hash IS NOT NULL"
                    " ORDER BY id DESC LIMIT 1) AS prev",
                    [e.event_id for e in entries],
                    timeout=self._timeout_s,
                )
                # (A SELECT without FROM always returns its one row.)
                seen, head_hash = (head["seen"], head["prev"]) if head is not None else ([], None)
                stored = set(seen)
                prev = bytes(head_hash) if head_hash is not None else GENESIS
                rows = []
                for e in entries:
                    if e.event_id in stored:
                        continue
                    stored.add(e.event_id)
                    at_us = round(e.at * 1_000_000)
                    at = _EPOCH + timedelta(microseconds=at_us)
                    digest = chain_hash(
                        prev,
                        canonical(
                            e.event_id,
                            at_us,
                            e.actor,
                            e.role,
                            e.action,
                            e.target,
                            e.source_ip,
                            e.result,
                            e.details,
                        ),
                    )
                    rows.append(
                        (
                            e.event_id,
                            at,
                            e.actor,
                            e.role,
                            e.action,
                            e.target,
                            e.source_ip,
                            e.result,
                            dict(e.details),
                            prev,
                            digest,
                        )
                    )
                    prev = digest
                # One statement per row, in order: identity values follow the chain.
                await conn.executemany(
                    "INSERT INTO audit_log (event_id, at, actor, role, action, target, "
                    "source_ip, result, details, prev_hash, hash) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    rows,
                    timeout=self._timeout_s,
                )
                return len(rows)
        except PG_ERRORS as err:
            raise translate(err, "appending to the audit log") from err

    async def recent(
        self,
        limit: int = 100,
        before_id: int | None = None,
        *,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        """Newest first; pass the last entry's id as ``before_id`` for the next page."""
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit: expected 1..10000, got {limit}")
        try:
            rows = await self._pool.fetch(
                "SELECT id, at, actor, action, target, details, role, source_ip, result, "
                "event_id FROM audit_log "
                "WHERE ($1::bigint IS NULL OR id < $1) AND ($3::text IS NULL OR actor = $3) "
                "AND ($4::text IS NULL OR action = $4) ORDER BY id DESC LIMIT $2",
                before_id,
                limit,
                actor,
                action,
                timeout=self._timeout_s,
            )
        except PG_ERRORS as err:
            raise translate(err, "listing audit entries") from err
        return [
            AuditEntry(
                r["id"],
                r["at"],
                r["actor"],
                r["action"],
                r["target"],
                r["details"],
                r["role"],
                r["source_ip"],
                r["result"],
                r["event_id"] or "",
            )
            for r in rows
        ]

    async def verify(self, batch: int = 5000) -> VerifyReport:
        """Walk the whole log in id order and recompute the chain."""
        prev: bytes | None = None
        last_id = 0
        count = unchained = 0
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                while True:
                    rows = await conn.fetch(
                        "SELECT id, event_id, at, actor, role, action, target, source_ip, "
                        "result, details, prev_hash, hash FROM audit_log WHERE id > $1 "
                        "ORDER BY id LIMIT $2",
                        last_id,
                        batch,
                        timeout=max(self._timeout_s, 30.0),
                    )
                    if not rows:
                        break
                    for r in rows:
                        last_id = r["id"]
                        count += 1
                        if r["hash"] is None:
                            if prev is not None:
                                return VerifyReport(count, unchained, r["id"], "row has no hash")
                            unchained += 1
                            continue
                        expected_prev = GENESIS if prev is None else prev
                        if bytes(r["prev_hash"] or b"") != expected_prev:
                            return VerifyReport(
                                count, unchained, r["id"], "prev_hash is not the previous hash"
                            )
                        row = canonical(
                            r["event_id"] or "",
                            at_micros(r["at"]),
                            r["actor"],
                            r["role"],
                            r["action"],
                            r["target"],
                            r["source_ip"],
                            r["result"],
                            r["details"],
                        )
                        if chain_hash(expected_prev, row) != bytes(r["hash"]):
                            return VerifyReport(
                                count, unchained, r["id"], "hash does not match the row"
                            )
                        prev = bytes(r["hash"])
        except PG_ERRORS as err:
            raise translate(err, "verifying the audit log") from err
        return VerifyReport(count, unchained, None)
