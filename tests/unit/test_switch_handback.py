"""A switch handed from one engine to another while its calls ring (the handback race of
issue 15, docs/production.md): two calls services on one real Redis registry, each with its
own view of the same switch (every engine is connected to every switch and sees all of its
events; only the switch's owner folds them), the lease moves as the lease loop moves it.

- The old owner forgets the switch's calls at once; its last changes reach the registry
  before the lease is released (``CallService.flushed``, awaited by the lease loop's
  ``before_release``), so a call that ended there is not adopted again by the new owner.
- A ring timeout that comes while nobody folds the switch (between the old owner's drop and
  the new owner's adoption) ends the call with its cause, not ``interrupted``.
- Every call ends once, with one CDR.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.calls.commands import OriginateCommand
from engine.calls.mirror import RegistryMirror
from engine.calls.model import CallState
from engine.calls.service import CallService
from engine.calls.settings import CallSettings
from engine.pbx.base import HungUp, LiveChannel, Park, Ringing
from engine.store.redis.client import RedisStore
from tests.call_service_rig import running_call_service
from tests.unit.test_call_recovery import ScriptedDriver, _Gate


@dataclass
class Engine:
    calls: CallService
    driver: ScriptedDriver
    gate: _Gate
    mirror: RegistryMirror
    cdrs: list[dict[str, Any]]


async def _engine(
    stack: contextlib.AsyncExitStack,
    r: RedisStore,
    prefix: str,
    work: Path,
    cdrs: list[dict[str, Any]],
) -> Engine:
    driver, gate = ScriptedDriver(), _Gate()
    gate.owned = set()
    run = await stack.enter_async_context(
        running_call_service(
            r.client,
            prefix,
            work,
            gate=gate,
            driver=driver,
            cdrs=cdrs,
            settings=CallSettings(unknown_outcome_window_s=1.0, probe_interval_s=0.05),
        )
    )
    return Engine(run.calls, driver, gate, run.mirror, cdrs)


@pytest.fixture
async def pair(
    redis_store: RedisStore, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Engine, Engine, list[dict[str, Any]]]]:
    cdrs: list[dict[str, Any]] = []  # one CDR table, as in PostgreSQL
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    async with contextlib.AsyncExitStack() as stack:
        a = await _engine(stack, redis_store, redis_prefix, tmp_path / "a", cdrs)
        b = await _engine(stack, redis_store, redis_prefix, tmp_path / "b", cdrs)
        yield a, b, cdrs


async def _both(event: Any, *engines: Engine) -> None:
    """The switch sends an event: every engine's link receives it."""
    for e in engines:
        await e.calls.handle(event)


async def _until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _cmd() -> OriginateCommand:
    return OriginateCommand(to="4001", then=Park(), endpoint="carrier", timeout_s=5)


async def _hand_back(old: Engine, new: Engine) -> int:
    """The lease loop's handback, in its order: the old owner stops (on_lost), its changes
    reach the registry (before_release), the lease is released and taken by the new owner,
    whose takeover adopts the switch's calls (LeaseTakeover -> take_switch)."""
    old.gate.owned = set()
    old.calls.drop_switch("sw")
    assert await old.calls.flushed(2.0)
    new.gate.owned = {"sw"}
    return await new.calls.take_switch("sw")


async def test_a_ring_timeout_while_the_switch_changes_hands_ends_the_call_with_its_cause(
    pair: tuple[Engine, Engine, list[dict[str, Any]]],
) -> None:
    a, b, cdrs = pair
    a.gate.owned = {"sw"}
    ringing, answered = (await a.calls.originate(_cmd()))[0], (await a.calls.originate(_cmd()))[0]
    for call in (ringing, answered):
        await _both(Ringing(switch="sw", call_id=call.call_id, ts=1.0), a, b)
    # The old owner hands the switch back ...
    a.gate.owned = set()
    assert a.calls.drop_switch("sw") == 2
    assert await a.calls.flushed(2.0)
    # ... and the ring timeout comes before the new owner has adopted the calls: nobody
    # folds it (the old owner forgot the call, the new one does not own the switch yet).
    await _both(
        HungUp(switch="sw", call_id=ringing.call_id, ts=6.0, cause=19, cause_text="NO_ANSWER"),
        a,
        b,
    )
    b.gate.owned = {"sw"}
    b.driver.live = [LiveChannel(answered.call_id, "X", "ringing")]
    assert await b.calls.take_switch("sw") == 2
    ended = await b.calls.get(ringing.call_id)
    assert ended.state is CallState.ENDED
    assert (ended.cause, ended.interrupted) == (19, False), ended
    assert b.calls.is_tracked(answered.call_id)
    await _both(HungUp(switch="sw", call_id=answered.call_id, ts=7.0, cause=16), a, b)
    await _until(lambda: len(cdrs) == 2, "both CDRs")
    await asyncio.sleep(0)  # nothing more is pending: the count below is final
    assert sorted((r["call_id"], r["cause"]) for r in cdrs) == sorted(
        [(ringing.call_id, 19), (answered.call_id, 16)]
    )


async def test_a_call_that_ended_just_before_the_handback_is_not_ended_again(
    pair: tuple[Engine, Engine, list[dict[str, Any]]],
) -> None:
    a, b, cdrs = pair
    a.gate.owned = {"sw"}
    call = (await a.calls.originate(_cmd()))[0]
    await _both(Ringing(switch="sw", call_id=call.call_id, ts=1.0), a, b)
    assert await a.mirror.wait_flushed(2.0)  # the registry has the ringing call
    # The ring timeout, folded by the old owner (its CDR), then at once the handback: the
    # registry must say so before the new owner reads it.
    await _both(HungUp(switch="sw", call_id=call.call_id, ts=6.0, cause=19), a, b)
    assert await _hand_back(a, b) == 0
    await _until(lambda: len(cdrs) >= 1, "the CDR")
    assert [(r["call_id"], r["cause"]) for r in cdrs] == [(call.call_id, 19)]
    assert not b.calls.is_tracked(call.call_id)
