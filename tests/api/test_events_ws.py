"""``/v1/events``: gaps are announced whenever they happen, bad ``since`` is a
clear 400, shutdown closes sockets at once, and bursts of clients are served
by one Redis reader.

The first tests drive the per-client sender (``pump``) with a sink whose sends
the test can stall, against the real Redis: that is how a client falls
behind while connected, deterministically. The rest go through the real
aiohttp app of a running engine.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from engine.api.events_ws import EVENT_SOCKETS, pump, setup_events
from engine.api.keys import STREAM
from engine.app import Engine
from engine.store.redis.client import RedisStore
from engine.store.redis.stream import EventStream
from engine.store.redis.stream_fanout import StreamFanout, Subscription
from tests.api.conftest import Api
from tests.drill_report import report_drill
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import TOKEN, engine_config, wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class StallableSink:
    """Stands in for a WebSocket: records messages; while ``gate`` is clear,
    a send waits, as a send to a client that stopped reading does."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = False

    async def send(self, message: dict[str, Any]) -> None:
        if not self.gate.is_set():
            self.waiting = True
            await self.gate.wait()
            self.waiting = False
        self.messages.append(message)

    def last_seq(self) -> int:
        seqs = [m["seq"] for m in self.messages if "seq" in m]
        return seqs[-1] if seqs else 0

    def gaps(self) -> list[dict[str, Any]]:
        return [m["gap"] for m in self.messages if "gap" in m]


@pytest.fixture
def r(redis_store: RedisStore) -> aioredis.Redis:
    return redis_store.client


async def _run_pump(
    stream: EventStream, buffer: int, body: Callable[[StreamFanout, StallableSink], Any]
) -> StallableSink:
    fanout = StreamFanout(stream, buffer=buffer, block_ms=50)
    await fanout.start()
    sub: Subscription = fanout.subscribe()
    sink = StallableSink()
    head = await stream.last_seq()
    task = asyncio.create_task(pump(sink.send, stream, sub, head, head, lambda: False))
    try:
        await body(fanout, sink)
    finally:
        sub.close()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await fanout.stop()
    return sink


async def _stall_round(
    stream: EventStream, fanout: StreamFanout, sink: StallableSink, extra: int
) -> list[int]:
    """Deliver a few events, stall the client, publish ``extra`` more, release it."""
    seqs = [await stream.publish({"n": i}) for i in range(3)]
    await wait_for(lambda: sink.last_seq() == seqs[-1], what="events before the stall")
    sink.gate.clear()
    seqs.append(await stream.publish({"n": "stalls"}))
    await wait_for(lambda: sink.waiting, what="the client to stall")
    seqs += [await stream.publish({"n": i}) for i in range(extra)]
    await wait_for(lambda: fanout.cursor == seqs[-1], what="the reader to fan out")
    sink.gate.set()
    await wait_for(lambda: sink.last_seq() == seqs[-1], what="the client to catch up")
    return seqs


def _check_gaps_name_the_next_event(sink: StallableSink) -> None:
    for i, message in enumerate(sink.messages):
        if "gap" in message:
            gap = message["gap"]
            assert sink.messages[i - 1]["seq"] == gap["since"], sink.messages[i - 1 : i + 2]
            assert sink.messages[i + 1]["seq"] == gap["oldest"], sink.messages[i - 1 : i + 2]
            assert gap["oldest"] > gap["since"] + 1
    seqs = [m["seq"] for m in sink.messages if "seq" in m]
    assert seqs == sorted(set(seqs)), "no event twice, none out of order"
    holes = sum(g["oldest"] - g["since"] - 1 for g in sink.gaps())
    assert seqs[-1] - seqs[0] + 1 == len(seqs) + holes, "every hole was announced"


async def test_client_falling_behind_while_connected_gets_a_gap_every_time(
    r: aioredis.Redis, redis_prefix: str
) -> None:
    # Exact trim at 10: 30 events while the client is stalled push the
    # stream past what it has read. Its buffer (4) overflowed long before.
    stream = EventStream(r, redis_prefix, maxlen=10, approximate_trim=False)

    async def body(fanout: StreamFanout, sink: StallableSink) -> None:
        for _ in range(2):
            await _stall_round(stream, fanout, sink, extra=30)
            retained = await stream.oldest_seq()
            assert sink.gaps() and sink.gaps()[-1]["oldest"] == retained

    sink = await _run_pump(stream, 4, body)
    gaps = sink.gaps()
    assert len(gaps) == 2, gaps
    assert all(g["reason"] == "not-retained" for g in gaps)
    _check_gaps_name_the_next_event(sink)


async def test_overflowed_buffer_is_refilled_from_history_without_a_gap(
    r: aioredis.Redis, redis_prefix: str
) -> None:
    """Dropping from a slow client's buffer is not a gap while the stream still has the events."""
    stream = EventStream(r, redis_prefix, maxlen=1000, approximate_trim=False)
    published: list[int] = []

    async def body(fanout: StreamFanout, sink: StallableSink) -> None:
        published.extend(await _stall_round(stream, fanout, sink, extra=30))

    sink = await _run_pump(stream, 4, body)
    assert sink.gaps() == []
    assert [m["seq"] for m in sink.messages] == published


