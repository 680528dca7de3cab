"""Drill: a Redis master failover under Sentinel, mid-traffic (issue 15, item 4).

Three redis-server (a master, two replicas) and three sentinels, all real processes on
loopback ports (tests/sentinel_group.py); the engine's Redis is given as
``[storage] redis_sentinels``. The fake carrier AMI answers calls and holds them 1 s, so
calls are up across the failover. A WebSocket client follows the stream the whole time
and resumes with ``since`` whenever the engine closes it (1013 while the history is
unreachable). Mid-traffic the master is SIGKILLed; the sentinels promote a replica.

Checked:
- the engine keeps serving: every ``POST /v1/calls`` is answered 201, every call ends and
  has exactly one CDR in PostgreSQL;
- no event lost: every event the engine's event lane accepted after the client connected
  reaches the client (live or by resume), and none twice;
- the sequence is monotonic for the client: each message's seq is above the one before,
  and any hole is announced by a ``gap`` naming the first seq it can have.

Figures (``-s``): the time from the kill to the first event written on the new master,
events accepted, lost and duplicated, calls and CDRs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.store.errors import StoreError
from engine.store.pg.pool import PgStore
from engine.store.redis.client import RedisStore
from engine.store.redis.rounds import RedisRounds
from engine.store.redis.sentinel import SentinelSettings
from engine.store.redis.stream import EventStream
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import TOKEN, Client, cdr_rows_by_call, engine_config, running_engine, wait_for
from tests.sentinel_group import MASTER, SentinelGroup

CALLS_BEFORE = 6
CALLS_AFTER = 6
WORKERS = 3


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    directory = Path(tempfile.mkdtemp(prefix="sentinel-drill-"))
    g = SentinelGroup(directory)
    try:
        g.start()
        yield g
    finally:
        g.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _canon(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"))


class ResumingClient:
    """A WebSocket client of /v1/events that reconnects with ``since`` = the last seq it got."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.messages: list[dict[str, Any]] = []
        self.last: int | None = None
        self.reconnects = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def __aenter__(self) -> ResumingClient:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        base = self.client.base.replace("http", "ws") + "/events"
        while not self._stop.is_set():
            query = "" if self.last is None else f"?since={self.last}"
            try:
                async with self.client.http.ws_connect(
                    base + query, headers={"Authorization": f"Bearer {TOKEN}"}
                ) as ws:
                    self.connected.set()
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            continue
                        data = json.loads(msg.data)
                        self.messages.append(data)
                        if "seq" in data:
                            self.last = data["seq"]
            except aiohttp.ClientError:
                pass  # 503 while the history is unreachable: try again
            if not self._stop.is_set():
                self.reconnects += 1
                await asyncio.sleep(0.2)

    def events(self) -> list[tuple[int, dict[str, Any]]]:
        return [(m["seq"], m["event"]) for m in self.messages if "seq" in m]


async def _call(client: Client, number: str) -> str:
    call = await client.originate(number, timeout_s=10)
    await client.wait_state(call["call_id"], "ended", timeout_s=60)
    return str(call["call_id"])


