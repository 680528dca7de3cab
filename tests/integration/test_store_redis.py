"""Redis-backed live state against a real Redis (ENGINE_TEST_REDIS_URL or embedded)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from engine.store.errors import StoreError, StoreUnavailable
from engine.store.redis.client import RedisStore
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.locks import LeaseHolder, Leases
from engine.store.redis.registry import CallRegistry
from engine.store.redis.stream import MAX_SEQ, EventStream


@pytest.fixture
def r(redis_store: RedisStore) -> aioredis.Redis:
    return redis_store.client


@pytest.fixture
async def second_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An independent connection, standing in for a second engine instance."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_store_ping_and_unreachable(redis_store: RedisStore, tmp_path: Path) -> None:
    assert await redis_store.ping() is True
    with pytest.raises(StoreUnavailable, match=r"connecting to redis://127\.0\.0\.1:1"):
        async with RedisStore("redis://127.0.0.1:1/0", tmp_path):
            pass


# -- registry --------------------------------------------------------------


async def test_registry_put_get_merge_remove(r: aioredis.Redis, redis_prefix: str) -> None:
    reg = CallRegistry(r, redis_prefix)
    assert await reg.get("c1") is None
    await reg.put("c1", {"state": "ringing", "switch": "ast1"})
    await reg.put("c1", {"state": "up"})  # merge: switch is kept
    assert await reg.get("c1") == {"call_id": "c1", "state": "up", "switch": "ast1"}
    await reg.put("c2", {"state": "dialing"})
    assert await reg.ids() == ["c1", "c2"]
    assert [row["call_id"] for row in await reg.all()] == ["c1", "c2"]
    await reg.remove("c1")
    assert await reg.get("c1") is None
    assert await reg.ids() == ["c2"]
    await reg.remove("never-existed")  # no error


async def test_registry_rejects_bad_fields(r: aioredis.Redis, redis_prefix: str) -> None:
    reg = CallRegistry(r, redis_prefix)
    with pytest.raises(ValueError, match="must be str"):
        await reg.put("c1", {"n": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="disagrees"):
        await reg.put("c1", {"call_id": "other"})
    with pytest.raises(ValueError, match="empty"):
        await reg.put("", {"a": "b"})


async def test_registry_prunes_expired_entries(r: aioredis.Redis, redis_prefix: str) -> None:
    reg = CallRegistry(r, redis_prefix)
    await reg.put("live", {"state": "up"})
    await reg.put("gone", {"state": "up"}, ttl_s=600)
    assert await r.ttl(f"{redis_prefix}call:gone") > 0
    # Simulate the TTL running out (a crashed instance stopped refreshing it).
    await r.delete(f"{redis_prefix}call:gone")
    assert await reg.ids() == ["live"]
    assert await r.smembers(f"{redis_prefix}calls") == {"live"}
    await reg.put("gone2", {"state": "up"})
    await r.delete(f"{redis_prefix}call:gone2")
    assert [row["call_id"] for row in await reg.all()] == ["live"]
    assert await r.smembers(f"{redis_prefix}calls") == {"live"}


async def test_registry_shared_between_instances(
    r: aioredis.Redis, second_client: aioredis.Redis, redis_prefix: str
) -> None:
    await CallRegistry(r, redis_prefix).put("c9", {"state": "up"})
    assert await CallRegistry(second_client, redis_prefix).get("c9") == {
        "call_id": "c9",
        "state": "up",
    }


async def test_wrong_type_is_store_error(r: aioredis.Redis, redis_prefix: str) -> None:
    await r.set(f"{redis_prefix}call:x", "a string, not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        await CallRegistry(r, redis_prefix).get("x")


# -- event stream ----------------------------------------------------------


async def test_concurrent_publish_gives_gapless_seq(
    r: aioredis.Redis, second_client: aioredis.Redis, redis_prefix: str
) -> None:
    # Two "instances" publishing 200 events concurrently.
    a = EventStream(r, redis_prefix)
    b = EventStream(second_client, redis_prefix)
    seqs = await asyncio.gather(
        *((a if i % 2 else b).publish({"type": "T", "i": i}) for i in range(200))
    )
    assert sorted(seqs) == list(range(1, 201))
    assert await a.last_seq() == 200
    events = await a.read_after(0, count=1000)
    assert [s for s, _ in events] == list(range(1, 201))
    # The payload stored under each seq is the one whose publish returned it.
    by_i = {e["i"]: s for s, e in events}
    assert all(by_i[i] == seqs[i] for i in range(200))


async def test_publish_many_interleaves_gaplessly_with_single_publishes(
    r: aioredis.Redis, second_client: aioredis.Redis, redis_prefix: str
) -> None:
    a = EventStream(r, redis_prefix)
    b = EventStream(second_client, redis_prefix)
    batches = [[{"batch": n, "i": i} for i in range(5)] for n in range(20)]
    results: list[int | list[int]] = await asyncio.gather(
        *(a.publish_many(batch) for batch in batches),
        *(b.publish({"single": i}) for i in range(20)),
    )
    seqs = [q for res in results for q in (res if isinstance(res, list) else [res])]
    assert sorted(seqs) == list(range(1, 121))
    events = dict(await a.read_after(0, count=1000))
    for batch, got in zip(batches, results[:20], strict=True):
        assert isinstance(got, list)
        # A batch is contiguous and in order: one atomic script run.
        assert got == list(range(got[0], got[0] + 5))
        assert [events[q] for q in got] == batch
    assert await a.publish_many([]) == []


async def test_resume_after_seq(r: aioredis.Redis, redis_prefix: str) -> None:
    s = EventStream(r, redis_prefix)
    assert await s.last_seq() == 0
    assert await s.oldest_seq() is None
    assert await s.read_after(0) == []
    for i in range(10):
        await s.publish({"type": "E", "n": i, "text": "ünïcode"})
    got = await s.read_after(4, count=3)
    assert got == [
        (5, {"type": "E", "n": 4, "text": "ünïcode"}),
        (6, {"type": "E", "n": 5, "text": "ünïcode"}),
        (7, {"type": "E", "n": 6, "text": "ünïcode"}),
    ]
    assert [q for q, _ in await s.read_after(7)] == [8, 9, 10]
    assert await s.read_after(10) == []
    assert await s.missed_after(4) == 0


async def test_blocking_read_wakes_on_publish(
    r: aioredis.Redis, redis_prefix: str, redis_url: str
) -> None:
    s = EventStream(r, redis_prefix)
    await s.publish({"n": 1})
    # A blocking XREAD holds its connection, so the reader uses its own client.
    reader_client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        reader = EventStream(reader_client, redis_prefix)
        task = asyncio.create_task(reader.read_after(1, block_ms=10_000))
        await asyncio.sleep(0.05)
        assert not task.done()
        await s.publish({"n": 2})
        assert await asyncio.wait_for(task, timeout=10) == [(2, {"n": 2})]
        assert await reader.read_after(2, block_ms=20) == []  # times out empty
    finally:
        await reader_client.aclose()


async def test_trimmed_history_is_reported(r: aioredis.Redis, redis_prefix: str) -> None:
    s = EventStream(r, redis_prefix, maxlen=10, approximate_trim=False)
    for i in range(50):
        await s.publish({"n": i})
    assert await s.oldest_seq() == 41
    assert await s.last_seq() == 50
    assert await s.missed_after(0) == 40
    assert await s.missed_after(39) == 1
    assert await s.missed_after(40) == 0
    assert await s.missed_after(45) == 0
    assert [q for q, _ in await s.read_after(0)] == list(range(41, 51))


async def test_approximate_trim_still_reports_gap(r: aioredis.Redis, redis_prefix: str) -> None:
    s = EventStream(r, redis_prefix, maxlen=10)
    for i in range(400):
        await s.publish({"n": i})
    oldest = await s.oldest_seq()
    assert oldest is not None and 1 < oldest <= 391
    assert await s.missed_after(0) == oldest - 1
    first = await s.read_after(0, count=1)
    assert first[0][0] == oldest


async def test_lost_counter_continues_after_stream(r: aioredis.Redis, redis_prefix: str) -> None:
    s = EventStream(r, redis_prefix)
    for i in range(3):
        await s.publish({"n": i})
    await r.delete(s.seq_key)  # e.g. evicted
    assert await s.last_seq() == 3
    assert await s.publish({"n": 3}) == 4


async def test_foreign_entries_do_not_crash_readers(r: aioredis.Redis, redis_prefix: str) -> None:
    s = EventStream(r, redis_prefix)
    await s.publish({"n": 1})
    await r.xadd(s.key, {"data": "{not json"}, id="2-0")
    await r.xadd(s.key, {"other": "x"}, id="3-0")
    got = await s.read_after(0)
    assert got[0] == (1, {"n": 1})
    assert got[1][0] == 2 and got[1][1]["_undecodable"] is True
    assert got[2][0] == 3 and got[2][1]["_undecodable"] is True
    assert await s.publish({"n": 4}) == 4  # continues after the foreign ids


async def test_publish_rejects_non_json(r: aioredis.Redis, redis_prefix: str) -> None:
    s = EventStream(r, redis_prefix)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        await s.publish({"x": object()})
    assert await s.last_seq() == 0


async def test_read_after_rejects_sequences_redis_cannot_take(
    r: aioredis.Redis, redis_prefix: str
) -> None:
    """A seq above 2^63-1 used to reach XREAD and fail there as an unhandled error."""
    s = EventStream(r, redis_prefix)
    for bad in (-1, MAX_SEQ + 1, 2**64):
        with pytest.raises(ValueError, match=r"seq: expected 0\.\.9223372036854775807"):
            await s.read_after(bad)
    assert await s.read_after(MAX_SEQ) == []


# -- idempotency -----------------------------------------------------------


async def test_idempotency_claim(r: aioredis.Redis, redis_prefix: str) -> None:
    idem = IdempotencyStore(r, redis_prefix, ttl_s=3600)
    assert await idem.claim("k1", "call-1") is None
    assert await idem.claim("k1", "call-2") == "call-1"
    assert await idem.get("k1") == "call-1"
    assert 0 < await r.ttl(f"{redis_prefix}idem:k1") <= 3600
    assert await idem.release("k1", "call-2") is False  # not ours
    assert await idem.release("k1", "call-1") is True
    assert await idem.claim("k1", "call-3") is None
    assert await idem.release("k1") is True
    assert await idem.get("k1") is None


async def test_idempotency_concurrent_claims_one_winner(
    r: aioredis.Redis, redis_prefix: str
) -> None:
    idem = IdempotencyStore(r, redis_prefix)
    results = await asyncio.gather(*(idem.claim("same", f"v{i}") for i in range(50)))
    winners = [i for i, res in enumerate(results) if res is None]
    assert len(winners) == 1
    assert all(res == f"v{winners[0]}" for res in results if res is not None)


# -- leases ----------------------------------------------------------------


async def test_lease_fencing_tokens_increase(r: aioredis.Redis, redis_prefix: str) -> None:
    a = Leases(r, redis_prefix, "engine-a")
    b = Leases(r, redis_prefix, "engine-b")
    t1 = await a.acquire("campaign:7", ttl_ms=60_000)
    assert t1 is not None
    assert await a.acquire("campaign:7", ttl_ms=60_000) == t1  # re-entrant
    assert await b.acquire("campaign:7", ttl_ms=60_000) is None
    assert await b.holder("campaign:7") == LeaseHolder("engine-a", t1)
    assert await b.renew("campaign:7", t1, 60_000) is False
    assert await a.renew("campaign:7", t1, 60_000) is True
    assert await b.release("campaign:7", t1) is False
    assert await a.release("campaign:7", t1) is True
    t2 = await b.acquire("campaign:7", ttl_ms=60_000)
    assert t2 is not None and t2 > t1
    # A paused old holder cannot renew or release the new owner's lease.
    assert await a.renew("campaign:7", t1, 60_000) is False
    assert await a.release("campaign:7", t1) is False
    assert await b.holder("campaign:7") == LeaseHolder("engine-b", t2)
