"""The ACD service with a fake switch and calls port: the call flow, offers,
abandons, wrap-up, overflow, re-queue, reconcile and restart."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from engine.acd.errors import (
    CallNotAnswered,
    InvalidQueueCall,
    NoQueueForIntent,
    QueueNotOwned,
    UnknownAgent,
)
from engine.acd.live_store import LiveSnapshot, StoredAgent
from engine.acd.model import OverflowRule, QueueSpec, Strategy
from engine.acd.offers import phone_unreachable
from engine.acd.reservations import Reservation
from engine.acd.routing import CallAlreadyQueued
from engine.agents.errors import IllegalAgentTransition, UnknownPauseReason
from engine.calls.commands import OriginateCommand
from engine.calls.errors import SwitchActionFailed
from engine.calls.model import Call, CallState
from engine.pbx.base import Answered, HungUp, LinkState, LiveChannel, OriginateFailed, Resynced
from engine.store.errors import StoreUnavailable
from engine.wiring import calls as wiring_calls
from tests.unit.acd_fakes import Rig, SnapshotStore, agent, rig

SALES = QueueSpec("sales", skills={"sales": 5}, ring_timeout_s=10, wrap_up_s=4.0)


def ready(r: Rig, *ids: str) -> None:
    for agent_id in ids:
        r.acd.login(agent_id)
        r.clock.t += 1
        r.acd.ready(agent_id)


async def test_caller_is_held_offered_bridged_and_the_agent_wraps_up_exactly() -> None:
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 6})], [SALES])
    ready(r, "alice", "bob")  # alice is idle longest
    caller = r.calls.caller("c1")
    r.clock.t += 2
    entry = await r.acd.enter(caller, queue="sales", tags=["VIP"], customer={"name": "Ann Lee"})
    await r.settle()
    assert entry.priority == 3
    assert r.switch.of("moh_start") == [("moh_start", "c1", "default")]
    leg, cmd = r.calls.originates[0]
    assert cmd.endpoint == "alice" and cmd.timeout_s == 10 and cmd.switch == "sw"
    assert cmd.variables["ACD_CALL_ID"] == "c1"
    assert cmd.variables["ACD_CUSTOMER_NAME"] == "Ann Lee"
    assert r.states()["alice"] == "reserved"
    offered = r.events.of("QueueCallOffered")[0]
    assert offered["agent_id"] == "alice" and offered["customer"] == {"name": "Ann Lee"}

    r.clock.t += 3
    r.answered(leg)
    await r.settle()
    assert r.switch.of("bridge") == [("bridge", "c1", leg, "True")]
    assert r.states()["alice"] == "on_call"
    connected = r.events.of("QueueCallConnected")[0]
    assert connected["wait_s"] == 3.0 and connected["agent_call_id"] == leg

    r.clock.t += 20
    r.hung_up("c1")
    r.hung_up(leg)
    assert r.states()["alice"] == "wrap_up"
    assert r.acd.status("alice").wrap_up_until == r.clock.t + 4.0
    r.clock.t += 3.99
    r.acd.tick()
    assert r.states()["alice"] == "wrap_up"  # never early
    r.clock.t += 0.01
    r.acd.tick()
    assert r.states()["alice"] == "available"
    rows = r.history.of("queue_entry", "kind")
    final = rows[-1]
    assert final["outcome"] == "answered" and final["agent_id"] == "alice"
    assert final["wait_s"] == 3.0 and final["talk_s"] == 20.0
    states = [(s["agent_id"], s["state"]) for s in r.history.of("agent_state", "kind")]
    assert states[-4:] == [
        ("alice", "reserved"),
        ("alice", "on_call"),
        ("alice", "wrap_up"),
        ("alice", "available"),
    ]
    kpis = r.acd.queue_view("sales")["kpis"]
    assert kpis["answered"] == 1 and kpis["asa_s"] == 3.0 and kpis["aht_s"] == 24.0
    assert kpis["service_level_pct"] == 100.0 and kpis["abandon_pct"] == 0.0


async def test_no_answer_goes_to_the_next_agent_and_pauses_after_max_no_answer() -> None:
    agents = [agent("alice", {"sales": 9}, max_no_answer=2), agent("bob", {"sales": 6})]
    r = rig(agents, [SALES])
    ready(r, "alice")
    r.clock.t += 1
    r.acd.login("bob")  # bob paused: alice is the only one
    for n, caller in enumerate(("c1", "c2")):
        r.calls.caller(caller)
        await r.acd.enter(caller, queue="sales")
        await r.settle()
        leg = r.calls.leg_of("alice")
        r.clock.t += 10
        r.hung_up(leg, cause=19)
        await r.settle()
        if n == 0:
            assert r.states()["alice"] == "available"
            # c1 is not offered to alice again; it waits at the head.
            assert r.acd.entry_of("c1").phase.value == "waiting"  # type: ignore[union-attr]
    assert r.states()["alice"] == "paused"
    assert r.acd.status("alice").pause_reason == "no-answer"
    r.acd.ready("bob")
    await r.settle()
    # Bob takes the head of the queue: c1 (entered first), not c2.
    assert r.calls.originates[-1][1].endpoint == "bob"
    assert r.calls.originates[-1][1].variables["ACD_CALL_ID"] == "c1"


async def test_abandon_while_waiting_and_while_the_agent_rings() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES])
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    r.clock.t += 5
    r.hung_up("c1")
    gone = r.events.of("QueueCallAbandoned")[0]
    assert gone["while"] == "waiting" and gone["wait_s"] == 5.0

    ready(r, "alice")
    r.calls.caller("c2")
    await r.acd.enter("c2", queue="sales")
    await r.settle()
    leg = r.calls.leg_of("alice")
    r.clock.t += 2
    r.hung_up("c2")
    await r.settle()
    gone = r.events.of("QueueCallAbandoned")[1]
    assert gone["while"] == "ringing" and gone["offers"] == 1
    assert leg in r.calls.hangups  # the agent's phone stops ringing
    assert r.states()["alice"] == "available"
    assert r.acd.status("alice").missed_in_row == 0  # not the agent's fault
    assert r.live.writes[("resv", f"{gone['entry_id']} alice")] is None
    kpis = r.acd.queue_view("sales")["kpis"]
    assert kpis["abandoned"] == 2 and kpis["abandon_pct"] == 100.0
    # The late HungUp of the cancelled leg changes nothing.
    r.hung_up(leg, cause=16)
    assert r.states()["alice"] == "available"


async def test_higher_priority_is_served_first() -> None:
    r = rig([agent("a1", {"sales": 5})], [SALES])
    for caller, tags in (("normal", ["normal"]), ("high", ["high_value"]), ("vip", ["VIP"])):
        r.calls.caller(caller)
        await r.acd.enter(caller, queue="sales", tags=tags)
        r.clock.t += 1
    ready(r, "a1")
    await r.settle()
    assert [cmd.variables["ACD_CALL_ID"] for _, cmd in r.calls.originates] == ["vip"]
    waiting = r.acd.queue_view("sales")["waiting"]
    assert [(w["call_id"], w["position"], w["state"]) for w in waiting] == [
        ("vip", 1, "ringing"),
        ("high", 2, "waiting"),
        ("normal", 3, "waiting"),
    ]


async def test_ring_all_rings_everyone_and_cancels_the_others_on_answer() -> None:
    q = QueueSpec("sales", skills={"sales": 1}, strategy=Strategy.RING_ALL, ring_timeout_s=10)
    r = rig([agent("a1", {"sales": 5}), agent("a2", {"sales": 5})], [q])
    ready(r, "a1", "a2")
    for caller in ("first", "second"):
        r.calls.caller(caller)
        await r.acd.enter(caller, queue="sales")
    await r.settle()
    rung = [(cmd.endpoint, cmd.variables["ACD_CALL_ID"]) for _, cmd in r.calls.originates]
    assert rung == [("a1", "first"), ("a2", "first")]
    r.answered(r.calls.leg_of("a2"))
    await r.settle()
    assert r.calls.leg_of("a1", 0) in r.calls.hangups
    assert r.states() == {"a1": "reserved", "a2": "on_call"}
    # a1, freed, is offered the next caller at once.
    assert r.calls.originates[-1][1].variables["ACD_CALL_ID"] == "second"


async def test_events_before_the_originate_returns_are_not_lost() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES])
    ready(r, "alice")
    original = r.calls.originate

    async def answering_first(cmd: OriginateCommand, key: str | None = None) -> tuple[Call, bool]:
        call, created = await original(cmd, key)
        # The switch's Answered reaches the ACD before the originate returns.
        r.acd.handle(Answered(switch="sw", call_id=call.call_id, ts=r.clock.t))
        return call, created

    r.calls.originate = answering_first  # type: ignore[method-assign,assignment]
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    assert r.states()["alice"] == "on_call"
    assert len(r.switch.of("bridge")) == 1


async def test_timed_overflow_relaxes_skills_then_leaves_for_an_ivr_flow() -> None:
    q = QueueSpec(
        "sales",
        skills={"sales": 8},
        overflow=(OverflowRule(30.0, relax_skills={"sales": 3}), OverflowRule(60.0, ivr_flow="vm")),
    )
    r = rig([agent("junior", {"sales": 4})], [q])
    ready(r, "junior")
    r.calls.caller("c1")
    r.calls.caller("c2")
    await r.acd.enter("c1", queue="sales")
    r.clock.t += 29.9
    r.acd.tick()
    assert r.calls.originates == []
    r.clock.t += 0.1
    r.acd.tick()
    await r.settle()
    ov = r.events.of("QueueCallOverflowed")[0]
    assert ov["stage"] == 1 and ov["actions"] == [{"relax_skills": {"sales": 3}}]
    assert r.calls.originates[0][1].endpoint == "junior"
    r.answered(r.calls.leg_of("junior"))
    # c2 waits unanswered (junior is busy) and leaves for the IVR after 60 s.
    await r.acd.enter("c2", queue="sales")
    r.clock.t += 60
    r.acd.tick()
    await r.settle()
    exits = [e for e in r.events.of("QueueCallOverflowed") if e["exit"]]
    assert [(e["call_id"], e["exit"], e["flow"]) for e in exits] == [("c2", "overflow-ivr", "vm")]
    assert r.switch.of("redirect") == [("redirect", "c2", "IvrTarget(flow='vm')")]
    assert r.acd.entry_of("c2") is None


async def test_agent_hangs_up_first_and_the_callers_call_ends_by_default() -> None:
    assert SALES.after_agent_hangup == "hangup"
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [SALES])
    ready(r, "alice", "bob")
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    leg = r.calls.leg_of("alice")
    r.answered(leg)
    r.clock.t += 10
    r.hung_up(leg)
    assert r.states()["alice"] == "wrap_up"
    r.clock.t += 0.5
    r.acd.tick()
    await r.settle()
    # The conversation is over: no second entry, no offer to bob, the caller hung up.
    assert r.acd.entry_of("c1") is None
    assert len(r.events.of("QueueCallEntered")) == 1
    assert r.calls.hangups == ["c1"]
    assert [o[1].endpoint for o in r.calls.originates] == ["alice"]


async def test_agent_hangs_up_first_and_the_caller_is_requeued_when_the_queue_says_so() -> None:
    requeue = dataclasses.replace(SALES, after_agent_hangup="requeue")
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [requeue])
    ready(r, "alice")
    r.calls.caller("c1")
    first = await r.acd.enter("c1", queue="sales")
    await r.settle()
    leg = r.calls.leg_of("alice")
    r.answered(leg)
    r.clock.t += 10
    r.hung_up(leg)
    assert r.states()["alice"] == "wrap_up"
    r.clock.t += 0.5
    r.acd.tick()
    entry = r.acd.entry_of("c1")
    assert entry is not None and entry.requeued_from == first.entry_id
    assert r.switch.of("moh_start")[-1] == ("moh_start", "c1", "default")
    ready(r, "bob")
    await r.settle()
    assert r.calls.originates[-1][1].endpoint == "bob"


async def test_caller_leaving_a_bridge_is_not_requeued() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES])
    ready(r, "alice")
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    leg = r.calls.leg_of("alice")
    r.answered(leg)
    # FreeSWITCH order: the agent's leg ends first, then the caller's.
    r.hung_up(leg)
    r.clock.t += 0.1
    r.hung_up("c1")
    r.clock.t += 1
    r.acd.tick()
    assert r.acd.entry_of("c1") is None
    assert len(r.events.of("QueueCallEntered")) == 1


async def test_clear_errors() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES], intents={"pre_sale": "sales"})
    with pytest.raises(UnknownAgent):
        r.acd.login("nobody")
    with pytest.raises(IllegalAgentTransition):
        r.acd.ready("alice")  # logged out
    r.acd.login("alice")
    with pytest.raises(UnknownPauseReason):
        r.acd.pause("alice", "nap")
    r.calls.caller("ringing", CallState.RINGING)
    with pytest.raises(CallNotAnswered):
        await r.acd.enter("ringing", queue="sales")
    r.calls.caller("c1")
    with pytest.raises(InvalidQueueCall, match=r"customer\.note"):
        await r.acd.enter("c1", queue="sales", customer={"note": "${SHELL(rm)}"})
    with pytest.raises(NoQueueForIntent):
        await r.acd.enter("c1", intent="refund")
    entry = await r.acd.enter("c1", intent="pre_sale")
    assert entry.queue == "sales"
    with pytest.raises(CallAlreadyQueued):
        await r.acd.enter("c1", queue="sales")


async def test_a_refused_originate_frees_the_agent_without_counting_a_miss() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES])
    ready(r, "alice")
    r.calls.refuse = True
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    assert r.states()["alice"] == "available"
    assert r.acd.status("alice").missed_in_row == 0
    assert r.acd.entry_of("c1").phase.value == "waiting"  # type: ignore[union-attr]


async def _serve_one(r: Rig, caller: str) -> str:
    """Enter ``caller``; the phone rung last answers and hangs up at once. Who took it."""
    r.calls.caller(caller)
    await r.acd.enter(caller, queue="sales")
    await r.settle()
    leg, cmd = r.calls.originates[-1]
    r.answered(leg)
    r.clock.t += 1
    r.hung_up(leg)
    r.hung_up(caller)
    r.clock.t += SALES.wrap_up_s
    r.acd.tick()
    await r.settle()
    return cmd.endpoint or ""


async def test_an_unreachable_phone_loses_its_place_and_is_paused_unreachable() -> None:
    # Regression: an agent whose phone has no registered contact. Asterisk fails the
    # originate at once (OriginateResponse Failure, Reason 0: OriginateFailed cause 38;
    # FreeSWITCH: -ERR USER_NOT_REGISTERED, cause 20). The engine paused it "no-answer", as if
    # it had let the phone ring, so the supervisor looked for an agent ignoring calls.
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [SALES])
    ready(r, "alice", "bob")  # alice idle longest: rung first
    original = r.calls.originate
    causes = iter((38, 20, 38))
    failed: list[float] = []

    async def no_contact_for_alice(
        cmd: OriginateCommand, key: str | None = None
    ) -> tuple[Call, bool]:
        call, created = await original(cmd, key)
        if cmd.endpoint == "alice":
            # Accepted (Async), then failed at once: its event can beat the reply.
            failed.append(r.clock.t)
            r.acd.handle(
                OriginateFailed(switch="sw", call_id=call.call_id, ts=r.clock.t, cause=next(causes))
            )
        return call, created

    r.calls.originate = no_contact_for_alice  # type: ignore[method-assign,assignment]
    assert await _serve_one(r, "c1") == "bob"  # the caller goes on to the next agent
    st = r.acd.status("alice")
    assert (st.state.value, st.missed_in_row, st.idle_since) == ("available", 1, failed[0])
    served = [await _serve_one(r, caller) for caller in ("c2", "c3", "c4")]
    assert served == ["bob"] * 3 and len(failed) == 3  # rung for c1-c3, not c4
    st = r.acd.status("alice")
    assert (st.state.value, st.pause_reason) == ("paused", "unreachable")
    changed = [e for e in r.events.of("AgentStateChanged") if e["agent_id"] == "alice"]
    assert (changed[-1]["state"], changed[-1]["pause_reason"]) == ("paused", "unreachable")
    assert r.acd.agent_view("alice")["pause_reason"] == "unreachable"


@pytest.mark.parametrize(
    ("event", "unreachable"),
    [
        (OriginateFailed(switch="sw", call_id="l", ts=0, cause=38), True),  # Asterisk Reason 0
        (OriginateFailed(switch="sw", call_id="l", ts=0, cause=20), True),  # USER_NOT_REGISTERED
        (OriginateFailed(switch="sw", call_id="l", ts=0, cause=17), False),  # busy: reached
        (HungUp(switch="sw", call_id="l", ts=0, cause=20), True),
        (HungUp(switch="sw", call_id="l", ts=0, cause=19), False),  # rang, not answered
        (HungUp(switch="sw", call_id="l", ts=0, cause=21), False),  # rejected
        (HungUp(switch="sw", call_id="l", ts=0, cause=16), False),
    ],
)
def test_which_ends_of_an_agent_leg_mean_its_phone_was_unreachable(
    event: HungUp | OriginateFailed, unreachable: bool
) -> None:
    assert phone_unreachable(event) is unreachable


async def test_a_switch_refusing_to_dial_the_agent_counts_against_its_phone() -> None:
    # The switch was reached and refused this agent's endpoint (SwitchActionFailed): the
    # agent was freed as if nothing had happened, kept its longest-idle place and was rung
    # first for every caller, forever. Now it counts like an unreachable phone.
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [SALES])
    ready(r, "alice", "bob")
    original = r.calls.originate
    refused: list[str] = []

    async def refusing_alice(cmd: OriginateCommand, key: str | None = None) -> tuple[Call, bool]:
        if cmd.endpoint == "alice":
            refused.append(cmd.variables["ACD_CALL_ID"])
            raise SwitchActionFailed("switch 'sw' refused the originate: Invalid channel")
        return await original(cmd, key)

    r.calls.originate = refusing_alice  # type: ignore[method-assign,assignment]
    served = [await _serve_one(r, caller) for caller in ("c1", "c2", "c3", "c4", "c5")]
    assert served == ["bob"] * 5
    assert refused == ["c1", "c2", "c3"]  # on the base: every caller, alice still first
    st = r.acd.status("alice")
    assert (st.state.value, st.pause_reason) == ("paused", "unreachable")
    # The link being away is still not the agent's fault (forgiven: the test below).


async def test_an_agent_the_switch_could_not_ring_is_offered_the_caller_again_once_it_is_back() -> (
    None
):
    # Regression (stressed test_acd_live (e), real Asterisk): the AMI link dropped while the
    # only fitting agent was offered the caller; the originate was refused (link not up) and
    # the router then held the agent as one who "did not answer this caller", so after the
    # reconnect the caller waited on with that agent free.
    r = rig([agent("alice", {"sales": 9})], [SALES])
    ready(r, "alice")
    r.calls.caller("c1")
    r.switch.state = LinkState.DOWN
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    assert r.calls.originates == []
    assert r.states()["alice"] == "available"
    assert r.acd.entry_of("c1").phase.value == "waiting"  # type: ignore[union-attr]
    r.clock.t += 1
    r.acd._decide()  # still down: not offered again (no retry loop while the link is away)
    await r.settle()
    assert r.calls.originates == []
    r.switch.state = LinkState.UP
    r.clock.t += 1
    r.acd.handle(
        Resynced(switch="sw", call_id="", ts=r.clock.t, live=(LiveChannel("c1", "c1", "answered"),))
    )
    await r.settle()
    assert [cmd.endpoint for _, cmd in r.calls.originates] == ["alice"]
    assert r.states()["alice"] == "reserved"


async def test_reconcile_frees_what_no_live_call_backs() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES])
    ready(r, "alice")
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    orphan = Reservation("gone-entry", "alice", "sales", r.clock.t - 100, r.clock.t + 10)
    r.clock.t += 5
    # The caller's leg vanished without a HungUp (lost event).
    r.switch.live.discard("c1")
    freed = r.acd._reconcile(r.switch.live, [orphan], r.clock.t)
    assert freed >= 1
    assert r.events.of("QueueCallAbandoned")[0]["call_id"] == "c1"
    assert r.states()["alice"] == "available"
    assert r.live.writes[("resv", "gone-entry alice")] is None


async def test_restart_rebuilds_agents_and_frees_those_without_a_live_call() -> None:
    before = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [SALES])
    ready(before, "alice", "bob")
    for caller in ("c1", "c2"):
        before.calls.caller(caller)
        await before.acd.enter(caller, queue="sales")
        await before.settle()
    for agent_id in ("alice", "bob"):
        before.answered(before.calls.leg_of(agent_id))
    await before.settle()
    assert before.states() == {"alice": "on_call", "bob": "on_call"}
    written = before.live.writes
    stored: dict[str, StoredAgent] = {
        ident: v for (kind, ident), v in written.items() if kind == "agent"
    }
    entries: list[dict[str, Any]] = [v for (k, _), v in written.items() if k == "entry" and v]
    alice_leg = before.calls.leg_of("alice")

    after = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [SALES])
    after.clock.t = before.clock.t + 30
    after.acd._store = SnapshotStore(LiveSnapshot(stored, [], entries))  # type: ignore[assignment]
    assert await after.acd.restore() == 4
    assert after.states() == {"alice": "on_call", "bob": "on_call"}
    # The switch lists c1 and alice's leg; c2 and bob's leg ended while the engine was down.
    live = (LiveChannel("c1", "c1", "answered"), LiveChannel(alice_leg, alice_leg, "answered"))
    after.acd.handle(Resynced(switch="sw", call_id="", ts=after.clock.t, live=live))
    await after.settle()
    assert after.states() == {"alice": "on_call", "bob": "wrap_up"}
    # alice's call goes on and ends normally.
    after.hung_up("c1")
    assert after.states()["alice"] == "wrap_up"


class _FlakyStore(SnapshotStore):
    """Redis timing out on the first ``faults`` reads of the live state (a starved host)."""

    def __init__(self, snap: LiveSnapshot, faults: int) -> None:
        super().__init__(snap)
        self.faults = faults

    async def snapshot(self) -> LiveSnapshot:
        if self.faults:
            self.faults -= 1
            raise StoreUnavailable("redis unavailable while reading the ACD's live state: Timeout")
        return self.snap


async def test_a_redis_timeout_on_the_restore_at_start_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found auditing the start's storage reads (after the campaigns' one, 2ce7c80): one
    # Redis timeout on this read at start and every agent started logged out, the callers
    # waiting at the restart never offered.
    monkeypatch.setattr(wiring_calls, "RESTORE_RETRY_S", 0.0, raising=False)
    before = rig([agent("alice", {"sales": 9})], [SALES])
    ready(before, "alice")
    stored: dict[str, StoredAgent] = {
        ident: v for (kind, ident), v in before.live.writes.items() if kind == "agent"
    }
    after = rig([agent("alice", {"sales": 9})], [SALES])
    store = _FlakyStore(LiveSnapshot(stored, [], []), faults=1)
    after.acd._store = store  # type: ignore[assignment]

    class _Calls:
        async def adopt(self) -> int:
            return 0

    async def finished(
        queue: str, since: float, until: float, bucket_s: float, sl_s: float, exclude: Any
    ) -> list[dict[str, Any]]:
        return []

    await wiring_calls.recover(_Calls(), after.acd, finished)  # type: ignore[arg-type]
    assert store.faults == 0
    assert after.states() == {"alice": "available"}


async def test_restart_acts_on_the_switch_only_once_its_link_is_up() -> None:
    # Regression (tests/integration/test_acd_live.py (f), real Asterisk): the drivers
    # publish Resynced while their link is still "syncing", when every action is refused.
    # The ringing phone of an offer in flight at the crash was never hung up, the caller
    # got no hold music, and its new offer failed, so the agent was never offered it again.
    before = rig([agent("alice", {"sales": 9})], [SALES])
    ready(before, "alice")
    before.calls.caller("c1")
    await before.acd.enter("c1", queue="sales")
    await before.settle()
    ringing_leg = before.calls.leg_of("alice")
    assert before.states() == {"alice": "reserved"}
    written = before.live.writes
    stored: dict[str, StoredAgent] = {
        ident: v for (kind, ident), v in written.items() if kind == "agent"
    }
    entries: list[dict[str, Any]] = [v for (k, _), v in written.items() if k == "entry" and v]

    after = rig([agent("alice", {"sales": 9})], [SALES])
    after.clock.t = before.clock.t + 5
    after.acd._store = SnapshotStore(LiveSnapshot(stored, [], entries))  # type: ignore[assignment]
    assert await after.acd.restore() == 2
    after.calls.caller("c1")
    after.calls.calls[ringing_leg] = before.calls.calls[ringing_leg]
    after.switch.state = LinkState.SYNCING
    live = (
        LiveChannel("c1", "c1", "answered"),
        LiveChannel(ringing_leg, ringing_leg, "ringing"),
    )
    after.acd.handle(Resynced(switch="sw", call_id="", ts=after.clock.t, live=live))
    for _ in range(5):
        await asyncio.sleep(0)
    assert (after.calls.hangups, after.switch.actions, after.calls.originates) == ([], [], [])
    after.switch.state = LinkState.UP
    await after.settle()
    # The phone that rang at the crash stops, the caller hears hold music again and keeps
    # its place, and alice (freed, not a miss) is offered it again.
    assert after.calls.hangups == [ringing_leg]
    assert ("moh_start", "c1", "default") in after.switch.actions
    assert len(after.calls.originates) == 1
    assert after.states() == {"alice": "reserved"}
    assert after.acd.status("alice").missed_in_row == 0


@pytest.mark.parametrize("value", ["a|b", "x{y", "q'q", "line\nbreak", "a:_:b"])
async def test_customer_values_the_switches_refuse_are_refused_at_entry(value: str) -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES])
    r.calls.caller("c1")
    with pytest.raises(InvalidQueueCall):
        await r.acd.enter("c1", queue="sales", customer={"note": value})


async def test_only_agent_offers_the_call_to_that_agent_alone() -> None:
    """A preview-mode campaign call goes to the agent who accepted it, not the longest idle."""
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 6})], [SALES])
    ready(r, "alice", "bob")  # alice is idle longest: she would get it by strategy
    caller = r.calls.caller("c1")
    await r.acd.enter(caller, queue="sales", only_agent="bob")
    await r.settle()
    _leg, cmd = r.calls.originates[0]
    assert cmd.endpoint == "bob"
    assert r.states() == {"alice": "available", "bob": "reserved"}


async def test_only_agent_is_kept_across_a_restart() -> None:
    """A preview call waiting for its agent (bob is busy) when the engine restarts is still
    offered to bob alone, not to alice who is free."""
    before = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 6})], [SALES])
    ready(before, "bob")
    before.calls.caller("busy")
    await before.acd.enter("busy", queue="sales")
    await before.settle()
    before.answered(before.calls.leg_of("bob"))
    await before.settle()
    before.calls.caller("c1")
    await before.acd.enter("c1", queue="sales", only_agent="bob")
    await before.settle()
    assert before.states() == {"alice": "logged_out", "bob": "on_call"}
    written = before.live.writes
    stored: dict[str, StoredAgent] = {
        ident: v for (kind, ident), v in written.items() if kind == "agent"
    }
    entries: list[dict[str, Any]] = [v for (k, _), v in written.items() if k == "entry" and v]

    after = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 6})], [SALES])
    after.clock.t = before.clock.t + 5
    after.acd._store = SnapshotStore(LiveSnapshot(stored, [], entries))  # type: ignore[assignment]
    await after.acd.restore()
    after.calls.caller("c1")
    live = (LiveChannel("c1", "c1", "answered"),)  # bob's first call ended meanwhile
    after.acd.handle(Resynced(switch="sw", call_id="", ts=after.clock.t, live=live))
    await after.settle()
    ready(after, "alice")
    await after.settle()
    assert after.calls.originates == []  # alice is free, but the call is bob's
    assert after.acd.entry_of("c1") is not None
    assert after.acd.entry_of("c1").excluded == frozenset({"alice"})  # type: ignore[union-attr]


async def test_withdraw_takes_a_waiting_caller_out_as_an_abandon() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES])
    caller = r.calls.caller("c1")
    await r.acd.enter(caller, queue="sales")
    await r.settle()
    assert r.acd.withdraw("c1") is True
    assert r.acd.entry_of("c1") is None
    assert r.events.of("QueueCallAbandoned")[0]["call_id"] == "c1"
    assert r.acd.withdraw("c1") is False  # not queued any more


async def test_only_the_queues_owner_admits_callers() -> None:
    owned: set[str] = set()
    r = rig([agent("alice", {"sales": 9})], [SALES], owns_queue=owned.__contains__)
    ready(r, "alice")
    r.calls.caller("c1")
    with pytest.raises(QueueNotOwned, match="owned by another engine") as refused:
        await r.acd.enter("c1", queue="sales")
    assert refused.value.details["lease"] == "queue:sales"
    assert r.acd.entries() == [] and r.switch.of("originate") == []
    owned.add("sales")
    entry = await r.acd.enter("c1", queue="sales")
    assert entry.queue == "sales"


async def test_a_queue_taken_over_is_rebuilt_from_redis_and_no_agent_stays_stuck() -> None:
    # The owner dies with alice talking to c1 and bob ringing for c2 (c2 and bob's leg gone
    # by the takeover): the new owner's ACD, which saw none of it, rebuilds and frees bob.
    before = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [SALES])
    ready(before, "alice", "bob")
    for caller in ("c1", "c2"):
        before.calls.caller(caller)
        await before.acd.enter(caller, queue="sales")
        await before.settle()
    before.answered(before.calls.leg_of("alice"))
    await before.settle()
    assert before.states() == {"alice": "on_call", "bob": "reserved"}
    written = before.live.writes
    stored = {ident: v for (kind, ident), v in written.items() if kind == "agent"}
    entries: list[dict[str, Any]] = [v for (k, _), v in written.items() if k == "entry" and v]
    alice_leg = before.calls.leg_of("alice")

    standby = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 9})], [SALES])
    standby.clock.t = before.clock.t + 6
    assert standby.states() == {"alice": "logged_out", "bob": "logged_out"}
    standby.acd._store = SnapshotStore(LiveSnapshot(stored, [], entries))  # type: ignore[assignment]
    standby.calls.caller("c1")
    live = [LiveChannel("c1", "c1", "answered"), LiveChannel(alice_leg, alice_leg, "answered")]
    assert await standby.acd.take_over({"sw": live}) >= 3
    await standby.settle()
    assert standby.states()["alice"] == "on_call"
    assert standby.states()["bob"] in ("available", "wrap_up")  # not stuck reserved
    assert standby.acd.entry_of("c2") is None


def _last_row(r: Rig, call_id: str) -> dict[str, Any]:
    """The newest ``queue_entries`` row written for the call's entry."""
    return [row for row in r.history.of("queue_entry", "kind") if row["call_id"] == call_id][-1]


