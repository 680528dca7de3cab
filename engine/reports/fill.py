"""The 15-minute interval tables (migration 0011): one fill, run two ways.

:func:`fill_range` recomputes every interval row of some keys (or all) over ``[start, end)``
from the raw rows (``cdr``, ``queue_entries``, ``agent_state_history``,
``campaign_attempts``). The rebuild (:func:`rebuild`, ``python -m engine reports rebuild``)
runs it over a whole range; the engine's refresher (:func:`refresh_dirty`) runs it over the
buckets the raw tables' triggers marked as their rows were written by the outbox lanes, one
bucket at a time. Same statements either way, so an incremental fill and a rebuild give the
same rows (tests/integration/test_reports_fill.py).

Which bucket a row counts in (docs/reports.md "Definitions"):

- queue: the bucket the caller *entered* the queue in (offered then), whenever it ended;
- agent: state seconds split over the buckets the state spans; answered calls in the bucket
  of their answer;
- campaign: a dial in the bucket the attempt was created (dialled) in; its answer, live answer,
  machine, abandon, connection and disposition in the bucket it was answered in (the stats' and
  the simulator's definition: engine/campaigns/period.py);
- trunk: the bucket the leg started (was seized) in.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from engine.campaigns import period
from engine.store.pg.errors import PG_ERRORS, translate

BUCKET = timedelta(minutes=15)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
DIMENSIONS = ("queue", "agent", "campaign", "trunk")


@dataclass(frozen=True, slots=True)
class FillSettings:
    """The thresholds the queue intervals are counted with. Changing them changes what the
    intervals mean: rebuild the range afterwards (docs/reports.md)."""

    service_level_s: Mapping[str, float] = field(default_factory=dict)  # per queue
    default_service_level_s: float = 20.0
    short_abandon_s: Mapping[str, float] = field(default_factory=dict)  # per queue
    default_short_abandon_s: float = 0.0

    def per_queue(self) -> dict[str, list[float]]:
        """``{queue: [service level s, short abandon s]}``, the fill's jsonb parameter (the
        pool's jsonb codec encodes it)."""
        queues = set(self.service_level_s) | set(self.short_abandon_s)
        return {
            q: [
                self.service_level_s.get(q, self.default_service_level_s),
                self.short_abandon_s.get(q, self.default_short_abandon_s),
            ]
            for q in sorted(queues)
        }


def floor_bucket(t: datetime) -> datetime:
    return t - (t - EPOCH) % BUCKET


def ceil_bucket(t: datetime) -> datetime:
    down = floor_bucket(t)
    return down if down == t else down + BUCKET


# $1 start, $2 end, $3 keys (NULL: every key), then each statement's own parameters.
_QUEUE = """
INSERT INTO report_queue_intervals
SELECT e.queue, report_bucket(e.entered_at),
       count(*),
       count(*) FILTER (WHERE e.outcome = 'answered'),
       count(*) FILTER (WHERE e.outcome = 'abandoned' AND coalesce(e.wait_s, 0) >= t.short_s),
       count(*) FILTER (WHERE e.outcome = 'abandoned' AND coalesce(e.wait_s, 0) < t.short_s),
       count(*) FILTER (WHERE e.outcome IN ('overflow-ivr', 'max-wait')),
       count(*) FILTER (WHERE e.outcome = 'answered' AND coalesce(e.wait_s, 0) <= t.sl_s),
       coalesce(sum(e.wait_s) FILTER (WHERE e.outcome = 'answered'), 0),
       coalesce(sum(e.wait_s) FILTER (WHERE e.outcome = 'abandoned'
                                        AND coalesce(e.wait_s, 0) >= t.short_s), 0),
       count(*) FILTER (WHERE e.outcome = 'answered' AND e.wrap_up_s IS NOT NULL),
       coalesce(sum(coalesce(e.talk_s, 0)) FILTER (WHERE e.outcome = 'answered'
                                                     AND e.wrap_up_s IS NOT NULL), 0),
       coalesce(sum(e.wrap_up_s) FILTER (WHERE e.outcome = 'answered'), 0),
       coalesce(max(e.wait_s), 0)
FROM queue_entries e
CROSS JOIN LATERAL (
    SELECT coalesce(($4::jsonb -> e.queue ->> 0)::float8, $5::float8) AS sl_s,
           coalesce(($4::jsonb -> e.queue ->> 1)::float8, $6::float8) AS short_s
) t
WHERE e.entered_at >= $1 AND e.entered_at < $2 AND ($3::text[] IS NULL OR e.queue = ANY($3))
GROUP BY 1, 2
"""

