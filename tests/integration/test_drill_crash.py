"""Fault drill 1: the engine is SIGKILLed with 10 answered calls up.

On restart it adopts all 10 from the live-call registry (their channels are
still up on the real Asterisk), keeps controlling them, and when they end
writes 10 CDRs with the answer time the first process saw and the end time
the switch reported. Nothing is left in the registry afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from engine.core.clock import to_datetime
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.registry import CallRegistry
from tests.drill_report import report_drill
from tests.harness import cdr_rows_by_call, engine_config_text
from tests.integration import sandbox
from tests.integration.engine_process import EngineProcess, free_port

pytestmark = pytest.mark.asterisk

CALLS = 10
FAR_END_HOLDS_S = 60  # 01XX in telephony-config/asterisk/carrier-test.conf


@pytest.fixture
async def engine_proc(pg_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[EngineProcess]:
    assert sandbox.status(), "the Asterisk sandbox must be running"
    port = free_port()
    prefix = f"drill1:{uuid.uuid4().hex[:8]}:"
    text = engine_config_text(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=prefix,
        data_dir=tmp_path / "engine",
        agi_bind_port=free_port(),
        api_port=port,
    )
    config = tmp_path / "engine.toml"
    config.write_text(text)
    proc = EngineProcess(config, port, tmp_path / "engine.log", redis_prefix=prefix)
    try:
        yield proc
    finally:
        proc.stop()


async def test_sigkilled_engine_adopts_its_answered_calls_and_writes_their_cdrs(
    engine_proc: EngineProcess, pg_store: PgStore, redis_store: RedisStore
) -> None:
    registry = CallRegistry(redis_store.client, engine_proc.redis_prefix)
    await engine_proc.start()
    async with aiohttp.ClientSession() as http:
        client = engine_proc.client(http)
        # 01XX answers after 1 s and stays up 60 s: it outlives the restart, and it cannot
        # end by itself before the hangups below (with 7XXX, ~12 s, a hangup that did
        # nothing still saw every call end, and the drill passed).
        placed = [await client.originate(f"01{n:02d}", timeout_s=10) for n in range(CALLS)]
        ids = [c["call_id"] for c in placed]
        before = {cid: await client.wait_state(cid, "answered") for cid in ids}

        # The registry (Redis) has every answered call before the crash.
        async def registry_answered() -> bool:
            # Read Redis itself: the API answers this engine's calls from memory.
            rows = {r["call_id"]: r.get("state") for r in await registry.all()}
            return all(rows.get(cid) == "answered" for cid in ids)

        await _until(registry_answered, "registry shows the 10 answered calls")
        killed_at = time.time()
        engine_proc.kill()

        restarted = time.monotonic()
        await engine_proc.start()
        # Adopted: each call is still answered, with the first process's times.
        for cid in ids:
            now = await client.wait_state(cid, "answered", timeout_s=10)
            assert now["answered_at"] == before[cid]["answered_at"]
        recover_s = time.monotonic() - restarted
        # Control works on adopted calls: hang them up through the API, and the switch
        # ends them (long before their far end would, 60 s after the answer).
        for cid in ids:
            status, body, _ = await client.request("DELETE", f"/calls/{cid}")
            assert status == 202, body
        finals = {cid: await client.wait_state(cid, "ended", timeout_s=30) for cid in ids}
        for final in finals.values():
            assert final["ended_at"] - final["answered_at"] < FAR_END_HOLDS_S - 5, final

        async def registry_empty() -> bool:
            return not set(ids) & {r["call_id"] for r in await registry.all()}

        await _until(registry_empty, "registry empty")

    by_call, lost, dup = await cdr_rows_by_call(pg_store.pool, ids)
    for cid, rows in by_call.items():
        row = rows[0]
        final = finals[cid]
        assert not row.interrupted, row
        assert row.answered_at == to_datetime(before[cid]["answered_at"])
        assert row.ended_at == to_datetime(final["ended_at"])
        assert final["ended_at"] > killed_at  # ended after the crash, seen by the new process
        assert row.cause is not None and row.cause_text
    report_drill(
        "1-crash",
        "1: engine SIGKILLed with 10 answered calls up",
        {
            "calls_placed": CALLS,
            "calls_adopted": len(before),
            "cdrs_written": CALLS - lost,
            "cdrs_lost": lost,
            "cdrs_duplicated": dup,
            "seconds_to_recover": round(recover_s, 2),
        },
    )
    assert (lost, dup) == (0, 0)


async def _until(check: object, what: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.1)
