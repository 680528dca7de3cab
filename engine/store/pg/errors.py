"""Translate asyncpg / socket failures into store errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from engine.store.errors import StoreError, StoreUnavailable

T = TypeVar("T")

# SQLSTATE classes that mean "the server is not usable right now" rather than
# "your statement is wrong": 08 connection exception, 53 insufficient
# resources, 57 operator intervention (admin shutdown, crash recovery).
_UNAVAILABLE_CLASSES = ("08", "53", "57")


def translate(err: BaseException, doing: str) -> StoreError:
    """The store error for ``err``; callers ``raise translate(err, ...) from err``."""
    if isinstance(err, asyncpg.PostgresError):
        sqlstate = getattr(err, "sqlstate", None) or ""
        msg = f"postgres error while {doing}: {err} (SQLSTATE {sqlstate or '?'})"
        if sqlstate[:2] in _UNAVAILABLE_CLASSES:
            return StoreUnavailable(msg)
        return StoreError(msg)
    if isinstance(err, asyncpg.InterfaceError):
        # Pool closed, connection lost mid-query, etc.
        return StoreUnavailable(f"postgres connection problem while {doing}: {err}")
    if isinstance(err, OSError | TimeoutError):
        return StoreUnavailable(f"cannot reach postgres while {doing}: {err}")
    return StoreError(f"unexpected error while {doing}: {err!r}")


PG_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


async def pool_call(
    pool: asyncpg.Pool, timeout_s: float, doing: str, method: str, sql: str, *args: Any
) -> Any:
    """``pool.<method>(sql, *args)`` (execute, fetch, fetchrow, fetchval) with the store's
    timeout, its failures raised as store errors that say what was being done."""
    try:
        return await getattr(pool, method)(sql, *args, timeout=timeout_s)
    except PG_ERRORS as err:
        raise translate(err, doing) from err


async def with_connection(
    pool: asyncpg.Pool,
    timeout_s: float,
    doing: str,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
) -> T:
    """``work`` on one pooled connection (several statements, a transaction), the whole
    of it under the store's timeout, failures raised as store errors saying what was done."""
    try:
        async with asyncio.timeout(timeout_s), pool.acquire() as conn:
            return await work(conn)
    except PG_ERRORS as err:
        raise translate(err, doing) from err
