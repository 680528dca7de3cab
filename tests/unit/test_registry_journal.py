"""A call accepted just before a crash is not lost (issue 8, the registry's window).

The 201 of ``POST /v1/calls`` goes out before the registry mirror's next round
writes the call to Redis. An engine SIGKILLed in that window used to restart
with no trace of the call: its channel lived on unowned and it never got a CDR.
The mirror now journals new calls, state changes and ends first
(engine/calls/mirror.py); the restart adopts what the journal holds.

The "crash" here is an engine whose mirror task never ran (nothing reached
Redis) and whose journal was never fsynced, as after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.calls.cdr import CdrWriter
from engine.calls.mirror import EndedCalls, RegistryMirror
from engine.calls.model import CallState
from engine.calls.service import CallService
from engine.calls.settings import CallSettings
from engine.pbx.base import Answered, HungUp, LiveChannel, Resynced
from engine.store.outbox import Journal, Lane, Record
from engine.store.redis.client import RedisStore
from engine.store.redis.idempotency import IdempotencyStore
from engine.store.redis.registry import CallRegistry
from engine.telemetry.metrics import Metrics
from tests.unit.test_call_recovery import ScriptedDriver, _cmd, _until


class Engine:
    """One engine process's calls service, on the shared Redis and data dir."""

    def __init__(self, redis: RedisStore, prefix: str, data: Path) -> None:
        self.metrics = Metrics()
        self.cdrs: list[dict[str, Any]] = []

        async def collect(records: Sequence[Record]) -> None:
            self.cdrs.extend(r.payload["cdr"] for r in records)

        async def drop(records: Sequence[Record]) -> None:
            return None

        self.lanes = [
            Lane(Journal(data, "cdrs"), collect, self.metrics),
            Lane(Journal(data, "events"), drop, self.metrics),
        ]
        for lane in self.lanes:
            lane.open()
        self.registry = CallRegistry(redis.client, prefix)
        self.mirror = RegistryMirror(
            self.registry,
            EndedCalls(redis.client, prefix),
            self.metrics,
            journal=Journal(data, "registry"),
        )
        self.driver = ScriptedDriver()
        self.calls = CallService(
            drivers={"sw": self.driver},  # type: ignore[dict-item]
            registry=self.registry,
            mirror=self.mirror,
            events=self.lanes[1],
            idempotency=IdempotencyStore(redis.client, prefix),
            cdrs=CdrWriter(None, self.lanes[0]),  # type: ignore[arg-type]
            metrics=self.metrics,
            settings=CallSettings(unknown_outcome_window_s=1.0, probe_interval_s=0.05),
        )
        self.tasks: list[asyncio.Task[None]] = []

    def start_background(self) -> None:
        self.tasks = [asyncio.create_task(lane.run()) for lane in self.lanes]
        self.tasks.append(asyncio.create_task(self.mirror.run(self.calls.tracked)))

    def kill(self) -> None:
        """SIGKILL: descriptors closed by the kernel, nothing flushed or fsynced."""
        for lane in self.lanes:
            fd = lane.journal._fd
            assert fd is not None
            lane.journal._fd = None
            os.close(fd)
        assert self.mirror._journal is not None
        fd = self.mirror._journal._fd
        assert fd is not None
        self.mirror._journal._fd = None
        os.close(fd)

    async def stop(self) -> None:
        self.calls.close()
        self.mirror.close()
        for lane in self.lanes:
            lane.close()
        await asyncio.gather(*self.tasks)
        for lane in self.lanes:
            lane.journal.close()


async def _registry_ids(engine: Engine) -> set[str]:
    return {json.loads(f["json"])["call_id"] for f in await engine.registry.all()}


async def _switch_still_has_then_hangs_up(engine: Engine, call_id: str) -> None:
    """The switch's resync lists the adopted call's channel as answered (the call keeps its
    state and answer time), then the call hangs up normally."""
    await engine.calls.handle(
        Resynced(
            switch="sw",
            call_id="",
            ts=0.0,
            live=(LiveChannel(call_id, "PJSIP/x-1", "answered"),),
        )
    )
    adopted = engine.calls._calls[call_id]
    assert adopted.state is CallState.ANSWERED and adopted.answered_at is not None
    await engine.calls.handle(HungUp(switch="sw", call_id=call_id, ts=130.0, cause=16))


