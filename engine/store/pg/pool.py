"""``PgStore``: the PostgreSQL resource (embedded server if needed, pool, migrations)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import asyncpg

from engine.core.lifecycle import AsyncResource
from engine.store.errors import StoreError
from engine.store.pg.embedded import EmbeddedPostgres
from engine.store.pg.errors import PG_ERRORS, translate
from engine.store.pg.migrations import MIGRATIONS_DIR, Migration, apply_migrations

log = logging.getLogger(__name__)


async def _no_reset(conn: Any) -> None:
    """Release a connection to the pool as it is.

    asyncpg's default reset is a round trip per release (advisory unlock all,
    CLOSE ALL, UNLISTEN *, RESET ALL) for session state the engine never
    leaves behind: no LISTEN, no SET, no cursors outside transactions, and the
    one advisory lock (migrations) is released explicitly, or its connection
    terminated. Per CDR batch it was half the PostgreSQL traffic.
    """


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb <-> dict in both directions, so repositories pass plain mappings
    # (asyncpg's default is to hand jsonb over as a str).
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )


class PgStore(AsyncResource):
    """Async context manager owning the PostgreSQL pool.

    On enter: start the embedded server under ``data_dir`` when ``dsn`` is
    None, open an asyncpg pool, apply migrations. On exit: close the pool and
    stop the embedded server if this store started it.
    """

    def __init__(
        self,
        dsn: str | None,
        data_dir: Path,
        min_size: int = 1,
        max_size: int = 10,
        *,
        migrations_dir: Path = MIGRATIONS_DIR,
        migrate: bool = True,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 5.0,
    ) -> None:
        self._configured_dsn = dsn or None
        self.data_dir = Path(data_dir)
        self.min_size = min_size
        self.max_size = max_size
        self.migrations_dir = migrations_dir
        self.migrate = migrate
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.embedded: EmbeddedPostgres | None = None
        self.applied: list[Migration] = []
        self._pool: asyncpg.Pool | None = None
        self._dsn: str | None = self._configured_dsn

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("PgStore is not open; use 'async with PgStore(...)'")
        return self._pool

    @property
    def dsn(self) -> str:
        if self._dsn is None:
            raise StoreError("PgStore is not open yet; the embedded DSN is known after enter")
        return self._dsn

    async def ping(self) -> bool:
        """True when a pooled connection answers ``SELECT 1`` within 5 s."""
        if self._pool is None:
            return False
        try:
            async with self._pool.acquire(timeout=5) as conn:
                return bool(await conn.fetchval("SELECT 1", timeout=5) == 1)
        except PG_ERRORS:
            return False

    async def start(self) -> None:
        if self._configured_dsn is None:
            self.embedded = EmbeddedPostgres(self.data_dir)
            self._dsn = await asyncio.to_thread(self.embedded.start)
        dsn = self.dsn
        kwargs: dict[str, Any] = {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "init": _init_connection,
            "reset": _no_reset,
            "timeout": self.connect_timeout_s,
            # Every statement is bounded: a black-holed server must not hold
            # a caller (or a pooled connection) forever.
            "command_timeout": self.command_timeout_s,
        }
        try:
            self._pool = await asyncpg.create_pool(dsn, **kwargs)
        except PG_ERRORS as err:
            raise translate(err, f"connecting to {_redact(dsn)}") from err
        if self.migrate:
            self.applied = await apply_migrations(self._pool, self.migrations_dir)
            if self.applied:
                log.info("applied %d migration(s)", len(self.applied))

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except PG_ERRORS:
                # Connections stuck in a query: do not hang shutdown on them.
                pool.terminate()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


def _redact(dsn: str) -> str:
    """The DSN with any password replaced, for error messages."""
    head, sep, tail = dsn.partition("://")
    if not sep or "@" not in tail:
        return dsn
    creds, _, rest = tail.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{head}://{user}{':***' if ':' in creds else ''}@{rest}"
