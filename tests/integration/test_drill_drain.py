"""Graceful drain: SIGTERM refuses new calls, lets live ones finish, then exits cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from engine.core.clock import to_datetime
from engine.store.pg.pool import PgStore
from tests.harness import TOKEN, engine_config_text, stored_cdrs
from tests.integration import sandbox
from tests.integration.engine_process import EngineProcess, free_port

pytestmark = pytest.mark.asterisk


def _engine(pg_dsn: str, redis_url: str, tmp_path: Path, grace_s: float) -> EngineProcess:
    assert sandbox.status(), "the Asterisk sandbox must be running"
    port = free_port()
    prefix = f"drain:{uuid.uuid4().hex[:8]}:"
    text = engine_config_text(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=prefix,
        data_dir=tmp_path / "engine",
        agi_bind_port=free_port(),
        api_port=port,
    ).replace("[engine]\n", f"[engine]\nshutdown_grace_s = {grace_s}\n", 1)
    config = tmp_path / "engine.toml"
    config.write_text(text)
    return EngineProcess(config, port, tmp_path / "engine.log", redis_prefix=prefix)


@pytest.fixture
async def engine_proc(pg_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[EngineProcess]:
    proc = _engine(pg_dsn, redis_url, tmp_path, grace_s=60)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def short_grace(pg_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[EngineProcess]:
    proc = _engine(pg_dsn, redis_url, tmp_path, grace_s=1)
    try:
        yield proc
    finally:
        proc.stop()


async def test_sigterm_drains_live_calls_then_exits_cleanly(
    engine_proc: EngineProcess, pg_store: PgStore
) -> None:
    await engine_proc.start()
    async with aiohttp.ClientSession() as http:
        client = engine_proc.client(http)
        # 7XXX answers and hangs up by itself after ~12 s.
        ids = [(await client.originate(f"72{n:02d}", timeout_s=10))["call_id"] for n in range(2)]
        for cid in ids:
            await client.wait_state(cid, "answered")
        ws = await http.ws_connect(
            f"ws://127.0.0.1:{engine_proc.api_port}/v1/events",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert engine_proc.proc is not None
        engine_proc.proc.send_signal(15)  # SIGTERM

        # The event stream closes at once, with a reason.
        async def closed() -> aiohttp.WSMessage:
            while True:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return msg

        msg = await asyncio.wait_for(closed(), 10)
        assert ws.close_code == 1001, msg
        # New originates are refused with 503 draining and Retry-After ...
        status, body, resp = await client.request(
            "POST", "/calls", json={"to": "1001", "trunk": "self-trunk"}
        )
        assert (status, body["error_id"]) == (503, "draining"), body
        assert int(resp.headers["Retry-After"]) >= 1
        # ... while live calls go on and can still be read.
        for cid in ids:
            status, call, _ = await client.request("GET", f"/calls/{cid}")
            assert status == 200 and call["state"] in ("answered", "ended"), call
    # The calls end by themselves; the engine then exits on its own, cleanly.
    code = await asyncio.to_thread(engine_proc.proc.wait, 60)
    assert code == 0, engine_proc.tail()
    for cid in ids:
        (row,) = await stored_cdrs(pg_store.pool, cid)
        assert row.answered_at is not None and not row.interrupted


async def test_calls_outliving_the_grace_are_adopted_by_the_next_start(
    short_grace: EngineProcess, pg_store: PgStore
) -> None:
    """docs/durability.md "Graceful drain" and docs/production.md "Upgrades with graceful
    drain": calls still up when `shutdown_grace_s` is over are not hung up; they stay in
    the registry and the next start adopts them, with the first process's answer time,
    and writes their CDRs when they end."""
    await short_grace.start()
    async with aiohttp.ClientSession() as http:
        client = short_grace.client(http)
        # 7XXX answers and hangs up by itself after ~12 s: well past the 1 s grace.
        ids = [(await client.originate(f"73{n:02d}", timeout_s=10))["call_id"] for n in range(2)]
        before = {cid: await client.wait_state(cid, "answered") for cid in ids}
        assert short_grace.proc is not None
        short_grace.proc.send_signal(15)  # SIGTERM
        code = await asyncio.to_thread(short_grace.proc.wait, 30)
        assert code == 0, short_grace.tail()
        await short_grace.start()
        # Adopted (still answered, the first process's answer time), then they end.
        for cid in ids:
            now = await client.wait_state(cid, "answered", timeout_s=10)
            assert now["answered_at"] == before[cid]["answered_at"], now
        for cid in ids:
            await client.wait_state(cid, "ended", timeout_s=30)
    for cid in ids:
        (row,) = await stored_cdrs(pg_store.pool, cid)
        assert not row.interrupted, row
        assert row.answered_at == to_datetime(before[cid]["answered_at"])