async def test_calls_accepted_before_the_registry_round_survive_a_crash(
    redis_store: RedisStore, redis_prefix: str, tmp_path: Path
) -> None:
    first = Engine(redis_store, redis_prefix, tmp_path)
    # No background tasks: the crash comes before the mirror's first round.
    answered, _ = await first.calls.originate(_cmd())
    await first.calls.handle(Answered(switch="sw", call_id=answered.call_id, ts=101.0))
    ringing, _ = await first.calls.originate(_cmd())
    ended, _ = await first.calls.originate(_cmd())
    await first.calls.handle(HungUp(switch="sw", call_id=ended.call_id, ts=102.0, cause=16))
    assert await _registry_ids(first) == set()  # nothing reached Redis
    first.kill()

    second = Engine(redis_store, redis_prefix, tmp_path)
    second.start_background()
    try:
        # The two calls still up are tracked again; the one that ended is not.
        assert await second.calls.adopt() == 2
        await _until(lambda: not second.mirror._dirty, "the adopted calls written to the registry")
        assert await _registry_ids(second) == {answered.call_id, ringing.call_id}
        # The switch still has the answered call's channel; the other is gone.
        await _switch_still_has_then_hangs_up(second, answered.call_id)
        # Three CDRs: the two adopted calls', and the one the first engine
        # accepted before the crash, delivered from the cdrs journal.
        await _until(lambda: len(second.cdrs) == 3, "every CDR after the restart")
        by_id = {row["call_id"]: row for row in second.cdrs}
        assert set(by_id) == {answered.call_id, ringing.call_id, ended.call_id}
        assert not by_id[answered.call_id]["interrupted"]
        assert by_id[answered.call_id]["answered_at"] is not None
        assert by_id[ringing.call_id]["interrupted"]
        assert not by_id[ended.call_id]["interrupted"]
        await _until(lambda: not second.mirror._dirty, "the ends written")
        assert await _registry_ids(second) == set()
    finally:
        await second.stop()


async def test_acknowledged_journal_records_are_not_adopted_twice(
    redis_store: RedisStore, redis_prefix: str, tmp_path: Path
) -> None:
    first = Engine(redis_store, redis_prefix, tmp_path)
    first.start_background()
    call, _ = await first.calls.originate(_cmd())
    await first.calls.handle(HungUp(switch="sw", call_id=call.call_id, ts=102.0, cause=16))
    await _until(lambda: len(first.cdrs) == 1, "the CDR")
    await first.stop()  # clean stop: the mirror wrote and acknowledged everything
    second = Engine(redis_store, redis_prefix, tmp_path)
    assert second.mirror.take_recovered() == []
    assert await second.calls.adopt() == 0


async def test_the_journals_calls_are_adopted_when_redis_cannot_be_read_at_start(
    redis_store: RedisStore, redis_prefix: str, tmp_path: Path
) -> None:
    """docs/durability.md: "If Redis cannot be read at start, the journal's calls are
    still adopted." Killed before the mirror's round, restarted while Redis is away."""
    first = Engine(redis_store, redis_prefix, tmp_path)
    answered, _ = await first.calls.originate(_cmd())
    await first.calls.handle(Answered(switch="sw", call_id=answered.call_id, ts=101.0))
    first.kill()

    second = Engine(redis_store, redis_prefix, tmp_path)

    async def redis_away() -> list[dict[str, str]]:
        raise ConnectionError("Redis is away")

    second.registry.all = redis_away  # type: ignore[method-assign]
    second.start_background()
    try:
        assert await second.calls.adopt() == 1
        await _switch_still_has_then_hangs_up(second, answered.call_id)
        await _until(lambda: len(second.cdrs) == 1, "the adopted call's CDR")
        assert second.cdrs[0]["call_id"] == answered.call_id
        assert not second.cdrs[0]["interrupted"]
    finally:
        await second.stop()
