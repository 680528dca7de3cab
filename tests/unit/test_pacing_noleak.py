"""No ground truth reaches a pacing policy: it learns from what a live dialer sees.

The policy's inputs are the :class:`PacingView` it decides on and the records it observes.

The simulator's half: the records are exactly the shared types, none of them (nor the view's
counters) carries a "was it a person" field, and a campaign whose hand-overs are all people
looks, to the policy, exactly like one whose hand-overs are all undetected machines.

The live runner's half (engine/campaigns/runner.py and flights.py, driven through their own
code with the switch, the ACD and the contact list faked): (a) it hands the policy exactly the
shared types; (b) one switch timeline played with every hand-over a person, then an undetected
machine (the AMD's wording, the hang-up, the agent's disposition differ, and reach the runner)
gives the policy identical records and views; (c) the simulator's timeline of a small AMD
campaign (and one without AMD), replayed as switch and ACD happenings, gives the policy the
simulator's records, record for record, and its view at every simulator decision, within 1 us.
What (c) holds equal on purpose, and why it is not exact: both sides dial the same calls (a
scripted dialler; the runner decides every 0.1 s turn, the simulator on its tick), the live
abandon guard (a progressive fallback the simulator does not model) is held off, the line cap
and drop timer are set to the simulator's (campaign settings), and the live clock is epoch
seconds (float rounding ~1e-7 s). Not covered, because the simulator has no such event: an
agent's phone ringing (RESERVED counts as talking, the talk record starts at ON_CALL), agents
asking to log off after their call (``departing_on_call`` is 0 live), a person hanging up in
the queue (a drop only once the safe-harbour time ran out), a machine message holding a line,
and agent states shorter than one 0.1 s turn (``_follow`` samples them: after a zero wrap-up
the talk record includes it and no wrap record comes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from engine.agents.model import AgentState, AgentStatus
from engine.campaigns.flights import FlightPhase
from engine.campaigns.model import AmdSettings, CallingWindow, CampaignSpec, Disposition
from engine.campaigns.runner import CampaignRunner, RunnerDeps
from engine.campaigns.schemas import DispositionBody
from engine.campaigns.store import CampaignStore, Claimed, Pick
from engine.dialer.assign import LongestIdleAssigner
from engine.dialer.pacing import PacingView, PredictivePolicy, make_policy
from engine.dialer.pacing.view import (
    OBSERVATION_TYPES,
    AgentTaskDone,
    DialResolved,
    Observation,
    PacingPolicy,
    PacingStats,
)
from engine.dialer.sim import load_scenario, parse_scenario, simulate
from engine.dialer.sim.scenario import Scenario
from engine.pbx.base import DialplanTarget
from tests.campaign_fakes import Clock, FakeAcd, FakeCalls, FakeLeases, ListSink, NoChannels

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pacing"

# What a live dialer knows per record: the switch's timestamps, the dialer's own hand-over and
# drop-timer decisions, agent segment lengths. Nothing else may appear here.
ALLOWED_FIELDS = {
    DialResolved: {"dialed_at", "resolved_at", "needs_agent", "patience"},
    AgentTaskDone: {"kind", "duration", "ended_at"},
    PacingStats: {
        "shift_start",
        "dials",
        "handed_over",
        "dropped",
        "connects",
        "amd_human",
        "amd_false_positive_rate",
    },
}
TRUTH_WORDS = ("human", "person", "live", "machine", "truth", "abandon", "outcome")


class Recorder:
    """Wraps a policy and keeps every input it is given."""

    def __init__(self, inner: PacingPolicy) -> None:
        self.inner = inner
        self.name = inner.name
        self.observed: list[Observation] = []
        self.views: list[tuple[float, PacingView]] = []

    @property
    def tick_s(self) -> float:
        return float(getattr(self.inner, "tick_s", 1.0))

    @property
    def event_driven(self) -> bool:
        return bool(getattr(self.inner, "event_driven", True))

    @property
    def decide_on_agent_free(self) -> bool:
        return bool(getattr(self.inner, "decide_on_agent_free", True))

    @property
    def floor_on_resolve(self) -> bool:
        return bool(getattr(self.inner, "floor_on_resolve", False))

    def decide(self, view: PacingView, now: float) -> int:
        self.views.append((now, view))
        return self.inner.decide(view, now)

    def decide_floor(self, view: PacingView, now: float) -> int:
        self.views.append((now, view))
        floor = getattr(self.inner, "decide_floor", None)
        assert floor is not None, "floor_on_resolve is only True for policies with a floor"
        return int(floor(view, now))

    def observe(self, obs: Observation) -> None:
        self.observed.append(obs)
        self.inner.observe(obs)


def test_the_learner_sees_only_the_shared_record_types_and_no_truth_field() -> None:
    for cls, allowed in ALLOWED_FIELDS.items():
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == allowed, cls.__name__
    # The detector's *verdict* count is allowed ("amd_human" is what AMD said, not the truth);
    # every other field must not name the truth.
    for cls in (DialResolved, AgentTaskDone):
        for f in dataclasses.fields(cls):
            assert not any(word in f.name for word in TRUTH_WORDS), f"{cls.__name__}.{f.name}"
    assert set(OBSERVATION_TYPES) == {DialResolved, AgentTaskDone}

    sc = dataclasses.replace(load_scenario(FIXTURES / "S2b.json"), shift_hours=0.5)
    rec = Recorder(make_policy("predictive"))
    simulate(sc, rec, 3)
    kinds = {type(obs) for obs in rec.observed}
    assert kinds == {DialResolved, AgentTaskDone}  # exactly these classes, no subclasses
    assert any(isinstance(o, DialResolved) and o.needs_agent for o in rec.observed)
    assert all(type(view.stats) is PacingStats for _, view in rec.views)


def _shift(outcome_key: str) -> dict[str, object]:
    data = json.loads((FIXTURES / "S0.json").read_text())
    data.update(
        name=outcome_key,
        shift_hours=1,
        talk_s=12.0,  # the undetected-machine handling time without AMD (simulator default)
        dial_outcomes={"live": 0.0, "fast_fail": 0.0, "machine": 0.0, outcome_key: 0.3},
    )
    return dict(data)


def test_people_and_undetected_machines_look_the_same_to_the_policy() -> None:
    """Same far-end timings, once all people and once all machines the AMD missed (no AMD):
    the truth differs completely, so any leak would change what the policy is given."""
    people = parse_scenario(_shift("live"))
    machines = parse_scenario(_shift("machine"))
    runs = {}
    for sc in (people, machines):
        rec = Recorder(PredictivePolicy())
        result = simulate(sc, rec, 5)
        runs[sc.name] = (rec, result.figures)
    (rec_p, fig_p), (rec_m, fig_m) = runs["live"], runs["machine"]
    assert fig_p.live_answers > 100 and fig_m.live_answers == 0  # the truth does differ
    assert len(rec_p.observed) > 1000
    assert rec_p.observed == rec_m.observed
    assert rec_p.views == rec_m.views


# ------------------------------------------------------------------ the live runner's half
#
# The live campaign runner (engine/campaigns/runner.py, flights.py) is driven here through its
# own code: CampaignRunner.on_call is the CallService watcher fed the switch's call changes, the
# ACD's agent states are what ``_follow`` reads, the runner's own safe-harbour timers fire at
# their instant, and each turn is the loop's body (``_follow`` then ``_dial_turn``). Only the
# switch, the ACD and the contact list are fakes (tests/campaign_fakes.py, and an endless list
# below); the clock is controlled.

T0 = datetime(2026, 12, 2, 15, 0, tzinfo=UTC).timestamp()  # a Wednesday, 10:00 in New York
NY = "America/New_York"
TOL = 1e-6  # seconds: the live clock is epoch seconds (T0 + simulator time)


class ScriptedDials:
    """One call at each listed instant (simulator clock + ``origin``), whatever the view: both
    sides then place the very same dials, so their records can be compared one by one."""

    name = "scripted"
    tick_s = 0.5
    event_driven = False
    decide_on_agent_free = False

    def __init__(self, at: list[float], origin: float = 0.0) -> None:
        self._due = sorted(at)
        self._next = 0
        self._origin = origin

    def decide(self, view: PacingView, now: float) -> int:
        n = 0
        while self._next < len(self._due) and self._due[self._next] + self._origin <= now + TOL:
            self._next += 1
            n += 1
        return n

    def observe(self, obs: Observation) -> None:
        return None


def _dial_instants(shift_s: float) -> list[float]:
    """A burst (queues and drops), a steady spell, a pause (agents idle), a second burst."""
    out = []
    for k in range(int(shift_s / 0.5)):
        t = 0.5 * k
        if (
            (t < 120 and k % 3 == 0)
            or (120 <= t < 300 and k % 12 == 0)
            or (400 <= t < 560 and k % 6 == 0)
        ):
            out.append(t)
    return out


def _twin(amd: bool) -> Scenario:
    """A small team, every kind of dial result; AMD with detection and false-positive errors."""
    return parse_scenario(
        {
            "name": f"live-twin-{'amd' if amd else 'noamd'}",
            "agents": 3,
            "shift_hours": 600 / 3600,
            "dial_outcomes": {"live": 0.35, "fast_fail": 0.2, "machine": 0.25},
            "fast_fail_s": {"uniform": [1.0, 3.0]},
            "post_dial_delay_s": {"uniform": [1.0, 3.0]},
            "ring_to_answer_s": {"uniform": [2.0, 24.0]},  # past the 20 s timeout: no answer
            "ring_timeout_s": 20.0,
            "talk_s": {"uniform": [20.0, 60.0]},
            "wrap_s": {"uniform": [2.0, 8.0]},
            "abandon_window_s": 2.0,
            "amd": {
                "machine_detect": 0.6,
                "human_false_positive": 0.1,
                "human_decision_s": 1.5,
                "greeting_s": 1.0,
                "machine_decision_s": 3.0,
                "undetected_machine_agent_s": 12.0,
            }
            if amd
            else None,
        }
    )


class _PickLog(LongestIdleAssigner):
    """The simulator's real assigner, noting which agent it gave each hand-over to."""

    def __init__(self) -> None:
        super().__init__()
        self.picks: list[tuple[float, int]] = []

    def pick(self, now: float) -> int | None:
        agent = super().pick(now)
        if agent is not None:
            self.picks.append((now, agent))
        return agent


