"""The recordings index in PostgreSQL (migration 0007).

Writes that follow a call (started, paused, finished) come through the ``recordings`` lane of
the durable outbox, so a recording that ends while PostgreSQL is away is indexed when it comes
back: every statement here is idempotent (an upsert that never moves a row backwards).
Reads and the API's own changes (delete, legal hold, re-wrap) go straight to the database
under a timeout.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from engine.core.clock import to_datetime
from engine.recordings.model import Recording
from engine.store.outbox import Record
from engine.store.pg.errors import with_connection

T = TypeVar("T")

_COLUMNS = (
    "recording_id, call_id, switch, agent_id, queue, campaign, started_at, ended_at, duration_s, "
    "channels, pause_mode, sample_rate, state, key_id, size, encrypted_size, sha256, legal_hold, "
    "retention_days, error, kind, flow, ended_by"
)

# Started (or its metadata learned later): never moves a row that is further along back.
_UPSERT_STARTED = """
INSERT INTO recordings (recording_id, call_id, switch, agent_id, queue, campaign, started_at,
    channels, pause_mode, state, retention_days)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'recording', $10)
ON CONFLICT (recording_id) DO UPDATE SET
    agent_id = COALESCE(EXCLUDED.agent_id, recordings.agent_id),
    queue = COALESCE(EXCLUDED.queue, recordings.queue),
    campaign = COALESCE(EXCLUDED.campaign, recordings.campaign),
    updated_at = now()
"""

_STATE = """
UPDATE recordings SET state = $2, updated_at = now()
WHERE recording_id = $1 AND state IN ('recording', 'paused')
"""

# A voicemail message the IVR `record` step reported: the switch already closed its file, so
# the row starts `finishing` (being sealed); `source` is that file, for recovery.
_UPSERT_VOICEMAIL = """
INSERT INTO recordings (recording_id, call_id, switch, started_at, ended_at, channels,
    pause_mode, state, retention_days, kind, flow, ended_by, source)
VALUES ($1, $2, $3, $4, $5, 'mono', $6, 'finishing', $7, 'voicemail', $8, $9, $10)
ON CONFLICT (recording_id) DO NOTHING
"""

# A voicemail message sealed (or failed): its row always exists (the `voicemail` record comes
# first in the same lane), so this never inserts: a discarded message cannot come back.
# `source` stays when the plaintext is kept for the call ($13): recovery removes it if the
# engine stops before the call's end does (docs/recordings.md "Voicemail").
_FINISHED_VOICEMAIL = """
UPDATE recordings SET ended_at = $2, duration_s = $3, sample_rate = $4, state = $5,
    key_id = COALESCE($6, key_id), wrapped_key = COALESCE($7, wrapped_key), size = $8,
    encrypted_size = $9, sha256 = $10, file = $11, error = $12,
    source = CASE WHEN $13::boolean THEN source END, updated_at = now()
WHERE recording_id = $1 AND state = 'finishing'
RETURNING recording_id
"""

# A sealed voicemail's plaintext, kept while its call lived, is gone.
_PLAINTEXT_REMOVED = """
UPDATE recordings SET source = NULL, updated_at = now()
WHERE recording_id = $1 AND kind = 'voicemail' AND state <> 'finishing'
"""

# A voicemail take with no audio in it: no message, no row.
_DISCARD = """
DELETE FROM recordings WHERE recording_id = $1 AND kind = 'voicemail' AND state = 'finishing'
"""

# Finished: the row becomes ready (or failed). RETURNING only when this statement made the
# change, so RecordingReady is published once per recording even when a batch is re-delivered.
_FINISHED = """
INSERT INTO recordings (recording_id, call_id, switch, agent_id, queue, campaign, started_at,
    ended_at, duration_s, channels, pause_mode, sample_rate, state, key_id, wrapped_key, size,
    encrypted_size, sha256, file, retention_days, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
    $20, $21)
