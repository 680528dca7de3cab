"""Embedded servers: idempotent start, reuse, clean stop, errors with log tails.

These always use the embedded servers (whatever the env vars say), each under
its own temp dir, since the embedded machinery itself is under test.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store.errors import EmbeddedServerError
from engine.store.pg.cdr import CdrRepository
from engine.store.pg.embedded import EmbeddedPostgres
from engine.store.pg.migrations import MIGRATIONS_DIR, load_migrations
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.embedded import EmbeddedRedis
from engine.store.redis.stream import EventStream


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Traversable by the unprivileged postgres user (see conftest.store_data_dir).
    path = Path(tempfile.mkdtemp(prefix="engine-emb-"))
    path.chmod(0o711)
    yield path
    # A failed assertion must not leave servers running.
    if (path / "pg").exists():
        EmbeddedPostgres(path / "pg").stop(force=True)
    if (path / "redis").exists():
        EmbeddedRedis(path / "redis").stop(force=True)
    shutil.rmtree(path, ignore_errors=True)


async def test_pg_store_embedded_lifecycle(data_dir: Path) -> None:
    pg_dir = data_dir / "pg"
    async with PgStore(None, pg_dir) as store:
        assert store.embedded is not None and store.embedded.started_here
        assert "host=" in store.dsn  # unix socket, no TCP port
        assert await store.ping()
        # A fresh cluster: every shipped migration applied, in order.
        shipped = [m.version for m in load_migrations(MIGRATIONS_DIR)]
        assert shipped[0] == 1 and [m.version for m in store.applied] == shipped
        assert await CdrRepository(store.pool).recent() == []
        # A second store on the same data dir reuses the running server...
        async with PgStore(None, pg_dir) as again:
            assert again.embedded is not None and not again.embedded.started_here
            assert again.dsn == store.dsn
            assert again.applied == []
        # ...and leaving it does not stop the server the first one owns.
        assert store.embedded.is_running()
        assert await store.ping()
    assert not EmbeddedPostgres(pg_dir).is_running()
    # Restart on the existing cluster: no initdb, nothing to migrate, data kept.
    async with PgStore(None, pg_dir) as store:
        assert store.applied == []
        count = await store.pool.fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(load_migrations(MIGRATIONS_DIR))


def test_pg_runs_as_unprivileged_user_when_root(data_dir: Path) -> None:
    import os

    server = EmbeddedPostgres(data_dir / "pg")
    server.start()
    try:
        owner = (data_dir / "pg" / "pgdata").stat().st_uid
        if os.geteuid() == 0:
            assert owner != 0
        else:
            assert owner == os.geteuid()
        pid = int((data_dir / "pg" / "pgdata" / "postmaster.pid").read_text().split()[0])
        assert Path(f"/proc/{pid}").stat().st_uid == owner
    finally:
        server.stop()
    assert not server.is_running()


def test_pg_start_failure_shows_log_tail(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir / "pg", start_timeout_s=20)
    server.start()
    server.stop()
    conf = data_dir / "pg" / "pgdata" / "postgresql.conf"
    conf.write_text(conf.read_text() + "\nshared_buffers = 'lots'\n")
    with pytest.raises(EmbeddedServerError) as exc:
        server.start()
    text = str(exc.value)
    assert "pg_ctl start" in text
    assert f"last lines of {server.log_file}" in text
    assert "shared_buffers" in text  # the server's own complaint, from its log
    assert not server.is_running()


def test_pg_refuses_initdb_over_foreign_directory(data_dir: Path) -> None:
    pgdata = data_dir / "pg" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "something.txt").write_text("not a cluster")
    with pytest.raises(EmbeddedServerError, match="has no PG_VERSION; refusing to initdb"):
        EmbeddedPostgres(data_dir / "pg").start()


async def test_redis_store_embedded_lifecycle(data_dir: Path) -> None:
    rdir = data_dir / "redis"
    async with RedisStore(None, rdir, prefix="t:") as store:
        assert store.embedded is not None and store.embedded.started_here
        assert store.url.startswith("unix://")
        assert await store.ping()
        stream = EventStream(store.client, "t:")
        assert await stream.publish({"n": 1}) == 1
        async with RedisStore(None, rdir) as again:
            assert again.embedded is not None and not again.embedded.started_here
            assert await again.ping()
        assert await store.ping()  # the reuser did not stop it
    assert not EmbeddedRedis(rdir).is_running()
    # AOF persistence: the sequence continues after a restart.
    async with RedisStore(None, rdir, prefix="t:") as store:
        assert await EventStream(store.client, "t:").publish({"n": 2}) == 2


def test_redis_start_failure_shows_log_tail(data_dir: Path) -> None:
    rdir = data_dir / "redis"
    rdir.mkdir()
    # A directory where the append-only file must go: redis cannot open it and exits.
    (rdir / "appendonly.aof").mkdir()
    server = EmbeddedRedis(rdir, start_timeout_s=3)
    with pytest.raises(EmbeddedServerError) as exc:
        server.start()
    text = str(exc.value)
    assert "did not answer PING" in text
    assert f"last lines of {server.log_file}" in text
    assert "append" in text.lower()


def test_pg_as_root_under_a_private_directory_moves_data_where_it_can_run() -> None:
    # A checkout under /root or `mktemp -d` (mode 0700): the server user cannot
    # enter it, so the data goes to a root-owned shared place, keyed by path.
    import os

    if os.geteuid() != 0:
        pytest.skip("only root runs the server as a separate user")
    private = Path(tempfile.mkdtemp(prefix="engine-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    server = EmbeddedPostgres(private / "pg")
    try:
        server.start()
        assert server.is_running()
        assert server.data_dir != server.configured_data_dir
        assert str(server.data_dir).startswith("/var/lib/telephony-engine/embedded-postgres/")
        assert private.stat().st_mode & 0o777 == 0o700, "the operator's directory is untouched"
        # The same configured path finds the same data again.
        again = EmbeddedPostgres(private / "pg")
        assert again.start() == server.dsn and again.data_dir == server.data_dir
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
