"""The IVR's transfer and split hand-offs to the calls service (engine/calls/ivr_control.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from engine.calls.commands import OriginateCommand
from engine.calls.ivr_control import IvrCallControl
from engine.calls.model import Call, CallState
from engine.ivr.ports import TransferRefused, TransferRequest
from engine.pbx.base import DialplanTarget, Park, Then


class FakeDriver:
    def __init__(self) -> None:
        self.bridged: list[tuple[str, str]] = []

    async def bridge(self, call_id: str, other: str, *, keep_call: bool = False) -> None:
        self.bridged.append((call_id, other))


class FakeCalls:
    """CallService's surface: calls in memory; ``answer``/``fail`` move the placed leg."""

    def __init__(self, leg_outcome: CallState) -> None:
        self.calls = {
            "caller": Call(
                call_id="caller",
                switch="sw",
                state=CallState.ANSWERED,
                to="",
                then={},
                created_at=0.0,
                direction="inbound",
            )
        }
        self.observers: list[Callable[[Call, Call], None]] = []
        self.actions: list[tuple[str, Any]] = []
        self.sw = FakeDriver()
        self.leg_outcome = leg_outcome

    def tracked(self) -> list[Call]:
        return list(self.calls.values())

    def watch(self, observer: Callable[[Call, Call], None]) -> None:
        self.observers.append(observer)

    def driver(self, name: str) -> Any:
        return self.sw

    async def adopt_inbound(self, leg: str) -> Call | None:
        return None

    def _move(self, call_id: str, state: CallState) -> None:
        before = self.calls[call_id]
        after = before.evolve(state=state, cause=None if state is CallState.ANSWERED else 19)
        self.calls[call_id] = after
        for o in self.observers:
            o(before, after)

    async def originate(
        self, cmd: OriginateCommand, idempotency_key: str | None = None
    ) -> tuple[Call, bool]:
        self.actions.append(("originate", cmd))
        leg = Call(
            call_id="leg", switch="sw", state=CallState.DIALING, to=cmd.to, then={}, created_at=0.0
        )
        self.calls["leg"] = leg
        # The switch's events come later, on the event path.
        asyncio.get_running_loop().call_soon(self._move, "leg", self.leg_outcome)
        return leg, True

    async def redirect(self, call_id: str, then: Then) -> Call:
        self.actions.append(("redirect", (call_id, then)))
        return self.calls[call_id]

    async def hangup(self, call_id: str, cause: int = 16) -> Call:
        self.actions.append(("hangup", call_id))
        return self.calls[call_id]

    async def annotate(self, call_id: str, values: Mapping[str, str]) -> Call:
        self.actions.append(("annotate", (call_id, dict(values))))
        return self.calls[call_id]


async def test_a_dialplan_transfer_redirects_the_caller() -> None:
    calls = FakeCalls(CallState.ANSWERED)
    control = IvrCallControl(calls)
    await control.transfer(TransferRequest(leg="caller", flow="f", context="ops", exten="100"))
    assert calls.actions == [("redirect", ("caller", DialplanTarget("ops", "100", 1)))]


async def test_a_number_is_rung_first_then_the_caller_is_parked_and_bridged() -> None:
    calls = FakeCalls(CallState.ANSWERED)
    control = IvrCallControl(calls)
    await control.transfer(
        TransferRequest(leg="caller", flow="f", number="+15551234", trunk_group="out")
    )
    kinds = [a[0] for a in calls.actions]
    assert kinds == ["originate", "redirect"]
    cmd = calls.actions[0][1]
    assert (cmd.to, cmd.trunk_group, cmd.switch, cmd.then) == ("+15551234", "out", "sw", Park())
    assert calls.actions[1][1] == ("caller", Park())
    assert calls.sw.bridged == [("caller", "leg")]


async def test_a_target_that_does_not_answer_leaves_the_caller_in_the_flow() -> None:
    calls = FakeCalls(CallState.ENDED)
    control = IvrCallControl(calls)
    with pytest.raises(TransferRefused, match="1001 did not answer"):
        await control.transfer(TransferRequest(leg="caller", flow="f", endpoint="1001"))
    assert [a[0] for a in calls.actions] == ["originate", "hangup"]
    assert calls.sw.bridged == []


async def test_a_channel_the_engine_does_not_have_is_refused() -> None:
    control = IvrCallControl(FakeCalls(CallState.ANSWERED))
    with pytest.raises(TransferRefused, match="not live"):
        await control.transfer(TransferRequest(leg="ghost", flow="f", endpoint="1001"))


async def test_split_annotates_the_call() -> None:
    calls = FakeCalls(CallState.ANSWERED)
    await IvrCallControl(calls).annotate("caller", {"ivr_split.greeting": "b"})
    assert calls.actions == [("annotate", ("caller", {"ivr_split.greeting": "b"}))]
