"""Fencing tokens in PostgreSQL (``fences``, migration 0013).

``take`` raises a lease's row to the new owner's token, in one statement that never lowers
it: False means a larger token was shown already, so the caller's lease is stale.
Writers check the row in their own transaction (``FOR SHARE``: a takeover's ``take`` waits
for the write to commit, and the write sees the takeover's token if it came first).

Rows are named ``<redis prefix><lease>``: the tokens come from per-prefix counters in Redis,
so two call centres (or test runs) with their own prefixes on one database must not judge
each other's tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime

import asyncpg

from engine.store.pg.errors import PG_ERRORS, translate

# taken_at moves only when the token does (a re-take with the same token keeps it).
_TAKE = """
INSERT INTO fences (name, token, taken_at) VALUES ($1, $2, now())
ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token,
    taken_at = CASE WHEN fences.token < EXCLUDED.token THEN now() ELSE fences.taken_at END
WHERE fences.token <= EXCLUDED.token
RETURNING token
"""

_READ_SHARED = "SELECT name, token, taken_at FROM fences WHERE name = ANY($1::text[]) FOR SHARE"


class Fences:
    def __init__(self, pool: asyncpg.Pool, *, namespace: str = "", timeout_s: float = 5.0) -> None:
        self._pool = pool
        self._ns = namespace
        self._timeout_s = timeout_s

    async def take(self, name: str, token: int) -> bool:
        """Show ``token`` for lease ``name``; False if a larger one was shown (stale)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                row = await self._pool.fetchrow(_TAKE, self._ns + name, token)
        except PG_ERRORS as err:
            raise translate(err, f"taking fence {name}") from err
        return row is not None

    async def current(self, name: str) -> int | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                value = await self._pool.fetchval(
                    "SELECT token FROM fences WHERE name = $1", self._ns + name
                )
        except PG_ERRORS as err:
            raise translate(err, f"reading fence {name}") from err
        return None if value is None else int(value)


async def shared_tokens(
    conn: asyncpg.Connection, names: Iterable[str], namespace: str = ""
) -> dict[str, tuple[int, datetime]]:
    """Inside a writer's transaction: the fences of ``names`` (lease names, without the
    namespace) as (token, when it was raised to it), locked until it commits."""
    rows = await conn.fetch(_READ_SHARED, sorted({namespace + n for n in names}))
    return {str(r["name"])[len(namespace) :]: (int(r["token"]), r["taken_at"]) for r in rows}
