"""Storage: PostgreSQL and Redis, opened first and closed last."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.config import EngineConfig
from engine.core.errors import StartupError
from engine.store.errors import StoreError
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.sentinel import sentinel_settings


@dataclass(frozen=True)
class Storage:
    pg: PgStore
    redis: RedisStore


async def open_storage(cfg: EngineConfig, data_dir: Path, stack: AsyncExitStack) -> Storage:
    dsn = cfg.storage.postgres_dsn.get_secret_value() or None
    url = cfg.storage.redis_url.get_secret_value() or None
    prefix = cfg.storage.redis_prefix

    timeout = cfg.calls.storage_timeout_s
    # A server the engine cannot use at start is the operator's to fix: one line naming the
    # setting (the DSN is redacted by the store), not a traceback.
    with _named("PostgreSQL", "[storage] postgres_dsn (or ENGINE_PG_DSN)"):
        pg = await stack.enter_async_context(
            PgStore(dsn, data_dir / "postgres", command_timeout_s=timeout)
        )
    # Every Redis command is bounded by the storage timeout, but the
    # socket timeout must outlast the event fan-out's 1 s XREAD BLOCK.
    with _named("Redis", "[storage] redis_url (or ENGINE_REDIS_URL)"):
        redis = await stack.enter_async_context(
            RedisStore(
                url,
                data_dir / "redis",
                prefix=prefix,
                socket_timeout_s=max(timeout, 2.0),
                sentinel=sentinel_settings(cfg.storage),
            )
        )
    return Storage(pg, redis)


@contextmanager
def _named(server: str, setting: str) -> Iterator[None]:
    try:
        yield
    except StoreError as err:
        raise StartupError(f"{server}: {err}; check {setting}") from err