ON CONFLICT (recording_id) DO UPDATE SET
    ended_at = EXCLUDED.ended_at, duration_s = EXCLUDED.duration_s,
    sample_rate = EXCLUDED.sample_rate, state = EXCLUDED.state,
    key_id = COALESCE(EXCLUDED.key_id, recordings.key_id),
    wrapped_key = COALESCE(EXCLUDED.wrapped_key, recordings.wrapped_key),
    size = EXCLUDED.size, encrypted_size = EXCLUDED.encrypted_size, sha256 = EXCLUDED.sha256,
    file = EXCLUDED.file, error = EXCLUDED.error,
    agent_id = COALESCE(recordings.agent_id, EXCLUDED.agent_id),
    queue = COALESCE(recordings.queue, EXCLUDED.queue),
    campaign = COALESCE(recordings.campaign, EXCLUDED.campaign),
    updated_at = now()
WHERE recordings.state IN ('recording', 'paused', 'finishing')
RETURNING recording_id
"""


@dataclass(frozen=True, slots=True)
class Filters:
    call_id: str | None = None
    agent_id: str | None = None
    queue: str | None = None
    campaign: str | None = None
    state: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    key_id: str
    wrapped_key: bytes
    file: str
    sha256: str | None
    size: int | None


def _row(r: asyncpg.Record) -> Recording:
    def ts(v: datetime | None) -> float | None:
        return v.timestamp() if v is not None else None

    return Recording(
        recording_id=str(r["recording_id"]),
        call_id=r["call_id"],
        switch=r["switch"],
        agent_id=r["agent_id"],
        queue=r["queue"],
        campaign=r["campaign"],
        started_at=r["started_at"].timestamp(),
        ended_at=ts(r["ended_at"]),
        duration_s=r["duration_s"],
        channels=r["channels"],
        pause_mode=r["pause_mode"],
        state=r["state"],
        key_id=r["key_id"],
        size=r["size"],
        encrypted_size=r["encrypted_size"],
        sha256=r["sha256"],
        legal_hold=r["legal_hold"],
        retention_days=r["retention_days"],
        sample_rate=r["sample_rate"],
        error=r["error"],
        kind=r["kind"],
        flow=r["flow"],
        ended_by=r["ended_by"],
    )


class RecordingIndex:
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float) -> None:
        self._pool = pool
        self._timeout = timeout_s

    async def _run(self, doing: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        return await with_connection(self._pool, self._timeout, doing, work)

    # ------------------------------------------------------------------ the lane's sink

    async def write(
        self, records: Sequence[Record], on_ready: Callable[[Mapping[str, Any]], None]
    ) -> list[str]:
        """Apply a batch of lane records in one transaction; ``on_ready`` is called (after the
        commit) for each recording this batch made ready. Returns their ids."""
        made_ready: list[Mapping[str, Any]] = []

        async def work(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                for record in records:
                    p = record.payload
                    kind = p.get("kind")
                    if kind == "started":
                        await conn.execute(_UPSERT_STARTED, *_started_args(p))
                    elif kind == "voicemail":
                        await conn.execute(_UPSERT_VOICEMAIL, *_voicemail_args(p))
                    elif kind == "discard":
                        await conn.execute(_DISCARD, uuid.UUID(p["recording_id"]))
                    elif kind == "plaintext_removed":
                        await conn.execute(_PLAINTEXT_REMOVED, uuid.UUID(p["recording_id"]))
                    elif kind == "state":
                        await conn.execute(_STATE, uuid.UUID(p["recording_id"]), p["state"])
                    elif kind == "finished" and p.get("recording_kind") == "voicemail":
                        row = await conn.fetchrow(_FINISHED_VOICEMAIL, *_voicemail_done_args(p))
                        if row is not None and p["state"] == "ready":
                            made_ready.append(p)
                    elif kind == "finished":
                        row = await conn.fetchrow(_FINISHED, *_finished_args(p))
                        if row is not None and p["state"] == "ready":
                            made_ready.append(p)

        await self._run(f"indexing {len(records)} recording records", work)
        for p in made_ready:
            on_ready(p)
        return [str(p["recording_id"]) for p in made_ready]

    # ------------------------------------------------------------------ reads

    async def get(self, recording_id: uuid.UUID) -> Recording | None:
        sql = f"SELECT {_COLUMNS} FROM recordings WHERE recording_id = $1"

        async def work(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(sql, recording_id)

        row = await self._run("reading a recording", work)
        return _row(row) if row is not None else None

    async def key_material(self, recording_id: uuid.UUID) -> KeyMaterial | None:
        sql = (
            "SELECT key_id, wrapped_key, file, sha256, size FROM recordings "
            "WHERE recording_id = $1 AND state = 'ready' AND wrapped_key IS NOT NULL"
        )

        async def work(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(sql, recording_id)

        row = await self._run("reading a recording's key", work)
        if row is None:
            return None
        return KeyMaterial(
            row["key_id"], bytes(row["wrapped_key"]), row["file"], row["sha256"], row["size"]
        )

    async def for_calls(self, call_ids: Sequence[str]) -> list[Recording]:
        """Every recording of these calls, oldest first (a data-subject export)."""
        sql = (
            f"SELECT {_COLUMNS} FROM recordings WHERE call_id = ANY($1::text[])"
            " ORDER BY started_at, recording_id"
        )

        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, list(call_ids)))

        return [_row(r) for r in await self._run("reading the recordings of calls", work)]

    async def search(
        self, filters: Filters, *, limit: int, after: uuid.UUID | None
    ) -> list[Recording]:
        where: list[str] = []
        args: list[Any] = []

        def add(cond: str, value: Any) -> None:
            args.append(value)
            where.append(cond.replace("?", f"${len(args)}"))

        for column in ("call_id", "agent_id", "queue", "campaign", "state", "kind"):
            value = getattr(filters, column)
            if value is not None:
                add(f"{column} = ?", value)
        if filters.since is not None:
            add("started_at >= ?", filters.since)
        if filters.until is not None:
            add("started_at < ?", filters.until)
        if after is not None:
            # Keyset pagination from the last row of the previous page (an id that does not
            # exist gives an empty page, never a wrong one).
            add(
                "(started_at, recording_id) < "
                "(SELECT r.started_at, r.recording_id FROM recordings r WHERE r.recording_id = ?)",
                after,
            )
        args.append(limit)
        sql = (
            f"SELECT {_COLUMNS} FROM recordings"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY started_at DESC, recording_id DESC LIMIT ${len(args)}"
        )

        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, *args))

        return [_row(r) for r in await self._run("listing recordings", work)]

    # ------------------------------------------------------------------ changes

    async def shred(self, recording_id: uuid.UUID) -> tuple[bool, str | None]:
        """Destroy the data key (crypto-shredding) unless a legal hold is on. Returns
        (shredded, the file to unlink); (False, None) when under legal hold."""
        sql = """
        UPDATE recordings SET state = 'deleted', wrapped_key = NULL, deleted_at = now(),
            updated_at = now()
        WHERE recording_id = $1 AND NOT legal_hold AND state <> 'deleted'
        RETURNING file
        """

        async def work(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(sql, recording_id)

        row = await self._run("deleting a recording", work)
        return (row is not None, row["file"] if row is not None else None)

    async def set_legal_hold(self, recording_id: uuid.UUID, hold: bool) -> bool:
        sql = "UPDATE recordings SET legal_hold = $2, updated_at = now() WHERE recording_id = $1"

        async def work(conn: asyncpg.Connection) -> str:
            return str(await conn.execute(sql, recording_id, hold))

        return (await self._run("setting a legal hold", work)).endswith(" 1")

    async def unfinished(self, switches: list[str], before: float) -> list[Recording]:
        """Recordings still recording or paused on these switches, started before ``before``
        (recovery after a restart: the engine that started them forgot them)."""
        sql = f"""
        SELECT {_COLUMNS} FROM recordings
        WHERE state IN ('recording', 'paused') AND kind = 'call' AND switch = ANY($1::text[])
          AND started_at < $2
        ORDER BY started_at LIMIT 1000
        """

        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, switches, to_datetime(before)))

        return [_row(r) for r in await self._run("reading unfinished recordings", work)]

    async def pending_voicemail(
        self, switches: list[str], before: float
    ) -> list[tuple[Recording, str]]:
        """Voicemail messages journalled but not sealed (the engine stopped in between), with
        the switch's file as the engine reads it."""
        sql = f"""
        SELECT {_COLUMNS}, source FROM recordings
        WHERE kind = 'voicemail' AND state = 'finishing' AND source IS NOT NULL
          AND switch = ANY($1::text[]) AND started_at < $2
        ORDER BY started_at LIMIT 1000
        """

        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, switches, to_datetime(before)))

        rows = await self._run("reading pending voicemail messages", work)
        return [(_row(r), str(r["source"])) for r in rows]

    async def kept_voicemail(self, switches: list[str]) -> list[tuple[Recording, str]]:
        """Voicemail messages sealed whose plaintext was kept for their call and not removed
        yet, with that file as the engine reads it."""
        sql = f"""
        SELECT {_COLUMNS}, source FROM recordings
        WHERE kind = 'voicemail' AND state <> 'finishing' AND source IS NOT NULL
          AND switch = ANY($1::text[])
        ORDER BY started_at LIMIT 1000
        """

        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, switches))

        rows = await self._run("reading kept voicemail plaintext", work)
        return [(_row(r), str(r["source"])) for r in rows]

    async def expired(self, now: float, limit: int) -> list[uuid.UUID]:
        """Ready recordings past their retention, legal holds skipped (the sweeper)."""
        sql = """
        SELECT recording_id FROM recordings
        WHERE state = 'ready' AND NOT legal_hold AND retention_days > 0
          AND ended_at + make_interval(days => retention_days) <= $1
        ORDER BY ended_at LIMIT $2
        """

        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, to_datetime(now), limit))

        return [r["recording_id"] for r in await self._run("finding expired recordings", work)]

    async def wrapped_keys(self, not_key_id: str, limit: int) -> list[tuple[uuid.UUID, str, bytes]]:
        sql = """
        SELECT recording_id, key_id, wrapped_key FROM recordings
        WHERE wrapped_key IS NOT NULL AND key_id <> $1 ORDER BY recording_id LIMIT $2
        """

        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, not_key_id, limit))

        rows = await self._run("reading keys to re-wrap", work)
        return [(r["recording_id"], r["key_id"], bytes(r["wrapped_key"])) for r in rows]

    async def replace_key(
        self, recording_id: uuid.UUID, old_key_id: str, key_id: str, wrapped: bytes
    ) -> bool:
        sql = """
        UPDATE recordings SET key_id = $3, wrapped_key = $4, updated_at = now()
        WHERE recording_id = $1 AND key_id = $2 AND wrapped_key IS NOT NULL
        """

        async def work(conn: asyncpg.Connection) -> str:
            return str(await conn.execute(sql, recording_id, old_key_id, key_id, wrapped))

        return (await self._run("re-wrapping a data key", work)).endswith(" 1")


