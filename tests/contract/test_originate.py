"""Originate: outcome and cause mapping per carrier scenario; the call id is ours from the
first event on."""

from __future__ import annotations

import pytest

from engine.pbx.base import (
    Answered,
    ChannelCreated,
    HungUp,
    OriginateFailed,
    OriginateRequest,
    Park,
    PbxEvent,
)
from tests.contract.drivers import DriverUnderTest

# Generous: the sandbox and CI machines can be slow; nothing here waits this long normally.
ANSWER_S = 20.0
FINAL_S = 30.0


def final_of(call_id: str):  # type: ignore[no-untyped-def]
    return lambda e: e.call_id == call_id and isinstance(e, HungUp | OriginateFailed)


@pytest.mark.parametrize("scenario", ["answered", "busy", "congestion", "noanswer", "dead"])
async def test_originate_outcome_and_cause(
    dut: DriverUnderTest, call_id: str, scenario: str
) -> None:
    expected = dut.outcome(scenario)
    await dut.driver.originate(
        OriginateRequest(call_id=call_id, target=dut.target(scenario), then=Park(), timeout_s=5)
    )
    if expected.answered:
        # The answered far end talks for a while; hang up as soon as it answered.
        await dut.log.wait_for(
            lambda e: e.call_id == call_id and isinstance(e, Answered), "Answered", ANSWER_S
        )
        await dut.driver.hangup(call_id, cause=16)
    final = await dut.log.wait_for(final_of(call_id), f"final event of {scenario}", FINAL_S)
    ours = dut.log.of(call_id)
    if expected.failed:
        assert isinstance(final, OriginateFailed), ours
        assert [e.type for e in ours] == ["OriginateFailed"], "no channel may be reported"
    else:
        assert isinstance(final, HungUp), ours
        assert isinstance(ours[0], ChannelCreated), ours
        assert ours[0].direction == "outbound"
    assert final.cause == expected.cause, final
    assert final.sip_code in (expected.sip_codes or frozenset()), final
    assert any(isinstance(e, Answered) for e in ours) is expected.answered
    assert dut.originates_sent(call_id) == 1


async def test_call_id_is_known_before_the_first_event(dut: DriverUnderTest, call_id: str) -> None:
    since = dut.log.mark()
    await dut.driver.originate(
        OriginateRequest(call_id=call_id, target=dut.target("busy"), then=Park(), timeout_s=5)
    )
    await dut.log.wait_for(final_of(call_id), "final event", FINAL_S, since)
    ours = dut.log.of(call_id)
    first = ours[0]
    assert isinstance(first, ChannelCreated), ours
    assert first.channel, "the first event names the switch's channel"
    # No event about that channel reached the engine under any other id before it.
    before: list[PbxEvent] = dut.log.events[since : dut.log.events.index(first)]
    assert [e for e in before if e.channel == first.channel] == []
    # Every event of the channel carries our id, to the end.
    same_channel = [e for e in dut.log.events[since:] if e.channel == first.channel]
    assert {e.call_id for e in same_channel} == {call_id}
