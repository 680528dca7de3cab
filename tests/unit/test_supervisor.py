"""Supervisor controls (docs/supervisor.md): the pure decisions, the switch-specific option
tables, and the ACD service's side with a fake switch (spy sessions, a supervisor's pause or
logout that waits for the call, a move between queues that routing obeys)."""

from __future__ import annotations

import pytest

from engine.acd.errors import (
    AgentNotOnCall,
    InvalidQueueMove,
    QueueNotFound,
    SupervisorEndpointBusy,
    UnknownSupervisorEndpoint,
)
from engine.acd.model import QueueSpec
from engine.acd.state import AcdSettings
from engine.acd.supervision import allowed_endpoints, pending_outcome, spy_plan
from engine.acd.supervisor import SpyNotConnected
from engine.agents.errors import UnknownPauseReason
from engine.agents.model import AgentState, AgentStatus
from engine.core.errors import UnsafeValue
from engine.pbx.asterisk import chanspy
from engine.pbx.asterisk.driver import AsteriskDriver
from engine.pbx.base import DialTarget, SpyMode, SpyRequest
from engine.pbx.freeswitch import eavesdrop
from tests.unit.acd_fakes import Rig, agent, rig

SALES = QueueSpec("sales", skills={"sales": 5})
TECH = QueueSpec("tech", skills={"tech": 5})


def test_chanspy_options_per_mode() -> None:
    # u exact uniqueid, q quiet, E exit with the target, S stop when nothing to spy, d keys.
    assert chanspy.options(SpyMode.LISTEN) == "quESd"
    assert chanspy.options(SpyMode.WHISPER) == "quESdw"
    assert chanspy.options(SpyMode.BARGE) == "quESdB"
    assert [chanspy.mode_digit(m) for m in SpyMode] == ["4", "5", "6"]


def test_eavesdrop_selectors_are_the_recorded_ones() -> None:
    assert eavesdrop.variables(SpyMode.LISTEN) == ()
    assert eavesdrop.variables(SpyMode.WHISPER) == (("eavesdrop_whisper_bleg", "true"),)
    assert eavesdrop.variables(SpyMode.BARGE) == (
        ("eavesdrop_whisper_aleg", "true"),
        ("eavesdrop_whisper_bleg", "true"),
    )
    assert [eavesdrop.mode_digit(m) for m in SpyMode] == ["0", "2", "3"]


async def test_asterisk_spy_refuses_a_target_that_could_change_chanspys_arguments() -> None:
    driver = AsteriskDriver("ast", "127.0.0.1", 1, "u", "s")
    for bad in ("leg,quESdB", "PJSIP/agent1", "x)", ""):
        with pytest.raises(UnsafeValue):
            await driver.spy(
                SpyRequest("spy-1", DialTarget("endpoint", "supervisor1"), bad, SpyMode.LISTEN)
            )


def test_spy_plan_uses_the_agents_own_leg_and_checks_the_endpoint() -> None:
    on_call = AgentStatus("alice", AgentState.ON_CALL, call_id="caller-1")
    allowed = allowed_endpoints(
        "sw",
        "asterisk",
        {"sw": ("PJSIP/supervisor1",), "other": ("PJSIP/boss",)},
        [{"sw": "PJSIP/agent1"}, {"fs": "user/agent9"}],
    )
    assert allowed == {"supervisor1", "agent1"}
    plan = spy_plan(
        status=on_call,
        leg="leg-7",
        switch="sw",
        switch_kind="asterisk",
        endpoint="PJSIP/supervisor1",
        mode=SpyMode.WHISPER,
        allowed=allowed,
    )
    assert (plan.spied_leg, plan.endpoint, plan.caller_call_id) == (
        "leg-7",
        "supervisor1",
        "caller-1",
    )
    with pytest.raises(UnknownSupervisorEndpoint) as err:
        spy_plan(
            status=on_call,
            leg="leg-7",
            switch="sw",
            switch_kind="asterisk",
            endpoint="PJSIP/boss",
            mode=SpyMode.LISTEN,
            allowed=allowed,
        )
    assert err.value.details["allowed"] == ["agent1", "supervisor1"]
    with pytest.raises(AgentNotOnCall):
        spy_plan(
            status=AgentStatus("alice", AgentState.WRAP_UP),
            leg="",
            switch="sw",
            switch_kind="asterisk",
            endpoint="supervisor1",
            mode=SpyMode.LISTEN,
            allowed=allowed,
        )


