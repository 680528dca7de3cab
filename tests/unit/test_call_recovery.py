"""Recovery in the calls service, on a scripted driver and real Redis:
adoption from the registry, unknown originate outcomes, and the sweeper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.calls.commands import OriginateCommand
from engine.calls.errors import SwitchNotOwned, UnsafeCallValue
from engine.calls.mirror import RegistryMirror
from engine.calls.model import Call, CallState
from engine.calls.service import CallService
from engine.calls.settings import CallSettings
from engine.calls.sweep import Limits, overstays
from engine.core.errors import OutcomeUnknown, UnsafeValue
from engine.pbx.base import (
    Answered,
    HungUp,
    LinkState,
    LiveChannel,
    OriginateRequest,
    Park,
    PbxEvent,
    Resynced,
)
from engine.speech.amd import AmdOverrides
from engine.store.errors import StoreUnavailable
from engine.store.redis.client import RedisStore
from engine.store.redis.registry import CallRegistry
from tests.call_service_rig import running_call_service


@dataclass
class ScriptedDriver:
    """A PbxDriver whose answers the test sets."""

    name: str = "sw"
    kind: str = "asterisk"
    state: LinkState = LinkState.UP
    live: list[LiveChannel] = field(default_factory=list)
    originate_error: Exception | None = None
    hangups: list[str] = field(default_factory=list)
    queue: asyncio.Queue[PbxEvent] = field(default_factory=asyncio.Queue)

    async def originate(self, request: OriginateRequest) -> None:
        if self.originate_error is not None:
            raise self.originate_error

    async def live_calls(self) -> list[LiveChannel]:
        return list(self.live)

    async def hangup(self, call_id: str, cause: int = 16) -> None:
        self.hangups.append(call_id)

    async def events(self) -> AsyncIterator[PbxEvent]:
        while True:
            yield await self.queue.get()


class _StateReadsCounted(ScriptedDriver):
    """The scripted driver, counting reads of its link state."""

    state_reads = 0

    def __getattribute__(self, name: str) -> Any:
        if name == "state":
            object.__setattr__(
                self, "state_reads", object.__getattribute__(self, "state_reads") + 1
            )
        return object.__getattribute__(self, name)


class _Gate:
    """Switch ownership as the cluster's lease loop would set it (all of them by default)."""

    def __init__(self) -> None:
        self.owned: set[str] | None = None

    def owns_switch(self, switch: str) -> bool:
        return self.owned is None or switch in self.owned


@dataclass
class Rig:
    calls: CallService
    driver: ScriptedDriver
    cdrs: list[dict[str, Any]]
    registry: CallRegistry
    mirror: RegistryMirror
    gate: _Gate


@pytest.fixture
async def rig(redis_store: RedisStore, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Rig]:
    rows: list[dict[str, Any]] = []
    driver = ScriptedDriver()
    gate = _Gate()
    settings = CallSettings(
        unknown_outcome_window_s=1.0,
        probe_interval_s=0.05,
        limits=Limits(max_call_s=60, force_after_s=0.2),
    )
    async with running_call_service(
        redis_store.client,
        redis_prefix,
        tmp_path,
        gate=gate,
        driver=driver,
        cdrs=rows,
        settings=settings,
    ) as run:
        yield Rig(run.calls, driver, rows, run.registry, run.mirror, gate)


