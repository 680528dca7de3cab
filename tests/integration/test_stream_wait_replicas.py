"""Event publishes that wait for a replica (``WAIT``, used under Sentinel).

Against a Redis with no replica, every ``WAIT`` falls short: the publish fails and the
outbox lane would retry it. The retry must not put the batch on the stream twice (it is
there, only unconfirmed), and must publish it again if the stream lost it (a failover to a
replica that never got it). Both with the rounds pipeline (the engine's path) and without.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from engine.store.errors import StoreUnavailable
from engine.store.redis.client import RedisStore
from engine.store.redis.rounds import RedisRounds
from engine.store.redis.stream import EventStream


@pytest.fixture(params=["rounds", "direct"])
async def stream(
    request: pytest.FixtureRequest, redis_store: RedisStore, redis_prefix: str
) -> AsyncIterator[EventStream]:
    client: aioredis.Redis = redis_store.client
    rounds = RedisRounds(client, interval_s=0) if request.param == "rounds" else None
    yield EventStream(client, redis_prefix, rounds=rounds, wait_replicas=1, wait_timeout_ms=20)


def _batch(*names: str) -> list[str]:
    return [json.dumps({"type": n}) for n in names]


async def _on_stream(stream: EventStream) -> list[str]:
    return [json.dumps(e) for _, e in await stream.read_after(0, count=1000)]


async def test_an_unconfirmed_batch_is_not_published_twice(stream: EventStream) -> None:
    batch = _batch("a", "b")
    with pytest.raises(StoreUnavailable, match="replica"):
        await stream.publish_encoded(batch)
    with pytest.raises(StoreUnavailable, match="replica"):
        await stream.publish_encoded(batch)  # the lane's retry: checked, not re-sent
    assert await _on_stream(stream) == batch
    # Later records joined the retried batch: only they are new on the stream.
    with pytest.raises(StoreUnavailable):
        await stream.publish_encoded([*batch, *_batch("c")])
    assert await _on_stream(stream) == _batch("a", "b", "c")
    # And again, once more records joined: still each once (the retry after a partly
    # re-published batch checks all of it, not only its last part).
    with pytest.raises(StoreUnavailable):
        await stream.publish_encoded(_batch("a", "b", "c", "d"))
    assert await _on_stream(stream) == _batch("a", "b", "c", "d")


async def test_a_batch_the_stream_lost_is_published_again(stream: EventStream) -> None:
    batch = _batch("a", "b")
    with pytest.raises(StoreUnavailable):
        await stream.publish_encoded(batch)
    # As a new master that never had the batch: the second event is gone.
    await stream._r.xdel(stream.key, "2-0")
    with pytest.raises(StoreUnavailable):
        await stream.publish_encoded(batch)
    events = await stream.read_after(0, count=10)
    assert [json.dumps(e) for _, e in events] == batch  # "b" again, after "a"
    assert events[0][0] == 1 and events[1][0] > 2  # "b" took a new seq


async def test_validation() -> None:
    with pytest.raises(ValueError, match="wait_replicas"):
        EventStream(aioredis.Redis(), "p:", wait_replicas=-1)