class _Fates:
    """A ContactFeed that draws nothing itself and notes what each dial came to."""

    def __init__(self) -> None:
        self.dialed: dict[int, float] = {}
        self.outcomes: dict[int, tuple[str, float]] = {}

    def take(self, call: int, now: float) -> bool:
        self.dialed[call] = now
        return True

    def fate(self, call: int) -> str | None:
        return None

    def ended(self, call: int, outcome: str, now: float) -> None:
        self.outcomes[call] = (outcome, now)


@dataclass(order=True)
class _Happening:
    """One switch- or ACD-level happening of the live script, at simulator time ``t``."""

    t: float
    prio: int  # order at one instant: answer, verdict, agent state, connect, call end
    seq: int
    kind: str = dataclasses.field(compare=False)
    args: tuple[Any, ...] = dataclasses.field(compare=False, default=())


def _simulated(sc: Scenario, seed: int) -> tuple[Recorder, list[_Happening], list[float]]:
    """Run the simulator and turn what happened in it into switch and ACD happenings.

    Only things a switch and an ACD report go into the script: a dial's busy or no-answer end,
    an answer, an AMD verdict, a hand-over taken by an agent, the agent's state changes and the
    call's end. The records are *not* copied: the live runner must build its own."""
    dials = _dial_instants(sc.shift_s)
    rec = Recorder(ScriptedDials(dials))
    picks = _PickLog()
    fates = _Fates()
    res = simulate(sc, rec, seed, assigner_factory=lambda: picks, record_trace=True, contacts=fates)
    connected = [ref for _, what, ref in res.trace if what.startswith("connect")]
    assert len(connected) == len(picks.picks)
    connect_of = {call: pick for call, pick in zip(connected, picks.picks, strict=True)}
    call_of = {t: call for call, t in fates.dialed.items()}
    assert len(call_of) == len(fates.dialed)  # one dial per instant: dialed_at names the call
    talks = [o for o in rec.observed if isinstance(o, AgentTaskDone) and o.kind == "talk"]
    wraps = [o for o in rec.observed if isinstance(o, AgentTaskDone) and o.kind == "wrap"]

    def after(records: list[AgentTaskDone], start: float) -> float | None:
        for o in records:
            assert o.ended_at is not None
            if abs(o.ended_at - o.duration - start) < 1e-7:
                return o.ended_at
        return None

    amd = sc.amd
    script: list[_Happening] = []

    def add(t: float, prio: int, kind: str, *args: Any) -> None:
        script.append(_Happening(t, prio, len(script), kind, args))

    for obs in rec.observed:
        if not isinstance(obs, DialResolved):
            continue
        k, t = call_of[obs.dialed_at], obs.resolved_at
        if not obs.needs_agent:
            outcome = fates.outcomes[k][0]
            if outcome == "busy":
                add(t, 4, "end", k, 17, 486)
            elif outcome == "no_answer":
                add(t, 4, "end", k, 19, None)
            else:
                assert outcome == "machine" and amd is not None
                add(t - min(amd.human_decision_s, amd.machine_decision_s), 0, "answer", k)
                add(t, 1, "verdict", k, "MACHINE")
                add(t, 4, "end", k, 16, None)
            continue
        if amd is not None:
            add(t - amd.human_decision_s, 0, "answer", k)
            add(t, 1, "verdict", k, "HUMAN")
        else:
            add(t, 0, "answer", k)
        if k in connect_of:  # else dropped by the runner's own timer, or still waiting
            t_conn, agent = connect_of[k]
            add(t_conn, 3, "connect", k, agent)
            t_talk = after(talks, t_conn)
            if t_talk is not None:
                add(t_talk, 2, "agent", agent, AgentState.WRAP_UP)
                add(t_talk, 4, "hangup", k)
                t_wrap = after(wraps, t_talk)
                if t_wrap is not None:
                    add(t_wrap, 2, "agent", agent, AgentState.AVAILABLE)
    return rec, sorted(script), dials


