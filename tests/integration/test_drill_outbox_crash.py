"""SIGKILL the engine while PostgreSQL is away and the CDRs it accepted wait in the outbox.

docs/durability.md: accepting a record is one ``os.write`` on the journal, so "once it
returns, a crash of the engine cannot lose it", and "records still pending at a restart are
delivered by the next start". The unit tests reopen a journal in the same process
(tests/unit/test_outbox.py, tests/unit/test_registry_journal.py); this drill does it for
real: ``python -m engine run`` as a process (tests/integration/engine_process.py) on the fake
carrier, the session's PostgreSQL behind tests/storage_proxy.py refusing connections, calls
placed and ended, their CDRs readable through the API from the outbox alone, then SIGKILL
(no shutdown code runs). PostgreSQL comes back and the engine is started again: every CDR
lands exactly once, the journal drains, and every call's ``call.ended`` webhook (accepted
while PostgreSQL was away, so still in the ``webhooks`` lane at the kill) reaches the
receiver. The second test does the same for the event stream with Redis away (a private
redis-server behind the proxy): every call's events are published once, in order."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from engine.store.pg.cdr import CdrRepository
from engine.store.pg.pool import PgStore
from scripts.fuzz_api import FuzzCarrier
from tests.harness import Client, engine_config_text, event_log
from tests.integration.engine_process import EngineProcess, free_port
from tests.private_redis import PrivateRedis
from tests.storage_proxy import StorageProxy, Upstream, pg_dsn_via, pg_upstream
from tests.webhook_receiver import Receiver

CALLS = 10
WEBHOOKS = """
[webhooks]
backoff_base_s = 0.5
backoff_max_s = 2.0
poll_interval_s = 0.5
"""


async def _until(check: object, what: str, timeout_s: float = 30.0) -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def rig(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[EngineProcess, StorageProxy, Receiver]]:
    receiver = Receiver()
    await receiver.start()
    async with FuzzCarrier() as ami, StorageProxy(pg_upstream(pg_dsn)) as proxy:
        port = free_port()
        prefix = f"oxcrash:{uuid.uuid4().hex[:8]}:"
        config = tmp_path / "engine.toml"
        config.write_text(
            engine_config_text(
                pg_dsn=pg_dsn_via(pg_dsn, proxy.port),
                redis_url=redis_url,
                prefix=prefix,
                data_dir=tmp_path / "engine",
                ami_port=ami.port,
                agi_bind_port=free_port(),
                api_port=port,
                extra="[calls]\nstorage_timeout_s = 1\n" + WEBHOOKS,
            )
        )
        proc = EngineProcess(config, port, tmp_path / "engine.log", redis_prefix=prefix)
        try:
            yield proc, proxy, receiver
        finally:
            proc.stop()
            await receiver.stop()


async def _depth(client: Client, lane: str) -> float:
    """``engine_outbox_depth{lane=...}``: records accepted and not yet delivered."""
    status, text, _ = await client.request("GET", "/metrics")
    assert status == 200, text
    for line in str(text).splitlines():
        if line.startswith(f'engine_outbox_depth{{lane="{lane}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no engine_outbox_depth for the {lane} lane")


async def _cdr_depth(client: Client) -> float:
    return await _depth(client, "cdrs")


async def test_cdrs_waiting_in_the_outbox_survive_a_sigkill_while_postgres_is_away(
    rig: tuple[EngineProcess, StorageProxy, Receiver], pg_store: PgStore
) -> None:
    proc, proxy, receiver = rig
    await proc.start()
    repo = CdrRepository(pg_store.pool)
    async with aiohttp.ClientSession() as http:
        client = proc.client(http)
        # A webhook subscription whose call.ended deliveries are also accepted while
        # PostgreSQL is away.
        await receiver.subscribe_alone(client, event_types=["call.ended"])
        await proxy.set_mode("refuse")
        calls = [(await client.originate("2000"))["call_id"] for _ in range(CALLS)]
        for call_id in calls:
            await client.wait_state(call_id, "ended", timeout_s=30)
        # Accepted: the CDRs wait in the outbox, none is in PostgreSQL. (GET /v1/cdrs
        # answers 503 storage-unavailable meanwhile: tests/api/test_storage_unavailable.py.)

        async def accepted() -> bool:
            return await _cdr_depth(client) == CALLS

        await _until(accepted, f"{CALLS} CDRs in the outbox")
        assert [c for c in calls if await repo.for_call(c)] == []
        proc.kill()  # no shutdown code: nothing drains, nothing is flushed by Python
        await proxy.set_mode("pass")
        killed_at = time.monotonic()
        await proc.start()

        async def all_landed() -> bool:
            return all([await repo.for_call(c) for c in calls])

        await _until(all_landed, "every CDR in PostgreSQL after the restart")
        recovered_s = time.monotonic() - killed_at
        rows = {c: await repo.for_call(c) for c in calls}
        # Exactly once each, and the journal is empty: nothing left to deliver twice.
        assert {c: len(r) for c, r in rows.items()} == dict.fromkeys(calls, 1)
        assert all(r[0].cause == 17 for r in rows.values()), rows

        async def drained() -> bool:
            return await _cdr_depth(client) == 0

        await _until(drained, "the cdrs journal to drain")

        async def delivered() -> bool:
            return {r.data["cdr"]["call_id"] for r in receiver.received} == set(calls)

        await _until(delivered, "every call.ended webhook after the restart")
    assert receiver.bad_signatures == 0
    print(
        f"outbox SIGKILL drill: {CALLS} calls placed, {CALLS} CDRs written, 0 lost, "
        f"0 duplicated, restart to every CDR stored {recovered_s:.2f} s"
    )


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    directory = Path(tempfile.mkdtemp(prefix="redis-outbox-crash-"))
    server = PrivateRedis(directory)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


async def test_events_waiting_in_the_outbox_survive_a_sigkill_while_redis_is_away(
    private_redis: PrivateRedis, pg_dsn: str, tmp_path: Path
) -> None:
    """The same for the event stream: calls end while Redis refuses connections, so their
    events wait in the ``events`` lane; SIGKILL; Redis back, restart: every call's events are
    on the stream, each once, in order."""
    async with (
        FuzzCarrier() as ami,
        StorageProxy(Upstream(path=str(private_redis.socket))) as proxy,
    ):
        port = free_port()
        prefix = f"oxcrashev:{uuid.uuid4().hex[:8]}:"
        config = tmp_path / "engine.toml"
        config.write_text(
            engine_config_text(
                pg_dsn=pg_dsn,
                redis_url=f"redis://127.0.0.1:{proxy.port}/0",
                prefix=prefix,
                data_dir=tmp_path / "engine",
                ami_port=ami.port,
                agi_bind_port=free_port(),
                api_port=port,
                extra="[calls]\nstorage_timeout_s = 1\nregistry_refresh_s = 1\n",
            )
        )
        proc = EngineProcess(config, port, tmp_path / "engine.log", redis_prefix=prefix)
        try:
            await proc.start()
            async with aiohttp.ClientSession() as http:
                client = proc.client(http)
                await proxy.set_mode("refuse")
                calls = [(await client.originate("2000"))["call_id"] for _ in range(CALLS)]
                for call_id in calls:
                    await client.wait_state(call_id, "ended", timeout_s=30)

                async def accepted() -> bool:
                    return await _depth(client, "events") >= CALLS

                await _until(accepted, "the calls' events in the outbox")
                proc.kill()
                await proxy.set_mode("pass")
                killed_at = time.monotonic()
                await proc.start()

                async with event_log(client, since=0) as log:

                    def ends() -> Counter[str]:
                        return Counter(
                            m["event"]["call_id"]
                            for m in log
                            if m.get("event", {}).get("type") == "CallStateChanged"
                            and m["event"]["state"] == "ended"
                        )

                    async def all_published() -> bool:
                        return set(calls) <= set(ends())

                    await _until(all_published, "every call's end on the stream")
                    recovered_s = time.monotonic() - killed_at
                    assert {c: ends()[c] for c in calls} == dict.fromkeys(calls, 1)
                    for call_id in calls:
                        states = [
                            m["event"]["state"]
                            for m in log
                            if m.get("event", {}).get("call_id") == call_id
                            and m["event"]["type"] == "CallStateChanged"
                        ]
                        assert states[0] == "created" and states[-1] == "ended", states
                    seqs = [m["seq"] for m in log if "seq" in m]
                    assert seqs == sorted(set(seqs))
        finally:
            proc.stop()
    print(
        f"outbox SIGKILL drill (events): {CALLS} calls, every end published once, "
        f"restart to all published {recovered_s:.2f} s"
    )
