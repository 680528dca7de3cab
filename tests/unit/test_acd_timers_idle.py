"""The ACD's timer loop sleeps while the ACD holds no agent and no entry (seventh round of
docs/bench-cpu.md: an engine without an ACD woke 20 times a second for nothing), and wakes at
once when one is added, or on close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from engine.acd.model import OverflowRule, QueueSpec
from engine.acd.service import AcdSettings
from engine.acd.timers import Timers
from tests.unit.acd_fakes import rig

# tick_s 0: the old loop ticked on every loop iteration, so counting ticks across a known
# number of iterations tells a sleeping loop from a ticking one without any timing.
IDLE = AcdSettings(tick_s=0.0, reconcile_s=3600.0)
SALES = QueueSpec("sales", skills={"sales": 8}, overflow=(OverflowRule(60.0, ivr_flow="vm"),))


def _count_ticks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    ticks = [0]
    real = Timers.tick

    def counted(self: Timers) -> None:
        ticks[0] += 1
        real(self)

    monkeypatch.setattr(Timers, "tick", counted)
    return ticks


async def _until(check: Callable[[], bool], what: str) -> None:
    # Everything here runs on the loop with a fake clock: counted iterations, not time.
    for _ in range(100_000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not within 100,000 loop iterations: {what}")


async def _spin(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _finished(task: Awaitable[None]) -> None:
    async with asyncio.timeout(10):
        await task


async def test_the_timer_loop_sleeps_while_nothing_is_held_and_wakes_for_an_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = _count_ticks(monkeypatch)
    r = rig([], [SALES], settings=IDLE)
    task = asyncio.create_task(r.acd.run())
    await _until(lambda: ticks[0] >= 1, "the first tick")
    await _spin(100)
    assert ticks[0] == 1, "no agent and no entry: the loop must sleep, not tick"

    # A caller enters the queue: the loop wakes at once and ticks again (tick_s 0), and
    # its ticks carry the entry's timed overflow as before.
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await _until(lambda: ticks[0] >= 5, "ticks after an entry was added")
    r.clock.t += 60
    await _until(lambda: r.acd.entry_of("c1") is None, "the timed overflow of c1")
    assert [e["exit"] for e in r.events.of("QueueCallOverflowed")] == ["overflow-ivr"]

    # The entry is gone: the loop sleeps again.
    await _spin(20)
    settled = ticks[0]
    await _spin(100)
    assert ticks[0] == settled
    r.acd.close()
    await _finished(task)


async def test_a_sleeping_timer_loop_ends_at_once_on_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = _count_ticks(monkeypatch)
    r = rig([], [SALES], settings=IDLE)
    task = asyncio.create_task(r.acd.run())
    await _until(lambda: ticks[0] >= 1, "the first tick")
    r.acd.close()
    await _finished(task)  # reconcile_s is an hour: only the close can have ended it
    assert task.done() and ticks[0] == 1


async def test_with_an_agent_the_loop_ticks_every_tick_s(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.acd_fakes import agent

    ticks = _count_ticks(monkeypatch)
    r = rig([agent("alice", {"sales": 9})], [SALES], settings=IDLE)
    task = asyncio.create_task(r.acd.run())
    await _until(lambda: ticks[0] >= 10, "ticks with an agent configured")
    r.acd.close()
    await _finished(task)