# A state row at `at` closes the previous state, which began time_in_previous_s earlier: its
# seconds go to every bucket the span [at - time_in_previous_s, at) overlaps.
_AGENT = """
WITH spans AS (
    SELECT h.agent_id, h.previous AS state,
           h.at - h.time_in_previous_s * interval '1 second' AS s, h.at AS e
    FROM agent_state_history h
    WHERE h.at > $1 AND h.at - h.time_in_previous_s * interval '1 second' < $2
      AND h.previous <> 'logged_out' AND h.time_in_previous_s > 0
      AND ($3::text[] IS NULL OR h.agent_id = ANY($3))
), parts AS (
    SELECT sp.agent_id, sp.state, b AS bucket,
           extract(epoch FROM least(sp.e, b + interval '15 minutes') - greatest(sp.s, b))::float8
               AS secs
    FROM spans sp
    CROSS JOIN LATERAL generate_series(
        report_bucket(greatest(sp.s, $1)),
        report_bucket(least(sp.e, $2) - interval '1 microsecond'),
        interval '15 minutes') AS b
), states AS (
    SELECT agent_id, bucket,
           coalesce(sum(secs) FILTER (WHERE state = 'available'), 0) AS available_s,
           coalesce(sum(secs) FILTER (WHERE state = 'reserved'), 0) AS reserved_s,
           coalesce(sum(secs) FILTER (WHERE state = 'on_call'), 0) AS on_call_s,
           coalesce(sum(secs) FILTER (WHERE state = 'wrap_up'), 0) AS wrap_up_s,
           coalesce(sum(secs) FILTER (WHERE state = 'paused'), 0) AS paused_s
    FROM parts WHERE secs > 0
    GROUP BY 1, 2
), calls AS (
    SELECT e.agent_id, report_bucket(e.answered_at) AS bucket, count(*) AS answered,
           coalesce(sum(e.talk_s), 0) AS talk_s
    FROM queue_entries e
    WHERE e.answered_at >= $1 AND e.answered_at < $2 AND e.agent_id IS NOT NULL
      AND ($3::text[] IS NULL OR e.agent_id = ANY($3))
    GROUP BY 1, 2
)
INSERT INTO report_agent_intervals
SELECT agent_id, bucket,
       coalesce(s.available_s, 0), coalesce(s.reserved_s, 0), coalesce(s.on_call_s, 0),
       coalesce(s.wrap_up_s, 0), coalesce(s.paused_s, 0),
       coalesce(c.answered, 0), coalesce(c.talk_s, 0)
FROM states s FULL JOIN calls c USING (agent_id, bucket)
"""

# Campaigns count as GET /v1/campaigns/{id}/stats counts a period (one definition,
# engine/campaigns/period.py): a dial in the bucket it was placed in, all that follows an answer
# (live answers, machines, abandons, connections, dispositions) in the bucket of the answer.
_CAMPAIGN_KEYS = "($3::text[] IS NULL OR a.campaign_id = ANY($3))"
_CAMPAIGN = f"""
INSERT INTO report_campaign_intervals
    (campaign_id, bucket, dials, answered, human, machine, abandoned, connected)
{period.counts_sql(keys=_CAMPAIGN_KEYS, lo="$1", hi="$2", by_bucket=True)}
"""

