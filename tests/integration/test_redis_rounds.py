"""RedisRounds (engine/store/redis/rounds.py) against a real Redis: writers
share one pipeline per round, each gets its own replies, and the event
stream, registry and trunk counters behave the same through it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from engine.store.errors import StoreUnavailable
from engine.store.redis.client import RedisStore
from engine.store.redis.registry import CallRegistry
from engine.store.redis.rounds import RedisRounds, run_script
from engine.store.redis.stream import EventStream
from engine.store.redis.trunk_counters import TrunkCounters


@pytest.fixture
def r(redis_store: RedisStore) -> aioredis.Redis:
    return redis_store.client


async def test_writers_close_together_share_one_round(r: aioredis.Redis, redis_prefix: str) -> None:
    rounds = RedisRounds(r, interval_s=0.2)
    # The first command goes out at once (no round in the last interval)...
    assert await rounds.execute([("SET", f"{redis_prefix}a", "1")]) == ["OK"]
    assert rounds.rounds == 1
    # ... the next ones, within the interval, wait for one shared round.
    got = await asyncio.gather(
        rounds.execute([("INCR", f"{redis_prefix}a")]),
        rounds.execute([("GET", f"{redis_prefix}a"), ("SET", f"{redis_prefix}b", "x")]),
        rounds.execute([("HSET", f"{redis_prefix}a", "f", "v")]),  # wrong type
    )
    assert rounds.rounds == 2
    assert got[0] == [2]
    assert got[1] == ["2", "OK"]
    # One writer's error reply is its own, not the others' failure.
    assert isinstance(got[2][0], redis.exceptions.ResponseError)


async def test_urgent_goes_at_once_and_carries_the_queued(
    r: aioredis.Redis, redis_prefix: str
) -> None:
    rounds = RedisRounds(r, interval_s=30.0)
    await rounds.execute([("SET", f"{redis_prefix}u", "0")])
    waiting = asyncio.ensure_future(rounds.execute([("INCR", f"{redis_prefix}u")]))
    await asyncio.sleep(0)  # queued, held for the (long) interval
    assert not waiting.done()
    # The urgent writer goes first in the round; the queued one rides along.
    assert await rounds.execute([("INCR", f"{redis_prefix}u")], urgent=True) == [1]
    assert await asyncio.wait_for(waiting, 2.0) == [2]
    assert rounds.rounds == 2


async def test_a_cancelled_writer_is_left_out(r: aioredis.Redis, redis_prefix: str) -> None:
    rounds = RedisRounds(r, interval_s=30.0)
    await rounds.execute([("SET", f"{redis_prefix}c", "0")])
    dropped = asyncio.ensure_future(rounds.execute([("INCR", f"{redis_prefix}c")]))
    await asyncio.sleep(0)
    dropped.cancel()
    assert await rounds.execute([("GET", f"{redis_prefix}c")], urgent=True) == ["0"]


async def test_a_script_redis_does_not_know_is_loaded_and_run(r: aioredis.Redis) -> None:
    # A script text never sent before (no SCRIPT FLUSH: the Redis is shared):
    # the first EVALSHA answers NOSCRIPT, as after a Redis restart.
    rounds = RedisRounds(r, interval_s=0.0)
    for urgent in (False, True):
        script = r.register_script(f"-- {uuid.uuid4().hex}\nreturn {{1, ARGV[1]}}")
        assert await r.script_exists(script.sha) == [False]
        assert await run_script(rounds, script, [], ["x"], urgent=urgent) == [1, "x"]
        assert await r.script_exists(script.sha) == [True]


async def test_a_failed_round_fails_each_writer_as_unavailable() -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    rounds = RedisRounds(dead, interval_s=0.0, timeout_s=2.0)
    try:
        results = await asyncio.gather(
            rounds.execute([("GET", "k")]),
            rounds.execute([("GET", "k")], urgent=True),
            return_exceptions=True,
        )
    finally:
        await dead.aclose()
    assert all(isinstance(e, StoreUnavailable) for e in results), results


async def test_stream_registry_and_counters_through_rounds(
    r: aioredis.Redis, redis_prefix: str
) -> None:
    rounds = RedisRounds(r, interval_s=0.05)
    stream = EventStream(r, redis_prefix, rounds=rounds)
    registry = CallRegistry(r, redis_prefix, rounds=rounds)
    counters = TrunkCounters(r, redis_prefix, rounds=rounds)
    seqs, _, taken = await asyncio.gather(
        stream.publish_many([{"type": "A"}, {"type": "B"}]),
        registry.apply(
            {"c1": {"json": "{}", "state": "ringing"}, "c2": {"json": "{}", "state": "up"}},
            ttl_s=60,
        ),
        counters.acquire("t1", "c1", max_channels=1, rate=10.0, burst=1),
    )
    assert [e["type"] for _, e in await stream.read_after(seqs[0] - 1)] == ["A", "B"]
    assert await registry.ids() == ["c1", "c2"]
    assert 0 < await r.ttl(f"{redis_prefix}call:c1") <= 60
    assert taken.taken and taken.in_use == 1
    refused = await counters.acquire("t1", "c2", max_channels=1, rate=10.0, burst=1)
    assert not refused.taken
    # An ended call: its copy is written before its live entry is removed.
    await registry.apply({}, ["c1"], extra=[(f"{redis_prefix}ended:c1", "{}", 60)])
    assert await registry.ids() == ["c2"]
    assert await r.get(f"{redis_prefix}ended:c1") == "{}"
    released = await counters.release("t1", "c1")
    assert released.in_use == 0
