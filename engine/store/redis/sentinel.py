"""The engine's Redis client when a Sentinel group monitors the master.

redis-py's ``Sentinel(...).master_for(...)`` gives an ordinary ``Redis``
client whose pool (``SentinelConnectionPool``) asks the sentinels for the
master's address before each new connection. Everything above it (the
rounds pipeline, the stream's Lua script, the fan-out's XREAD, leases,
idempotency) is unchanged: it sees the same client type.

How a failover reaches the engine:

- The old master dies: its connections fail with ConnectionError. Each
  reconnect asks the sentinels again; until they have promoted a replica
  they still name the old master, the connect is refused, and the callers
  (outbox lanes, registry mirror, fan-out) back off and retry on their own
  schedule. Once a replica is promoted, the next connect goes to it.
- The old master is demoted (SENTINEL FAILOVER, or it comes back as a
  replica): a write on a pooled connection to it answers ``READONLY``.
  ``SentinelManagedConnection.read_response`` turns that reply into a
  ConnectionError after dropping the connection, so the same retry path
  applies. (RedisRounds reads the replies itself, with the connection's
  ``read_response``, so it gets that translation too.)
- A new master that never received the last writes of the old one (Redis
  replicates asynchronously) has a lower sequence counter: the publish script
  re-seeds it from the engine's floor (seq_floor.py), so the sequence jumps
  ahead instead of going back, and clients are told with a ``gap``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from engine.core.config import StorageConfig


@dataclass(frozen=True)
class SentinelSettings:
    """Where the sentinels are and which master they watch."""

    sentinels: Sequence[tuple[str, int]]
    master: str
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    db: int = 0

    def __post_init__(self) -> None:
        if not self.sentinels:
            raise ValueError("sentinels: expected at least one HOST:PORT")
        if not self.master:
            raise ValueError("master: expected the name the sentinels monitor")

    def describe(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"sentinel master {self.master!r} via {hosts}"


def sentinel_settings(storage: StorageConfig) -> SentinelSettings | None:
    """The ``[storage]`` section's sentinel settings, or None without sentinels."""
    if not storage.redis_sentinels:
        return None
    return SentinelSettings(
        sentinels=storage.sentinel_addresses,
        master=storage.redis_sentinel_master,
        password=storage.redis_password.get_secret_value() or None,
        sentinel_password=storage.redis_sentinel_password.get_secret_value() or None,
        db=storage.redis_db,
    )


def sentinel_client(
    settings: SentinelSettings, connection: dict[str, Any]
) -> tuple[Sentinel, aioredis.Redis]:
    """The sentinel manager and a client of its master.

    ``connection`` holds the keyword arguments a plain client would get
    (timeouts, retry, pool size, decoding); the sentinels' own connections get
    the same timeouts and retry, so a black-holed sentinel is bounded too."""
    sentinel_kwargs: dict[str, Any] = {
        k: v for k, v in connection.items() if k.startswith("socket_") or k == "retry"
    }
    sentinel_kwargs["decode_responses"] = True
    if settings.sentinel_password:
        sentinel_kwargs["password"] = settings.sentinel_password
    manager = Sentinel(list(settings.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    master_kwargs = dict(connection)
    if settings.password:
        master_kwargs["password"] = settings.password
    master_kwargs["db"] = settings.db
    client = manager.master_for(settings.master, redis_class=aioredis.Redis, **master_kwargs)
    return manager, client
