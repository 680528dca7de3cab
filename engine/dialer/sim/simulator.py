"""Seeded discrete-event simulator of one outbound campaign shift.

It drives a real pacing policy and the engine's real agent assignment (``engine.dialer.assign``)
in virtual time. Semantics follow bench/pacing_scenarios/README.md; the choices the README leaves
open are marked "Interpretation" below and listed in docs/pacing.md.

Randomness: one ``random.Random`` stream per purpose, seeded from the run seed. Every dial draws
the same number of values from each dial stream whatever its outcome, and every connected call
draws one talk and one wrap value, so the i-th dial of any policy meets the same far end (common
random numbers): policy comparisons are not blurred by luck, and the same seed repeats exactly.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.dialer.assign import AgentAssigner, LongestIdleAssigner
from engine.dialer.pacing.view import (
    AgentTaskDone,
    DialResolved,
    PacingPolicy,
    PacingStats,
    PacingView,
)
from engine.dialer.sim.metrics import Figures, ShiftTally
from engine.dialer.sim.scenario import Scenario

# Event kinds (ints keep heap tuples cheap to compare).
_RESOLVE, _ABANDON, _TALK_END, _WRAP_END, _CHANGE, _TICK = range(6)

# What a dial turns into once resolved.
_RELEASE, _HUMAN, _MACHINE, _FALSE_POSITIVE = range(4)

DEFAULT_MACHINE_AGENT_S = 12.0
"""Interpretation: with ``amd`` null, a machine reaches an agent like a human and holds them this
long (the README gives ``undetected_machine_agent_s`` only inside ``amd``)."""


class ContactFeed(Protocol):
    """A contact list behind the dials (``python -m engine simulate --campaign``): which
    contact each dial reaches, and what came of it. Without one, every dial reaches a fresh
    number, as in the pacing benchmark."""

    def take(self, call: int, now: float) -> bool:
        """Claim the next contact for dial ``call``; False when none is due now."""
        ...

    def fate(self, call: int) -> str | None:
        """The far end of dial ``call`` when the list knows it (a test rig's numbers):
        ``live``, ``fast_fail``, ``machine`` or ``no_answer``; None to draw it."""
        ...

    def ended(self, call: int, outcome: str, now: float) -> None:
        """What the dial came to, as the dialer sees it: ``human`` (connected to an agent),
        ``abandoned``, ``machine`` (an AMD verdict), ``busy`` (a fast failure) or
        ``no_answer``."""
        ...


@dataclass
class SimResult:
    scenario: str
    policy: str
    seed: int
    figures: Figures
    trace: list[tuple[float, str, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "seed": self.seed,
            **self.figures.as_dict(),
        }


@dataclass(slots=True)
class _Call:
    dialed_at: float
    outcome: int
    answer_at: float
    deadline: float
    resolve_at: float
    drawn: int = 0  # the far end as drawn (before the ring timeout and AMD): for a ContactFeed


class CampaignSimulator:
    def __init__(
        self,
        scenario: Scenario,
        policy: PacingPolicy,
        seed: int,
        *,
        assigner_factory: Callable[[], AgentAssigner] = LongestIdleAssigner,
        record_trace: bool = False,
        contacts: ContactFeed | None = None,
    ) -> None:
        self.sc = scenario
        self.contacts = contacts
        self.policy = policy
        self.seed = seed
        self.assigner = assigner_factory()
        self.record_trace = record_trace
        self.trace: list[tuple[float, str, int]] = []
        # Scheduling hints: cheap policies are asked after every event, expensive ones on a tick
        # and whenever an agent frees up.
        self._tick_s = float(getattr(policy, "tick_s", 1.0))
        self._event_driven = bool(getattr(policy, "event_driven", True))
        # Optional cheap decision a tick-driven policy may want after a call resolves (the
        # predictive policy's progressive floor); ``floor_on_resolve`` says when.
        self._decide_floor: Callable[[PacingView, float], int] | None = getattr(
            policy, "decide_floor", None
        )
        self._floor_on_resolve = False
        self._decide_on_agent_free = True
        self._read_hints()

        def stream(purpose: str) -> random.Random:
            return random.Random(f"pacing-sim:{seed}:{purpose}")

        self._r_outcome = stream("outcome")
        self._r_amd = stream("amd")
        self._pdd = scenario.post_dial_delay_s.sampler(stream("pdd"))
        self._ring = scenario.ring_to_answer_s.sampler(stream("ring"))
        self._ff = scenario.fast_fail_s.sampler(stream("fast_fail"))
        self._talk_stream = stream("talk")
        self._talk = scenario.talk_s.sampler(self._talk_stream)
        self._wrap = scenario.wrap_s.sampler(stream("wrap"))
        self._live = scenario.live
        self._fast_fail = scenario.fast_fail
        self._machine = scenario.machine

        self.tally = ShiftTally(scenario.shift_s)
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._calls: dict[int, _Call] = {}
        self._ringing: dict[int, float] = {}
        self._waiting: dict[int, float] = {}
        self._idle: dict[int, float] = {}
        self._talking: dict[int, float] = {}
        self._talk_human: dict[int, bool] = {}
        self._wrapping: dict[int, float] = {}
        self._leaving: set[int] = set()
        self._next_agent = 0
        self._next_call = 0
        self._logged_in = 0
        self._logged_since = 0.0
        self._dials = 0
        # What the dialer itself can count (the policy's view); the truth lives in the tally.
        self._handed_over = 0
        self._dropped = 0
        self._connects = 0
        self._amd_human = 0
        self._fp_rate = scenario.amd.human_false_positive if scenario.amd else 0.0

    # -- plumbing -------------------------------------------------------------------------------
    def _read_hints(self) -> None:
        # The hints may change with what a decision learned (the predictive policy's forecast
        # sd), so they are read after every full decision; reading them on every event instead
        # (a property call per resolved dial, ~225 000 on S4-large) cost CPU for the same value.
        self._floor_on_resolve = (
            not self._event_driven
            and self._decide_floor is not None
            and bool(getattr(self.policy, "floor_on_resolve", False))
        )
        self._decide_on_agent_free = bool(getattr(self.policy, "decide_on_agent_free", True))

    def _push(self, t: float, kind: int, ref: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, ref))

    def _note(self, t: float, what: str, ref: int) -> None:
        if self.record_trace:
            self.trace.append((round(t, 6), what, ref))

    def _set_logged_in(self, now: float, count: int) -> None:
        self.tally.logged_in(self._logged_since, now, self._logged_in)
        self._logged_in, self._logged_since = count, now

    def view(self, now: float) -> PacingView:
        talking, wrapping, departing = self._talking, self._wrapping, 0
        if self._leaving:
            # Agents who asked to log off after their current task: an agent state the dialer
            # knows, so they are no future supply (a talking one still holds a line).
            leaving = self._leaving
            departing = sum(1 for a in talking if a in leaving)
            talking = {a: t for a, t in talking.items() if a not in leaving}
            wrapping = {a: t for a, t in wrapping.items() if a not in leaving}
        return PacingView(
            idle_since=tuple(self._idle.values()),
            talking_since=tuple(talking.values()),
            wrap_since=tuple(wrapping.values()),
            ringing_since=tuple(self._ringing.values()),
            waiting_since=tuple(self._waiting.values()),
            departing_on_call=departing,
            line_cap=int(self.sc.line_cap_per_agent * self._logged_in),
            stats=PacingStats(
                shift_start=0.0,
                dials=self._dials,
                handed_over=self._handed_over,
                dropped=self._dropped,
                connects=self._connects,
                amd_human=self._amd_human,
                amd_false_positive_rate=self._fp_rate,
            ),
        )

    # -- agents ---------------------------------------------------------------------------------
    def _agent_ready(self, agent: int, now: float) -> None:
        if agent in self._leaving:
            self._leaving.discard(agent)
            self._set_logged_in(now, self._logged_in - 1)
            self._note(now, "logoff", agent)
            return
        self._idle[agent] = now
        self.assigner.agent_ready(agent, now)
        # First come, first served: the longest-waiting answer takes the agent.
        while self._waiting:
            call_id = next(iter(self._waiting))
            picked = self.assigner.pick(now)
            if picked is None:
                break
            del self._waiting[call_id]
            self._connect(picked, call_id, now)

    def _connect(self, agent: int, call_id: int, now: float) -> None:
        call = self._calls.pop(call_id)
        if self.contacts is not None:
            # An undetected machine is a "person" to the dialer too.
            self.contacts.ended(call_id, "human", now)
        self._idle.pop(agent, None)
        human = call.outcome == _HUMAN
        self._connects += 1
        if human:
            duration = self._talk()
            self.tally.connect()
            self.tally.live_answer(call.answer_at, abandoned=False)
        else:
            amd = self.sc.amd
            duration = amd.undetected_machine_agent_s if amd else DEFAULT_MACHINE_AGENT_S
        self._talking[agent] = now
        self._talk_human[agent] = human
        self._push(now + duration, _TALK_END, agent)
        self._note(now, "connect" if human else "connect-machine", call_id)

    def _talk_end(self, agent: int, now: float) -> None:
        start = self._talking.pop(agent)
        human = self._talk_human.pop(agent)
        self.tally.busy(start, now, human_talk=human)
        self.policy.observe(AgentTaskDone("talk", now - start, now))
        self._wrapping[agent] = now
        self._push(now + self._wrap(), _WRAP_END, agent)

    def _wrap_end(self, agent: int, now: float) -> None:
        start = self._wrapping.pop(agent)
        self.tally.busy(start, now)
        self.policy.observe(AgentTaskDone("wrap", now - start, now))
        self._agent_ready(agent, now)

    def _set_agents(self, target: int, now: float) -> None:
        active = self._logged_in - len(self._leaving)
        while active < target and self._leaving:
            self._leaving.remove(min(self._leaving))
            active += 1
        if active < target:
            self._set_logged_in(now, self._logged_in + (target - active))
            for _ in range(target - active):
                agent = self._next_agent
                self._next_agent += 1
                self._agent_ready(agent, now)
        elif active > target:
            surplus = active - target
            # Idle agents leave at once (most recently ready first), busy ones after wrap-up.
            for agent in reversed(list(self._idle)):
                if surplus == 0:
                    break
                del self._idle[agent]
                self.assigner.agent_unready(agent)
                self._set_logged_in(now, self._logged_in - 1)
                surplus -= 1
            for agent in [*self._wrapping, *self._talking]:
                if surplus == 0:
                    break
                if agent not in self._leaving:
                    self._leaving.add(agent)
                    surplus -= 1

    # -- calls ----------------------------------------------------------------------------------
    def _dial(self, now: float) -> None:
        # The hottest path (one call per dial, ~225 000 on S4-large): counters and the heap
        # push are inlined; the draws and the arithmetic are as they were.
        sc = self.sc
        call_id = self._next_call
        self._next_call += 1
        self._dials += 1
        self.tally.dials += 1
        # Fixed draw count per dial keeps the random streams aligned across policies.
        u = self._r_outcome.random()
        pdd = self._pdd()
        ring = self._ring()
        ff = self._ff()
        u_amd = self._r_amd.random()
        answer_delay = pdd + ring
        fate = self.contacts.fate(call_id) if self.contacts is not None else None
        if fate is not None:
            outcome = _FATES[fate]
        elif u < self._live:
            outcome = _HUMAN
        elif u < self._live + self._fast_fail:
            outcome = -1
        elif u < self._live + self._fast_fail + self._machine:
            outcome = _MACHINE
        else:
            outcome = -2
        # Interpretation: the ring timeout runs from the dial, so an answer needs
        # post-dial delay + ring draw < timeout ("a draw at or past the timeout: no answer").
        answered = outcome in (_HUMAN, _MACHINE) and answer_delay < sc.ring_timeout_s
        answer_at = now + answer_delay
        deadline = 0.0
        if outcome == -1:
            kind, resolve_at = _RELEASE, now + ff
        elif not answered:
            kind, resolve_at = _RELEASE, now + sc.ring_timeout_s
        elif sc.amd is None:
            kind, resolve_at = outcome, answer_at
            deadline = answer_at + sc.abandon_window_s
        else:
            amd = sc.amd
            # The caller hears a greeting while AMD listens; the 2 s window opens after it.
            deadline = answer_at + amd.greeting_s + sc.abandon_window_s
            if outcome == _HUMAN:
                if u_amd < amd.human_false_positive:
                    kind, resolve_at = _FALSE_POSITIVE, answer_at + amd.human_decision_s
                else:
                    kind, resolve_at = _HUMAN, answer_at + amd.human_decision_s
            elif u_amd < amd.machine_detect:
                kind, resolve_at = _RELEASE, answer_at + amd.machine_decision_s
            else:
                kind, resolve_at = _MACHINE, answer_at + amd.human_decision_s
        self._calls[call_id] = _Call(now, kind, answer_at, deadline, resolve_at, outcome)
        self._ringing[call_id] = now
        self._seq += 1
        heapq.heappush(self._heap, (resolve_at, self._seq, _RESOLVE, call_id))

    def _resolve(self, call_id: int, now: float) -> bool:
        """Returns True when an agent may have changed hands (a reason to decide again)."""
        dialed = self._ringing.pop(call_id)
        call = self._calls[call_id]
        kind = call.outcome
        if kind in (_RELEASE, _FALSE_POSITIVE):
            del self._calls[call_id]
            if self.contacts is not None:
                self.contacts.ended(call_id, _release_name(call, kind), now)
            if kind == _FALSE_POSITIVE:
                # AMD hung up on a person: a live answer, and an abandoned one (in the truth
                # only: to the dialer it is one more "machine" verdict).
                self.tally.live_answer(call.answer_at, abandoned=True)
                self._note(now, "abandon-amd", call_id)
            self.policy.observe(DialResolved(dialed, now, False))
            return True
        # Handed over: a person, or a machine the AMD took for one. The dialer sees the same
        # thing either way; ``deadline`` is its own drop timer.
        self._handed_over += 1
        if self.sc.amd is not None:
            self._amd_human += 1
        self.policy.observe(DialResolved(dialed, now, True, call.deadline - now))
        agent = self.assigner.pick(now) if call.deadline > now else None
        if agent is not None:
            self._connect(agent, call_id, now)
        elif call.deadline > now:
            self._waiting[call_id] = now
            self._push(call.deadline, _ABANDON, call_id)
        else:
            self._drop(call_id, now)
        return True

    def _drop(self, call_id: int, now: float) -> None:
        call = self._calls.pop(call_id)
        if self.contacts is not None:
            self.contacts.ended(call_id, "abandoned", now)
        self._dropped += 1
        if call.outcome == _HUMAN:
            self.tally.live_answer(call.answer_at, abandoned=True)
            self._note(now, "abandon", call_id)
        else:
            self._note(now, "drop-machine", call_id)

    def _abandon_check(self, call_id: int, now: float) -> None:
        if call_id in self._waiting:
            del self._waiting[call_id]
            self._drop(call_id, now)

    # -- main loop ------------------------------------------------------------------------------
    def _decide(self, now: float, *, floor_only: bool = False) -> None:
        view = self.view(now)
        if floor_only and self._decide_floor is not None:
            n = int(self._decide_floor(view, now))
        else:
            n = self.policy.decide(view, now)
            self._read_hints()
        if n < 0:
            raise ValueError(f"policy {self.policy.name} asked for {n} dials")
        for _ in range(n):
            if self.contacts is not None and not self.contacts.take(self._next_call, now):
                break
            self._dial(now)

    def run(self) -> SimResult:
        sc = self.sc
        end = sc.shift_s
        self._set_agents(sc.agents, 0.0)
        for i, ch in enumerate(sc.changes):
            self._push(ch.at_hour * 3600.0, _CHANGE, i)
        self._push(0.0, _TICK, 0)
        heap = self._heap
        event_driven = self._event_driven
        while heap:
            now, _, kind, ref = heapq.heappop(heap)
            if now >= end:
                break
            decide = event_driven
            if kind == _RESOLVE:
                self._resolve(ref, now)
                if self._floor_on_resolve:
                    self._decide(now, floor_only=True)
                    continue
            elif kind == _ABANDON:
                self._abandon_check(ref, now)
            elif kind == _TALK_END:
                self._talk_end(ref, now)
            elif kind == _WRAP_END:
                self._wrap_end(ref, now)
                decide = self._decide_on_agent_free
            elif kind == _CHANGE:
                self._apply_change(ref, now)
                decide = True
            else:
                # The policy may change its cadence as the campaign grows or shrinks.
                self._push(now + float(getattr(self.policy, "tick_s", self._tick_s)), _TICK, 0)
                decide = True
            if decide:
                self._decide(now)
        self._finish(end)
        label = getattr(self.policy, "name", type(self.policy).__name__)
        return SimResult(sc.name, label, self.seed, self.tally.figures(), self.trace)

    def _apply_change(self, index: int, now: float) -> None:
        ch = self.sc.changes[index]
        if ch.key == "live":
            self._live = ch.value
        elif ch.key == "fast_fail":
            self._fast_fail = ch.value
        elif ch.key == "machine":
            self._machine = ch.value
        elif ch.key == "talk_mean_s":
            self._talk = self.sc.talk_s.with_mean(ch.value).sampler(self._talk_stream)
        elif ch.key == "agents":
            self._set_agents(int(ch.value), now)
        self._note(now, f"change:{ch.key}", index)

    def _finish(self, end: float) -> None:
        for agent, start in self._talking.items():
            self.tally.busy(start, end, human_talk=self._talk_human[agent])
        for start in self._wrapping.values():
            self.tally.busy(start, end)
        self._set_logged_in(end, self._logged_in)


_FATES = {"live": _HUMAN, "fast_fail": -1, "machine": _MACHINE, "no_answer": -2}


def _release_name(call: _Call, kind: int) -> str:
    if kind == _FALSE_POSITIVE or (call.drawn == _MACHINE and call.answer_at < call.resolve_at):
        return "machine"
    return "busy" if call.drawn == -1 else "no_answer"


def simulate(
    scenario: Scenario,
    policy: PacingPolicy,
    seed: int,
    *,
    assigner_factory: Callable[[], AgentAssigner] = LongestIdleAssigner,
    record_trace: bool = False,
    contacts: ContactFeed | None = None,
) -> SimResult:
    """Run one shift of ``scenario`` under ``policy`` with ``seed``."""
    sim = CampaignSimulator(
        scenario,
        policy,
        seed,
        assigner_factory=assigner_factory,
        record_trace=record_trace,
        contacts=contacts,
    )
    return sim.run()
