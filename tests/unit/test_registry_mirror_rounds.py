"""The registry mirror's rounds, against a recording registry (no Redis):
the periodic refresh goes a chunk per round, and writes each call as it is
at that round, never an older snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from engine.calls import mirror as mirror_module
from engine.calls.mirror import REFRESH_CHUNK, EndedCalls, RegistryMirror
from engine.calls.model import Call, CallState
from engine.core.worker import WorkerSignals
from engine.telemetry.metrics import Metrics
from tests.harness import wait_for


class RecordingRegistry:
    def __init__(self) -> None:
        self.rounds: list[dict[str, Mapping[str, str]]] = []
        # The first round waits here until the test has changed a call.
        self.gate = asyncio.Event()

    async def apply(
        self,
        puts: Mapping[str, Mapping[str, str]],
        removes: Sequence[str] = (),
        *,
        ttl_s: int | None = None,
        extra: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        self.rounds.append(dict(puts))
        await self.gate.wait()


def _call(n: int, state: CallState = CallState.ANSWERED) -> Call:
    return Call(
        call_id=f"call-{n}",
        switch="sw",
        state=state,
        to="1001",
        then={"kind": "park"},
        created_at=1.0,
    )


async def test_refresh_is_spread_over_rounds_and_writes_the_current_state(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(mirror_module, "ROUND_S", 0.0)
    registry = RecordingRegistry()
    mirror = RegistryMirror(
        registry,  # type: ignore[arg-type]
        EndedCalls(None, "p:"),
        Metrics(),
        refresh_s=1.0,
    )
    live = {f"call-{n}": _call(n) for n in range(3 * REFRESH_CHUNK + 7)}
    task = asyncio.create_task(mirror.run(lambda: list(live.values())))
    try:
        await wait_for(lambda: len(registry.rounds) >= 1, what="the first refresh round")
        # Changed after the refresh began: must be written as it is now.
        changed = _call(3 * REFRESH_CHUNK + 6, CallState.BRIDGED)
        assert changed.call_id not in registry.rounds[0]
        live[changed.call_id] = changed
        registry.gate.set()

        def written() -> set[str]:
            return {call_id for r in registry.rounds for call_id in r}

        await wait_for(lambda: written() >= set(live), what="every live call refreshed")
    finally:
        mirror.close()
        await asyncio.wait_for(task, 5)
    refresh_rounds = [r for r in registry.rounds if r]
    assert max(len(r) for r in refresh_rounds) <= REFRESH_CHUNK
    assert len(refresh_rounds) >= 4  # 3 chunks and the remainder, at least
    last_write = [r[changed.call_id] for r in registry.rounds if changed.call_id in r][-1]
    assert Call.from_json(last_write["json"]).state is CallState.BRIDGED


def _completes_without_waiting(signals: WorkerSignals) -> bool:
    """True if ``pace()`` returns without ever suspending."""
    coro = signals.pace()
    try:
        coro.send(None)
    except StopIteration:
        return True
    coro.close()
    return False


async def test_pace_spaces_rounds_but_lets_a_lone_round_go_at_once() -> None:
    signals = WorkerSignals(min_interval_s=0.2)
    assert _completes_without_waiting(signals)  # the first round goes at once
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await signals.pace()  # the next one waits out the interval
    assert loop.time() - t0 >= 0.15
    signals.close()
    assert _completes_without_waiting(signals)  # closed: never waits


class TimedRegistry:
    """Records when each round was written (loop time) and what it carried."""

    def __init__(self) -> None:
        self.rounds: list[tuple[float, dict[str, Mapping[str, str]]]] = []

    async def apply(
        self,
        puts: Mapping[str, Mapping[str, str]],
        removes: Sequence[str] = (),
        *,
        ttl_s: int | None = None,
        extra: Sequence[tuple[str, str, int]] = (),
    ) -> None:
        self.rounds.append((asyncio.get_running_loop().time(), dict(puts)))


async def test_linger_and_pacing_share_one_timer_and_keep_the_round_spacing(
    monkeypatch: Any,
) -> None:
    """A change right after a round: the next round waits out the pacing
    interval (which covers the linger) on one timer, not a linger timer and
    then a pacing timer (each a loop wakeup; docs/bench-cpu.md, eighth round).
    The rounds keep their spacing, and a lone change still lingers."""
    loop = asyncio.get_running_loop()
    registry = TimedRegistry()
    mirror = RegistryMirror(
        registry,  # type: ignore[arg-type]
        EndedCalls(None, "p:"),
        Metrics(),
        refresh_s=3600.0,
        round_s=0.3,
    )
    task = asyncio.create_task(mirror.run(lambda: []))
    fired: list[float] = []
    real_call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kw: Any) -> Any:
        if asyncio.current_task() is task:

            def run(*a: Any) -> None:
                fired.append(loop.time())
                callback(*a)

            return real_call_at(when, run, *args, **kw)
        return real_call_at(when, callback, *args, **kw)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    try:
        for _ in range(5):  # let the mirror reach its idle wait
            await asyncio.sleep(0)
        changed = loop.time()
        mirror.put(_call(1))  # a lone change: lingers, no pacing wait
        await wait_for(lambda: len(registry.rounds) == 1, what="the first round")
        assert registry.rounds[0][0] - changed >= mirror_module.LINGER_S
        assert len(fired) == 1
        fired.clear()
        mirror.put(_call(2))  # at once: the pacing interval covers the linger
        await wait_for(lambda: len(registry.rounds) == 2, what="the second round")
        assert registry.rounds[1][0] - registry.rounds[0][0] >= 0.3 - 0.01
        assert "call-2" in registry.rounds[1][1]
        assert len(fired) == 1  # one timer, not the linger's and then the pacing's
    finally:
        monkeypatch.undo()
        mirror.close()
        await asyncio.wait_for(task, 5)
