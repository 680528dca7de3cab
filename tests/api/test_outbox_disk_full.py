"""A full outbox disk (ENOSPC on every journal write) with a call up: the call still ends,
its CDR reaches PostgreSQL once the disk takes it again, and the engine stays up.

Before: the HungUp's journal append raised, the call stayed ``answered`` with no CDR (and
freeing the disk did not end it), the registry mirror's next journal ack ended the
engine's task group, and ``POST /v1/calls`` answered 500 (docs/durability.md, the drills
table).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.app import Engine
from engine.pbx.asterisk.ami_codec import Action
from engine.store.pg.cdr import CdrRepository
from engine.store.pg.pool import PgStore
from tests.api.openapi_check import check
from tests.fakes.carrier_ami import _HANGUP, CarrierFakeAmi
from tests.fakes.full_disk import Disk, disk
from tests.harness import Client, engine_config, running_engine, stored_cdrs

__all__ = ["disk"]  # the fixture


# Asterisk's answer to a Hangup of a channel it has.
HUNGUP = b"Response: Success\r\nActionID: {aid}\r\nMessage: Channel Hungup\r\n\r\n"


@dataclass
class HeldCarrier(CarrierFakeAmi):
    """The carrier answers, and sends the far end's hangup when ``release`` is set. A
    Hangup action ends the oldest call still up (its recorded hangup is sent)."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    hangups: list[asyncio.Event] = field(default_factory=list)  # one per call, in order

    async def _emit(self, writer: asyncio.StreamWriter, action: Action, data: bytes) -> None:
        up = [e for e in self.hangups if not e.is_set()]
        if action.name.lower() == "hangup" and up:
            writer.write(HUNGUP.replace(b"{aid}", (action.action_id or "").encode()))
            await writer.drain()
            up[0].set()
            return
        cut = _HANGUP.search(data) if action.name.lower() == "originate" else None
        if cut is None:
            await super()._emit(writer, action, data)
            return
        writer.write(data[: cut.start()])
        await writer.drain()
        own = asyncio.Event()
        self.hangups.append(own)
        release = self.release

        async def hang_up_later() -> None:
            waits = {asyncio.ensure_future(release.wait()), asyncio.ensure_future(own.wait())}
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in pending:
                wait.cancel()
            own.set()
            if not writer.is_closing():
                writer.write(data[cut.start() :])

        task = asyncio.create_task(hang_up_later())
        self._held.add(task)
        task.add_done_callback(self._held.discard)


@dataclass
class Running:
    engine: Engine
    client: Client
    carrier: HeldCarrier


# One agent (and its queue): agent login is one of the routes a full disk refuses.
ACD = """
[[agents]]
id = "df-agent"
endpoints = { asterisk-1 = "PJSIP/agent1" }
skills = { sales = 9 }
[[queues]]
name = "df-sales"
skills = { sales = 5 }
"""


@pytest.fixture
async def running(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Running]:
    async with HeldCarrier() as carrier:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"diskfull:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / f"engine-diskfull-{uuid.uuid4().hex[:8]}",
            ami_port=carrier.port,
            agi_bind_port=0,
            extra=ACD,
        )
        async with running_engine(cfg) as (engine, client):
            yield Running(engine, client, carrier)


async def test_a_call_ends_and_its_cdr_lands_though_the_disk_was_full_at_its_hangup(
    running: Running, disk: Disk, pg_store: PgStore
) -> None:
    client = running.client
    call = await client.originate("1001")
    await client.wait_state(call["call_id"], "answered")
    disk.full = True  # every journal write (events, CDRs, registry, acks) fails: ENOSPC
    running.carrier.release.set()  # the far end hangs up
    ended = await client.wait_state(call["call_id"], "ended")
    assert ended["cause"] == 16 and ended["answered_at"] is not None
    assert not ended["interrupted"]
    assert disk.refused > 0
    # Nothing the disk refused is delivered: the CDR waits in memory, not in PostgreSQL.
    assert await CdrRepository(pg_store.pool).for_call(call["call_id"]) == []
    # The engine is still up (the registry mirror's acks were refused too): it answers.
    status, _, _ = await client.request("GET", "/health/live")
    assert status == 200
    # It takes no new call meanwhile: 503 storage-unavailable with Retry-After, as when
    # PostgreSQL is away (not 500), and nothing is sent to the switch.
    originates = len(running.carrier.timeline)
    status, body, resp = await client.request(
        "POST", "/calls", json={"to": "1003", "trunk": "self-trunk", "timeout_s": 6}
    )
    assert (status, body["error_id"]) == (503, "storage-unavailable"), body
    assert int(resp.headers["Retry-After"]) >= 1
    check("/v1/calls", "post", 503, body)
    assert len(running.carrier.timeline) == originates
    # Readiness says why.
    status, body, _ = await client.request("GET", "/health/ready")
    assert (status, body["status"], body["storage"]["outbox"]) == (503, "not-ready", False)
    check("/v1/health/ready", "get", 503, body)
    disk.full = False  # space freed; no new call needed: the lanes retry on their own
    (row,) = await stored_cdrs(pg_store.pool, call["call_id"])
    assert row.answered_at is not None and row.cause == 16
    # Ready again once every journal wrote what it held (a check retries it, at most
    # every RETRY_S).
    ready: list[tuple[int, bool]] = []

    async def probe() -> None:
        status, body, _ = await client.request("GET", "/health/ready")
        ready.append((status, body["storage"]["outbox"]))

    await probe()
    async with asyncio.timeout(20):
        while ready[-1] != (200, True):
            await asyncio.sleep(0.1)
            await probe()
    # And the engine goes on taking calls.
    running.carrier.release = asyncio.Event()
    second = await client.originate("1002")
    await client.wait_state(second["call_id"], "answered")
    running.carrier.release.set()
    await client.wait_state(second["call_id"], "ended")


