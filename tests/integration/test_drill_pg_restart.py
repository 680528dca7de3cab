"""Drill: the PostgreSQL primary restarted mid-traffic, behind a DSN that names two hosts.

A second PostgreSQL cluster owned by the test (the embedded store's own initdb/pg_ctl,
listening on a free loopback port) is the engine's database; the DSN names a dead port
first and that server second, with ``target_session_attrs=read-write``, as a site with a
primary and a standby would. The fake carrier AMI answers calls and holds them briefly;
mid-traffic the server is stopped (fast shutdown: every session is terminated) and started
again. Checked: every call placed is answered 201 and ends, the CDR outbox drains after the
restart, and every call has exactly one CDR: 0 lost, 0 duplicated.

Figures (``-s``): the outage, the time from the restart to the outbox drained.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store.pg.embedded import EmbeddedPostgres
from engine.store.pg.pool import PgStore
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import Client, cdr_rows_by_call, engine_config, running_engine, wait_for
from tests.sentinel_group import free_port

CALLS = 16
WORKERS = 4


@pytest.fixture
def primary() -> Iterator[EmbeddedPostgres]:
    directory = Path(tempfile.mkdtemp(prefix="pg-restart-"))
    directory.chmod(0o711)  # the server runs as an unprivileged user when we are root
    server = EmbeddedPostgres(directory, port=free_port(), listen_addresses="127.0.0.1")
    try:
        server.start()
        yield server
    finally:
        server.stop(force=True)
        shutil.rmtree(directory, ignore_errors=True)


async def _call(client: Client, number: str) -> str:
    call = await client.originate(number, timeout_s=10)
    await client.wait_state(call["call_id"], "ended", timeout_s=60)
    return str(call["call_id"])


async def test_postgres_restarted_mid_traffic_behind_a_two_host_dsn(
    primary: EmbeddedPostgres, redis_url: str, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    dead = free_port()  # nothing listens here: asyncpg must go on to the next host
    dsn = (
        f"postgresql://postgres@127.0.0.1:{dead},127.0.0.1:{primary.port}/postgres"
        "?target_session_attrs=read-write"
    )
    async with CarrierFakeAmi(hold_s=0.3) as ami:
        cfg = engine_config(
            pg_dsn=dsn,
            redis_url=redis_url,
            prefix=f"pgrestart:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path / "engine",
            ami_port=ami.port,
            agi_bind_port=0,
            extra="[calls]\nstorage_timeout_s = 1\n",
        )
        async with running_engine(cfg) as (engine, client):
            lane = engine.cdr_lane
            assert lane is not None and engine.pg is not None
            assert engine.pg.embedded is None, "a DSN was given: no embedded server"
            ids: list[str] = []
            numbers = iter(range(10_000))

            async def worker() -> None:
                for _ in range(CALLS // WORKERS):
                    ids.append(await _call(client, f"1{next(numbers):03d}"))

            workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
            await wait_for(lambda: len(ids) >= 3, what="traffic to flow")
            down_at = loop.time()
            await asyncio.to_thread(primary.stop, force=True)
            # Calls end while the server is away: their CDRs wait in the outbox.
            failures = lane.failures
            await wait_for(lambda: lane.failures > failures, what="a CDR delivery to fail")
            await asyncio.to_thread(primary.start)
            up_at = loop.time()
            await asyncio.wait_for(asyncio.gather(*workers), 120)
            await wait_for(lambda: lane.journal.depth == 0, timeout_s=60, what="the outbox drained")
            drained_s = loop.time() - up_at
            assert len(ids) == CALLS
            rows, lost, dup = await cdr_rows_by_call(engine.pg.pool, ids)
    print(
        f"\npg restart drill: calls={CALLS} cdrs={len(rows)} lost={lost} duplicated={dup} "
        f"outage_s={up_at - down_at:.2f} restart_to_outbox_drained_s={drained_s:.2f} "
        f"delivery_failures={lane.failures}"
    )
    assert (lost, dup) == (0, 0)
    # What reached PostgreSQL is what a fresh pool on the same DSN reads.
    async with PgStore(dsn, tmp_path / "unused", migrate=False) as store:
        count = await store.pool.fetchval("SELECT count(*) FROM cdr WHERE call_id = ANY($1)", ids)
    assert count == CALLS
