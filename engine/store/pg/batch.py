"""Apply an outbox lane's batch of records to PostgreSQL: one transaction, in record order.

Each record's ``kind`` picks the statements it becomes (a domain's table of builders). A record
of a kind this engine does not know (written by a newer version) is skipped, not fatal, so a
rollback never wedges a lane. Every statement must be idempotent: a batch is re-delivered whole
after any failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg

from engine.store.outbox import Record
from engine.store.pg.errors import PG_ERRORS, translate

Statements = Callable[[Mapping[str, Any]], Sequence[tuple[str, Sequence[Any]]]]


async def write_batch(
    pool: asyncpg.Pool,
    records: Sequence[Record],
    by_kind: Mapping[str, Statements],
    *,
    timeout_s: float,
    what: str,
) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            async with pool.acquire() as conn, conn.transaction():
                for record in records:
                    build = by_kind.get(str(record.payload.get("kind")))
                    if build is None:
                        continue
                    for sql, args in build(record.payload):
                        await conn.execute(sql, *args)
    except PG_ERRORS as err:
        raise translate(err, f"writing {len(records)} {what}") from err
