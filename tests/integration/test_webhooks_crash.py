"""SIGKILL the engine while webhooks are being delivered: no event is lost.

The engine runs as a process (tests/integration/engine_process.py) against the fake carrier
(no Asterisk needed); the receiver holds each request for a while, so deliveries are in
flight when the process is killed. After the restart every call's CDR reaches the receiver
as a signed call.ended webhook (some twice: at least once, deduplicated on Webhook-Id)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from engine.store.pg.pool import PgStore
from scripts.fuzz_api import FuzzCarrier
from tests.harness import engine_config_text, stored_cdrs
from tests.integration.engine_process import EngineProcess, free_port
from tests.webhook_receiver import Receiver

CALLS = 20
WEBHOOKS = """
[webhooks]
timeout_s = 3.0
backoff_base_s = 0.5
backoff_max_s = 2.0
poll_interval_s = 0.5
"""


@pytest.fixture
async def rig(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[EngineProcess, Receiver]]:
    receiver = Receiver(delay_s=1.0, drop_abandoned=True)
    await receiver.start()
    async with FuzzCarrier() as ami:
        port = free_port()
        prefix = f"whcrash:{uuid.uuid4().hex[:8]}:"
        config = tmp_path / "engine.toml"
        config.write_text(
            engine_config_text(
                pg_dsn=pg_dsn,
                redis_url=redis_url,
                prefix=prefix,
                data_dir=tmp_path / "engine",
                ami_port=ami.port,
                agi_bind_port=free_port(),
                api_port=port,
                extra=WEBHOOKS,
            )
        )
        proc = EngineProcess(config, port, tmp_path / "engine.log", redis_prefix=prefix)
        try:
            yield proc, receiver
        finally:
            proc.stop()
            await receiver.stop()


async def _until(predicate: object, what: str, timeout_s: float = 90.0) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_sigkill_mid_delivery_loses_no_webhook(
    rig: tuple[EngineProcess, Receiver], pg_store: PgStore
) -> None:
    proc, receiver = rig
    await proc.start()
    async with aiohttp.ClientSession() as http:
        client = proc.client(http)
        await receiver.subscribe_alone(client, event_types=["call.ended"], max_attempts=100)
        calls = [(await client.originate("2000"))["call_id"] for _ in range(CALLS)]
        # What the engine accepted: one CDR per call. Waited for before the kill, so the
        # count does not depend on calls the crash itself cut short.
        expected = set()
        for call in calls:
            rows = await stored_cdrs(pg_store.pool, call, timeout_s=30)
            expected |= {(r.call_id, r.attempt) for r in rows}
        # The receiver holds each request 1 s: deliveries are in flight now. Kill.
        await _until(lambda: receiver.started >= 1, "the first delivery")
        in_flight = receiver.started - len(receiver.received)
        proc.kill()
        assert in_flight >= 1
        await proc.start()
        # The deliveries cut by the kill were not counted: only a retry brings them.
        await _until(lambda: receiver.abandoned >= 1, "the cut deliveries noticed")

        def got() -> set[tuple[str, int]]:
            return {(r.data["cdr"]["call_id"], r.data["cdr"]["attempt"]) for r in receiver.received}

        await _until(lambda: expected <= got(), "every call.ended after the restart")
    assert receiver.bad_signatures == 0
    duplicates = len(receiver.received) - len(receiver.ids())
    print(
        f"SIGKILL with {in_flight} deliveries in flight: {len(expected)} events, none lost, "
        f"{duplicates} delivered twice"
    )
