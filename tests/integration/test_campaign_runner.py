"""The campaign runner on a real PostgreSQL, with the switch and the ACD played by fakes and
the clock controlled: what it dials, when, and what every attempt comes to."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from engine.agents.model import AgentState, AgentStatus
from engine.calls.errors import SwitchUnavailable
from engine.calls.model import CallState
from engine.campaigns import flight_tracker, lease_loop
from engine.campaigns.flights import FlightPhase
from engine.campaigns.model import AmdSettings, CallingWindow, CampaignSpec
from engine.campaigns.runner import PREVIEW_AGENT_VAR, CampaignRunner
from engine.campaigns.store import Pick
from engine.dialer.pacing.view import OBSERVATION_TYPES
from engine.pbx.base import Amd, DialplanTarget
from engine.speech.amd import FAST, AmdOverrides
from engine.store.pg.pool import PgStore
from engine.trunks.errors import TrunksUnavailable
from tests.campaign_fakes import FakeLeases, Rig, make_rig

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # Wednesday: 10:00 New York, 23:00 Shanghai
NY, SH = "America/New_York", "Asia/Shanghai"


def spec(**changes: object) -> CampaignSpec:
    base: dict[str, object] = {
        "trunk_group": "g",
        "queue": "sales",
        "mode": "progressive",
        "window": CallingWindow(days=("mon", "tue", "wed", "thu", "fri")),
        "safe_harbour_s": 0.3,
    }
    base.update(changes)
    return CampaignSpec.model_validate(base)


@pytest.fixture
def cid() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pool(pg_store: PgStore) -> asyncpg.Pool:
    return pg_store.pool


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def started(rig: Rig, s: CampaignSpec) -> CampaignRunner:
    runner = rig.runner(s)
    runner.token = 1
    assert await rig.store.take_fence(rig.campaign_id, 1)
    return runner


async def test_only_contacts_whose_window_is_open_are_dialled(pool: asyncpg.Pool, cid: str) -> None:
    contacts = [("+12125550101", NY), ("+12125550102", NY), ("+8613800000001", SH)]
    rig = await make_rig(pool, cid, spec(), contacts, now=NOW)
    await pool.execute("INSERT INTO dnc (campaign_id, phone) VALUES ('', '+12125550102')")
    runner = rig.runner(spec())
    runner.token = 1
    assert await rig.store.take_fence(cid, 1)
    assert await runner.dial(10, NOW) == 1
    await until(lambda: len(rig.calls.placed) == 1)
    assert [c.to for c in rig.calls.placed] == ["12125550101"]  # not on DNC, window open
    # 01:00 UTC Thursday: 09:00 in Shanghai (open), 20:00 in New York (shut).
    later = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
    assert await runner.dial(10, later) == 1
    await until(lambda: len(rig.calls.placed) == 2)
    assert rig.calls.placed[-1].to == "8613800000001"
    # Nothing else is dialable: the DNC number never is, in or out of its window.
    assert await runner.dial(10, datetime(2026, 12, 3, 15, 0, tzinfo=UTC)) == 0


async def test_a_stale_fencing_token_claims_nothing(pool: asyncpg.Pool, cid: str) -> None:
    rig = await make_rig(pool, cid, spec(), [("+12125550111", NY)], now=NOW)
    assert await rig.store.take_fence(cid, 7)
    (contact_id,) = [
        r["contact_id"]
        for r in await pool.fetch("SELECT contact_id FROM contacts WHERE campaign_id = $1", cid)
    ]
    pick = Pick(contact_id, uuid.uuid4().hex, str(uuid.uuid4()), "12125550111")
    assert await rig.store.claim(cid, 6, [pick]) == []
    assert not await rig.store.take_fence(cid, 6)
    assert len(await rig.store.claim(cid, 7, [pick])) == 1
    # Claimed once: a second claim of the same contact finds it dialling.
    again = Pick(contact_id, uuid.uuid4().hex, str(uuid.uuid4()), "12125550111")
    assert await rig.store.claim(cid, 7, [again]) == []


async def test_human_machine_busy_and_carrier_failure(pool: asyncpg.Pool, cid: str) -> None:
    phones = ["+12125550121", "+12125550122", "+12125550123", "+12125550124"]
    rig = await make_rig(pool, cid, spec(), [(p, NY) for p in phones], now=NOW)
    runner = await started(rig, spec())
    rig.acd.add_agent("a1")
    assert await runner.dial(4, NOW) == 4
    await until(lambda: len(rig.calls.placed) == 4)
    by_to = {c.to: str(c.call_id) for c in rig.calls.placed}
    human, machine, busy, failed = (by_to[p.lstrip("+")] for p in phones)
    for cmd in rig.calls.placed:
        assert cmd.then == Amd()  # the switch's own AMD parameters (amd.profile "switch")
        assert cmd.variables["ENGINE_SAFE_HARBOUR_PROMPT"] == "engine-safe-harbour"
    # A person: handed to the queue, an agent takes it within the safe-harbour time.
    rig.calls.answer(human)
    rig.clock.t += 1.2
    rig.calls.amd(human, "HUMAN")
    await until(lambda: human in rig.acd.entries)
    rig.clock.t += 0.5
    rig.acd.connect(human, "a1")
    runner._follow()
    # A machine: hung up, never queued.
    rig.calls.answer(machine)
    rig.calls.amd(machine, "MACHINE")
    await until(lambda: machine in rig.calls.hung_up)
    assert machine not in rig.acd.entries
    rig.calls.end(busy, cause=17, sip=486)
    rig.calls.end(failed, cause=34, sip=503)
    rig.clock.t += 60
    for call_id in (human, machine):
        rig.calls.end(call_id)
    await rig.flush()
    contacts = await rig.contacts()
    assert contacts[phones[0]]["state"] == "done"
    assert contacts[phones[0]]["final_outcome"] == "human"
    busy_row = contacts[phones[2]]
    assert (busy_row["state"], busy_row["attempts"]) == ("ready", 1)
    # It ended 1.7 s after the dial (the clock's moves above): busy retries 15 min later.
    assert busy_row["next_at"] == NOW + timedelta(minutes=15, seconds=1.7)
    carrier = contacts[phones[3]]
    assert (carrier["state"], carrier["attempts"]) == ("ready", 0)  # not counted
    attempts = {a["phone"]: a for a in await rig.attempts()}
    assert attempts[phones[0]]["agent_id"] == "a1"
    assert attempts[phones[0]]["seconds_to_agent"] == pytest.approx(1.7)
    assert attempts[phones[1]]["outcome"] == "machine"
    assert attempts[phones[1]]["agent_id"] is None
    assert attempts[phones[2]]["sip_code"] == 486
    assert {a["state"] for a in attempts.values()} == {"done"}
    assert set(rig.events.kinds("type")) >= {"ContactDialed", "AttemptEnded", "ContactFinished"}


async def test_no_claim_while_the_switch_cannot_take_a_call(pool: asyncpg.Pool, cid: str) -> None:
    """docs/campaigns.md "Waiting for the switch": while ``RunnerDeps.blocked`` names a reason
    (the trunk group's switch links down or syncing), a dial turn claims nothing; once it is
    None the contacts are dialled."""
    phones = ["+12125550141", "+12125550142"]
    rig = await make_rig(pool, cid, spec(), [(p, NY) for p in phones], now=NOW)
    why: list[str | None] = ["fs-carrier: switch freeswitch-1 unavailable (link not up)"]
    rig.deps.blocked = lambda group: why[0] if group == "g" else "unknown group"
    runner = await started(rig, spec())
    rig.acd.add_agent("a1")
    rig.acd.add_agent("a2")
    for _ in range(3):
        await runner._dial_turn()
    assert rig.calls.placed == [] and await rig.attempts() == []
    assert runner.last_decision["blocked"] == why[0]
    why[0] = None
    await runner._dial_turn()
    await until(lambda: len(rig.calls.placed) == 2)
    assert "blocked" not in runner.last_decision


async def test_an_originate_refused_for_a_link_down_is_no_attempt(
    pool: asyncpg.Pool, cid: str
) -> None:
    """Refused because no switch link could take it (issue 8's classification): not a carrier
    failure. The contact is ready again as before the claim, with no attempt row, nothing
    counted and no 5-minute retry; the same for a trunk-group call whose every leg failed on a
    link that was down (the planner's "switch-unavailable")."""
    phones = ["+12125550131", "+12125550132", "+12125550133"]
    rig = await make_rig(pool, cid, spec(), [(p, NY) for p in phones], now=NOW)
    runner = await started(rig, spec())
    before = await rig.contacts()
    rig.calls.fail_with = SwitchUnavailable("no switch link is up")
    assert await runner.dial(1, NOW) == 1
    await until(lambda: not runner.flights)
    rig.calls.fail_with = TrunksUnavailable(
        "trunk group 'g' cannot take the call: switch-unavailable", retry_after_s=1.0
    )
    rig.calls.fail_with.error_id = "switch-unavailable"  # as TrunkService.admit sets it
    assert await runner.dial(1, NOW) == 1
    await until(lambda: not runner.flights)
    rig.calls.fail_with = None
    assert await runner.dial(1, NOW) == 1
    await until(lambda: len(rig.calls.placed) == 1)
    call_id = str(rig.calls.placed[0].call_id)
    rig.calls.change(
        call_id,
        state=CallState.ENDED,
        ended_at=rig.clock(),
        cause=38,
        cause_text="NETWORK_OUT_OF_ORDER (not placed: link down)",
        trunk_failure="switch-unavailable: self-trunk: switch asterisk-1 unavailable",
        attempts=({"attempt": 1, "trunk": "self-trunk", "verdict": "not-placed"},),
    )
    assert not runner.flights
    await rig.flush()
    assert await rig.attempts() == []
    after = await rig.contacts()
    for phone in phones:
        keep = ("state", "rank", "next_at", "attempts", "attempts_today", "attempt_id")
        assert {k: after[phone][k] for k in keep} == {k: before[phone][k] for k in keep}
    assert runner.counters["dials"] == 0 and runner.counters["carrier_failures"] == 0
    assert runner.stats.dials == 0
    assert "AttemptEnded" not in rig.events.kinds("type")
    # Dialled again at the next claim, as any ready contact.
    assert await runner.dial(3, NOW) == 3


async def test_a_person_no_agent_takes_gets_safe_harbour(pool: asyncpg.Pool, cid: str) -> None:
    rig = await make_rig(pool, cid, spec(), [("+12125550131", NY)], now=NOW)
    runner = await started(rig, spec())
    runner.keep_observations()
    rig.acd.add_agent("a1")
    await runner.dial(1, NOW)
    await until(lambda: len(rig.calls.placed) == 1)
    call_id = rig.calls.placed[0].call_id
    assert call_id is not None
    rig.calls.answer(call_id)
    rig.calls.amd(call_id, "HUMAN")
    # Nobody answers: when the timer fires the caller leaves the queue and hears the message.
    await until(lambda: bool(rig.calls.redirected), timeout_s=5)
    assert rig.acd.withdrawn == [call_id]
    assert rig.calls.redirected == [(call_id, DialplanTarget("engine-safe-harbour", "s", 1))]
    rig.calls.end(call_id)
    await rig.flush()
    (attempt,) = await rig.attempts()
    assert (attempt["outcome"], attempt["abandoned"]) == ("abandoned", True)
    assert "CallAbandoned" in rig.events.kinds("type")
    assert runner.counters["abandoned"] == 1
    assert all(isinstance(o, OBSERVATION_TYPES) for o in runner.observations)
    assert runner.observations


async def test_a_callee_gone_during_the_amd_analysis_is_no_answer_not_abandoned(
    pool: asyncpg.Pool, cid: str
) -> None:
    """A callee who hangs up while the AMD listens (app_amd's HANGUP, or the end before any
    verdict) was never handed over: no live answer, no abandon (47 CFR 64.1200(a)(7): nobody
    was left past two seconds after a completed greeting), retried as no answer. Before the
    fix the HANGUP verdict was handed to the queue as a person and its end counted abandoned."""
    phones = ["+12125550151", "+12125550152"]
    rig = await make_rig(pool, cid, spec(), [(p, NY) for p in phones], now=NOW)
    runner = await started(rig, spec())
    rig.acd.add_agent("a1")
    assert await runner.dial(2, NOW) == 2
    await until(lambda: len(rig.calls.placed) == 2)
    by_to = {c.to: str(c.call_id) for c in rig.calls.placed}
    verdict, silent = (by_to[p.lstrip("+")] for p in phones)
    # The switch's order (docs/amd.md): AmdResult HANGUP (cause "") before the leg's HungUp.
    rig.calls.answer(verdict)
    rig.clock.t += 1.5
    rig.calls.change(verdict, amd_status="HANGUP", amd_cause="", amd_at=rig.clock())
    # The other: ended before any verdict.
    rig.calls.answer(silent)
    await asyncio.sleep(0)
    assert not rig.acd.entries
    assert runner.flights[verdict].phase is FlightPhase.GONE
    assert len(runner.view_now().ringing_since) == 1  # the silent one: the AMD still listens
    rig.clock.t += 0.2
    rig.calls.end(verdict)
    rig.calls.end(silent)
    await asyncio.sleep(0)
    assert not rig.acd.entries and not rig.calls.redirected
    stats = runner.pacing.stats
    assert (stats.handed_over, stats.dropped, stats.amd_human) == (0, 0, 0)
    assert runner.period_figures().live == 0
    assert (runner.counters["human"], runner.counters["abandoned"]) == (0, 0)
    await rig.flush()
    attempts = {a["phone"]: a for a in await rig.attempts()}
    for phone in phones:
        row = attempts[phone]
        assert (row["outcome"], row["abandoned"], row["agent_id"]) == ("no_answer", False, None)
    assert (attempts[phones[0]]["amd_status"], attempts[phones[0]]["amd_cause"]) == ("HANGUP", "")
    assert attempts[phones[1]]["amd_status"] is None
    contacts = await rig.contacts()
    for phone in phones:
        assert (contacts[phone]["state"], contacts[phone]["attempts"]) == ("ready", 1)
        assert contacts[phone]["next_at"] == NOW + timedelta(hours=2, seconds=1.7)
    amd_events = [e for e in rig.events.items if e.get("type") == "CampaignAmdResult"]
    assert [(e["status"], e["cause"]) for e in amd_events] == [("HANGUP", "")]
    assert "CallAbandoned" not in rig.events.kinds("type")


async def test_a_person_who_hangs_up_waiting_is_dropped_only_past_the_safe_harbour_time(
    pool: asyncpg.Pool, cid: str
) -> None:
    """47 CFR 64.1200(a)(7): a call is abandoned when no agent is there within the time. A
    person who hung up in the queue while it still ran was not abandoned by the dialer: a live
    answer, no drop (the row's ``abandoned`` false); one gone after it, before the timer's
    release came, was. Both keep the abandoned outcome's retry. Before the fix both were
    drops."""
    s = spec(safe_harbour_s=5.0)
    phones = ["+12125550153", "+12125550154"]
    rig = await make_rig(pool, cid, s, [(p, NY) for p in phones], now=NOW)
    runner = await started(rig, s)
    rig.acd.add_agent("a1")  # who never takes them (the fake ACD connects on request only)
    assert await runner.dial(2, NOW) == 2
    await until(lambda: len(rig.calls.placed) == 2)
    by_to = {c.to: str(c.call_id) for c in rig.calls.placed}
    early, late = (by_to[p.lstrip("+")] for p in phones)
    for call_id in (early, late):
        rig.calls.answer(call_id)
        rig.calls.amd(call_id, "HUMAN")
    await until(lambda: early in rig.acd.entries and late in rig.acd.entries)
    rig.clock.t += 1.0
    rig.calls.end(early)  # 1 s into the 5 s
    rig.clock.t += 5.0
    rig.calls.end(late)  # 6 s: past it, the release timer not yet run
    await asyncio.sleep(0)
    stats = runner.pacing.stats
    assert (stats.handed_over, stats.dropped) == (2, 1)
    figures, fp = runner.period_figures(), stats.false_positive_estimate  # + AMD's estimate
    assert (figures.live - fp, figures.abandoned - fp) == pytest.approx((2, 1))
    assert runner.counters["abandoned"] == 1
    await rig.flush()
    attempts = {a["phone"]: a for a in await rig.attempts()}
    assert (attempts[phones[0]]["outcome"], attempts[phones[0]]["abandoned"]) == (
        "abandoned",
        False,
    )
    assert (attempts[phones[1]]["outcome"], attempts[phones[1]]["abandoned"]) == ("abandoned", True)
    # What the stats and a restarted runner's baseline read from the rows: the same figures.
    baseline = await rig.pool.fetchrow(
        "SELECT count(*) FILTER (WHERE outcome IN ('human', 'abandoned')) AS live, "
        "count(*) FILTER (WHERE abandoned) AS abandoned FROM campaign_attempts "
        "WHERE campaign_id = $1",
        cid,
    )
    assert (baseline["live"], baseline["abandoned"]) == (2, 1)
    contacts = await rig.contacts()
    assert {contacts[p]["state"] for p in phones} == {"ready"}


async def test_no_amd_hands_over_on_answer(pool: asyncpg.Pool, cid: str) -> None:
    s = spec(amd=AmdSettings(enabled=False))
    rig = await make_rig(pool, cid, s, [("+12125550141", NY)], now=NOW)
    runner = await started(rig, s)
    await runner.dial(1, NOW)
    await until(lambda: len(rig.calls.placed) == 1)
    call_id = rig.calls.placed[0].call_id
    assert call_id is not None
    assert rig.calls.placed[0].then.kind == "park"
    rig.calls.answer(call_id)
    await until(lambda: call_id in rig.acd.entries)
    assert rig.acd.entries[call_id].customer["name"] == "n+12125550141"


async def test_the_campaigns_amd_profile_goes_with_every_call(pool: asyncpg.Pool, cid: str) -> None:
    s = spec(amd={"profile": "fast", "params": {"greeting": 900}})
    rig = await make_rig(pool, cid, s, [("+12125550142", NY)], now=NOW)
    runner = await started(rig, s)
    await runner.dial(1, NOW)
    await until(lambda: len(rig.calls.placed) == 1)
    cmd = rig.calls.placed[0]
    # amd-fast.conf's values, greeting replaced by the campaign's own key.
    assert cmd.then == Amd(AmdOverrides(**{**AmdOverrides.of(FAST).given(), "greeting": 900}))
    assert isinstance(cmd.then, Amd) and cmd.then.overrides.after_greeting_silence == 200
    # Kept with the call (the live-call registry), so a resumed analysis uses them too.
    assert cmd.call_id is not None
    assert rig.calls.calls[cmd.call_id].then["params"]["greeting"] == 900


async def test_recovery_adopts_ends_or_holds_open_attempts(pool: asyncpg.Pool, cid: str) -> None:
    phones = ["+12125550151", "+12125550152", "+12125550153"]
    rig = await make_rig(pool, cid, spec(), [(p, NY) for p in phones], now=NOW)
    runner = await started(rig, spec())
    await runner.dial(3, NOW)
    await until(lambda: len(rig.calls.placed) == 3)
    alive, gone, _ = (c.call_id for c in rig.calls.placed)
    assert alive is not None and gone is not None
    # A crash: the engine forgets everything but PostgreSQL and what the switch has.
    rig.records.items.clear()
    rig.calls.calls.clear()
    rig.calls.adoptable = {alive}
    rig.deps.switches.channels = {alive}  # type: ignore[attr-defined]
    fresh = rig.runner(spec())
    assert await fresh.recover() == 3
    assert set(fresh.flights) == {alive}
    await rig.flush()
    attempts = {a["call_id"]: a for a in await rig.attempts()}
    assert attempts[gone]["state"] == "done"
    assert attempts[gone]["outcome"] == "interrupted"
    assert attempts[alive]["state"] == "pending"  # followed again, not ended


async def test_recovery_acts_on_a_known_verdict_and_waits_for_a_resumed_one(
    pool: asyncpg.Pool, cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    phones = ["+12125550191", "+12125550192", "+12125550193"]
    rig = await make_rig(pool, cid, spec(), [(p, NY) for p in phones], now=NOW)
    runner = await started(rig, spec())
    rig.acd.add_agent("a1")
    await runner.dial(3, NOW)
    await until(lambda: len(rig.calls.placed) == 3)
    decided, mid, later = (str(c.call_id) for c in rig.calls.placed)
    # A crash: nothing acts on what the calls do from now on, until the fresh runner.
    rig.calls.watchers.clear()
    rig.records.items.clear()
    rig.calls.answer(decided)
    rig.calls.amd(decided, "MACHINE")  # the verdict came, its hangup never went out
    rig.calls.answer(mid)  # answered mid-analysis
    fresh = rig.runner(spec())
    assert await fresh.recover() == 3
    # The machine gets the machine action, never an agent.
    await until(lambda: decided in rig.calls.hung_up)
    assert decided not in rig.acd.entries
    # Mid-analysis: held until its resumed verdict (the driver's: base.ResumesAmd).
    assert fresh.flights[mid].phase is FlightPhase.ANSWERED
    rig.calls.amd(mid, "HUMAN")
    await until(lambda: mid in rig.acd.entries)
    # Ringing at the crash and answered after it: it waits for its verdict too, and is
    # handed over without one only when none comes within the bound.
    monkeypatch.setattr(flight_tracker, "AMD_RESUME_BOUND_S", 0.05)
    rig.calls.answer(later)
    assert fresh.flights[later].phase is FlightPhase.ANSWERED
    await until(lambda: later in rig.acd.entries)
    assert fresh.flights[later].amd_status is None


async def test_the_lease_is_taken_only_where_the_queue_is_served(
    pool: asyncpg.Pool, cid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several engines: a runner asks for its campaign's lease only once this engine serves
    the campaign's queue (holds the queue's lease and has rebuilt it after a takeover).
    Before, the runner of an engine taking over could win the campaign's lease first and
    recover against an ACD that did not know the queue yet: a person talking to an agent
    at the owner's death was released with the safe-harbour message (the takeover drill)."""
    monkeypatch.setattr(lease_loop, "LEASE_RENEW_S", 0.01)
    rig = await make_rig(pool, cid, spec(), [("+12125550171", NY)], now=NOW)
    leases = rig.deps.leases
    assert isinstance(leases, FakeLeases)
    rig.acd.serving = False
    runner = rig.runner(spec())
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: rig.acd.serves_asked >= 3)
        assert leases.token == 0, "the lease was asked for while the queue was not served"
        rig.acd.serving = True
        await until(lambda: leases.token == 1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_recovery_keeps_a_preview_call_for_its_agent(pool: asyncpg.Pool, cid: str) -> None:
    s = spec(mode="preview", amd=AmdSettings(enabled=False))
    rig = await make_rig(pool, cid, s, [("+12125550181", NY)], now=NOW)
    runner = await started(rig, s)
    rig.acd.add_agent("a1")
    rig.acd.add_agent("a2")
    await runner._preview_turn()
    (preview,) = runner.previews.values()
    flight = runner.accept(preview.flight.attempt_id)
    await until(lambda: len(rig.calls.placed) == 1)
    assert rig.calls.placed[0].variables[PREVIEW_AGENT_VAR] == preview.agent_id
    # The engine dies before the answer; the call is answered meanwhile.
    rig.calls.watchers.clear()
    rig.records.items.clear()
    rig.calls.answer(flight.call_id)
    fresh = rig.runner(s)
    assert await fresh.recover() == 1
    await until(lambda: flight.call_id in rig.acd.entries)
    assert rig.acd.only_agent[flight.call_id] == preview.agent_id


async def test_recovery_holds_what_no_switch_can_confirm(pool: asyncpg.Pool, cid: str) -> None:
    rig = await make_rig(pool, cid, spec(), [("+12125550161", NY)], now=NOW, channels=None)
    runner = await started(rig, spec())
    await runner.dial(1, NOW)
    await until(lambda: len(rig.calls.placed) == 1)
    rig.records.items.clear()
    rig.calls.calls.clear()
    fresh = rig.runner(spec())
    assert await fresh.recover() == 1
    assert fresh.flights == {}
    await rig.flush()
    (contact,) = (await rig.contacts()).values()
    (attempt,) = await rig.attempts()
    assert (contact["state"], attempt["state"]) == ("held", "held")
    # Not redialled while held: the hopper does not see it.
    assert await fresh.dial(5, NOW) == 0
    assert contact["next_at"] == NOW + timedelta(seconds=spec().quarantine_s)


async def test_preview_mode_offers_then_dials_for_that_agent(pool: asyncpg.Pool, cid: str) -> None:
    s = spec(mode="preview", amd=AmdSettings(enabled=False))
    phones = ["+12125550171", "+12125550172", "+12125550173"]
    rig = await make_rig(pool, cid, s, [(p, NY) for p in phones], now=NOW)
    runner = await started(rig, s)
    rig.acd.add_agent("a1")
    rig.acd.add_agent("a2")
    await runner._preview_turn()
    # One contact per available agent, nothing dialled yet.
    assert {p.agent_id for p in runner.previews.values()} == {"a1", "a2"}
    assert rig.calls.placed == []
    assert rig.events.kinds("type").count("ContactPreview") == 2
    await runner._preview_turn()
    assert len(runner.previews) == 2  # an agent with a preview gets no second one
    first, second = list(runner.previews.values())
    flight = runner.accept(first.flight.attempt_id)
    await until(lambda: len(rig.calls.placed) == 1)
    rig.calls.answer(flight.call_id)
    await until(lambda: flight.call_id in rig.acd.entries)
    assert rig.acd.only_agent[flight.call_id] == first.agent_id
    runner.skip(second.flight.attempt_id)
    await rig.flush()
    attempts = {a["attempt_id"]: a for a in await rig.attempts()}
    skipped = attempts[second.flight.attempt_id]
    assert (skipped["outcome"], skipped["counts"]) == ("skipped", False)
    contact = await pool.fetchrow(
        "SELECT state, attempts FROM contacts WHERE contact_id = $1", second.flight.contact_id
    )
    assert contact is not None and (contact["state"], contact["attempts"]) == ("ready", 0)
    # A preview nobody decides on times out as a skip.
    rig.clock.t += s.preview_timeout_s + 1
    await runner._preview_turn()
    await rig.flush()
    assert len([a for a in await rig.attempts() if a["outcome"] == "skipped"]) >= 1


async def test_calls_ended_on_a_switch_handed_to_another_engine_end_their_flights(
    pool: asyncpg.Pool, cid: str
) -> None:
    """The handback race (issue 15): the runner keeps its campaign's lease a moment longer
    than its engine keeps the switch (the lease loop hands the switch back; the runner hands
    the campaign back at its own renewal), or it recovered its attempts from the registry
    before its engine took the switch over. The calls' ends are then folded and recorded by
    the switch's other owner, and no watcher here hears of them: they stayed ``ringing`` in
    the runner (and held its lines) until the lease moved. The runner now reads their end
    from the calls' record, with the outcome the owner recorded; an answer seen there is
    left to whoever follows the call."""
    phones = ["+12125550181", "+12125550182"]
    rig = await make_rig(pool, cid, spec(), [(p, NY) for p in phones], now=NOW)
    rig.acd.add_agent("a1")
    rig.acd.add_agent("a2")
    runner = rig.runner(spec())
    task = asyncio.create_task(runner.run())
    try:
        await until(
            lambda: len(rig.calls.placed) == 2 and all(f.switch for f in runner.flights.values())
        )
        no_answer, answered = (str(c.call_id) for c in rig.calls.placed)
        # The switch is handed to the other engine: it follows both calls from now on.
        rig.calls.elsewhere = {no_answer, answered}
        rig.calls.answer(answered)
        rig.calls.end(no_answer, cause=19)  # the ring timeout, recorded by the other engine
        await until(lambda: no_answer not in runner.flights)
        # The answer belongs to the engine that follows the call: not handed over from here.
        assert runner.flights[answered].phase is FlightPhase.DIALING
        assert answered not in rig.acd.entries
        rig.calls.end(answered, cause=16)
        await until(lambda: not runner.flights)
    finally:
        runner.stopping = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await rig.flush()
    outcomes = {a["call_id"]: (a["state"], a["outcome"]) for a in await rig.attempts()}
    assert outcomes[no_answer] == ("done", "no_answer"), outcomes
    assert outcomes[answered][1] == "human", outcomes


async def test_a_callback_for_one_agent_waits_for_that_agent_and_goes_to_them(
    pool: asyncpg.Pool, cid: str
) -> None:
    """Disposition "callback" with callback_agent "same": the due callback is dialled only
    while its agent is available (the contacts behind it are not held up meanwhile), and the
    answered person is queued for that agent alone, in preview mode offered to them."""
    owned, fresh = "+12125550181", "+12125550182"
    rig = await make_rig(pool, cid, spec(), [(owned, NY), (fresh, NY)], now=NOW)
    # As a "callback" disposition for the same agent writes it (history.py): rank 0, due.
    await pool.execute(
        "UPDATE contacts SET rank = 0, callback_agent = 'a1', next_at = $2 "
        "WHERE campaign_id = $1 AND phone = $3",
        cid,
        NOW - timedelta(minutes=1),
        owned,
    )
    runner = await started(rig, spec())
    rig.acd.add_agent("a1", AgentState.ON_CALL)
    rig.acd.add_agent("a2")
    # a1 is on a call: the callback waits; the fresh contact is dialled instead.
    assert await runner.dial(1, NOW) == 1
    await until(lambda: len(rig.calls.placed) == 1)
    assert rig.calls.placed[0].to == fresh.lstrip("+")
    # a1 is free: the callback is dialled and its person queued for a1 alone.
    rig.acd.agents["a1"] = AgentStatus(agent_id="a1", state=AgentState.AVAILABLE, since=rig.clock())
    assert await runner.dial(1, NOW) == 1
    await until(lambda: len(rig.calls.placed) == 2)
    cmd = rig.calls.placed[1]
    assert cmd.to == owned.lstrip("+")
    assert cmd.variables[PREVIEW_AGENT_VAR] == "a1"  # kept with the call across a restart
    call_id = str(cmd.call_id)
    rig.calls.answer(call_id)
    rig.calls.amd(call_id, "HUMAN")
    await until(lambda: call_id in rig.acd.entries)
    assert rig.acd.only_agent[call_id] == "a1"


async def test_preview_mode_offers_an_owned_callback_to_its_agent(
    pool: asyncpg.Pool, cid: str
) -> None:
    s = spec(mode="preview", amd=AmdSettings(enabled=False))
    owned, fresh = "+12125550191", "+12125550192"
    rig = await make_rig(pool, cid, s, [(owned, NY), (fresh, NY)], now=NOW)
    await pool.execute(
        "UPDATE contacts SET rank = 0, callback_agent = 'a2', next_at = $2 "
        "WHERE campaign_id = $1 AND phone = $3",
        cid,
        NOW - timedelta(minutes=1),
        owned,
    )
    runner = await started(rig, s)
    rig.acd.add_agent("a1")
    rig.acd.add_agent("a2")
    await runner._preview_turn()
    offered = {p.agent_id: p.flight.phone for p in runner.previews.values()}
    assert offered == {"a2": owned, "a1": fresh}


async def test_a_number_put_on_dnc_after_the_pick_is_not_dialled(
    pool: asyncpg.Pool, cid: str
) -> None:
    """DNC at dial time: the claim checks the lists again (a number added since the hopper
    read it), and a preview accepted after its number went on a list is skipped, not dialled."""
    from engine.campaigns.service import CampaignService

    phone = "+12125550201"
    rig = await make_rig(pool, cid, spec(), [(phone, NY)], now=NOW)
    (row,) = await rig.deps.hopper.pick(
        cid, limit=1, now=NOW, open_tzs=[NY], max_attempts=3, max_per_day=2
    )
    await pool.execute("INSERT INTO dnc (campaign_id, phone) VALUES ('', $1)", phone)
    pick = Pick(row.contact_id, uuid.uuid4().hex, str(uuid.uuid4()), "12125550201")
    assert await rig.store.claim(cid, 0, [pick]) == []
    await pool.execute("DELETE FROM dnc WHERE campaign_id = '' AND phone = $1", phone)

    s = spec(mode="preview", amd=AmdSettings(enabled=False))
    runner = await started(rig, s)
    rig.acd.add_agent("a1")
    await runner._preview_turn()
    (preview,) = runner.previews.values()
    await pool.execute("INSERT INTO dnc (campaign_id, phone) VALUES ($1, $2)", cid, phone)
    service = CampaignService(rig.deps)
    service.runners[cid] = runner
    decided = await service.decide_preview(cid, preview.flight.attempt_id, True)
    assert (decided["decision"], decided["call_id"]) == ("skipped", None)
    await rig.flush()
    assert rig.calls.placed == []
    (attempt,) = await rig.attempts()
    assert attempt["outcome"] == "skipped"


async def test_dispositions_in_wrap_up_callback_same_agent_and_do_not_call(
    pool: asyncpg.Pool, cid: str
) -> None:
    """``POST /v1/calls/{id}/disposition`` after the call (wrap-up): a callback for the same
    agent is dialled at its time only while that agent is free; "do not call" puts the number
    on the global DNC list."""
    from engine.campaigns.service import CampaignService

    phones = ["+12125550211", "+12125550212"]
    rig = await make_rig(pool, cid, spec(), [(p, NY) for p in phones], now=NOW)
    runner = await started(rig, spec())
    rig.acd.add_agent("a1")
    rig.acd.add_agent("a2")
    assert await runner.dial(2, NOW) == 2
    await until(lambda: len(rig.calls.placed) == 2)
    by_to = {c.to: str(c.call_id) for c in rig.calls.placed}
    calls = [by_to[p.lstrip("+")] for p in phones]
    for call_id in calls:
        rig.calls.answer(call_id)
        rig.calls.amd(call_id, "HUMAN")
    await until(lambda: all(c in rig.acd.entries for c in calls))
    for call_id, agent in zip(calls, ("a1", "a2"), strict=True):
        rig.acd.connect(call_id, agent)
        runner._follow()
        rig.calls.end(call_id)
    await rig.flush()
    service = CampaignService(rig.deps)
    at = NOW + timedelta(hours=1)
    body = {"disposition": "callback", "callback_at": at.isoformat(), "callback_agent": "same"}
    assert (await service.disposition(calls[0], body))["applied"] == "now"
    await service.disposition(calls[1], {"disposition": "do_not_call"})
    await rig.flush()
    contacts = await rig.contacts()
    owned = contacts[phones[0]]
    assert (owned["state"], owned["rank"], owned["callback_agent"]) == ("ready", 0, "a1")
    assert owned["next_at"] == at
    assert contacts[phones[1]]["state"] == "done"
    dnc = await pool.fetch("SELECT campaign_id FROM dnc WHERE phone = $1", phones[1])
    assert [r["campaign_id"] for r in dnc] == [""]
    # At its time, a1 on another call: not dialled; a1 free: dialled, for a1 alone.
    rig.acd.agents["a1"] = AgentStatus(agent_id="a1", state=AgentState.ON_CALL, since=rig.clock())
    assert await runner.dial(2, at) == 0
    rig.acd.agents["a1"] = AgentStatus(agent_id="a1", state=AgentState.AVAILABLE, since=rig.clock())
    assert await runner.dial(2, at) == 1
    await until(lambda: len(rig.calls.placed) == 3)
    assert rig.calls.placed[2].variables[PREVIEW_AGENT_VAR] == "a1"