_DISPOSITIONS = f"""
INSERT INTO report_campaign_dispositions
SELECT a.campaign_id, report_bucket({period.ANSWER_AT}), a.disposition, count(*)
FROM campaign_attempts a
WHERE {period.answered_in("$1", "$2")} AND a.disposition IS NOT NULL AND {_CAMPAIGN_KEYS}
GROUP BY 1, 2, 3
"""

_TRUNK = """
INSERT INTO report_trunk_intervals
SELECT c.trunk, report_bucket(c.started_at),
       count(*),
       count(*) FILTER (WHERE c.answered_at IS NOT NULL),
       count(*) FILTER (WHERE coalesce(c.ringing_at, c.answered_at) IS NOT NULL),
       coalesce(sum(extract(epoch FROM coalesce(c.ringing_at, c.answered_at) - c.started_at)
                    ::float8), 0),
       coalesce(sum(c.billsec_s), 0)
FROM cdr c
WHERE c.trunk IS NOT NULL AND c.started_at >= $1 AND c.started_at < $2
  AND ($3::text[] IS NULL OR c.trunk = ANY($3))
GROUP BY 1, 2
"""

DAY = timedelta(days=1)

# Each interval table's day table: (day table, grouping columns, summed columns, max columns).
ROLLUPS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "report_queue_intervals": (
        "report_queue_days",
        ("queue",),
        (
            "offered",
            "answered",
            "abandoned",
            "short_abandoned",
            "overflowed",
            "answered_in_sl",
            "wait_answered_s",
            "wait_abandoned_s",
            "handled",
            "talk_s",
            "wrap_up_s",
        ),
        ("max_wait_s",),
    ),
    "report_agent_intervals": (
        "report_agent_days",
        ("agent_id",),
        (
            "available_s",
            "reserved_s",
            "on_call_s",
            "wrap_up_s",
            "paused_s",
            "answered",
            "talk_s",
        ),
        (),
    ),
    "report_campaign_intervals": (
        "report_campaign_days",
        ("campaign_id",),
        ("dials", "answered", "human", "machine", "abandoned", "connected"),
        (),
    ),
    "report_campaign_dispositions": (
        "report_campaign_disposition_days",
        ("campaign_id", "disposition"),
        ("calls",),
        (),
    ),
    "report_trunk_intervals": (
        "report_trunk_days",
        ("trunk",),
        ("seizures", "answered", "pdd_calls", "pdd_s", "billsec_s"),
        (),
    ),
}


def floor_day(t: datetime) -> datetime:
    return t - (t - EPOCH) % DAY


def ceil_day(t: datetime) -> datetime:
    down = floor_day(t)
    return down if down == t else down + DAY


async def _roll_up_days(
    conn: asyncpg.Connection, table: str, start: datetime, end: datetime, keys: list[str] | None
) -> None:
    """Recompute the day rows of the days ``[start, end)`` touches from the 15-minute rows."""
    days, group, sums, maxes = ROLLUPS[table]
    lo, hi = floor_day(start), ceil_day(end)
    key = group[0]
    await conn.execute(
        f"DELETE FROM {days} WHERE bucket >= $1 AND bucket < $2 "
        f"AND ($3::text[] IS NULL OR {key} = ANY($3))",
        lo,
        hi,
        keys,
    )
    cols = ", ".join([f"sum({c})" for c in sums] + [f"max({c})" for c in maxes])
    names = ", ".join(group)
    await conn.execute(
        f"INSERT INTO {days} ({names}, bucket, {', '.join((*sums, *maxes))}) "
        f"SELECT {names}, date_bin('1 day', bucket, $4), {cols} FROM {table} "
        f"WHERE bucket >= $1 AND bucket < $2 AND ($3::text[] IS NULL OR {key} = ANY($3)) "
        f"GROUP BY {names}, date_bin('1 day', bucket, $4)",
        lo,
        hi,
        keys,
        EPOCH,
    )