async def test_redis_master_killed_mid_traffic_loses_no_event(
    group: SentinelGroup, pg_dsn: str, pg_store: PgStore, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    sentinels = ", ".join(f'"{a}"' for a in group.sentinel_addresses)
    async with CarrierFakeAmi(hold_s=1.0) as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url="",
            prefix=f"failover:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path / "engine",
            ami_port=ami.port,
            agi_bind_port=0,
            storage_extra=(
                f'redis_sentinels = [{sentinels}]\nredis_sentinel_master = "{MASTER}"\n'
            ),
            extra="[calls]\nstorage_timeout_s = 1\n",
        )
        async with running_engine(cfg) as (engine, client), ResumingClient(client) as ws:
            lane = engine.event_lane
            assert lane is not None and engine.redis is not None
            prefix = engine.redis.prefix
            accepted: list[str] = []
            lane.tap(lambda payload: accepted.append(_canon(payload)))

            ids: list[str] = []
            counter = iter(range(10_000))

            async def worker(count: int) -> None:
                for _ in range(count):
                    ids.append(await _call(client, f"1{next(counter):03d}"))

            before = [asyncio.create_task(worker(CALLS_BEFORE // WORKERS)) for _ in range(WORKERS)]
            await wait_for(lambda: len(ids) >= 2, what="traffic to flow")
            old = group.master()
            assert old is not None
            with old.client() as c:
                head_before = int(c.get(f"{prefix}{{events}}:seq") or 0)
            old.kill()
            killed_at = loop.time()
            # Calls are placed during the failover too.
            after = [asyncio.create_task(worker(CALLS_AFTER // WORKERS)) for _ in range(WORKERS)]

            # The first event written on the new master.
            async def new_master_written() -> float:
                while True:
                    new = group.master()
                    if new is not None and new is not old:
                        with contextlib.suppress(Exception), new.client() as c:
                            top = c.xrevrange(f"{prefix}{{events}}", count=1)
                            if top and int(top[0][0].split("-")[0]) > head_before:
                                return loop.time() - killed_at
                    await asyncio.sleep(0.05)

            switch_s = await asyncio.wait_for(new_master_written(), 30)
            await asyncio.wait_for(asyncio.gather(*before, *after), 120)
            assert await lane.wait_drained(30), "events left in the outbox"
            total = CALLS_BEFORE + CALLS_AFTER
            assert len(ids) == total

            # Every event accepted after the tap reaches the client, once.
            def delivered() -> Counter[str]:
                return Counter(_canon(e) for _, e in ws.events())

            def missing() -> int:
                return sum((Counter(accepted) - delivered()).values())

            await wait_for(lambda: missing() == 0, timeout_s=30, what="every event on the socket")
            duplicated = sum((delivered() - Counter(accepted)).values())
            # Before the tap: startup events; events after the tap are all accepted ones.
            seqs = [s for s, _ in ws.events()]
            assert seqs == sorted(set(seqs)), "the client got a seq that did not go up"
            # A hole in the numbering is announced right before it, naming its first seq.
            previous: int | None = None
            for i, m in enumerate(ws.messages):
                if "seq" not in m:
                    continue
                if previous is not None and m["seq"] != previous + 1:
                    notice = ws.messages[i - 1].get("gap")
                    assert notice is not None, f"a hole before seq {m['seq']} with no gap notice"
                    assert (notice["since"], notice["oldest"]) == (previous, m["seq"]), notice
                previous = m["seq"]

            # What the new master's history holds: events the old master had not yet
            # replicated when it died are gone from it (asynchronous replication).
            new = group.master()
            assert new is not None and new is not old
            with new.client() as c:
                history = Counter(
                    _canon(json.loads(fields["data"]))
                    for _, fields in c.xrange(f"{prefix}{{events}}")
                )
            not_in_history = sum((Counter(accepted) - history).values())

            rows, lost_cdrs, dup_cdrs = await cdr_rows_by_call(pg_store.pool, ids)
            print(
                f"\nredis failover drill: calls={total} cdrs={len(rows)} lost_cdrs={lost_cdrs} "
                f"dup_cdrs={dup_cdrs} events_accepted={len(accepted)} events_lost=0 "
                f"events_duplicated={duplicated} not_in_new_master_history={not_in_history} "
                f"kill_to_new_master_write_s={switch_s:.2f} "
                f"ws_reconnects={ws.reconnects} gaps={sum('gap' in m for m in ws.messages)} "
                f"seq_before={head_before} seq_after={seqs[-1]}"
            )
            assert (lost_cdrs, dup_cdrs) == (0, 0)
            extra = delivered() - Counter(accepted)
            # Each publish waited for a replica (WAIT), and Sentinel promotes the most
            # up-to-date one: the new master's history has every event.
            assert not_in_history == 0
            assert duplicated == 0, (
                ws.reconnects,
                [m for m in ws.messages if "gap" in m],
                [s for s, e in ws.events() if _canon(e) in extra][:50],
                seqs[:5],
                len(seqs),
            )


async def test_a_demoted_master_answers_readonly_and_the_store_follows_the_new_one(
    group: SentinelGroup, tmp_path: Path
) -> None:
    """SENTINEL FAILOVER: the old master lives on as a replica, so pooled connections to
    it stay open and its first write answers READONLY. redis-py's sentinel connection turns
    that into a connection error (and drops the connection); the round retries on a new
    connection, which asks the sentinels and reaches the new master."""
    settings = SentinelSettings([("127.0.0.1", n.port) for n in group.watchers], MASTER, db=0)
    async with RedisStore(None, tmp_path, sentinel=settings, socket_timeout_s=2) as store:
        rounds = RedisRounds(store.client, interval_s=0, timeout_s=2)
        stream = EventStream(store.client, "ro:", rounds=rounds, wait_replicas=1)
        assert await stream.publish_many([{"n": 1}]) == [1]
        old = group.master()
        assert old is not None
        with group.watchers[0].client() as c:
            c.sentinel_failover(MASTER)
        await wait_for(lambda: group.master() not in (None, old), timeout_s=20, what="a new master")
        # The sentinels demote the old master themselves some 8 s later (their
        # reconfiguration period); do what they will do, now. The pooled connection still
        # points at it.
        new = group.master()
        assert new is not None
        with old.client() as c:
            c.replicaof("127.0.0.1", new.port)
            assert c.info("replication")["role"] == "slave"
        seqs: list[int] = []
        while not seqs:
            try:
                seqs = await stream.publish_many([{"n": 2}])
            except StoreError:
                await asyncio.sleep(0.1)  # WAIT short while the replicas reconfigure
        assert seqs == [2], "the sequence went on from the old master's"
        with old.client() as c:
            # The demoted master did refuse the write: the path above was taken.
            assert c.info("errorstats").get("errorstat_READONLY", {}).get("count", 0) >= 1
        with new.client() as c:
            assert [e[0] for e in c.xrange("ro:{events}")] == ["1-0", "2-0"]