async def test_stream_that_restarts_below_the_client_is_announced(
    r: aioredis.Redis, redis_prefix: str
) -> None:
    """Without a floor (tools, or another engine re-created the keys) the head can
    go back; the connected client is told instead of silently skipping events."""
    stream = EventStream(r, redis_prefix)

    async def body(fanout: StreamFanout, sink: StallableSink) -> None:
        for i in range(5):
            await stream.publish({"n": i})
        await wait_for(lambda: sink.last_seq() == 5, what="first events")
        await r.delete(stream.key, stream.seq_key)  # Redis lost the data
        await wait_for(lambda: bool(sink.gaps()), what="the reset notice")
        assert await stream.publish({"n": "new"}) == 1
        await wait_for(lambda: sink.messages[-1].get("seq") == 1, what="the new event")

    sink = await _run_pump(stream, 100, body)
    assert sink.gaps() == [{"since": 5, "oldest": 1, "head": 0, "reason": "ahead-of-stream"}]
    assert sink.messages[-1] == {"seq": 1, "event": {"n": "new"}}


# -- through the real app ------------------------------------------------------


def _ws_url(api: Api, query: str = "") -> str:
    return api.client.base.replace("http", "ws", 1) + "/events" + query


@pytest.mark.parametrize(
    "since",
    ["abc", "-1", "1.5", "1e3", "²", "١٢", " 1", str(2**63), str(2**64), str(2**64 + 5), "9" * 40],
)
async def test_bad_since_is_a_clear_400(api: Api, since: str) -> None:
    status, body, _ = await api.client.request("GET", "/events", params={"since": since})
    assert (status, body["error_id"]) == (400, "invalid-since"), body
    assert "since" in body["message"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.client.http.ws_connect(_ws_url(api), params={"since": since}, headers=AUTH)
    assert refused.value.status == 400


async def test_largest_since_is_accepted_and_answered_as_ahead(api: Api) -> None:
    async with api.client.http.ws_connect(_ws_url(api, f"?since={2**63 - 1}"), headers=AUTH) as ws:
        first = json.loads((await ws.receive(timeout=10)).data)
    assert first["gap"]["reason"] == "ahead-of-stream"


async def test_since_ahead_of_the_stream_is_answered_then_continues_from_the_head(
    api: Api,
) -> None:
    assert api.engine.app is not None
    stream = api.engine.app[STREAM]
    head = await stream.last_seq()
    async with api.client.http.ws_connect(
        _ws_url(api, f"?since={head + 1000}"), headers=AUTH
    ) as ws:
        first = json.loads((await ws.receive(timeout=10)).data)
        assert first == {
            "gap": {
                "since": head + 1000,
                "oldest": head + 1,
                "head": head,
                "reason": "ahead-of-stream",
            }
        }
        seq = await stream.publish({"type": "Probe", "n": 1})
        nxt = json.loads((await ws.receive(timeout=10)).data)
    assert nxt == {"seq": seq, "event": {"type": "Probe", "n": 1}}


async def test_thousand_concurrent_connects_all_upgrade_and_all_get_events(api: Api) -> None:
    """Drill 7, WebSocket half: no 500, the daemon stays up and keeps publishing."""
    assert api.engine.app is not None
    stream = api.engine.app[STREAM]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        results = await asyncio.gather(
            *(http.ws_connect(_ws_url(api), headers=AUTH) for _ in range(1000)),
            return_exceptions=True,
        )
        sockets = [s for s in results if isinstance(s, aiohttp.ClientWebSocketResponse)]
        failures = [repr(s) for s in results if not isinstance(s, aiohttp.ClientWebSocketResponse)]
        try:
            assert failures == [] and len(sockets) == 1000, failures[:5]
            status, health, _ = await api.client.request("GET", "/health", token=None)
            assert status == 200, health
            nonce = uuid.uuid4().hex
            seq = await stream.publish({"type": "Probe", "burst": nonce})
            got = await asyncio.gather(*(_probe_seq(ws, nonce) for ws in sockets))
            report_drill(
                "7-ws-burst",
                "7: 1,000 concurrent WebSocket connects to /v1/events",
                {
                    "connects": 1000,
                    "upgraded": len(sockets),
                    "failed": len(failures),
                    "got_the_next_event": sum(1 for g in got if g == seq),
                    "health_status": status,
                },
            )
            assert got == [seq] * 1000
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    sockets_state = api.engine.app[EVENT_SOCKETS]
    await wait_for(lambda: not sockets_state.sockets, what="server side sockets released")
    assert sockets_state.fanout.subscribers == 0


async def _probe_seq(ws: aiohttp.ClientWebSocketResponse, nonce: str) -> int:
    """The seq our Probe came with. The engine's own startup events (link up,
    resync) may reach the stream after an early client connected, through the
    outbox's paced delivery: those come first and are real events, in order."""
    last = 0
    while True:
        message = json.loads((await ws.receive(timeout=30)).data)
        seq = int(message["seq"])
        assert seq > last, message  # in order, never twice
        if message["event"].get("burst") == nonce:
            return seq
        last = seq


async def test_clients_over_the_limit_get_503_never_500(api: Api) -> None:
    assert api.engine.app is not None
    sockets_state = api.engine.app[EVENT_SOCKETS]
    sockets_state.max_clients = 20
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            results = await asyncio.gather(
                *(http.ws_connect(_ws_url(api), headers=AUTH) for _ in range(50)),
                return_exceptions=True,
            )
            opened = [s for s in results if isinstance(s, aiohttp.ClientWebSocketResponse)]
            refused = [s for s in results if isinstance(s, aiohttp.WSServerHandshakeError)]
            try:
                assert (len(opened), len(refused)) == (20, 30), results
                assert {e.status for e in refused} == {503}
                status, body, _ = await api.client.request("GET", "/events")
                assert (status, body["error_id"]) == (503, "too-many-event-clients")
            finally:
                await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
        await wait_for(lambda: not sockets_state.sockets, what="sockets released")
        async with api.client.http.ws_connect(_ws_url(api), headers=AUTH) as ws:
            assert not ws.closed, "a place is free again"
    finally:
        sockets_state.max_clients = 10_000


# -- shutdown ------------------------------------------------------------------


@pytest.fixture
async def own_engine(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Engine]:
    """An engine this test may stop."""
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"ws:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / f"engine-ws-{uuid.uuid4().hex[:8]}",
            ami_port=ami.port,
            agi_bind_port=0,
        )
        engine = Engine(cfg)
        await engine.start()
        try:
            await engine.wait_until_up(30)
            yield engine
        finally:
            await asyncio.wait_for(engine.stop(), 60)


