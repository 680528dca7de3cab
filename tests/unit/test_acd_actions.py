"""SwitchActions.hangup_leg: a leg the calls service does not track (yet) is
still hung up, by the switch (after a restart the ACD may act first)."""

from __future__ import annotations

from typing import Any

from engine.acd.actions import SwitchActions
from engine.calls.errors import CallNotFound
from engine.core.errors import PbxUnavailable


class Calls:
    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.hung_up: list[str] = []

    async def hangup(self, call_id: str, cause: int = 16) -> Any:
        if call_id not in self.known:
            raise CallNotFound(f"no call {call_id}")
        self.hung_up.append(call_id)


class Driver:
    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.hung_up: list[str] = []

    async def hangup(self, call_id: str, cause: int = 16) -> None:
        if not self.up:
            raise PbxUnavailable("link down")
        self.hung_up.append(call_id)


async def test_a_tracked_leg_goes_through_the_calls_service() -> None:
    calls, driver = Calls({"leg-1"}), Driver()
    actions = SwitchActions(calls=calls, drivers={"sw": driver})  # type: ignore[arg-type,dict-item]
    await actions.hangup_leg("sw", "leg-1")
    assert (calls.hung_up, driver.hung_up) == (["leg-1"], [])


async def test_an_untracked_leg_is_hung_up_by_its_switch() -> None:
    calls, driver = Calls(set()), Driver()
    actions = SwitchActions(calls=calls, drivers={"sw": driver})  # type: ignore[arg-type,dict-item]
    await actions.hangup_leg("sw", "ringing-before-the-crash")
    assert (calls.hung_up, driver.hung_up) == ([], ["ringing-before-the-crash"])


async def test_a_switch_that_refuses_does_not_raise() -> None:
    calls, driver = Calls(set()), Driver(up=False)
    actions = SwitchActions(calls=calls, drivers={"sw": driver})  # type: ignore[arg-type,dict-item]
    await actions.hangup_leg("sw", "x")  # nothing to assert but that it returns
    assert driver.hung_up == []