async def _until(check: Any, what: str, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _cmd() -> OriginateCommand:
    return OriginateCommand(to="1001", then=Park(), endpoint="phone-1")


async def test_an_unknown_outcome_is_not_decided_from_one_snapshot(rig: Rig) -> None:
    rig.driver.originate_error = OutcomeUnknown("link dropped after the originate was written")
    call, _ = await rig.calls.originate(_cmd())
    assert call.outcome_unknown and call.state is CallState.CREATED
    # The resync snapshot was taken before the switch created the channel.
    await rig.calls.handle(Resynced(switch="sw", call_id="", ts=0.0, live=()))
    assert not (await rig.calls.get(call.call_id)).is_ended
    # The channel appears a moment later: the call goes on.
    rig.driver.live = [LiveChannel(call.call_id, "PJSIP/x-1", "answered")]
    await _until(
        lambda: rig.calls._calls[call.call_id].state is CallState.ANSWERED, "answered via probe"
    )
    assert rig.cdrs == []


async def test_an_unknown_outcome_that_never_appears_ends_interrupted_with_a_cdr(
    rig: Rig,
) -> None:
    rig.driver.originate_error = OutcomeUnknown("no reply")
    call, _ = await rig.calls.originate(_cmd())
    await rig.calls.handle(Resynced(switch="sw", call_id="", ts=0.0, live=()))
    await _until(lambda: len(rig.cdrs) == 1, "CDR after the unknown-outcome window")
    ended = await rig.calls.get(call.call_id)
    assert ended.interrupted and "never appeared" in ended.cause_text
    assert rig.cdrs[0]["call_id"] == call.call_id and rig.cdrs[0]["interrupted"]


async def test_adopted_calls_continue_or_end_interrupted_at_the_first_resync(
    rig: Rig, redis_prefix: str
) -> None:
    up = Call("a" * 8, "sw", CallState.ANSWERED, "1001", {"kind": "park"}, 100.0, answered_at=101.0)
    gone = Call("b" * 8, "sw", CallState.RINGING, "1002", {"kind": "park"}, 100.0)
    other = Call("c" * 8, "elsewhere", CallState.ANSWERED, "1003", {"kind": "park"}, 100.0)
    for c in (up, gone, other):
        await rig.registry.put(c.call_id, {"json": c.to_json()}, ttl_s=60)
    assert await rig.calls.adopt() == 2  # not the call of a switch this engine lacks
    await rig.calls.handle(
        Resynced(switch="sw", call_id="", ts=0.0, live=(LiveChannel(up.call_id, "X", "answered"),))
    )
    assert (await rig.calls.get(gone.call_id)).interrupted
    await rig.calls.handle(Answered(switch="sw", call_id=up.call_id, ts=102.0))
    assert rig.calls._calls[up.call_id].state is CallState.ANSWERED
    await _until(lambda: len(rig.cdrs) == 1, "CDR of the gone call")
    assert rig.cdrs[0]["call_id"] == gone.call_id and rig.cdrs[0]["interrupted"]


async def test_adopted_amd_calls_without_a_verdict_get_it_resumed_once_the_link_is_up(
    rig: Rig,
) -> None:
    resumed: list[tuple[str, bool]] = []
    given: dict[str, AmdOverrides | None] = {}

    async def resume_amd(
        call_id: str, *, answered: bool, params: AmdOverrides | None = None
    ) -> None:
        resumed.append((call_id, answered))
        given[call_id] = params

    rig.driver.resume_amd = resume_amd  # type: ignore[attr-defined]
    amd = {"kind": "amd"}
    mid = Call("d" * 8, "sw", CallState.ANSWERED, "1001", amd, 100.0, answered_at=101.0)
    # A campaign's fast profile (then_to_dict(Amd(params))): the resumed analysis gets it.
    fast = {"kind": "amd", "params": {"after_greeting_silence": 200, "total_analysis_time": 1900}}
    ringing = Call("e" * 8, "sw", CallState.RINGING, "1002", fast, 100.0)
    decided = Call(
        "f" * 8,
        "sw",
        CallState.ANSWERED,
        "1003",
        amd,
        100.0,
        answered_at=101.0,
        amd_status="MACHINE",
    )
    parked = Call("g" * 8, "sw", CallState.ANSWERED, "1004", {"kind": "park"}, 100.0)
    # Handed to an agent without a verdict (the runner's bound): never re-parked.
    talking = Call("h" * 8, "sw", CallState.ANSWERED, "1005", amd, 100.0, bridged_at=105.0)
    for c in (mid, ringing, decided, parked, talking):
        await rig.registry.put(c.call_id, {"json": c.to_json()}, ttl_s=60)
    assert await rig.calls.adopt() == 5
    live = (
        LiveChannel(mid.call_id, "X", "answered"),
        LiveChannel(ringing.call_id, "Y", "ringing"),
        LiveChannel(decided.call_id, "Z", "answered"),
        LiveChannel(parked.call_id, "W", "answered"),
        LiveChannel(talking.call_id, "V", "answered", bridge_id="b1"),
    )
    # Resynced comes while the link is syncing: nothing is asked of the switch yet (the
    # resumes looked at the link a few times and waited).
    rig.driver.state = LinkState.SYNCING
    rig.driver.__class__ = _StateReadsCounted
    counted: _StateReadsCounted = rig.driver  # type: ignore[assignment]
    await rig.calls.handle(Resynced(switch="sw", call_id="", ts=0.0, live=live))
    await _until(lambda: counted.state_reads >= 6, "the resumes waiting for the link")
    assert resumed == []
    rig.driver.state = LinkState.UP
    await _until(lambda: len(resumed) == 2, "the two resumes")
    assert sorted(resumed) == [(mid.call_id, True), (ringing.call_id, False)]
    assert given == {
        mid.call_id: None,
        ringing.call_id: AmdOverrides(after_greeting_silence=200, total_analysis_time=1900),
    }


async def test_registry_entries_carry_a_ttl(
    rig: Rig, redis_store: RedisStore, redis_prefix: str
) -> None:
    call, _ = await rig.calls.originate(_cmd())
    key = f"{redis_prefix}call:{call.call_id}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (ttl := await redis_store.client.ttl(key)) < 0:
        assert loop.time() < deadline, f"registry entry {key} has no TTL ({ttl})"
        await asyncio.sleep(0.02)
    assert 0 < ttl <= 120


async def test_the_sweeper_hangs_up_an_overstaying_call_then_ends_it(rig: Rig) -> None:
    call, _ = await rig.calls.originate(_cmd())
    rig.calls._calls[call.call_id] = call.evolve(
        state=CallState.ANSWERED, answered_at=call.created_at + 1
    )
    now = call.created_at + 62  # past max_call_s = 60
    rig.calls._now = lambda: now
    await rig.calls.sweep_once()
    assert rig.driver.hangups == [call.call_id]
    assert not (await rig.calls.get(call.call_id)).is_ended  # waits for the switch first
    now += 0.5  # past force_after_s, and the switch never sent the HungUp
    await rig.calls.sweep_once()
    ended = await rig.calls.get(call.call_id)
    assert ended.interrupted and "max_call_s" in ended.cause_text
    assert rig.driver.hangups == [call.call_id]  # asked once, not on every sweep


def test_overstays_by_state() -> None:
    limits = Limits(max_setup_s=10, max_ring_s=20, max_call_s=30)
    base = Call("x", "sw", CallState.CREATED, "1", {"kind": "park"}, created_at=0.0)
    calls = [
        base,
        base.evolve(call_id="r", state=CallState.RINGING, ringing_at=5.0),
        base.evolve(call_id="a", state=CallState.ANSWERED, answered_at=1.0),
        base.evolve(call_id="e", state=CallState.ENDED),
    ]
    assert [(o.call_id, o.limit) for o in overstays(calls, 10.5, limits)] == [("x", "max_setup_s")]
    assert [(o.call_id, o.limit) for o in overstays(calls, 25.5, limits)] == [
        ("x", "max_setup_s"),
        ("r", "max_ring_s"),
    ]
    assert {o.call_id for o in overstays(calls, 31.5, limits)} == {"x", "r", "a"}
    assert overstays(calls, 1e9, Limits(max_setup_s=0, max_ring_s=0, max_call_s=0)) == []


async def test_a_call_just_placed_is_listed_before_the_registry_has_it(rig: Rig) -> None:
    rig.mirror.close()  # Redis writes stop, as if Redis were slow or away
    call, _ = await rig.calls.originate(_cmd())
    assert await rig.registry.get(call.call_id) is None
    assert call.call_id in {c.call_id for c in await rig.calls.list_live()}


async def test_a_value_the_driver_refuses_is_an_invalid_request_and_ends_the_call(
    rig: Rig,
) -> None:
    rig.driver.originate_error = UnsafeValue("caller id name 'O\\'Brien' refused")
    with pytest.raises(UnsafeCallValue) as info:
        await rig.calls.originate(_cmd())
    assert info.value.status == 400 and info.value.error_id == "unsafe-value"
    ended = await rig.calls.get(info.value.details["call_id"])
    assert ended.is_ended and "not placed" in ended.cause_text
    await _until(lambda: len(rig.cdrs) == 1, "the CDR of the refused call")


async def test_annotated_values_reach_the_calls_cdr(rig: Rig) -> None:
    """The IVR's split step records the variant on the call (CallService.annotate)."""
    call, _ = await rig.calls.originate(_cmd())
    await rig.calls.annotate(call.call_id, {"ivr_split.greeting": "short"})
    assert (await rig.calls.get(call.call_id)).variables == {"ivr_split.greeting": "short"}
    await rig.driver.queue.put(
        HungUp(switch="sw", call_id=call.call_id, ts=call.created_at + 1, cause=16)
    )
    consumer = asyncio.create_task(rig.calls.consume(rig.driver))  # type: ignore[arg-type]
    try:
        await _until(lambda: len(rig.cdrs) == 1, "the CDR")
    finally:
        consumer.cancel()
    assert rig.cdrs[0]["variables"] == {"ivr_split.greeting": "short"}


async def test_a_switch_not_owned_is_not_commanded_and_a_takeover_adopts_its_calls(
    rig: Rig,
) -> None:
    gate = rig.gate
    gate.owned = set()
    sent: list[str] = []

    async def originate(request: OriginateRequest) -> None:
        sent.append(request.call_id)

    rig.driver.originate = originate  # type: ignore[method-assign]
    with pytest.raises(SwitchNotOwned, match="owned by another engine") as refused:
        await rig.calls.originate(OriginateCommand(to="1", then=Park(), endpoint="p", switch="sw"))
    assert refused.value.details["lease"] == "switch:sw"
    with pytest.raises(SwitchNotOwned, match="owns no switch"):
        await rig.calls.originate(OriginateCommand(to="1", then=Park(), endpoint="p"))
    assert sent == [] and rig.calls.tracked() == []

    # Another engine's calls on "sw", in the registry: taken over with the switch.
    up = Call("u" * 8, "sw", CallState.ANSWERED, "1001", {"kind": "park"}, 100.0, answered_at=101.0)
    gone = Call("g" * 8, "sw", CallState.RINGING, "1002", {"kind": "park"}, 100.0)
    for c in (up, gone):
        await rig.registry.put(c.call_id, {"json": c.to_json()}, ttl_s=60)
    assert await rig.calls.adopt() == 0  # at start, only the owned switches' calls
    gate.owned.add("sw")
    # Placed between taking the lease and the recovery: too new for the channel list, and
    # not decided by it.
    fresh, _ = await rig.calls.originate(_cmd())
    rig.driver.live = [LiveChannel(up.call_id, "X", "answered")]
    assert await rig.calls.take_switch("sw") == 2
    assert (await rig.calls.get(gone.call_id)).interrupted
    assert rig.calls._calls[up.call_id].state is CallState.ANSWERED
    assert not rig.calls._calls[fresh.call_id].is_ended
    call, _ = await rig.calls.originate(_cmd())
    assert sent == [fresh.call_id, call.call_id]

    # Lost: its calls are left (not ended) for the next owner; nothing more is sent.
    gate.owned.clear()
    assert rig.calls.drop_switch("sw") == 3
    assert rig.calls.tracked() == []
    with pytest.raises(SwitchNotOwned):
        await rig.calls.originate(_cmd())
    assert sent == [fresh.call_id, call.call_id]
    await _until(lambda: len(rig.cdrs) == 1, "the gone call's CDR")
    assert [r["call_id"] for r in rig.cdrs] == [gone.call_id]


async def test_calls_the_registry_read_missed_at_start_are_adopted_once_redis_answers(
    rig: Rig,
) -> None:
    # Found auditing the start's storage reads (after the campaigns' one, 2ce7c80): a Redis
    # timeout on the registry read at start left every call it held untracked for good:
    # live on the switch, ended with no CDR and no event.
    up = Call("a" * 8, "sw", CallState.ANSWERED, "1001", {"kind": "park"}, 100.0, answered_at=101.0)
    ended = Call(
        "b" * 8, "sw", CallState.ANSWERED, "1002", {"kind": "park"}, 100.0, answered_at=101.0
    )
    for c in (up, ended):
        await rig.registry.put(c.call_id, {"json": c.to_json()}, ttl_s=60)
    read = rig.registry.all
    faults = [2]

    async def redis_timing_out() -> list[dict[str, str]]:
        if faults[0]:
            faults[0] -= 1
            raise StoreUnavailable("redis unavailable while reading the registry: Timeout")
        return await read()

    rig.registry.all = redis_timing_out  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        await rig.calls.adopt()
    assert rig.calls.tracked() == []
    # The switch connects meanwhile: one call hangs up before it is adopted (its end is
    # kept and folded with its cause), the other is still up.
    await rig.calls.handle(HungUp(switch="sw", call_id=ended.call_id, ts=120.0, cause=16))
    rig.driver.live = [LiveChannel(up.call_id, "X", "answered")]
    task = asyncio.create_task(rig.calls.adopt_unread(retry_s=0.01))
    try:
        await _until(lambda: len(rig.cdrs) == 1 or task.done(), "the ended call's CDR")
        assert not task.done(), task.exception()
        assert faults == [0]
        assert rig.cdrs[0]["call_id"] == ended.call_id
        assert not rig.cdrs[0]["interrupted"] and rig.cdrs[0]["cause"] == 16
        assert [c.call_id for c in rig.calls.tracked()] == [up.call_id]
        assert rig.calls._calls[up.call_id].state is CallState.ANSWERED
    finally:
        rig.calls.close()
        await asyncio.wait_for(task, 5.0)


async def test_a_call_ended_here_is_not_adopted_again_from_a_registry_read_late(
    rig: Rig,
) -> None:
    # The late adoption reads a registry that may not have this engine's latest ends yet
    # (Redis was away): a call that ended here must not come back as live, or its channel
    # list "gone" would end it a second time (a second CDR, interrupted).
    here, _ = await rig.calls.originate(_cmd())
    await rig.calls.handle(Answered(switch="sw", call_id=here.call_id, ts=101.0))
    await _until(lambda: not rig.mirror._dirty, "the answered call written to the registry")
    stale = await rig.registry.all()  # as Redis had it before the end reached it
    await rig.calls.handle(HungUp(switch="sw", call_id=here.call_id, ts=102.0, cause=16))
    await _until(lambda: len(rig.cdrs) == 1, "the call's CDR")
    up = Call("a" * 8, "sw", CallState.ANSWERED, "1001", {"kind": "park"}, 100.0, answered_at=101.0)
    stale.append({"json": up.to_json()})

    async def stale_read() -> list[dict[str, str]]:
        return stale

    rig.registry.all = stale_read  # type: ignore[method-assign]
    rig.calls._recovery.unread.add("sw")  # as after a failed read at start
    rig.calls._recovery.unread_added.set()
    rig.driver.live = [LiveChannel(up.call_id, "X", "answered")]
    task = asyncio.create_task(rig.calls.adopt_unread(retry_s=0.01))
    try:
        await _until(lambda: bool(rig.calls.tracked()) or task.done(), "the late adoption")
        assert not task.done(), task.exception()
        assert [c.call_id for c in rig.calls.tracked()] == [up.call_id]
        await rig.calls.handle(HungUp(switch="sw", call_id=up.call_id, ts=130.0, cause=16))
        await _until(lambda: len(rig.cdrs) == 2, "the adopted call's CDR")
        assert [r["call_id"] for r in rig.cdrs] == [here.call_id, up.call_id]
    finally:
        rig.calls.close()
        await asyncio.wait_for(task, 5.0)