def test_pending_outcome() -> None:
    assert [pending_outcome(s) for s in AgentState] == [
        "drop",
        "apply",
        "wait",
        "wait",
        "wait",
        "apply",
    ]


def _ready(r: Rig, *ids: str) -> None:
    for agent_id in ids:
        r.acd.login(agent_id)
        r.clock.t += 1
        r.acd.ready(agent_id)


async def _connected(r: Rig, caller: str = "c1") -> str:
    r.calls.caller(caller)
    await r.acd.enter(caller, queue="sales")
    await r.settle()
    leg = r.calls.originates[-1][0]
    r.answered(leg)
    await r.settle()
    return leg


async def test_spy_session_follows_its_leg_and_ends_with_the_agents_call() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES])
    r.acd._state.settings = AcdSettings(supervisor_endpoints={"sw": ("PJSIP/supervisor1",)})
    _ready(r, "alice")
    leg = await _connected(r)
    session, created = await r.acd.spy("alice", SpyMode.LISTEN, "PJSIP/supervisor1", "token:t1")
    assert created and r.switch.of("spy") == [
        ("spy", session.spy_id, "supervisor1", leg, SpyMode.LISTEN)
    ]
    with pytest.raises(SpyNotConnected):  # still ringing: nothing receives the digit yet
        await r.acd.spy("alice", SpyMode.BARGE, "supervisor1", "token:t1")
    r.answered(session.spy_id)
    again, created = await r.acd.spy("alice", SpyMode.BARGE, "supervisor1", "token:t1")
    assert again is session and not created
    assert r.switch.of("spy_mode") == [("spy_mode", session.spy_id, SpyMode.BARGE)]
    assert [e["state"] for e in r.events.of("SupervisorSpy")] == [
        "ringing",
        "connected",
        "connected",
    ]
    assert r.acd.status("alice").state is AgentState.ON_CALL  # the spy is not the agent's call
    r.hung_up(leg)  # the agent's leg ends: the supervisor's leg is hung up too
    await r.settle()
    assert ("hangup", session.spy_id) in r.switch.actions
    r.hung_up(session.spy_id)
    assert r.events.of("SupervisorSpy")[-1]["state"] == "ended"
    assert not r.acd.supervisor.spies


async def test_a_phone_already_spying_is_not_rung_for_a_second_agent() -> None:
    # Regression: supervisor1 listening to alice was rung again to listen to bob (a second
    # ChanSpy originate to a phone already in a call). Now 409 supervisor-endpoint-busy.
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [SALES])
    r.acd._state.settings = AcdSettings(
        supervisor_endpoints={"sw": ("PJSIP/supervisor1", "PJSIP/supervisor2")}
    )
    _ready(r, "alice", "bob")
    await _connected(r, "c1")
    await _connected(r, "c2")
    assert r.states() == {"alice": "on_call", "bob": "on_call"}
    first, _ = await r.acd.spy("alice", SpyMode.LISTEN, "PJSIP/supervisor1", "token:t1")
    for answered in (False, True):  # ringing, then connected: busy either way
        if answered:
            r.answered(first.spy_id)
        with pytest.raises(SupervisorEndpointBusy) as info:
            await r.acd.spy("bob", SpyMode.LISTEN, "supervisor1", "token:t2")
        assert info.value.status == 409
        assert info.value.details["spy_id"] == first.spy_id
        assert info.value.details["agent_id"] == "alice"
    assert len(r.switch.of("spy")) == 1  # the busy phone was never rung again
    assert r.acd.supervisor.spies_of("bob") == []
    r.clock.t += 60  # long after: still on the switch, still busy
    with pytest.raises(SupervisorEndpointBusy):
        await r.acd.spy("bob", SpyMode.LISTEN, "supervisor1", "token:t2")
    other, created = await r.acd.spy("bob", SpyMode.LISTEN, "supervisor2", "token:t2")
    assert created and other.endpoint == "supervisor2"  # another phone may
    r.hung_up(first.spy_id)  # supervisor1 hangs up: free for another call
    r.hung_up(other.spy_id)
    again, created = await r.acd.spy("bob", SpyMode.WHISPER, "supervisor1", "token:t1")
    assert created and again.agent_id == "bob" and len(r.switch.of("spy")) == 3