def _started_args(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        uuid.UUID(p["recording_id"]),
        p["call_id"],
        p["switch"],
        p.get("agent_id"),
        p.get("queue"),
        p.get("campaign"),
        to_datetime(p["started_at"]),
        p["channels"],
        p["pause_mode"],
        int(p.get("retention_days", 0)),
    )


def _voicemail_args(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        uuid.UUID(p["recording_id"]),
        p["call_id"],
        p["switch"],
        to_datetime(p["started_at"]),
        to_datetime(p["ended_at"]),
        p["pause_mode"],
        int(p.get("retention_days", 0)),
        p.get("flow"),
        p.get("ended_by"),
        p["source"],
    )


def _sealed_args(p: Mapping[str, Any]) -> tuple[Any, ...]:
    """The sealed file's columns, shared by call recordings and voicemail messages."""
    wrapped = p.get("wrapped_key")
    return (
        p["state"],
        p.get("key_id"),
        base64.b64decode(wrapped) if wrapped else None,
        p.get("size"),
        p.get("encrypted_size"),
        p.get("sha256"),
        p.get("file"),
    )


def _voicemail_done_args(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        uuid.UUID(p["recording_id"]),
        to_datetime(p["ended_at"]),
        p.get("duration_s"),
        p.get("sample_rate"),
        *_sealed_args(p),
        p.get("error"),
        bool(p.get("plaintext_kept", False)),
    )


def _finished_args(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        uuid.UUID(p["recording_id"]),
        p["call_id"],
        p["switch"],
        p.get("agent_id"),
        p.get("queue"),
        p.get("campaign"),
        to_datetime(p["started_at"]),
        to_datetime(p["ended_at"]),
        p.get("duration_s"),
        p["channels"],
        p["pause_mode"],
        p.get("sample_rate"),
        *_sealed_args(p),
        int(p.get("retention_days", 0)),
        p.get("error"),
    )
