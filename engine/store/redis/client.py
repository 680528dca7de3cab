"""``RedisStore``: the Redis resource (embedded server if needed, one asyncio client)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.core.lifecycle import AsyncResource
from engine.store.errors import StoreError
from engine.store.redis.embedded import EmbeddedRedis
from engine.store.redis.errors import REDIS_ERRORS, translate
from engine.store.redis.sentinel import SentinelSettings, sentinel_client


def check_prefix(prefix: str) -> str:
    """Key prefixes must be non-empty and free of glob characters.

    Glob characters would make the SCAN MATCH patterns used for cleanup match
    other tenants' keys.
    """
    if not prefix or any(c in prefix for c in "*?[]\\ \n"):
        raise ValueError(f"redis prefix {prefix!r}: expected a non-empty string without *?[]\\ ")
    return prefix


class RedisStore(AsyncResource):
    """Async context manager owning the ``redis.asyncio`` client.

    With ``url=None`` it starts (or reuses) the embedded redis-server under
    ``data_dir`` and connects over its unix socket, unless ``sentinel`` is
    given: then the client follows the master the sentinels name
    (engine/store/redis/sentinel.py).
    """

    def __init__(
        self,
        url: str | None,
        data_dir: Path,
        prefix: str = "engine:",
        *,
        socket_timeout_s: float = 5.0,
        max_connections: int = 1024,
        sentinel: SentinelSettings | None = None,
    ) -> None:
        if url and sentinel is not None:
            raise ValueError("give a Redis URL or sentinel settings, not both")
        self._configured_url = url or None
        self.sentinel = sentinel
        self._manager: Sentinel | None = None
        self.data_dir = Path(data_dir)
        self.prefix = check_prefix(prefix)
        self.socket_timeout_s = socket_timeout_s
        self.max_connections = max_connections
        self.embedded: EmbeddedRedis | None = None
        self._client: aioredis.Redis | None = None
        self._url: str | None = self._configured_url

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreError("RedisStore is not open; use 'async with RedisStore(...)'")
        return self._client

    @property
    def url(self) -> str:
        if self.sentinel is not None:
            return self.sentinel.describe()
        if self._url is None:
            raise StoreError("RedisStore is not open yet; the embedded URL is known after enter")
        return self._url

    async def start(self) -> None:
        if self._configured_url is None and self.sentinel is None:
            self.embedded = EmbeddedRedis(self.data_dir)
            self._url = await asyncio.to_thread(self.embedded.start)
        # Every command is bounded by the socket timeouts, whoever calls it
        # (and whether or not a cancellation reaches redis-py: it can swallow
        # one, see docs/architecture.md). socket_timeout must exceed the
        # longest XREAD BLOCK we issue (the fan-out's 1 s), or a blocking read
        # would be cut off as a "timeout" error.
        #
        # redis-py 8 retries a command 10 times on ConnectionError *and*
        # TimeoutError by default: against a black-holed server one command
        # would then take 11 socket timeouts. We retry once, and only on a
        # ConnectionError (a pooled connection that a restarted Redis closed:
        # the retry reconnects); a timeout is reported at once, and the
        # callers (registry mirror, outbox) retry on their own schedule.
        #
        # max_connections: redis-py's default pool holds 100 and then fails
        # every command with "Too many connections"; a burst of 1,000 API
        # requests needs more. (A BlockingConnectionPool would queue instead,
        # but its async release() under cancellation hung engine.stop().)
        connection: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.socket_timeout_s,
            "health_check_interval": 30,
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            "max_connections": self.max_connections,
        }
        if self.sentinel is not None:
            self._manager, self._client = sentinel_client(self.sentinel, connection)
        else:
            self._client = aioredis.Redis.from_url(self.url, **connection)
        try:
            await self._client.ping()
        except REDIS_ERRORS as err:
            raise translate(err, f"connecting to {_redact(self.url)}") from err

    async def ping(self) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await asyncio.wait_for(self._client.ping(), timeout=5))
        except REDIS_ERRORS:
            return False

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        manager, self._manager = self._manager, None
        if manager is not None:
            await manager.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


def _redact(url: str) -> str:
    head, sep, tail = url.partition("://")
    if not sep or "@" not in tail:
        return url
    _creds, _, rest = tail.rpartition("@")
    return f"{head}://***@{rest}"
