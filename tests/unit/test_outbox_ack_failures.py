"""A failed journal acknowledgement (an I/O error of the outbox disk) never ends a task.

Before: the registry mirror's round called ``Journal.ack`` unguarded; an ``OSError`` from it
ended ``RegistryMirror.run``, which ended the engine's task group: the whole engine stopped
(docs/durability.md, the drills table). A lane's acknowledgement after a delivery was
unguarded the same way.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from engine.calls.model import CallState
from engine.pbx.base import HungUp
from engine.store.outbox import Journal
from engine.store.redis.client import RedisStore
from tests.unit.test_call_recovery import _cmd, _until
from tests.unit.test_registry_journal import Engine, _registry_ids


class FailingAcks:
    """``Journal.ack`` raising EIO for the first ``left`` calls, then the real one."""

    def __init__(self, journal: Journal, left: int) -> None:
        self.real = journal.ack
        self.left = left
        self.calls = 0

    def __call__(self, upto: int) -> None:
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise OSError(errno.EIO, "Input/output error")
        self.real(upto)


async def test_the_registry_mirror_and_a_lane_survive_failed_acknowledgements(
    redis_store: RedisStore, redis_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(redis_store, redis_prefix, tmp_path)
    registry_journal = engine.mirror._journal
    assert registry_journal is not None
    mirror_acks = FailingAcks(registry_journal, 2)
    monkeypatch.setattr(registry_journal, "ack", mirror_acks)
    cdr_lane = engine.lanes[0]
    lane_acks = FailingAcks(cdr_lane.journal, 1)
    monkeypatch.setattr(cdr_lane.journal, "ack", lane_acks)
    engine.start_background()
    try:
        first, _ = await engine.calls.originate(_cmd())
        await _until(lambda: mirror_acks.calls >= 1, "the mirror's first acknowledgement")
        second, _ = await engine.calls.originate(_cmd())
        await _until(lambda: mirror_acks.calls >= 2, "the mirror's second acknowledgement")
        third, _ = await engine.calls.originate(_cmd())
        await _until(lambda: mirror_acks.calls >= 3, "the mirror's acknowledgements go on")
        assert not any(task.done() for task in engine.tasks), "a background task ended"
        assert await _registry_ids(engine) == {first.call_id, second.call_id, third.call_id}
        # The CDR lane: the first acknowledgement after the delivery fails; the lane goes
        # on, delivers again, and then its journal is drained.
        await engine.calls.handle(HungUp(switch="sw", call_id=first.call_id, ts=102.0, cause=16))
        assert engine.calls._calls.get(first.call_id) is None
        await _until(lambda: lane_acks.calls >= 2, "the lane's acknowledgement retried")
        await _until(lambda: cdr_lane.journal.depth == 0, "the CDR lane drained")
        assert {row["call_id"] for row in engine.cdrs} == {first.call_id}
        assert not any(task.done() for task in engine.tasks), "a background task ended"
        assert engine.calls._calls[second.call_id].state is not CallState.ENDED
    finally:
        await engine.stop()