async def test_a_caller_redirected_elsewhere_leaves_the_queue_and_is_never_hung_up_by_it() -> None:
    # AcdService.release (CallService tells it after POST /v1/calls/{id}/redirect): a blind
    # transfer of a connected caller, and a waiting caller sent elsewhere.
    r = rig([agent("alice", {"sales": 9})], [SALES])
    r.acd.login("alice")
    r.clock.t += 1
    r.acd.ready("alice")
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    leg = r.calls.leg_of("alice")
    r.answered(leg)
    await r.settle()
    assert r.acd.release("c1")
    # The agent's leg leaves the bridge as the switch moves the caller.
    r.hung_up(leg)
    r.clock.t += 2  # past the 0.5 s after which the agent hanging up ends the caller's call
    r.acd.tick()
    await r.settle()
    assert "c1" not in r.calls.hangups and r.acd.entry_of("c1") is None
    assert r.acd.status("alice").state.value == "wrap_up"
    assert _last_row(r, "c1")["outcome"] == "answered"

    r.calls.caller("c2")  # alice wraps up: c2 waits
    await r.acd.enter("c2", queue="sales")
    assert r.acd.release("c2") and not r.acd.release("c2")
    (left,) = [e for e in r.events.of("QueueCallOverflowed") if e["call_id"] == "c2"]
    assert left["exit"] == "redirected"
    r.clock.t += 10
    r.acd.tick()  # wrap-up over: alice is free and nobody waits for her
    await r.settle()
    assert r.acd.status("alice").state.value == "available"
    assert "c2" not in r.calls.hangups and r.acd.queue_view("sales")["waiting"] == []
    assert _last_row(r, "c2")["outcome"] == "redirected"
