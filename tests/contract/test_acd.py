"""The switch side of the ACD: a caller held with music, an agent's phone rung with the
caller's data in channel variables, the two bridged, and what each hangup does.

On Asterisk the agents are real SIP phones (SIPp, tests/sip_agents.py); on FreeSWITCH the
fake replays the recorded SIPp agent (acd-moh-*.esl).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from engine.pbx.base import (
    Answered,
    Bridged,
    HungUp,
    MohStarted,
    MohStopped,
    OriginateRequest,
    Park,
    PbxEvent,
    Unbridged,
)
from tests.contract.drivers import DriverUnderTest, until

ANSWER_S = 20.0
FINAL_S = 30.0


def _is(kind: type[PbxEvent], call_id: str) -> Callable[[PbxEvent], bool]:
    return lambda e: e.call_id == call_id and isinstance(e, kind)


async def _held_caller(dut: DriverUnderTest, call_id: str, scenario: str = "caller") -> None:
    """A customer's call answered and parked, then on hold music."""
    await dut.driver.originate(
        OriginateRequest(call_id=call_id, target=dut.target(scenario), then=Park(), timeout_s=10)
    )
    await dut.log.wait_for(_is(Answered, call_id), "caller Answered", ANSWER_S)
    await dut.driver.moh_start(call_id, "default")
    started = await dut.log.wait_for(_is(MohStarted, call_id), "MohStarted", 10)
    assert isinstance(started, MohStarted) and started.moh_class == "default"


async def _agent_leg(dut: DriverUnderTest, agent: str, caller: str) -> str:
    """Ring ``agent``'s phone with the caller's data in channel variables; its answered leg."""
    agent_call = str(uuid.uuid4())
    await dut.driver.originate(
        OriginateRequest(
            call_id=agent_call,
            target=dut.target(agent),
            then=Park(),
            timeout_s=10,
            variables={"ACD_CALLER": caller, "ACD_QUEUE": "sales"},
        )
    )
    await dut.log.wait_for(_is(Answered, agent_call), f"{agent} Answered", ANSWER_S)
    return agent_call


async def _bridged(dut: DriverUnderTest, caller: str, agent_call: str) -> None:
    since = dut.log.mark()
    await dut.driver.bridge(caller, agent_call, keep_call=True)
    for leg in (caller, agent_call):
        await dut.log.wait_for(_is(Bridged, leg), f"Bridged {leg}", 10, since)
    bridged = [e for e in dut.log.events[since:] if isinstance(e, Bridged)]
    # Each leg has its Bridged; at least one of them names the other leg.
    pairs = {(e.call_id, e.other_call_id) for e in bridged}
    assert (caller, agent_call) in pairs or (agent_call, caller) in pairs, pairs
    # The bridge takes the caller off hold music.
    await dut.log.wait_for(_is(MohStopped, caller), "caller MohStopped", 10, since)


async def _alive(dut: DriverUnderTest, call_id: str) -> bool:
    return call_id in {lc.call_id for lc in await dut.side.live_calls()}


async def test_caller_on_hold_is_bridged_to_the_agent_with_its_data(
    dut: DriverUnderTest, call_id: str
) -> None:
    async with dut.agents({"agent1": "answer"}):
        await _held_caller(dut, call_id)
        agent_call = await _agent_leg(dut, "agent1", call_id)
        # The caller's data rides on the agent's leg.
        assert await dut.driver.get_var(agent_call, "ACD_CALLER") == call_id
        await _bridged(dut, call_id, agent_call)
        await dut.driver.hangup(call_id)
        await dut.log.wait_for(_is(HungUp, call_id), "caller HungUp", FINAL_S)
        # Hanging up the caller ends the agent's leg too.
        await dut.log.wait_for(_is(HungUp, agent_call), "agent HungUp", FINAL_S)


async def test_agent_hangs_up_and_the_caller_stays_to_be_held_again(
    dut: DriverUnderTest, call_id: str
) -> None:
    async with dut.agents({"agent1": "answer"}):
        await _held_caller(dut, call_id)
        agent_call = await _agent_leg(dut, "agent1", call_id)
        await _bridged(dut, call_id, agent_call)
        since = dut.log.mark()
        await dut.driver.hangup(agent_call)
        await dut.log.wait_for(_is(HungUp, agent_call), "agent HungUp", FINAL_S, since)
        await dut.log.wait_for(_is(Unbridged, call_id), "caller Unbridged", 10, since)

        async def caller_alive() -> bool:
            return await _alive(dut, call_id)

        await until(caller_alive, "caller still listed after the agent left", 5)
        # Re-queued: the caller hears hold music again.
        await dut.driver.moh_start(call_id, "default")
        await dut.log.wait_for(_is(MohStarted, call_id), "MohStarted again", 10, since)
        assert not any(isinstance(e, HungUp) for e in dut.log.of(call_id))
        await dut.driver.hangup(call_id)
        await dut.log.wait_for(_is(HungUp, call_id), "caller HungUp", FINAL_S)


async def test_caller_hangs_up_while_bridged_and_the_agent_leg_ends(
    dut: DriverUnderTest, call_id: str
) -> None:
    async with dut.agents({"agent2": "answer"}):
        await _held_caller(dut, call_id, "caller_leaves")
        agent_call = await _agent_leg(dut, "agent2", call_id)
        await _bridged(dut, call_id, agent_call)
        # The customer hangs up by itself (its far end sends BYE ~10 s after answering).
        caller_end = await dut.log.wait_for(_is(HungUp, call_id), "caller HungUp", FINAL_S)
        agent_end = await dut.log.wait_for(_is(HungUp, agent_call), "agent HungUp", FINAL_S)
        assert isinstance(agent_end, HungUp) and agent_end.cause == 16
        assert isinstance(caller_end, HungUp) and caller_end.cause == 16


async def test_agent_does_not_answer_and_the_caller_is_unaffected(
    dut: DriverUnderTest, call_id: str
) -> None:
    async with dut.agents({"agent2": "ring"}):
        await _held_caller(dut, call_id)
        since = dut.log.mark()
        agent_call = str(uuid.uuid4())
        await dut.driver.originate(
            OriginateRequest(
                call_id=agent_call, target=dut.target("agent2"), then=Park(), timeout_s=3
            )
        )
        final = await dut.log.wait_for(_is(HungUp, agent_call), "agent HungUp", FINAL_S, since)
        assert isinstance(final, HungUp) and final.cause == 19, final
        assert not any(isinstance(e, Answered) for e in dut.log.of(agent_call))
        # Nothing happened to the caller: still up, still on hold music.
        assert await _alive(dut, call_id)
        caller_since = [e.type for e in dut.log.events[since:] if e.call_id == call_id]
        assert caller_since == [], caller_since
        await dut.driver.hangup(call_id)
        await dut.log.wait_for(_is(HungUp, call_id), "caller HungUp", FINAL_S)
