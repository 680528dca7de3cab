"""Session-wide storage fixtures shared by every test package.

PostgreSQL: ``ENGINE_TEST_PG_DSN`` (CI: postgresql://postgres@127.0.0.1:5432/postgres)
or, when unset, an embedded server started once per session under a temp
dir. Either way the tests get a FRESH database created for this session
(``engine_test_<random>``) and dropped at the end, so nothing leaks between
runs and a real server's other databases are never touched.

Redis: ``ENGINE_TEST_REDIS_URL`` or an embedded redis-server. Tests isolate
by key prefix (``redis_prefix``), never by FLUSHDB, so a shared Redis is safe.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import structlog

from engine.store.pg.admin import create_database, drop_database
from engine.store.pg.embedded import EmbeddedPostgres
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.embedded import EmbeddedRedis

PG_ENV = "ENGINE_TEST_PG_DSN"


def pytest_configure(config: pytest.Config) -> None:
    # structlog's default renderer formats tracebacks with rich, locals of every frame
    # included: tens of milliseconds per logged exception on a loaded machine. An engine
    # running in the test's own event loop that logs a few of them (a storage drill) starves
    # its fake switch's pings and fails for that reason alone. Plain tracebacks, as the
    # daemon's own setup_logging renders them.
    structlog.configure(
        processors=[
            *structlog.get_config()["processors"][:-1],
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    )


REDIS_ENV = "ENGINE_TEST_REDIS_URL"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For a test that runs a CLI command in this process: the command's setup_logging binds
    structlog and the root logger to the sys.stderr of the moment (capsys's stream, closed after
    the test), and later tests that log would fail writing to it."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def store_data_dir() -> Iterator[Path]:
    """A session temp dir for embedded servers.

    Not pytest's tmp_path: its base dir is 0700, and the embedded PostgreSQL
    runs as an unprivileged user (it refuses root) that must be able to enter
    it. 0711 lets it traverse without listing.
    """
    path = Path(tempfile.mkdtemp(prefix="engine-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env_or_embedded(env_var: str, server: EmbeddedPostgres | EmbeddedRedis) -> Iterator[str]:
    """The server named by ``env_var`` (CI), else ``server`` started for the session."""
    env = os.environ.get(env_var)
    if env:
        yield env
        return
    address = server.start()
    yield address
    server.stop()


@pytest.fixture(scope="session")
def pg_server_dsn(store_data_dir: Path) -> Iterator[str]:
    """DSN of the PostgreSQL server (maintenance DB); prefer ``pg_dsn`` in tests."""
    yield from _env_or_embedded(PG_ENV, EmbeddedPostgres(store_data_dir / "postgres"))


@pytest.fixture(scope="session")
async def pg_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    """DSN of a fresh, empty database created for this test session."""
    name = f"engine_test_{uuid.uuid4().hex[:12]}"
    dsn = await create_database(pg_server_dsn, name)
    yield dsn
    await drop_database(pg_server_dsn, name)


@pytest.fixture(scope="session")
async def pg_store(pg_dsn: str, store_data_dir: Path) -> AsyncIterator[PgStore]:
    """An entered PgStore on the session database, migrations applied."""
    async with PgStore(pg_dsn, store_data_dir / "unused-pg") as store:
        yield store


@pytest.fixture(scope="session")
def redis_url(store_data_dir: Path) -> Iterator[str]:
    yield from _env_or_embedded(REDIS_ENV, EmbeddedRedis(store_data_dir / "redis"))


@pytest.fixture(scope="session")
async def redis_store(redis_url: str, store_data_dir: Path) -> AsyncIterator[RedisStore]:
    async with RedisStore(redis_url, store_data_dir / "unused-redis") as store:
        yield store


@pytest.fixture
async def redis_prefix(redis_store: RedisStore) -> AsyncIterator[str]:
    """A unique key prefix for one test; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    await _delete_prefixed(redis_store.client, prefix)


async def _delete_prefixed(client: aioredis.Redis, prefix: str) -> None:
    batch: list[str] = []
    async for key in client.scan_iter(match=f"{prefix}*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            await client.unlink(*batch)
            batch.clear()
    if batch:
        await client.unlink(*batch)