class _EndlessList:
    """The hopper and the claim of a list of fresh numbers, always in their window."""

    def __init__(self) -> None:
        self.phones: dict[int, str] = {}

    async def distinct_timezones(self, campaign_id: str, *, refresh: bool = False) -> list[str]:
        return [NY]

    async def pick(self, campaign_id: str, *, limit: int, **_: Any) -> list[SimpleNamespace]:
        out = []
        for _i in range(limit):
            cid = len(self.phones) + 1
            self.phones[cid] = f"+1212555{cid:04d}"
            out.append(SimpleNamespace(contact_id=cid, phone=self.phones[cid], callback_agent=None))
        return out

    async def claim(self, campaign_id: str, token: int, picks: list[Pick]) -> list[Claimed]:
        return [
            Claimed(
                contact_id=p.contact_id,
                attempt_id=p.attempt_id,
                call_id=p.call_id,
                seq=1,
                phone=self.phones[p.contact_id],
                tz=NY,
                fields={},
                attempts=0,
                attempts_today=0,
                attempts_day=None,
            )
            for p in picks
        ]


async def _settle(check: Callable[[], bool]) -> None:
    """Let the runner's spawned tasks run until ``check`` holds (no wall-clock waits)."""
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("the runner did not get there")


@dataclass
class _Live:
    rec: Recorder
    runner: CampaignRunner
    calls: FakeCalls
    records: ListSink


