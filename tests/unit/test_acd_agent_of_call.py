"""AcdService.agent_of_call: which agent a call belongs to (the API's agent-role check)."""

from __future__ import annotations

from engine.acd.model import QueueSpec
from tests.unit.acd_fakes import agent, rig

SALES = QueueSpec("sales", skills={"sales": 5}, ring_timeout_s=10, wrap_up_s=4.0)


async def test_the_caller_and_the_agent_leg_belong_to_the_agent_through_wrap_up() -> None:
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 1})], [SALES])
    for agent_id in ("alice", "bob"):
        r.acd.login(agent_id)
        r.acd.ready(agent_id)
    r.clock.t += 5  # alice idle longest after this
    caller = r.calls.caller("c1")
    other = r.calls.caller("c2")
    assert r.acd.agent_of_call(caller) is None  # not queued yet
    await r.acd.enter(caller, queue="sales")
    await r.settle()
    leg, _ = r.calls.originates[0]
    offered_to = r.acd.status("alice").call_id == caller
    owner = "alice" if offered_to else "bob"
    assert r.acd.agent_of_call(caller) == owner  # offered (ringing)
    assert r.acd.agent_of_call(leg) == owner  # the agent's own leg
    r.answered(leg)
    await r.settle()
    assert r.acd.agent_of_call(caller) == owner  # talking
    r.hung_up(caller)
    r.hung_up(leg)
    assert r.acd.status(owner).state.value == "wrap_up"
    assert r.acd.agent_of_call(caller) == owner  # wrapping up (disposition)
    assert r.acd.agent_of_call(other) is None
    assert r.acd.agent_of_call("no-such-call") is None
