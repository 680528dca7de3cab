"""Translate redis-py failures into store errors."""

from __future__ import annotations

import redis.exceptions

from engine.store.errors import StoreError, StoreUnavailable

# TimeoutError: asyncio.wait_for around a command, or a socket timeout.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError, TimeoutError)


_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    TimeoutError,
)


def translate(err: BaseException, doing: str) -> StoreError:
    """The store error for ``err``; callers ``raise translate(err, ...) from err``."""
    if isinstance(err, _UNAVAILABLE):
        return StoreUnavailable(f"redis unavailable while {doing}: {err}")
    if isinstance(err, redis.exceptions.BusyLoadingError):
        return StoreUnavailable(f"redis is loading its dataset while {doing}: {err}")
    return StoreError(f"redis error while {doing}: {err}")