async def test_stop_closes_idle_websocket_at_once_with_a_reason(own_engine: Engine) -> None:
    url = f"ws://127.0.0.1:{own_engine.api_port}/v1/events"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, headers=AUTH)
        stopping = asyncio.create_task(own_engine.stop())
        # Generous deadlines detect a hang (it took 31 s before), nothing more.
        # The engine's own start-up events (LinkChanged syncing/up) may still be on
        # their way to this client when the stop begins (seen on a loaded machine);
        # they are allowed before the close, anything else is not.
        closed = await ws.receive(timeout=10)
        while closed.type is aiohttp.WSMsgType.TEXT:
            assert json.loads(closed.data)["event"]["type"] == "LinkChanged", closed
            closed = await ws.receive(timeout=10)
        assert closed.type is aiohttp.WSMsgType.CLOSE, closed
        assert (closed.data, closed.extra) == (1001, "engine shutting down")
        done, _ = await asyncio.wait({stopping}, timeout=10)
        assert stopping in done, "engine.stop() did not return within 10 s"
        stopping.result()
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.ws_connect(url, headers=AUTH)


async def test_slow_client_on_a_real_socket_gets_a_gap_every_time(
    r: aioredis.Redis, redis_prefix: str
) -> None:
    """End to end: a client that stops reading stalls its socket (TCP back-pressure),
    its buffer overflows and the stream is trimmed past it, twice."""
    stream = EventStream(r, redis_prefix, maxlen=50, approximate_trim=False)
    app = web.Application()
    sockets = setup_events(app, stream, buffer=16)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    received: list[dict[str, Any]] = []
    pad = "x" * 8192
    try:
        async with aiohttp.ClientSession() as http:
            # compress=0: a compressed padding would not fill the socket.
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/v1/events", compress=0)

            async def read_through(seq: int) -> None:
                while not received or received[-1].get("seq") != seq:
                    received.append(json.loads((await ws.receive(timeout=20)).data))

            for _ in range(2):
                await read_through(await stream.publish({"n": "read"}))
                # Stop reading; publish until the server had to drop events for us.
                dropped = sockets.fanout.dropped
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                while sockets.fanout.dropped == dropped:
                    assert loop.time() < deadline, "the client never stalled"
                    for _ in range(50):
                        await stream.publish({"pad": pad})
                    await asyncio.sleep(0.01)  # let the reader fan out
                # Push the stream past everything the client could still get.
                for i in range(60):
                    head = await stream.publish({"n": i})
                await read_through(head)
            await ws.close()
    finally:
        await runner.cleanup()
    gaps = [m["gap"] for m in received if "gap" in m]
    assert len(gaps) == 2, gaps
    for i, message in enumerate(received):
        if "gap" in message:
            assert received[i - 1]["seq"] == message["gap"]["since"]
            assert received[i + 1]["seq"] == message["gap"]["oldest"]
            assert message["gap"]["reason"] == "not-retained"
    seqs = [m["seq"] for m in received if "seq" in m]
    assert seqs == sorted(set(seqs))