async def _run_live(
    sc: Scenario,
    script: list[_Happening],
    dials: list[float],
    monkeypatch: pytest.MonkeyPatch,
    *,
    truth: str = "as-simulated",
) -> _Live:
    """Play ``script`` to the live runner at T0 + its instants; a turn of the runner's loop
    after every instant and on the simulator's 0.5 s decision grid.

    ``truth`` changes what only the truth would change, on every hand-over: ``people`` or
    ``machines`` (the AMD's wording of its "human" verdict, who ended the call and how, the
    agent's disposition); the switch's timings and verdicts stay the same."""
    amd = sc.amd
    spec = CampaignSpec.model_validate(
        {
            "trunk_group": "g",
            "queue": "sales",
            "mode": "predictive",
            "window": CallingWindow(days=("mon", "tue", "wed", "thu", "fri")),
            # The runner's drop timer, set to what the simulator's leaves at hand-over.
            "safe_harbour_s": (
                amd.greeting_s + sc.abandon_window_s - amd.human_decision_s
                if amd
                else sc.abandon_window_s
            ),
            "amd": AmdSettings(
                enabled=amd is not None,
                false_positive_rate=amd.human_false_positive if amd else 0.0,
            ),
            "max_lines": int(sc.line_cap_per_agent * sc.agents),
        }
    )
    clock = Clock(T0)
    calls, acd = FakeCalls(clock), FakeAcd(clock)
    contacts = _EndlessList()
    records = ListSink()
    deps = RunnerDeps(
        store=cast(CampaignStore, contacts),
        hopper=contacts,
        calls=calls,
        acd=acd,
        switches=NoChannels(None),
        leases=FakeLeases(),
        records=records,
        events=ListSink(),
        translate=lambda group, phone: phone.lstrip("+"),
        amd_then=lambda params: DialplanTarget("engine-amd", "s", 1),
        safe_harbour=lambda switch: DialplanTarget("engine-safe-harbour", "s", 1),
        clock=clock,
    )
    runner = CampaignRunner("noleak", spec, deps)
    runner.token = 1
    calls.watch(runner.on_call)
    rec = Recorder(ScriptedDials(dials, origin=T0))
    runner.policy = rec
    # The abandon guard hands decisions to progressive dialling, which the simulator does not
    # model (it measures the policy alone): it is held off so both sides dial the same calls.
    monkeypatch.setattr(CampaignRunner, "guard", property(lambda self: False))
    for i in range(sc.agents):
        acd.add_agent(f"a{i}")
    # The runner's own timers (safe harbour) fire on the scripted clock, at their instant.
    timers: list[tuple[float, int, Callable[..., object], tuple[Any, ...]]] = []
    loop = asyncio.get_running_loop()
    real_call_later = loop.call_later

    def call_later(delay: float, callback: Callable[..., object], *args: Any, **kw: Any) -> Any:
        if getattr(callback, "__self__", None) is runner:
            heapq.heappush(timers, (clock.t + delay, len(timers) + 10**6, callback, args))
            return None
        return real_call_later(delay, callback, *args, **kw)

    monkeypatch.setattr(loop, "call_later", call_later)

    def call_id(k: int) -> str:
        return str(calls.placed[k].call_id)

    def redirected(cid: str) -> bool:  # the safe-harbour message is playing
        return any(c == cid for c, _ in calls.redirected)

    def queued(cid: str) -> bool:
        return cid in acd.entries

    def verdict_cause(status: str) -> str:
        if status == "HUMAN" and truth == "machines":
            return "HUMAN-LONGGREETING"  # what a machine's greeting can still be called
        return f"{status}-X"

    pending = list(script)
    grid = [0.5 * k for k in range(int(sc.shift_s / 0.5) + 1) if 0.5 * k < sc.shift_s]
    instants = sorted({h.t for h in pending} | set(grid))
    i = 0
    for t in instants:
        now = T0 + t
        while timers and timers[0][0] <= now + 1e-9:
            due, _, callback, args = heapq.heappop(timers)
            clock.t = due
            callback(*args)
            for flight in list(runner.flights.values()):
                if flight.phase is FlightPhase.ABANDONED:  # heard the message, hung up
                    cid = flight.call_id
                    await _settle(partial(redirected, cid))
                    calls.end(cid)
        clock.t = now
        while i < len(pending) and pending[i].t == t:
            h = pending[i]
            i += 1
            if h.kind == "answer":
                calls.answer(call_id(h.args[0]))
            elif h.kind == "verdict":
                status = h.args[1]
                calls.change(
                    call_id(h.args[0]),
                    amd_status=status,
                    amd_cause=verdict_cause(status),
                    amd_at=now,
                )
            elif h.kind == "connect":
                cid, agent = call_id(h.args[0]), f"a{h.args[1]}"
                await _settle(partial(queued, cid))
                acd.connect(cid, agent)
                acd.agents[agent] = AgentStatus(agent, AgentState.ON_CALL, now, call_id=cid)
                if truth != "as-simulated":
                    wrong = Disposition.WRONG_NUMBER if truth == "machines" else Disposition.SALE
                    runner.flights[cid].extra["disposition"] = DispositionBody(disposition=wrong)
            elif h.kind == "agent":
                agent = f"a{h.args[0]}"
                acd.agents[agent] = AgentStatus(agent, h.args[1], now)
            elif h.kind == "hangup":  # a connected call ends: the agent's or the far end's
                cause = 31 if truth == "machines" else 16
                calls.end(call_id(h.args[0]), cause=cause)
            else:
                calls.end(call_id(h.args[0]), cause=h.args[1], sip=h.args[2])
            await asyncio.sleep(0)
        # One turn of the runner's loop (CampaignRunner._loop's body).
        runner._follow()
        await runner._dial_turn()
        await _settle(lambda: len(calls.placed) == runner.counters["dials"])
    return _Live(rec, runner, calls, records)


