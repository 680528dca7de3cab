"""A batch of events published, then the engine SIGKILLed before the events lane wrote its
acknowledgement: the next start replays the batch from the journal. It used to be published
again (each event on the stream twice, under two seqs; found by the plug-pull chaos harness,
tests/integration/test_chaos_plug.py). The replayed records are now looked for among the
stream's newest events first (engine/wiring/outbox.py ``EventPublisher``)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from engine.store.outbox import Journal, Lane
from engine.store.redis.client import RedisStore
from engine.store.redis.stream import EventStream
from engine.telemetry.metrics import Metrics
from engine.wiring.outbox import EventPublisher


def _engine(redis: RedisStore, prefix: str, data: Path) -> tuple[Lane, EventPublisher]:
    metrics = Metrics()
    publisher = EventPublisher(EventStream(redis.client, prefix), metrics)
    lane = Lane(Journal(data, "events"), publisher.publish, metrics)
    lane.open()
    publisher.replayed(lane.journal)
    return lane, publisher


async def _stream(redis: RedisStore, prefix: str) -> list[dict[str, object]]:
    entries: list[tuple[str, dict[str, str]]] = await redis.client.xrange(  # type: ignore[assignment]
        f"{prefix}{{events}}"
    )
    return [json.loads(fields["data"]) for _, fields in entries]


async def test_a_batch_published_before_a_kill_is_not_published_again(
    redis_store: RedisStore, redis_prefix: str, tmp_path: Path
) -> None:
    first, publisher = _engine(redis_store, redis_prefix, tmp_path)
    for n in range(3):
        first.put({"type": "CallStateChanged", "call_id": f"c{n}", "state": "created", "ts": n})
    # The lane's delivery: the batch is on the stream, and the kill comes before the ack.
    await publisher.publish(first.journal.peek(10))
    fd = first.journal._fd
    assert fd is not None
    os.close(fd)  # SIGKILL: nothing acknowledged
    # Meanwhile another engine publishes on the same stream.
    await EventStream(redis_store.client, redis_prefix).publish({"type": "Other", "ts": 9})

    second, _ = _engine(redis_store, redis_prefix, tmp_path)
    assert second.journal.depth == 3  # replayed
    second.put({"type": "CallStateChanged", "call_id": "c3", "state": "created", "ts": 3})

    task = asyncio.create_task(second.run())
    try:
        assert await second.wait_drained(10)
    finally:
        second.close()
        await task
        second.journal.close()
    ids = [e.get("call_id") for e in await _stream(redis_store, redis_prefix)]
    assert ids == ["c0", "c1", "c2", None, "c3"]


async def test_a_replayed_batch_that_never_reached_the_stream_is_published(
    redis_store: RedisStore, redis_prefix: str, tmp_path: Path
) -> None:
    first, _ = _engine(redis_store, redis_prefix, tmp_path)
    for n in range(2):
        first.put({"type": "CallStateChanged", "call_id": f"c{n}", "state": "created", "ts": n})
    fd = first.journal._fd
    assert fd is not None
    os.close(fd)  # killed before the lane's first delivery
    second, _ = _engine(redis_store, redis_prefix, tmp_path)

    task = asyncio.create_task(second.run())
    try:
        assert await second.wait_drained(10)
    finally:
        second.close()
        await task
        second.journal.close()
    ids = [e.get("call_id") for e in await _stream(redis_store, redis_prefix)]
    assert ids == ["c0", "c1"]
