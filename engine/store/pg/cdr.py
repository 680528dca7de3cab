"""Call detail records: one row per call leg attempt, written once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg

from engine.store.pg.errors import PG_ERRORS, translate
from engine.store.pg.fences import shared_tokens

Direction = Literal["outbound", "inbound"]
_DIRECTIONS = ("outbound", "inbound")


@dataclass(frozen=True)
class CdrCursor:
    """Position in the newest-first CDR listing; pass as ``before`` to get the next page."""

    started_at: datetime
    call_id: str
    attempt: int


@dataclass(frozen=True)
class CdrRow:
    """A finished call leg.

    ``duration_s`` and ``billsec_s`` are derived from the timestamps (the
    database computes the same values as generated columns), so they can never
    disagree with them. All datetimes must be timezone-aware.
    """

    call_id: str
    switch: str
    direction: Direction
    channel: str
    destination: str
    started_at: datetime
    ended_at: datetime
    final_state: str
    attempt: int = 1
    caller_id_num: str = ""
    caller_id_name: str = ""
    endpoint: str | None = None
    trunk: str | None = None
    answered_at: datetime | None = None
    # The first ringing (180/183) of the leg: post-dial delay (docs/reports.md).
    ringing_at: datetime | None = None
    cause: int | None = None
    cause_text: str = ""
    sip_code: int | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    interrupted: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.call_id:
            problems.append("call_id: must not be empty")
        if self.attempt < 1:
            problems.append(f"attempt: expected >= 1, got {self.attempt}")
        if self.direction not in _DIRECTIONS:
            problems.append(f"direction: expected 'outbound' or 'inbound', got {self.direction!r}")
        for name in ("started_at", "ended_at", "answered_at", "ringing_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                problems.append(f"{name}: expected a timezone-aware datetime, got naive {value}")
        if problems:
            raise ValueError("invalid CdrRow: " + "; ".join(problems))
        if self.ended_at < self.started_at:
            problems.append(f"ended_at {self.ended_at} is before started_at {self.started_at}")
        if self.answered_at is not None and not (
            self.started_at <= self.answered_at <= self.ended_at
        ):
            problems.append(
                f"answered_at {self.answered_at} is outside [{self.started_at}, {self.ended_at}]"
            )
        if self.cause is not None and not 0 <= self.cause <= 127:
            problems.append(f"cause: expected a Q.850 cause 0..127, got {self.cause}")
        if self.sip_code is not None and not 100 <= self.sip_code <= 699:
            problems.append(f"sip_code: expected 100..699, got {self.sip_code}")
        bad_vars = [
            k for k, v in self.variables.items() if not isinstance(k, str) or not isinstance(v, str)
        ]
        if bad_vars:
            problems.append(f"variables: keys and values must be str (bad keys: {bad_vars[:5]})")
        if problems:
            raise ValueError("invalid CdrRow: " + "; ".join(problems))
        # Freeze a private copy so a caller mutating its dict cannot change us.
        object.__setattr__(self, "variables", dict(self.variables))

    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def billsec_s(self) -> float:
        if self.answered_at is None:
            return 0.0
        return (self.ended_at - self.answered_at).total_seconds()

    @property
    def cursor(self) -> CdrCursor:
        return CdrCursor(self.started_at, self.call_id, self.attempt)


_COLUMNS = (
    "call_id, attempt, switch, direction, channel, caller_id_num, caller_id_name, "
    "destination, endpoint, trunk, started_at, answered_at, ended_at, final_state, "
    "cause, cause_text, sip_code, variables, interrupted, ringing_at"
)

_INSERT = f"""
INSERT INTO cdr ({_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
ON CONFLICT (call_id, attempt) DO NOTHING
"""


def _from_record(r: asyncpg.Record) -> CdrRow:
    return CdrRow(
        call_id=r["call_id"],
        attempt=r["attempt"],
        switch=r["switch"],
        direction=r["direction"],
        channel=r["channel"],
        caller_id_num=r["caller_id_num"],
        caller_id_name=r["caller_id_name"],
        destination=r["destination"],
        endpoint=r["endpoint"],
        trunk=r["trunk"],
        started_at=r["started_at"],
        answered_at=r["answered_at"],
        ended_at=r["ended_at"],
        final_state=r["final_state"],
        cause=r["cause"],
        cause_text=r["cause_text"],
        sip_code=r["sip_code"],
        variables=r["variables"],
        interrupted=r["interrupted"],
        ringing_at=r["ringing_at"],
    )


def _args(row: CdrRow) -> tuple[Any, ...]:
    return (
        row.call_id,
        row.attempt,
        row.switch,
        row.direction,
        row.channel,
        row.caller_id_num,
        row.caller_id_name,
        row.destination,
        row.endpoint,
        row.trunk,
        row.started_at,
        row.answered_at,
        row.ended_at,
        row.final_state,
        row.cause,
        row.cause_text,
        row.sip_code,
        dict(row.variables),
        row.interrupted,
        row.ringing_at,
    )


def _stale(row: CdrRow, fence: tuple[int, datetime] | None, token: int) -> bool:
    """A CDR is refused when its token is older than the fence AND its call ended after the
    fence was raised: written by an engine acting after it lost the lease. A call that ended
    while its engine held the lease is a true record, delivered late (the engine died before
    its outbox drained and replayed it on restart): the new owner never adopts an ended call,
    so refusing it would lose the CDR (migration 0015)."""
    if fence is None or fence[0] <= token:
        return False
    return row.ended_at >= fence[1]


class CdrRepository:
    """Reads and writes the ``cdr`` table. All errors surface as ``StoreError``.

    Every call is bounded by ``timeout_s`` as a whole: waiting for a pooled
    connection, connecting one, and the statement. The pool's command_timeout
    bounds only the statement, so under an outage callers used to queue for
    the pool's few connections, each held for a full timeout, and the last
    of 30 concurrent readers waited 30 s for its error.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, timeout_s: float = 5.0, fence_namespace: str = ""
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s: expected > 0, got {timeout_s}")
        #: The ``fences`` rows' name prefix (engine/store/pg/fences.py): the Redis prefix.
        self.fence_namespace = fence_namespace
        self._pool = pool
        self._timeout_s = timeout_s

    async def insert(self, row: CdrRow) -> bool:
        """Write ``row`` once; True if written now, False if (call_id, attempt) existed.

        Idempotent by design: the engine may write the same CDR again after a
        lost reply or a resync, and the first version wins.
        """
        args = _args(row)
        try:
            async with asyncio.timeout(self._timeout_s):
                status = await self._pool.execute(_INSERT, *args)
        except PG_ERRORS as err:
            raise translate(err, f"inserting CDR {row.call_id}/{row.attempt}") from err
        # Command tag is "INSERT 0 <rows>".
        return bool(status.endswith(" 1"))

    async def insert_many(self, rows: Sequence[CdrRow]) -> None:
        """Write ``rows`` (each once, as :meth:`insert`) in one transaction and
        one round trip (asyncpg pipelines ``executemany``): the outbox lane
        delivers a whole batch, and one pool acquire plus one round trip per
        row was a visible share of the engine's CPU per call."""
        if not rows:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._pool.acquire() as conn:
                    await conn.executemany(_INSERT, [_args(r) for r in rows])
        except PG_ERRORS as err:
            raise translate(err, f"inserting {len(rows)} CDRs") from err

    async def insert_fenced(self, rows: Sequence[tuple[CdrRow, str, int]]) -> list[CdrRow]:
        """Write rows each carrying a lease's fencing token ``(row, lease, token)``, in one
        transaction: a row whose lease shows a larger token in ``fences`` (another engine
        took it over) is refused. The fences are read ``FOR SHARE`` in that transaction, so
        a takeover's ``Fences.take`` cannot slip in between. Returns the refused rows."""
        if not rows:
            return []
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._pool.acquire() as conn, conn.transaction():
                    fences = await shared_tokens(
                        conn, (name for _r, name, _t in rows), self.fence_namespace
                    )
                    refused = [r for r, name, tok in rows if _stale(r, fences.get(name), tok)]
                    accepted = [r for r, name, tok in rows if not _stale(r, fences.get(name), tok)]
                    if accepted:
                        await conn.executemany(_INSERT, [_args(r) for r in accepted])
        except PG_ERRORS as err:
            raise translate(err, f"inserting {len(rows)} fenced CDRs") from err
        return refused

    async def for_call(self, call_id: str) -> list[CdrRow]:
        """All attempts of one call, in attempt order."""
        try:
            async with asyncio.timeout(self._timeout_s):
                rows = await self._pool.fetch(
                    f"SELECT {_COLUMNS} FROM cdr WHERE call_id = $1 ORDER BY attempt", call_id
                )
        except PG_ERRORS as err:
            raise translate(err, f"reading CDRs of call {call_id}") from err
        return [_from_record(r) for r in rows]

    async def recent(
        self, limit: int = 100, before: datetime | CdrCursor | None = None
    ) -> list[CdrRow]:
        """Newest first by ``started_at``.

        ``before`` as a datetime returns rows that started strictly earlier; as
        a :class:`CdrCursor` (``last_row.cursor``) it continues exactly after
        that row, even when many rows share one ``started_at``.
        """
        if not 1 <= limit <= 10_000:
            raise ValueError(f"limit: expected 1..10000, got {limit}")
        order = "ORDER BY started_at DESC, call_id DESC, attempt DESC LIMIT"
        try:
            async with asyncio.timeout(self._timeout_s):
                if before is None:
                    rows = await self._pool.fetch(f"SELECT {_COLUMNS} FROM cdr {order} $1", limit)
                elif isinstance(before, CdrCursor):
                    rows = await self._pool.fetch(
                        f"SELECT {_COLUMNS} FROM cdr "
                        f"WHERE (started_at, call_id, attempt) < ($1, $2, $3) {order} $4",
                        before.started_at,
                        before.call_id,
                        before.attempt,
                        limit,
                    )
                else:
                    rows = await self._pool.fetch(
                        f"SELECT {_COLUMNS} FROM cdr WHERE started_at < $1 {order} $2",
                        before,
                        limit,
                    )
        except PG_ERRORS as err:
            raise translate(err, "listing recent CDRs") from err
        return [_from_record(r) for r in rows]