async def test_a_spy_session_whose_end_was_lost_does_not_keep_the_phone_busy() -> None:
    # The link was away when the supervisor's leg ended (no HungUp ever came): the phone is
    # not refused as busy forever; the switch's channel list says the leg is gone.
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [SALES])
    r.acd._state.settings = AcdSettings(supervisor_endpoints={"sw": ("PJSIP/supervisor1",)})
    _ready(r, "alice", "bob")
    await _connected(r, "c1")
    await _connected(r, "c2")
    first, _ = await r.acd.spy("alice", SpyMode.LISTEN, "supervisor1", "token:t1")
    r.answered(first.spy_id)
    r.switch.live.discard(first.spy_id)  # gone on the switch, its HungUp lost
    r.clock.t += 1
    with pytest.raises(SupervisorEndpointBusy):  # too young to judge from a channel list
        await r.acd.spy("bob", SpyMode.LISTEN, "supervisor1", "token:t2")
    r.clock.t += 5
    second, created = await r.acd.spy("bob", SpyMode.LISTEN, "supervisor1", "token:t2")
    assert created and second.agent_id == "bob"
    assert first.state == "ended" and first.spy_id not in r.acd.supervisor.spies
    ended = [e for e in r.events.of("SupervisorSpy") if e["spy_id"] == first.spy_id]
    assert ended[-1]["state"] == "ended"


async def test_a_supervisors_pause_waits_for_the_call_and_wrap_up_and_no_call_comes_first() -> None:
    r = rig([agent("alice", {"sales": 9})], [QueueSpec("sales", skills={"sales": 5}, wrap_up_s=2)])
    _ready(r, "alice")
    leg = await _connected(r)
    with pytest.raises(UnknownPauseReason):
        r.acd.force("alice", "pause", "nap", "token:boss")
    view = r.acd.force("alice", "pause", "training", "token:boss", note="coaching at 2")
    assert view["supervisor_action"] == {"action": "pause", "applied": False, "pending": "pause"}
    assert view["pending_supervisor_action"]["reason"] == "training"
    r.calls.caller("c2")
    await r.acd.enter("c2", queue="sales")  # waits: alice is busy
    r.clock.t += 5
    r.hung_up("c1")
    r.hung_up(leg)
    await r.settle()
    assert r.acd.status("alice").state is AgentState.WRAP_UP
    r.clock.t += 2
    r.acd.tick()  # wrap-up over: the pause is applied in the same change, before routing
    await r.settle()
    st = r.acd.status("alice")
    assert (st.state, st.pause_reason) == (AgentState.PAUSED, "training")
    assert len(r.calls.originates) == 1  # c2 was never offered to alice
    applied = r.events.of("AgentSupervised")
    assert [(e["action"], e["applied"]) for e in applied] == [
        ("force-pause", False),
        ("force-pause", True),
    ]
    assert applied[-1]["actor"] == "token:boss" and applied[-1]["note"] == "coaching at 2"


async def test_a_supervisors_logout_of_an_idle_agent_is_at_once() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES])
    _ready(r, "alice")
    view = r.acd.force("alice", "logout", "left without logging out", "token:boss")
    assert view["state"] == "logged_out" and view["supervisor_action"]["applied"] is True


async def test_move_between_queues_changes_who_routing_offers_and_is_persisted() -> None:
    both = agent("alice", {"sales": 9, "tech": 6})
    r = rig([both, agent("bob", {"sales": 5})], [SALES, TECH])
    _ready(r, "alice")
    r.acd.force("alice", "pause", "break", "token:boss")
    r.calls.caller("t1")
    await r.acd.enter("t1", queue="tech")
    assert r.acd.agent_view("alice")["queues"] == ["sales", "tech"]
    with pytest.raises(InvalidQueueMove):
        r.acd.move("bob", "sales", "tech", "token:boss")  # bob lacks the tech skill
    with pytest.raises(QueueNotFound):
        r.acd.move("alice", "support", "tech", "token:boss")
    with pytest.raises(InvalidQueueMove):
        r.acd.move("bob", "tech", "sales", "token:boss")  # bob does not serve tech
    view = r.acd.move("alice", "tech", "sales", "token:boss")
    assert view["queues"] == ["sales"]
    r.acd.ready("alice")
    await r.settle()
    assert r.calls.originates == []  # the tech caller is not offered to alice any more
    r.acd.move("alice", "sales", "tech", "token:boss")
    await r.settle()
    assert [cmd.endpoint for _, cmd in r.calls.originates] == ["alice"]  # offered at once
    rows = r.history.of("agent_queues", key="kind")
    assert [row["queues"] for row in rows] == [["sales"], ["tech"]]
    assert r.live.writes[("agent", "alice")].queues == ["tech"]
    moves = [e for e in r.events.of("AgentSupervised") if e["action"] == "move"]
    assert [(e["from"], e["to"]) for e in moves] == [("tech", "sales"), ("sales", "tech")]
