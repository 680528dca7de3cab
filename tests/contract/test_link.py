"""Reconnect and resync: the control link drops while calls are up.

The link runs through the adapter's LinkProxy, so "the link dropped but the switch kept
the call" is a real TCP reset between driver and switch, on every switch alike, and the
proxy's byte log is what the switch received (to prove no originate was re-sent).
"""

from __future__ import annotations

import uuid

import pytest

from engine.core.errors import ActionFailed, PbxUnavailable
from engine.pbx.base import (
    Answered,
    HungUp,
    LinkChanged,
    LinkState,
    OriginateRequest,
    Park,
    PbxEvent,
    Resynced,
)
from tests.contract.drivers import DriverUnderTest, until

ANSWER_S = 20.0
RESYNC_S = 30.0
# A crashed Asterisk needs a fresh start of the sandbox before it answers AMI again.
RESTART_S = 150.0


async def _answered_call(dut: DriverUnderTest, call_id: str) -> None:
    await dut.driver.originate(
        OriginateRequest(call_id=call_id, target=dut.target("answered"), then=Park(), timeout_s=10)
    )
    await dut.log.wait_for(
        lambda e: e.call_id == call_id and isinstance(e, Answered), "Answered", ANSWER_S
    )


def _is_resync(e: PbxEvent) -> bool:
    return isinstance(e, Resynced)


def _states_since(dut: DriverUnderTest, since: int) -> list[LinkState]:
    return [e.state for e in dut.log.events[since:] if isinstance(e, LinkChanged)]


async def test_live_call_survives_a_link_drop_and_is_resynced(
    dut: DriverUnderTest, call_id: str
) -> None:
    await _answered_call(dut, call_id)
    since = dut.log.mark()
    dut.proxy.cut()
    resynced = await dut.log.wait_for(_is_resync, "Resynced after the drop", RESYNC_S, since)
    assert isinstance(resynced, Resynced)
    live = {lc.call_id: lc for lc in resynced.live}
    assert call_id in live, f"live call missing from Resynced: {sorted(live)}"
    assert live[call_id].state == "answered"
    await dut.wait_up(dut.driver, RESYNC_S)
    # Down, then back through SYNCING (resync before new work) to UP.
    states = _states_since(dut, since)
    assert states[0] is LinkState.DOWN, states
    assert states.index(LinkState.SYNCING) < len(states) - 1 - states[::-1].index(LinkState.UP)
    # The engine still controls the call it kept: hang it up and hear the cause.
    await dut.driver.hangup(call_id, cause=16)
    final = await dut.log.wait_for(
        lambda e: e.call_id == call_id and isinstance(e, HungUp), "HungUp", RESYNC_S, since
    )
    assert isinstance(final, HungUp) and final.cause == 16
    assert dut.proxy.connections >= 2
    assert dut.originates_sent(call_id) == 1, "the originate must never be re-sent"


async def test_call_that_ended_during_the_outage_is_not_resynced(
    dut: DriverUnderTest, call_id: str
) -> None:
    await _answered_call(dut, call_id)
    held = dut.log.mark()
    dut.proxy.hold()
    await dut.log.wait_for(
        lambda e: isinstance(e, LinkChanged) and e.state is LinkState.DOWN,
        "link DOWN",
        RESYNC_S,
        held,
    )
    # While the link is down an originate is refused and not written anywhere.
    other = str(uuid.uuid4())
    with pytest.raises(PbxUnavailable):
        await dut.driver.originate(
            OriginateRequest(call_id=other, target=dut.target("busy"), then=Park(), timeout_s=5)
        )
    assert dut.originates_sent(other) == 0

    # Behind the engine's back, the call ends on the switch; its hangup reaches nobody.
    await dut.side.hangup(call_id, cause=16)

    async def gone() -> bool:
        return call_id not in {lc.call_id for lc in await dut.side.live_calls()}

    await until(gone, "call gone from the switch", RESYNC_S)

    since = dut.log.mark()
    dut.proxy.release()
    resynced = await dut.log.wait_for(_is_resync, "Resynced after the outage", RESYNC_S, since)
    assert isinstance(resynced, Resynced)
    assert call_id not in {lc.call_id for lc in resynced.live}
    await dut.wait_up(dut.driver, RESYNC_S)
    assert call_id not in {lc.call_id for lc in await dut.driver.live_calls()}
    assert dut.originates_sent(call_id) == 1, "the originate must never be re-sent"
    assert dut.originates_sent(other) == 0


async def test_peer_crash_forgets_calls_and_resends_nothing(
    dut: DriverUnderTest, call_id: str
) -> None:
    if not dut.can_restart_peer:
        pytest.skip("a real switch cannot be crashed and restarted by the suite")
    await _answered_call(dut, call_id)
    since = dut.log.mark()
    await dut.restart_peer()
    resynced = await dut.log.wait_for(_is_resync, "Resynced after restart", RESTART_S, since)
    assert isinstance(resynced, Resynced)
    assert call_id not in {lc.call_id for lc in resynced.live}
    await dut.wait_up(dut.driver, RESYNC_S)
    # The call is gone: commands on it fail cleanly instead of hanging or re-dialling.
    with pytest.raises(ActionFailed):
        await dut.driver.hangup(call_id)
    assert LinkState.DOWN in _states_since(dut, since)
    assert dut.originates_sent(call_id) == 1, "the originate must never be re-sent"
