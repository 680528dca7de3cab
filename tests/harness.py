"""Run the whole engine in-process for API and integration tests.

The engine is built from a real config text (the same validation path as the
daemon), with real PostgreSQL and Redis from the session fixtures and either
the real Asterisk sandbox or a fake AMI peer as its switch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from engine.app import Engine
from engine.config import EngineConfig, parse_config
from engine.store.pg.cdr import CdrRepository, CdrRow

TOKEN = "test-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[1]
TEST_IVR_DIR = ROOT / "tests" / "fixtures" / "ivr"


SELF_TRUNK = """
[[trunks]]
name = "self-trunk"
switch = "asterisk-1"
target = "self-trunk"
max_channels = 500
max_cps = 1000
cps_burst = 100
"""


def freeswitch_switch_toml(
    name: str, host: str, port: int, password: str, more: str = "", *, outbound_port: int = 0
) -> str:
    """The ``[[switches]]`` block of a FreeSWITCH switch (the fake ESL peer, or a proxy in
    front of it), its outbound-socket server on a free port; ``more``: extra keys of it.
    ``outbound_port``: a fixed port for that server, for tests whose calls are transferred
    to an IVR flow (the driver's transfer names the configured port, and 0 names none)."""
    return f"""
[[switches]]
kind = "freeswitch"
name = "{name}"
host = "{host}"
port = {port}
password = "{password}"
outbound_bind = "127.0.0.1:{outbound_port}"
{more}
"""


def engine_config(**kwargs: Any) -> EngineConfig:
    return parse_config(engine_config_text(**kwargs), "test-engine.toml")


def engine_config_text(
    *,
    pg_dsn: str,
    redis_url: str,
    prefix: str,
    data_dir: Path,
    ami_port: int = 5038,
    agi_port: int = 4573,
    agi_bind_port: int | None = None,
    ivr_dir: Path = TEST_IVR_DIR,
    ping_interval_s: float = 2.0,
    action_timeout_s: float = 3.0,
    extra: str = "",
    ivr_watch_interval_s: float = 0,
    api_port: int = 0,
    storage_extra: str = "",
) -> str:
    if 'target = "self-trunk"' not in extra:
        # Every call with a plain "trunk" goes through a configured trunk and
        # its limits; Client.originate uses this one (generous limits).
        extra += SELF_TRUNK
    return f"""
[engine]
instance = "test"
data_dir = "{data_dir}"
ivr_dir = "{ivr_dir}"
ivr_watch_interval_s = {ivr_watch_interval_s}
[api]
bind = "127.0.0.1:{api_port}"
tokens = ["{TOKEN}"]
[fastagi]
bind = "127.0.0.1:{agi_port if agi_bind_port is None else agi_bind_port}"
[storage]
postgres_dsn = "{pg_dsn}"
redis_url = "{redis_url}"
redis_prefix = "{prefix}"
{storage_extra}
[logging]
level = "warning"
[[switches]]
kind = "asterisk"
name = "asterisk-1"
host = "127.0.0.1"
port = {ami_port}
username = "engine"
secret = "enginesecret"
ping_interval_s = {ping_interval_s}
action_timeout_s = {action_timeout_s}
agi_port = {agi_port}
{extra}
"""


@dataclass
class Client:
    """An authenticated API client bound to a running engine."""

    http: aiohttp.ClientSession
    base: str
    events: list[dict[str, Any]] = field(default_factory=list)

    async def request(
        self, method: str, path: str, *, token: str | None = TOKEN, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as r:
            text = await r.text()
            body = json.loads(text) if r.content_type == "application/json" else text
            return r.status, body, r

    async def originate(self, to: str, **extra: Any) -> dict[str, Any]:
        body = {"to": to, "trunk": "self-trunk", "timeout_s": 6, **extra}
        body = {k: v for k, v in body.items() if v is not None}  # trunk=None: not a trunk call
        status, data, _ = await self.request("POST", "/calls", json=body)
        assert status == 201, data
        assert isinstance(data, dict)
        return data

    async def wait_state(
        self, call_id: str, state: str, timeout_s: float = 20.0, *, elsewhere: bool = False
    ) -> dict[str, Any]:
        """Poll until the call is in ``state``. ``elsewhere``: the call was placed through
        another engine, whose registry mirror writes it to Redis in its next round, so a 404
        means "not visible yet" until the deadline (cross-engine reads are eventually
        consistent, docs/architecture.md)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            status, data, _ = await self.request("GET", f"/calls/{call_id}")
            if elsewhere and status == 404 and loop.time() <= deadline:
                await asyncio.sleep(0.1)
                continue
            assert status == 200, data
            if data["state"] == state:
                assert isinstance(data, dict)
                return data
            if loop.time() > deadline:
                raise AssertionError(f"call {call_id} is {data['state']}, not {state}: {data}")
            await asyncio.sleep(0.1)


@asynccontextmanager
async def running_engine(config: EngineConfig) -> AsyncIterator[tuple[Engine, Client]]:
    async with Engine(config) as engine:
        await engine.wait_until_up(30)
        # The startup events (link syncing/up, resync) reach the stream through
        # the outbox's paced lane: let them land, so a test that reads the head
        # and then watches the stream is not overtaken by them.
        assert engine.event_lane is not None
        assert await engine.event_lane.wait_drained(30), "startup events never reached the stream"
        async with aiohttp.ClientSession() as http:
            yield engine, Client(http, f"http://127.0.0.1:{engine.api_port}/v1")


@asynccontextmanager
async def event_log(
    client: Client, since: int | None = None
) -> AsyncIterator[list[dict[str, Any]]]:
    """Collect WebSocket messages in the background while the block runs."""
    query = f"?since={since}" if since is not None else ""
    received: list[dict[str, Any]] = []
    ws = await client.http.ws_connect(
        client.base.replace("http", "ws") + "/events" + query,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )

    async def pump() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                received.append(json.loads(msg.data))

    task = asyncio.create_task(pump())
    try:
        yield received
    finally:
        await ws.close()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def wait_for(predicate: Any, timeout_s: float = 20.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def stored_cdrs(
    pool: Any, call_id: str, count: int = 1, timeout_s: float = 20.0
) -> list[CdrRow]:
    """The call's CDR rows in PostgreSQL (by attempt), once ``count`` are there.

    CDRs reach PostgreSQL through the outbox (engine/store/outbox), a moment
    after the call ends, so a test waits for them instead of reading once.
    """
    repo = CdrRepository(pool)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(rows := await repo.for_call(call_id)) < count:
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {count} CDR row(s) of call {call_id}")
        await asyncio.sleep(0.05)
    return sorted(rows, key=lambda r: r.attempt)


async def wait_trunk_usable(
    client: Client, name: str, timeout_s: float = 60.0, *, since: float | None = None
) -> None:
    """Wait until the trunk takes calls again (after a switch restart its
    reachability starts unknown/down until qualify has run).

    ``since`` (a ``time.time()`` taken before a switch restart): also wait for a
    reachability report made after it saying reachable (a probing trunk then takes its
    probe call). Without it a view read just after the reconnect can still show the
    state from before the restart, or a trunk probing on its cooldown timer whose probe
    call the restarted switch cannot place yet (qualify pending: OriginateResponse
    Failure, cause 38)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        status, view, _ = await client.request("GET", f"/trunks/{name}")
        assert status == 200, view
        reach = view["reachability"]
        if since is None and view["state"] != "down":
            return
        fresh = reach["status"] == "reachable" and float(reach["at"] or 0) >= (since or 0)
        if since is not None and fresh and view["state"] != "down":
            return
        assert loop.time() < deadline, f"trunk {name} still down: {view}"
        await asyncio.sleep(0.2)


async def cdr_rows_by_call(
    pool: Any, ids: list[str], timeout_s: float = 15.0
) -> tuple[dict[str, list[CdrRow]], int, int]:
    """Each call's CDR rows, how many calls have none (lost) and how many rows
    are extra (duplicates): the figures every fault drill reports."""
    rows: dict[str, list[CdrRow]] = {}
    lost = dup = 0
    for cid in ids:
        try:
            rows[cid] = await stored_cdrs(pool, cid, timeout_s=timeout_s)
        except AssertionError:
            lost += 1
            continue
        dup += len(rows[cid]) - 1
    return rows, lost, dup
