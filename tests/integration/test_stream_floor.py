"""The event sequence never goes back, even when Redis loses all its data.

Fault drill 3 (sequence half): a Redis server this test owns is flushed or
restarted without persistence between publishes. Before the durable floor,
the counter restarted at 1 and a resuming client waited forever for numbers
that now meant other events.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from engine.store.errors import StoreError
from engine.store.redis.seq_floor import SeqFloor
from engine.store.redis.stream import EventStream
from tests.private_redis import PrivateRedis

PREFIX = "drill:"


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    # Not tmp_path: a unix socket path must stay under ~100 characters.
    directory = Path(tempfile.mkdtemp(prefix="redis-drill-"))
    server = PrivateRedis(directory)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def client(private_redis: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(private_redis.url, decode_responses=True)
    yield c
    await c.aclose()


async def _publish(stream: EventStream, n: int) -> list[int]:
    return [await stream.publish({"type": "T", "n": i}) for i in range(n)]


async def test_sequence_continues_upward_after_flushall(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    stream = EventStream(client, PREFIX, floor=SeqFloor(tmp_path / "floor", margin=100))
    before = await _publish(stream, 5)
    assert before == [1, 2, 3, 4, 5]
    await client.flushall()
    # The head is not forgotten: a client resuming now is not "ahead".
    assert await stream.last_seq() == 5
    after = await _publish(stream, 3)
    assert after[0] > before[-1], f"sequence went back: {before} then {after}"
    assert after == list(range(after[0], after[0] + 3)), "gapless again after the jump"
    assert [s for s, _ in await stream.read_after(0)] == after


async def test_sequence_survives_redis_restart_and_engine_restart(
    private_redis: PrivateRedis, client: aioredis.Redis, tmp_path: Path
) -> None:
    floor_file = tmp_path / "event-seq.floor"
    stream = EventStream(client, PREFIX, floor=SeqFloor(floor_file, margin=100))
    before = await _publish(stream, 20)
    await stream.close()  # the engine stops; its floor write is done
    private_redis.restart()  # no persistence: the counter and the stream are gone
    fresh = aioredis.Redis.from_url(private_redis.url, decode_responses=True)
    try:
        assert await fresh.dbsize() == 0
        # A new engine process: only the file remembers.
        restarted = EventStream(fresh, PREFIX, floor=SeqFloor(floor_file, margin=100))
        after = await _publish(restarted, 2)
    finally:
        await fresh.aclose()
    assert after[0] > before[-1], f"sequence went back: ...{before[-3:]} then {after}"


async def test_intact_redis_continues_without_a_jump(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    """The floor only re-seeds a lost counter; a restart with Redis intact stays gapless."""
    floor_file = tmp_path / "floor"
    first = EventStream(client, PREFIX, floor=SeqFloor(floor_file, margin=100))
    await _publish(first, 7)
    await first.close()
    second = EventStream(client, PREFIX, floor=SeqFloor(floor_file, margin=100))
    assert await _publish(second, 2) == [8, 9]


async def test_floor_is_reserved_ahead_on_disk(client: aioredis.Redis, tmp_path: Path) -> None:
    floor_file = tmp_path / "floor"
    stream = EventStream(client, PREFIX, floor=SeqFloor(floor_file, margin=10))
    seqs = await _publish(stream, 50)
    await stream.close()
    on_disk = int(floor_file.read_text())
    assert on_disk >= seqs[-1], f"floor {on_disk} is below issued seq {seqs[-1]}"


async def test_stale_counter_below_what_was_seen_is_reseeded(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    """Redis back from an old snapshot: the counter exists but is behind."""
    stream = EventStream(client, PREFIX, floor=SeqFloor(tmp_path / "floor", margin=100))
    before = await _publish(stream, 10)
    await client.flushall()
    await client.set(stream.seq_key, 3)
    after = await stream.publish({"n": "after"})
    assert after > before[-1]


def test_corrupt_floor_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "event-seq.floor"
    bad.write_text("12abc\n")
    with pytest.raises(StoreError, match=r"event-seq\.floor: expected a non-negative integer"):
        SeqFloor(bad)
