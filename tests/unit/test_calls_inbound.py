"""Adopting an inbound channel the engine takes charge of (engine.calls.inbound)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.calls.inbound import InboundCalls
from engine.calls.model import CallState
from engine.pbx.base import LinkState, LiveChannel
from tests.unit.test_call_committer import Rig


class Switch:
    def __init__(self, name: str, channels: list[LiveChannel], up: bool = True) -> None:
        self.name = name
        self.channels = channels
        self.state = LinkState.UP if up else LinkState.DOWN
        self.asked = 0

    async def live_calls(self) -> list[LiveChannel]:
        self.asked += 1
        return self.channels


def inbound(rig: Rig, *switches: Switch) -> InboundCalls:
    drivers: dict[str, Any] = {s.name: s for s in switches}
    return InboundCalls(rig.live, rig.committer, drivers=drivers, now=lambda: 50.0)


async def test_the_switch_that_has_the_channel_gets_it_answered_and_published(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    try:
        other = Switch("a-sw", [LiveChannel("x", "PJSIP/x-1", "answered")])
        down = Switch("b-sw", [LiveChannel("in-1", "PJSIP/in-1", "answered")], up=False)
        home = Switch("c-sw", [LiveChannel("in-1", "PJSIP/carrier-0001", "answered")])
        call = await inbound(rig, other, down, home).adopt("in-1")
        assert call is not None
        assert (call.switch, call.state, call.direction) == ("c-sw", CallState.ANSWERED, "inbound")
        assert (call.channel, call.answered_at) == ("PJSIP/carrier-0001", 50.0)
        assert rig.live.get("in-1") == call and down.asked == 0
        (published,) = rig.published()
        assert (published["call_id"], published["state"]) == ("in-1", "answered")
        # Adopted once: the next hand-off finds it tracked, without asking the switches.
        again = await inbound(rig, home).adopt("in-1")
        assert again == call and home.asked == 1
    finally:
        rig.close()


async def test_a_channel_no_switch_has_is_not_adopted(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        assert await inbound(rig, Switch("sw", [])).adopt("ghost") is None
        assert rig.live.get("ghost") is None and rig.published() == []
    finally:
        rig.close()
