"""PgStore, migrations and the CDR/audit repositories against a real PostgreSQL.

Uses ENGINE_TEST_PG_DSN when set, otherwise the embedded server (conftest).
Migration tests each get their own empty database, since schema_migrations
is per database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine.store.errors import MigrationError, StoreError, StoreUnavailable
from engine.store.pg.admin import create_database, drop_database
from engine.store.pg.audit import AuditLog
from engine.store.pg.cdr import CdrRepository, CdrRow
from engine.store.pg.migrations import MIGRATIONS_DIR, apply_migrations, load_migrations
from engine.store.pg.pool import PgStore


@pytest.fixture
async def empty_db(pg_server_dsn: str) -> AsyncIterator[str]:
    name = f"engine_mig_{uuid.uuid4().hex[:12]}"
    dsn = await create_database(pg_server_dsn, name)
    yield dsn
    await drop_database(pg_server_dsn, name)


@pytest.fixture
async def empty_pool(empty_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(empty_db, min_size=1, max_size=3)
    yield pool
    await pool.close()


def write(d: Path, name: str, sql: str) -> None:
    (d / name).write_text(sql, encoding="utf-8")


# -- PgStore ---------------------------------------------------------------


async def test_pg_store_is_open_and_migrated(pg_store: PgStore) -> None:
    assert await pg_store.ping() is True
    versions = await pg_store.pool.fetch("SELECT version, checksum FROM schema_migrations")
    shipped = load_migrations(MIGRATIONS_DIR)
    assert {(r["version"], r["checksum"]) for r in versions} == {
        (m.version, m.checksum) for m in shipped
    }
    assert pg_store.dsn.startswith("postgresql://")


async def test_second_store_on_migrated_db_applies_nothing(pg_dsn: str, tmp_path: Path) -> None:
    async with PgStore(pg_dsn, tmp_path, max_size=2) as store:
        assert store.applied == []
        assert await store.ping()
    assert await store.ping() is False  # closed
    with pytest.raises(StoreError, match="not open"):
        _ = store.pool


async def test_unreachable_server_is_store_unavailable(tmp_path: Path) -> None:
    # Port 1 on loopback: nothing listens there, the connect is refused at once.
    store = PgStore("postgresql://postgres@127.0.0.1:1/postgres", tmp_path, connect_timeout_s=3)
    with pytest.raises(
        StoreUnavailable, match=r"connecting to postgresql://postgres@127\.0\.0\.1:1"
    ):
        async with store:
            pass


# -- migrations ------------------------------------------------------------


async def test_migrations_apply_once(empty_pool: asyncpg.Pool) -> None:
    first = await apply_migrations(empty_pool)
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert await apply_migrations(empty_pool) == []
    count = await empty_pool.fetchval("SELECT count(*) FROM schema_migrations")
    assert count == len(first)
    assert await empty_pool.fetchval("SELECT to_regclass('cdr') IS NOT NULL")


async def test_concurrent_migrate_does_not_double_apply(empty_db: str, tmp_path: Path) -> None:
    # A migration that fails if run twice (no IF NOT EXISTS) and sleeps, so
    # the second starter really does arrive while the first one is applying.
    write(tmp_path, "0001_slow.sql", "SELECT pg_sleep(0.3); CREATE TABLE once_only (x int);")
    write(tmp_path, "0002_more.sql", "INSERT INTO once_only VALUES (1);")
    pools = [await asyncpg.create_pool(empty_db, min_size=1, max_size=1) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(p, tmp_path) for p in pools))
        applied = sorted(m.version for r in results for m in r)
        assert applied == [1, 2]  # each applied exactly once, by whoever won the lock
        assert sum(1 for r in results if r) == 1
        assert await pools[0].fetchval("SELECT count(*) FROM once_only") == 1
    finally:
        for p in pools:
            await p.close()


async def test_checksum_drift_refused(empty_pool: asyncpg.Pool, tmp_path: Path) -> None:
    write(tmp_path, "0001_t.sql", "CREATE TABLE drift (x int);")
    await apply_migrations(empty_pool, tmp_path)
    write(tmp_path, "0001_t.sql", "CREATE TABLE drift (x bigint);")
    with pytest.raises(MigrationError, match=r"0001_t\.sql was changed after it was applied"):
        await apply_migrations(empty_pool, tmp_path)
    # The advisory lock was released despite the error: a fixed file applies.
    write(tmp_path, "0001_t.sql", "CREATE TABLE drift (x int);")
    assert await apply_migrations(empty_pool, tmp_path) == []


async def test_store_refuses_to_start_on_drift(empty_db: str, tmp_path: Path) -> None:
    mig = tmp_path / "m"
    mig.mkdir()
    write(mig, "0001_t.sql", "CREATE TABLE drift2 (x int);")
    async with PgStore(empty_db, tmp_path, migrations_dir=mig) as store:
        assert [m.version for m in store.applied] == [1]
    write(mig, "0001_t.sql", "CREATE TABLE drift2 (y int);")
    with pytest.raises(MigrationError, match="Applied migrations are immutable"):
        async with PgStore(empty_db, tmp_path, migrations_dir=mig):
            pass


async def test_failed_migration_rolls_back(empty_pool: asyncpg.Pool, tmp_path: Path) -> None:
    write(tmp_path, "0001_ok.sql", "CREATE TABLE good (x int);")
    write(tmp_path, "0002_bad.sql", "CREATE TABLE half (x int); SELECT no_such_function();")
    with pytest.raises(MigrationError, match=r"migration 0002_bad\.sql failed"):
        await apply_migrations(empty_pool, tmp_path)
    rows = await empty_pool.fetch("SELECT version FROM schema_migrations")
    assert [r["version"] for r in rows] == [1]
    assert await empty_pool.fetchval("SELECT to_regclass('half')") is None


# -- CDRs ------------------------------------------------------------------

# Far-future base time unique to this run so recent() sees only our rows even
# when other tests write CDRs into the same session database.
BASE = datetime(2090, 1, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 500_000)


def cdr(call_id: str, *, attempt: int = 1, start_offset_s: float = 0, **over: Any) -> CdrRow:
    start = BASE + timedelta(seconds=start_offset_s)
    fields: dict[str, Any] = {
        "call_id": call_id,
        "attempt": attempt,
        "switch": "ast1",
        "direction": "outbound",
        "channel": f"PJSIP/carrier-{attempt:08x}",
        "caller_id_num": "1000",
        "caller_id_name": "Sales",
        "destination": "+15551230000",
        "endpoint": "carrier",
        "trunk": "carrier-a",
        "started_at": start,
        "answered_at": start + timedelta(seconds=3),
        "ended_at": start + timedelta(seconds=33.5),
        "final_state": "ended",
        "cause": 16,
        "cause_text": "Normal Clearing",
        "sip_code": 200,
        "variables": {"campaign": "c-1", "ü": "ñ"},
    }
    fields.update(over)
    return CdrRow(**fields)


def new_id() -> str:
    return str(uuid.uuid4())


async def test_cdr_round_trip_and_idempotent_insert(pg_store: PgStore) -> None:
    repo = CdrRepository(pg_store.pool)
    row = cdr(new_id())
    assert await repo.insert(row) is True
    # The same CDR again (retry after a lost reply / resync): no duplicate,
    # and the first version wins even if the second differs.
    assert await repo.insert(row) is False
    assert await repo.insert(cdr(row.call_id, interrupted=True, final_state="x")) is False
    got = await repo.for_call(row.call_id)
    assert got == [row]
    db = await pg_store.pool.fetchrow(
        "SELECT duration_s, billsec_s FROM cdr WHERE call_id = $1", row.call_id
    )
    assert db["duration_s"] == pytest.approx(row.duration_s) == pytest.approx(33.5)
    assert db["billsec_s"] == pytest.approx(row.billsec_s) == pytest.approx(30.5)


async def test_cdr_unanswered_and_nullable_fields(pg_store: PgStore) -> None:
    repo = CdrRepository(pg_store.pool)
    row = cdr(
        new_id(),
        answered_at=None,
        endpoint=None,
        trunk=None,
        cause=None,
        sip_code=None,
        variables={},
        interrupted=True,
        direction="inbound",
    )
    await repo.insert(row)
    [got] = await repo.for_call(row.call_id)
    assert got == row
    assert got.billsec_s == 0.0
    billsec = await pg_store.pool.fetchval(
        "SELECT billsec_s FROM cdr WHERE call_id = $1", row.call_id
    )
    assert billsec == 0.0


async def test_for_call_lists_attempts_in_order(pg_store: PgStore) -> None:
    repo = CdrRepository(pg_store.pool)
    call_id = new_id()
    for attempt in (3, 1, 2):
        await repo.insert(cdr(call_id, attempt=attempt, start_offset_s=attempt))
    assert [r.attempt for r in await repo.for_call(call_id)] == [1, 2, 3]
    assert await repo.for_call(new_id()) == []


async def test_recent_is_newest_first_and_paginates(pg_store: PgStore) -> None:
    repo = CdrRepository(pg_store.pool)
    # 7 rows, two pairs sharing a started_at, to exercise the cursor tie-break.
    # Own time window (BASE + 1 day) so other tests' rows stay out of it.
    day = 86_400
    offsets = [10, 20, 20, 30, 40, 40, 50]
    rows = [cdr(f"r-{i}-{new_id()}", start_offset_s=day + o) for i, o in enumerate(offsets)]
    await asyncio.gather(*(repo.insert(r) for r in rows))
    base = BASE + timedelta(seconds=day)
    window_end = base + timedelta(seconds=51)
    expected = sorted(rows, key=lambda r: (r.started_at, r.call_id, r.attempt), reverse=True)

    page1 = await repo.recent(limit=3, before=window_end)
    page2 = await repo.recent(limit=3, before=page1[-1].cursor)
    page3 = await repo.recent(limit=3, before=page2[-1].cursor)
    mine = [r for r in page1 + page2 + page3 if r.started_at >= base]
    assert mine == expected
    # A plain datetime bound is strict: rows at exactly that instant are excluded.
    at_40 = await repo.recent(limit=10, before=base + timedelta(seconds=40))
    assert [r.started_at for r in at_40 if r.started_at >= base] == [
        base + timedelta(seconds=s) for s in (30, 20, 20, 10)
    ]
    with pytest.raises(ValueError, match="limit"):
        await repo.recent(limit=0)


async def test_recent_without_bound_returns_newest(pg_store: PgStore) -> None:
    repo = CdrRepository(pg_store.pool)
    newest = cdr(new_id(), start_offset_s=100 * 86_400)  # later than any other test row
    await repo.insert(newest)
    assert (await repo.recent(limit=1))[0] == newest


async def test_database_errors_become_store_errors(pg_store: PgStore) -> None:
    repo = CdrRepository(pg_store.pool)
    # Bypass CdrRow validation to hit a database CHECK constraint.
    bad = cdr(new_id())
    object.__setattr__(bad, "sip_code", 42)
    with pytest.raises(StoreError, match="SQLSTATE 23514") as exc:
        await repo.insert(bad)
    assert isinstance(exc.value.__cause__, asyncpg.CheckViolationError)


async def test_audit_log(pg_store: PgStore) -> None:
    audit = AuditLog(pg_store.pool)
    tag = new_id()
    first = await audit.record("api:token-1", "originate", tag, {"to": "+1555"})
    second = await audit.record("api:token-1", "hangup", tag)
    assert second > first
    entries = [e for e in await audit.recent(limit=50) if e.target == tag]
    assert [(e.action, dict(e.details)) for e in entries] == [
        ("hangup", {}),
        ("originate", {"to": "+1555"}),
    ]
    older = await audit.recent(limit=50, before_id=second)
    assert all(e.id < second for e in older)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        await audit.record("a", "b", details={"x": object()})