# dimension -> [(interval table, its key column, fill statement, extra parameters?)]
_TABLES: dict[str, list[tuple[str, str, str, bool]]] = {
    "queue": [("report_queue_intervals", "queue", _QUEUE, True)],
    "agent": [("report_agent_intervals", "agent_id", _AGENT, False)],
    "campaign": [
        ("report_campaign_intervals", "campaign_id", _CAMPAIGN, False),
        ("report_campaign_dispositions", "campaign_id", _DISPOSITIONS, False),
    ],
    "trunk": [("report_trunk_intervals", "trunk", _TRUNK, False)],
}


async def fill_range(
    conn: asyncpg.Connection,
    dim: str,
    start: datetime,
    end: datetime,
    keys: list[str] | None,
    settings: FillSettings,
) -> None:
    """Replace the interval rows of ``dim`` in ``[start, end)`` (bucket-aligned) for ``keys``
    (None: every key) by what the raw rows say. Call inside a transaction."""
    for table, key_col, sql, thresholds in _TABLES[dim]:
        await conn.execute(
            f"DELETE FROM {table} WHERE bucket >= $1 AND bucket < $2 "
            f"AND ($3::text[] IS NULL OR {key_col} = ANY($3))",
            start,
            end,
            keys,
        )
        extra: tuple[Any, ...] = ()
        if thresholds:
            extra = (
                settings.per_queue(),
                settings.default_service_level_s,
                settings.default_short_abandon_s,
            )
        await conn.execute(sql, start, end, keys, *extra)
        await _roll_up_days(conn, table, start, end, keys)


_TAKE_DIRTY = """
DELETE FROM report_dirty d
USING (SELECT dim, bucket, key FROM report_dirty ORDER BY bucket LIMIT $1
       FOR UPDATE SKIP LOCKED) x
WHERE d.dim = x.dim AND d.bucket = x.bucket AND d.key = x.key
RETURNING d.dim, d.bucket, d.key
"""


async def refresh_dirty(
    pool: asyncpg.Pool, settings: FillSettings, *, limit: int = 1000, timeout_s: float = 10.0
) -> int:
    """Recompute up to ``limit`` marked buckets in one transaction; the number done.

    The marks are taken with ``FOR UPDATE SKIP LOCKED`` (several engines share the work) and
    deleted in the same transaction that refills their buckets: a crash loses nothing, and a
    raw row written meanwhile marks its bucket again (its insert waits on our delete)."""
    try:
        async with asyncio.timeout(timeout_s):
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(_TAKE_DIRTY, limit)
                groups: dict[tuple[str, datetime], list[str]] = defaultdict(list)
                for r in rows:
                    groups[(r["dim"], r["bucket"])].append(r["key"])
                for (dim, bucket), keys in sorted(groups.items()):
                    await fill_range(conn, dim, bucket, bucket + BUCKET, sorted(keys), settings)
    except PG_ERRORS as err:
        raise translate(err, "refreshing report intervals") from err
    return len(rows)


async def rebuild(
    pool: asyncpg.Pool,
    start: datetime,
    end: datetime,
    settings: FillSettings,
    *,
    dims: tuple[str, ...] = DIMENSIONS,
    chunk: timedelta = timedelta(days=1),
    timeout_s: float = 600.0,
) -> tuple[datetime, datetime]:
    """Recompute every interval in ``[start, end)`` (widened to whole buckets) from the raw
    rows, a day per transaction; the marks inside the range are dropped (recomputed here).
    Returns the range actually rebuilt."""
    lo, hi = floor_bucket(start), ceil_bucket(end)
    at = lo
    try:
        while at < hi:
            upto = min(at + chunk, hi)
            async with asyncio.timeout(timeout_s):
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        "DELETE FROM report_dirty WHERE bucket >= $1 AND bucket < $2 "
                        "AND dim = ANY($3::text[])",
                        at,
                        upto,
                        list(dims),
                    )
                    for dim in dims:
                        await fill_range(conn, dim, at, upto, None, settings)
            at = upto
    except PG_ERRORS as err:
        raise translate(err, f"rebuilding report intervals {lo} .. {hi}") from err
    return lo, hi