async def wait_outbox(client: Client, writable: bool) -> None:
    """Until readiness reports the outbox as ``writable`` (a check retries the journals'
    tails, at most every RETRY_S)."""
    async with asyncio.timeout(20):
        while True:
            _, body, _ = await client.request("GET", "/health/ready")
            if body["storage"]["outbox"] is writable:
                return
            await asyncio.sleep(0.1)


async def test_while_the_disk_is_full_every_accepting_route_answers_503_and_the_rest_work(
    running: Running, disk: Disk
) -> None:
    """Before: only POST /v1/calls was refused; a DNC addition, a webhook subscription, an
    agent login answered 2xx with the disk refusing their records (engine/api/disk_full.py).
    """
    client = running.client
    first = await client.originate("1001")
    second = await client.originate("1002")
    await client.wait_state(first["call_id"], "answered")
    await client.wait_state(second["call_id"], "answered")
    disk.full = True
    # A supervisor hangs a call up: served though the disk refuses its records (which
    # makes the journals hold an unwritten tail: the outbox is reported unwritable).
    status, body, _ = await client.request("DELETE", f"/calls/{first['call_id']}")
    assert status == 202, body
    await client.wait_state(first["call_id"], "ended")
    await wait_outbox(client, writable=False)
    assert disk.refused > 0
    outbox = str(running.engine.config.resolve(running.engine.config.engine.data_dir) / "outbox")
    phone = f"+1212555{uuid.uuid4().int % 10000:04d}"
    hook = {"url": "http://127.0.0.1:9/df", "event_types": ["call.ended"]}
    accepting = [
        ("POST", "/dnc", {"phones": [phone]}, "/v1/dnc"),
        ("POST", "/webhooks", hook, "/v1/webhooks"),
        ("POST", "/agents/df-agent/login", None, "/v1/agents/{agent_id}/login"),
        ("POST", "/calls", {"to": "1003", "trunk": "self-trunk"}, "/v1/calls"),
    ]
    for method, path, body, spec in accepting:
        status, got, resp = await client.request(method, path, json=body)
        assert (status, got["error_id"]) == (503, "storage-unavailable"), (path, got)
        assert int(resp.headers["Retry-After"]) >= 1, path
        assert got["details"]["outbox"] == outbox and outbox in got["message"], got
        check(spec, method.lower(), 503, got)
    # Nothing was done.
    status, hooks, _ = await client.request("GET", "/webhooks")
    assert status == 200 and hook["url"] not in [h["url"] for h in hooks["subscriptions"]]
    # Reads and the control of live calls still work.
    status, got, _ = await client.request("GET", f"/calls/{second['call_id']}")
    assert (status, got["state"]) == (200, "answered"), got
    status, got, _ = await client.request("DELETE", f"/calls/{second['call_id']}")
    assert status == 202, got
    await client.wait_state(second["call_id"], "ended")
    disk.full = False  # space freed
    await wait_outbox(client, writable=True)
    # The same requests are accepted again.
    status, got, _ = await client.request("POST", "/dnc", json={"phones": [phone]})
    assert (status, got["phones"]) == (200, [phone]), got
    status, sub, _ = await client.request("POST", "/webhooks", json=hook)
    assert status == 201, sub
    status, got, _ = await client.request("POST", "/agents/df-agent/login")
    assert status == 200, got
    # Clean up what the shared database holds.
    status, _, _ = await client.request("DELETE", f"/webhooks/{sub['subscription_id']}")
    assert status == 200
    status, _, _ = await client.request("DELETE", "/dnc", json={"phones": [phone]})
    assert status == 200
