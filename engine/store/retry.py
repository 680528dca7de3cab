"""One storage read that must happen, retried until storage answers.

For a background task's read whose failure must end neither the task nor the engine: the
tasks run in the engine's task group, so a PostgreSQL or Redis timeout on such a read (seen
at start on a starved host) used to end the engine, or left the function it served off
until a restart. Each failure is one log line; the next try is ``retry_s`` later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from engine.store.errors import StoreError

T = TypeVar("T")

#: What a storage fault is here: the stores raise StoreError (StoreUnavailable for a
#: timeout or a lost connection); a caller's own ``asyncio.wait_for`` raises TimeoutError,
#: and a client error that escaped translation is a ConnectionError.
STORAGE_FAULTS: tuple[type[Exception], ...] = (StoreError, TimeoutError, ConnectionError)


async def until_answered(
    read: Callable[[], Awaitable[T]],
    *,
    retry_s: float,
    closed: Callable[[], bool],
    log: Any,
    message: str,
    **fields: Any,
) -> T | None:
    """``await read()`` until it returns (its value) or ``closed()`` (None). A storage fault
    is logged as a warning (``message``, ``fields``, the error and the retry interval) and
    tried again ``retry_s`` later; any other exception is raised."""
    while not closed():
        try:
            return await read()
        except STORAGE_FAULTS as err:
            log.warning(message, **fields, error=f"{type(err).__name__}: {err}", retry_in_s=retry_s)
        await asyncio.sleep(retry_s)
    return None
