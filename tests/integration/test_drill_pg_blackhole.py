"""PostgreSQL black-holed or refusing: CDR reads are bounded, and stopping drains the outbox.

The pool's ``command_timeout`` bounds a statement, not the wait for a pooled
connection nor the connect of a new one. Under an outage, concurrent callers
queued for the pool's few connections, each held for a full timeout (and a
new connection waited out the 10 s connect timeout): with 30 readers the last
got its error after 30 s. Here the session's PostgreSQL is behind
``tests/storage_proxy.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from engine.store.errors import StoreUnavailable
from engine.store.pg.cdr import CdrRepository
from engine.store.pg.pool import PgStore
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import engine_config, running_engine, wait_for
from tests.storage_proxy import StorageProxy, pg_dsn_via, pg_upstream

TIMEOUT_S = 1.0


async def test_concurrent_cdr_reads_fail_within_the_timeout_while_postgres_is_black_holed(
    pg_dsn: str, pg_store: PgStore, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    async with (
        StorageProxy(pg_upstream(pg_dsn)) as proxy,
        PgStore(
            pg_dsn_via(pg_dsn, proxy.port),
            tmp_path,
            max_size=2,
            migrate=False,
            command_timeout_s=TIMEOUT_S,
        ) as store,
    ):
        repo = CdrRepository(store.pool, timeout_s=TIMEOUT_S)
        assert await repo.for_call("before") == []
        await proxy.set_mode("blackhole")

        async def read() -> float:
            started = loop.time()
            with pytest.raises(StoreUnavailable):
                await repo.for_call("during")
            return loop.time() - started

        # 12 readers on 2 connections. Bounded as a whole, each fails after
        # about TIMEOUT_S; queued behind each other (the old way), the last
        # would wait 6 rounds, or a 10 s connect.
        waited = await asyncio.wait_for(asyncio.gather(*(read() for _ in range(12))), 120)
        assert max(waited) < 4 * TIMEOUT_S, sorted(round(w, 1) for w in waited)

        await proxy.set_mode("pass")
        # Recovers by itself, once the stalled connections are cleaned up.
        deadline = loop.time() + 30
        while True:
            try:
                assert await repo.for_call("after") == []
                break
            except StoreUnavailable:
                assert loop.time() < deadline, "no recovery after PostgreSQL came back"
                await asyncio.sleep(0.1)


async def test_stop_delivers_the_cdrs_left_in_the_outbox_once_postgres_is_back(
    pg_dsn: str, pg_store: PgStore, redis_url: str, tmp_path: Path
) -> None:
    """The engine stops while CDRs wait in the outbox and the lane waits out a
    backoff; PostgreSQL is back. Stopping drains the outbox: the lane tries at
    once instead of being cancelled (before, it was cancelled first and then
    waited for, so the CDR stayed behind and each lane cost 2 storage timeouts)."""
    async with (
        CarrierFakeAmi() as ami,
        StorageProxy(pg_upstream(pg_dsn)) as proxy,
    ):
        cfg = engine_config(
            pg_dsn=pg_dsn_via(pg_dsn, proxy.port),
            redis_url=redis_url,
            prefix=f"stop:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path / "engine",
            ami_port=ami.port,
            agi_bind_port=0,
            extra="[calls]\nstorage_timeout_s = 1\n",
        )
        async with running_engine(cfg) as (engine, client):
            lane = engine.cdr_lane
            assert lane is not None
            await proxy.set_mode("refuse")
            call = await client.originate("2001")
            await client.wait_state(call["call_id"], "ended")
            # Several failures: the lane now waits out a backoff of a second or more.
            await wait_for(lambda: lane.failures >= 5, what="the lane to back off")
            assert lane.journal.depth == 1
            await proxy.set_mode("pass")
        assert lane.journal.depth == 0, "the CDR was left in the outbox"
    rows = await CdrRepository(pg_store.pool).for_call(call["call_id"])
    assert [r.cause for r in rows] == [17]
