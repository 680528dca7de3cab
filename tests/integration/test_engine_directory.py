"""Each engine's API address in Redis (engine/store/redis/engines.py)."""

from __future__ import annotations

import asyncio

from engine.store.redis.client import RedisStore
from engine.store.redis.engines import EngineDirectory


async def test_an_address_is_published_read_and_withdrawn(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    r = redis_store.client
    a = EngineDirectory(r, redis_prefix, "eng-a", ttl_ms=3000)
    b = EngineDirectory(r, redis_prefix, "eng-b", cache_s=0)
    assert await b.address_of("eng-a") is None
    stopped = False
    await a.publish("http://10.0.0.5:8080")  # what the heartbeat's first beat does
    beat = asyncio.create_task(a.run("http://10.0.0.5:8080", lambda: stopped))
    try:
        assert await b.address_of("eng-a") == "http://10.0.0.5:8080"
        assert 0 < await r.pttl(a.key("eng-a")) <= 3000  # dies with the engine
        await a.withdraw()
        assert await b.address_of("eng-a") is None
        async with asyncio.timeout(5):
            await beat  # the heartbeat ends once withdrawn, without writing it back
        assert await r.get(a.key("eng-a")) is None
    finally:
        stopped = True
        beat.cancel()


async def test_a_withdraw_leaves_a_restarted_engines_address(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    r = redis_store.client
    old = EngineDirectory(r, redis_prefix, "eng-a")
    await old.publish("http://10.0.0.5:8080")
    await EngineDirectory(r, redis_prefix, "eng-a").publish("http://10.0.0.6:8080")
    await old.withdraw()
    assert await r.get(old.key("eng-a")) == "http://10.0.0.6:8080"


async def test_engines_share_one_peer_key_and_follow_a_new_one_after_a_loss(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    """The key hops are sealed with (engine/auth/hop.py): two engines starting together
    agree on one; after Redis lost it, the next read makes a new one and both follow."""
    r = redis_store.client
    a = EngineDirectory(r, redis_prefix, "eng-a")
    b = EngineDirectory(r, redis_prefix, "eng-b")
    ka, kb = await asyncio.gather(a.load_peer_key(), b.load_peer_key())
    assert ka == kb == a.peer_key == b.peer_key and len(ka) == 64
    await r.delete(f"{redis_prefix}cluster:peer-key")  # Redis restarted empty
    fresh = await b.load_peer_key()
    assert fresh != ka and await a.load_peer_key() == fresh == a.peer_key


async def test_the_engines_with_a_live_address_are_listed(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    r = redis_store.client
    a = EngineDirectory(r, redis_prefix, "eng-a")
    b = EngineDirectory(r, redis_prefix, "eng-b")
    assert await a.instances() == {}
    await a.publish("http://10.0.0.5:8080")
    await b.publish("http://10.0.0.6:8080")
    assert await a.instances() == {"eng-a": "http://10.0.0.5:8080", "eng-b": "http://10.0.0.6:8080"}
    await b.withdraw()  # or its address expired: it died
    assert await a.instances() == {"eng-a": "http://10.0.0.5:8080"}
    assert await r.smembers(f"{redis_prefix}engines") == {"eng-a"}  # the name is dropped too
