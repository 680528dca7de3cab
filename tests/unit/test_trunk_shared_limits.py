"""Trunk channel and CPS limits shared through Redis (real Redis): two
TrunkServices stand for two engines on one carrier."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog

from engine.store.errors import StoreUnavailable
from engine.store.redis.client import RedisStore
from engine.store.redis.trunk_counters import TrunkCounters
from engine.telemetry.metrics import Metrics
from engine.trunks.model import TrunkSpec, single_group_name
from engine.trunks.planner import Dial, Wait
from engine.trunks.service import TrunkService
from tests.harness import wait_for


@pytest.fixture(autouse=True)
def default_logging() -> None:
    structlog.reset_defaults()


G = single_group_name("carrier")


def engine(counters: Any, *, max_channels: int = 3, max_cps: float = 1000.0) -> TrunkService:
    spec = TrunkSpec(
        "carrier",
        "asterisk-1",
        "carrier",
        max_channels,
        max_cps,
        cps_burst=1000 if max_cps > 100 else 1,
    )
    return TrunkService([spec], [], metrics=Metrics(), rng=random.Random(1), shared=counters)


def trunk_of(step: Any) -> str | None:
    return step.decision.trunk if isinstance(step.decision, Dial) else None


async def test_two_engines_share_one_channel_limit(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    # Issue 8 defect 5: trunk state and limits lived in one process only.
    counters = TrunkCounters(redis_store.client, redis_prefix)
    a, b = engine(counters), engine(counters)
    got = [await a.begin("a1", G), await a.begin("a2", G), await b.begin("b1", G)]
    assert [trunk_of(s) for s in got] == ["carrier"] * 3
    # Engine b's own view said 1 of 3 in use; the shared count says full.
    refused = await b.begin("b2", G)
    assert isinstance(refused.decision, Wait), refused.decision
    assert b.view("carrier")["channels"]["in_use"] == 3
    assert b.view("carrier")["counters"]["attempts"] == 1  # the refused one was taken back
    # A hangup on engine a frees a channel engine b can use.
    a.release("carrier", "a1")
    await wait_for(lambda: a.view("carrier")["channels"]["in_use"] == 2, what="release")
    retried = await b.retry(refused.plan)
    assert trunk_of(retried) == "carrier"


async def test_two_engines_share_one_cps_bucket(redis_store: RedisStore, redis_prefix: str) -> None:
    counters = TrunkCounters(redis_store.client, redis_prefix)
    a, b = (
        engine(counters, max_channels=10, max_cps=0.5),
        engine(counters, max_channels=10, max_cps=0.5),
    )
    assert trunk_of(await a.begin("a1", G)) == "carrier"
    second = await b.begin("b1", G)
    assert isinstance(second.decision, Wait)  # the next start is ~2 s away, for both
    # b's own bucket was untouched; the shared one puts the next start ~2 s out.
    assert b.view("carrier")["cps"]["next_start_in_s"] > 1.0


async def test_in_use_is_rebuilt_after_a_restart_and_dead_holds_expire(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    counters = TrunkCounters(redis_store.client, redis_prefix, hold_ttl_s=1.0)
    before = engine(counters)
    await before.begin("c1", G)
    await before.begin("c2", G)
    # "Restart": a fresh service reads the shared holds.
    after = engine(counters)
    assert after.view("carrier")["channels"]["in_use"] == 0
    await after.refresh_shared()
    assert after.view("carrier")["channels"]["in_use"] == 2
    # Nobody refreshes the first engine's holds (it crashed): they expire.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while after.view("carrier")["channels"]["in_use"] != 0:
        assert loop.time() < deadline, "the crashed engine's holds never expired"
        await asyncio.sleep(0.1)
        await after.refresh_shared()


async def test_live_calls_keep_their_holds(redis_store: RedisStore, redis_prefix: str) -> None:
    counters = TrunkCounters(redis_store.client, redis_prefix, hold_ttl_s=0.5)
    svc = engine(counters, max_channels=1)
    assert trunk_of(await svc.begin("c1", G)) == "carrier"
    for _ in range(4):  # well past the TTL, refreshed like the run loop does
        await asyncio.sleep(0.2)
        await svc.refresh_shared()
    other = engine(counters, max_channels=1)
    assert isinstance((await other.begin("x", G)).decision, Wait)


async def test_redis_down_falls_back_to_local_limits() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    counters = TrunkCounters(dead, "down:", timeout_s=1.0)
    with pytest.raises(StoreUnavailable):
        await counters.refresh("carrier")
    svc = engine(counters, max_channels=2)
    steps = [await svc.begin(f"c{i}", G) for i in range(3)]
    assert [trunk_of(s) for s in steps[:2]] == ["carrier", "carrier"]
    assert isinstance(steps[2].decision, Wait)  # the local limit still holds
    await dead.aclose()


async def test_an_adopted_call_keeps_its_hold_until_it_ends(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    counters = TrunkCounters(redis_store.client, redis_prefix, hold_ttl_s=0.5)
    crashed = engine(counters, max_channels=1)
    assert trunk_of(await crashed.begin("c1", G)) == "carrier"
    restarted = engine(counters, max_channels=1)
    restarted.adopt("carrier", "c1")  # the call registry said c1 is still up
    for _ in range(4):  # past the TTL: only the restarted engine refreshes it
        await asyncio.sleep(0.2)
        await restarted.refresh_shared()
    assert restarted.view("carrier")["channels"]["in_use"] == 1
    assert isinstance((await restarted.begin("c2", G)).decision, Wait)
    restarted.release_adopted("carrier", "c1")
    await wait_for(
        lambda: restarted.view("carrier")["channels"]["in_use"] == 0, what="adopted hold released"
    )


async def test_counters_script_semantics(redis_store: RedisStore, redis_prefix: str) -> None:
    counters = TrunkCounters(redis_store.client, redis_prefix)
    got = await counters.acquire("t", "c1", max_channels=2, rate=1000.0, burst=1000)
    again = await counters.acquire("t", "c1", max_channels=2, rate=1000.0, burst=1000)
    assert (got.taken, got.in_use) == (True, 1)
    assert (again.taken, again.in_use) == (True, 1)  # the same holder twice: one hold
    assert got.tat_in_s is not None and 0 < got.tat_in_s <= 0.002
    assert (await counters.release("t", "c1")).in_use == 0
    assert (await counters.release("t", "c1")).in_use == 0  # idempotent
    # Redis loses its data: the owner's next refresh puts its holds back.
    await counters.acquire("t", "c2", max_channels=2, rate=1000.0, burst=1000)
    await redis_store.client.delete(*counters.keys("t"))
    assert (await counters.refresh("t")).in_use == 0
    assert (await counters.refresh("t", ["c2"])).in_use == 1