def _shifted(obs: Observation, origin: float) -> tuple[Any, ...]:
    """A record as plain values, its instants on the simulator's clock."""
    if isinstance(obs, DialResolved):
        return (
            "DialResolved",
            obs.dialed_at - origin,
            obs.resolved_at - origin,
            obs.needs_agent,
            obs.patience,
        )
    ended = None if obs.ended_at is None else obs.ended_at - origin
    return ("AgentTaskDone", obs.kind, obs.duration, ended)


def _view_values(view: PacingView, origin: float) -> tuple[Any, ...]:
    """A view as plain values, instants on the simulator's clock; the agents and calls of one
    state as a sorted multiset (the policy reads them as such; the orders differ: the
    simulator keeps its agents in the order they became idle, the runner in its agent list)."""

    def times(since: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(sorted(t - origin for t in since))

    s = view.stats
    return (
        times(view.idle_since),
        times(view.talking_since),
        times(view.wrap_since),
        times(view.ringing_since),
        times(view.waiting_since),
        view.departing_on_call,
        view.line_cap,
        s.shift_start - origin,
        s.dials,
        s.handed_over,
        s.dropped,
        s.connects,
        s.amd_human,
        s.amd_false_positive_rate,
    )


def _close(a: object, b: object) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= TOL
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("amd", [True, False], ids=["amd", "no-amd"])
async def test_the_live_runner_builds_the_simulators_records_and_views(
    amd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same timeline through the simulator and through the live runner: the policy gets
    the same records, in the same order, and the same view at every simulator decision.

    The timeline is the simulator's (a scripted dialler, so both sides dial the same calls at
    the same instants); what the switch and the ACD would report of it (busy and no-answer ends,
    answers, AMD verdicts, agents taking hand-overs, agent states, hang-ups) is played to the
    runner, which builds its own records and views from those alone. Held apart on purpose:
    the runner's abandon guard (live-only, it hands decisions to a progressive fallback) is
    held off, and the runner's line cap and drop timer are set to the simulator's (campaign
    settings). Equal within 1 us (the live clock is epoch seconds)."""
    sc = _twin(amd)
    sim_rec, script, dials = _simulated(sc, seed=7)
    live = await _run_live(sc, script, dials, monkeypatch)

    # (a) Exactly the shared types, no subclass, no other record.
    assert {type(o) for o in live.rec.observed} == {DialResolved, AgentTaskDone}
    assert all(type(v) is PacingView and type(v.stats) is PacingStats for _, v in live.rec.views)

    # The timeline exercises every path: hand-overs taken and dropped, releases, talks, wraps.
    sim_obs = [_shifted(o, 0.0) for o in sim_rec.observed]
    live_obs = [_shifted(o, T0) for o in live.rec.observed]
    last = sim_rec.views[-1][1].stats
    assert last.dropped >= 5 and last.connects >= 10 and last.handed_over > last.connects
    assert sum(1 for o in sim_obs if o[0] == "DialResolved" and not o[3]) >= 50
    assert {o[1] for o in sim_obs if o[0] == "AgentTaskDone"} == {"talk", "wrap"}
    if amd:
        assert last.amd_human == last.handed_over and live.runner.counters["machine"] >= 10

    # (c) The record streams are equal, record by record.
    assert len(live_obs) == len(sim_obs)
    for i, (got, want) in enumerate(zip(live_obs, sim_obs, strict=True)):
        assert _close(got, want), f"record {i}: live {got} != simulator {want}"

    # ...and so is every view the simulator decided on (the runner decides more often).
    live_views = {now: view for now, view in live.rec.views}
    assert len(sim_rec.views) >= 1000
    for now, view in sim_rec.views:
        got, want = _view_values(live_views[T0 + now], T0), _view_values(view, 0.0)
        assert _close(got, want), f"view at {now}: live {got} != simulator {want}"


async def test_the_live_runner_gives_people_and_undetected_machines_the_same_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One switch timeline, played twice to the live runner: every hand-over once a person and
    once an answering machine the AMD passed as human. What the truth changes live (how the
    detector words its "human" verdict, how the connected call ends, the agent's disposition
    after hearing it) reaches the runner, as the attempt records show; none of it may reach
    the policy."""
    sc = _twin(True)
    _sim, script, dials = _simulated(sc, seed=11)
    people = await _run_live(sc, script, dials, monkeypatch, truth="people")
    machines = await _run_live(sc, script, dials, monkeypatch, truth="machines")

    def ends(live: _Live) -> list[tuple[Any, ...]]:
        return [
            (r["amd_cause"], r["cause"], r["disposition"])
            for r in live.records.items
            if r["kind"] == "attempt_end" and r["agent_id"] is not None
        ]

    assert len(ends(people)) >= 10
    assert ends(people) != ends(machines)  # the truth did reach the runner
    assert len(people.rec.observed) > 100
    assert people.rec.observed == machines.rec.observed
    assert people.rec.views == machines.rec.views
