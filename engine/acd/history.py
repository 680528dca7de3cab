"""The ACD's history in PostgreSQL, written through the durable outbox.

:class:`AcdHistory` turns agent transitions and queue entries into records and
puts them into the ``acd`` lane of the outbox (engine/store/outbox): appended
to a local journal at once, so no state change ever waits on PostgreSQL
(docs/durability.md). :class:`AcdRepository.write` is the lane's sink; every
statement is idempotent on the row's natural key, so a re-delivery after a
crash changes nothing, and a queue entry row only moves forward (``version``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from engine.core.clock import to_datetime
from engine.store.outbox import Record
from engine.store.pg.batch import Statements, write_batch
from engine.store.pg.errors import PG_ERRORS, translate


class RecordSink(Protocol):
    """Where records go: an outbox ``Lane`` (``put``) or a list in tests."""

    def put(self, payload: dict[str, Any]) -> None: ...


def _ts(value: float | None) -> datetime | None:
    return to_datetime(value) if value is not None else None


class AcdHistory:
    def __init__(self, sink: RecordSink) -> None:
        self._sink = sink

    def session(
        self, session_id: str, agent_id: str, started_at: float, ended_at: float | None
    ) -> None:
        self._sink.put(
            {
                "kind": "agent_session",
                "session_id": session_id,
                "agent_id": agent_id,
                "started_at": started_at,
                "ended_at": ended_at,
            }
        )

    def state(self, row: Mapping[str, Any]) -> None:
        self._sink.put({"kind": "agent_state", **row})

    def entry(self, row: Mapping[str, Any]) -> None:
        self._sink.put({"kind": "queue_entry", **row})

    def membership(self, agent_id: str, queues: Sequence[str], at: float, actor: str) -> None:
        self._sink.put(
            {
                "kind": "agent_queues",
                "agent_id": agent_id,
                "queues": list(queues),
                "changed_at": at,
                "actor": actor,
            }
        )


_SESSION = """
INSERT INTO agent_sessions (session_id, agent_id, started_at, ended_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (session_id) DO UPDATE SET ended_at = coalesce(EXCLUDED.ended_at,
                                                           agent_sessions.ended_at)
"""

_STATE = """
INSERT INTO agent_state_history (change_id, agent_id, session_id, at, state, previous,
                                 pause_reason, call_id, queue, time_in_previous_s)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (change_id) DO NOTHING
"""

_ENTRY_COLUMNS = (
    "entry_id, call_id, queue, priority, tags, intent, entered_at, first_offer_at, answered_at, "
    "ended_at, outcome, agent_id, offers, missed, overflow_stage, exit_flow, wait_s, talk_s, "
    "requeued_from, wrap_up_s, strategy, version"
)
_ENTRY_UPDATES = ", ".join(
    f"{c} = EXCLUDED.{c}" for c in _ENTRY_COLUMNS.split(", ") if c != "entry_id"
)
_ENTRY = f"""
INSERT INTO queue_entries ({_ENTRY_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
        $21, $22)
ON CONFLICT (entry_id) DO UPDATE SET {_ENTRY_UPDATES}
WHERE queue_entries.version <= EXCLUDED.version
"""


# The newest roster wins (a re-delivered older batch does not undo a later move).
_QUEUES = """
INSERT INTO agent_queue_membership (agent_id, queues, changed_at, actor)
VALUES ($1, $2, $3, $4)
ON CONFLICT (agent_id) DO UPDATE SET queues = EXCLUDED.queues, changed_at = EXCLUDED.changed_at,
                                     actor = EXCLUDED.actor
WHERE agent_queue_membership.changed_at <= EXCLUDED.changed_at
"""


def _queues_args(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (p["agent_id"], list(p["queues"]), _ts(p["changed_at"]), p.get("actor", ""))


def _session_args(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (p["session_id"], p["agent_id"], _ts(p["started_at"]), _ts(p.get("ended_at")))


def _state_args(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        p["change_id"],
        p["agent_id"],
        p.get("session_id") or None,
        _ts(p["at"]),
        p["state"],
        p["previous"],
        p.get("pause_reason"),
        p.get("call_id"),
        p.get("queue"),
        float(p.get("time_in_previous_s", 0.0)),
    )


def _entry_args(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        p["entry_id"],
        p["call_id"],
        p["queue"],
        int(p["priority"]),
        list(p.get("tags", [])),
        p.get("intent"),
        _ts(p["entered_at"]),
        _ts(p.get("first_offer_at")),
        _ts(p.get("answered_at")),
        _ts(p.get("ended_at")),
        p["outcome"],
        p.get("agent_id"),
        int(p.get("offers", 0)),
        int(p.get("missed", 0)),
        int(p.get("overflow_stage", 0)),
        p.get("exit_flow"),
        p.get("wait_s"),
        p.get("talk_s"),
        p.get("requeued_from"),
        p.get("wrap_up_s"),
        p.get("strategy"),
        int(p.get("version", 0)),
    )


def _one(sql: str, args: Callable[[Mapping[str, Any]], tuple[Any, ...]]) -> Statements:
    return lambda p: [(sql, args(p))]


_BY_KIND: dict[str, Statements] = {
    "agent_session": _one(_SESSION, _session_args),
    "agent_state": _one(_STATE, _state_args),
    "queue_entry": _one(_ENTRY, _entry_args),
    "agent_queues": _one(_QUEUES, _queues_args),
}


class AcdRepository:
    """Writes (and reads back, for tests and reports) the ACD's tables."""

    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float = 5.0) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    async def write(self, records: Sequence[Record]) -> None:
        """The ``acd`` lane's sink: one transaction per batch, in record order."""
        await write_batch(
            self._pool, records, _BY_KIND, timeout_s=self._timeout_s, what="ACD history rows"
        )

    async def fetch(self, sql_table: str, where: str = "", *args: Any) -> list[dict[str, Any]]:
        """Rows of one of the ACD's tables (tests, reports); ``where`` uses $n parameters."""
        if sql_table not in (
            "agent_sessions",
            "agent_state_history",
            "queue_entries",
            "agent_queue_membership",
        ):
            raise ValueError(f"not an ACD table: {sql_table!r}")
        query = f"SELECT * FROM {sql_table} {('WHERE ' + where) if where else ''}"
        try:
            async with asyncio.timeout(self._timeout_s):
                rows = await self._pool.fetch(query, *args)
        except PG_ERRORS as err:
            raise translate(err, f"reading {sql_table}") from err
        return [dict(r) for r in rows]

    async def kpi_buckets(
        self,
        queue: str,
        since: float,
        until: float,
        bucket_s: float,
        service_level_s: float,
        exclude: Sequence[str],
    ) -> list[dict[str, Any]]:
        """The live KPI window's sums (engine/acd/kpi_window.py) of the queue's entries that
        ended in ``[since, until)`` (epoch seconds), one row per ``bucket_s`` of end time
        (``bucket``: its index, epoch // bucket_s), leaving out the entries of ``exclude``:
        what the live KPIs count, read back at start. Summed here, not row by row: a busy
        queue ends tens of thousands of entries a day."""
        try:
            async with asyncio.timeout(self._timeout_s):
                rows = await self._pool.fetch(
                    _KPI_BUCKETS,
                    queue,
                    to_datetime(since),
                    to_datetime(until),
                    bucket_s,
                    service_level_s,
                    list(exclude),
                )
        except PG_ERRORS as err:
            raise translate(err, "reading queue_entries") from err
        return [dict(r) for r in rows]


# KpiSums.ended / .wrapped of engine/acd/kpi.py, in SQL: every abandon counts (the live view
# has no short-abandon threshold); the wait as stored with the row (wait_s), as the reports
# read it (engine/reports/fill.py). The (queue, ended_at) index (migration 0019) finds the rows.
_KPI_BUCKETS = """
SELECT floor(extract(epoch FROM ended_at) / $4::float8)::bigint AS bucket,
       count(*) FILTER (WHERE outcome = 'answered') AS answered,
       count(*) FILTER (WHERE outcome = 'answered' AND coalesce(wait_s, 0) <= $5::float8)
           AS answered_in_sl,
       coalesce(sum(coalesce(wait_s, 0)) FILTER (WHERE outcome = 'answered'), 0)::float8
           AS answered_wait_s,
       count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
       count(*) FILTER (WHERE outcome = 'answered' AND wrap_up_s IS NOT NULL) AS handled,
       coalesce(sum(coalesce(talk_s, 0) + wrap_up_s)
                FILTER (WHERE outcome = 'answered' AND wrap_up_s IS NOT NULL), 0)::float8
           AS handle_s
FROM queue_entries
WHERE queue = $1 AND ended_at >= $2 AND ended_at < $3 AND outcome IN ('answered', 'abandoned')
  AND entry_id <> ALL($6::text[])
GROUP BY 1
"""
