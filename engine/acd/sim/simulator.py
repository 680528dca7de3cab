"""Seeded discrete-event simulator of inbound queues, driving a router through
:class:`~engine.acd.sim.router_port.RouterPort`.

Life cycle of a call: it arrives (Poisson, per queue, piecewise-constant rate), waits until the
router assigns it an agent or until its patience runs out (abandoned), is handled, and the agent
then wraps up (per queue) and becomes available again. Agents log in at their shift start; at
shift end an available agent logs out at once and a busy one after its wrap-up. There is no ring
time: an assigned agent answers at once (the live ACD's ring/no-answer path is not modelled; the
adapter to the engine's router, :mod:`engine.acd.sim.engine_router`, closes each offer as answered
at the instant it is made).

Randomness: one ``random.Random`` stream per queue and purpose, seeded from the run seed. Every
draw for a call (segment, handle, wrap-up, patience, conversion) is made when it arrives, so the
i-th call of a queue is the same caller under every router (common random numbers): a router
comparison is not blurred by luck, and the same seed repeats exactly.

After each instant's events the router is asked for its assignments; each is checked against the
port's contract before it is carried out.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.acd.sim.metrics import QueueTally, overlap
from engine.acd.sim.router_port import RouterPort, SimAgent, SimCall
from engine.acd.sim.scenario import AgentSpec, InboundScenario, QueueSpec

_ARRIVAL, _ABANDON, _HANDLE_END, _WRAP_END, _SHIFT_START, _SHIFT_END = range(6)


class RouterContractError(RuntimeError):
    """The router returned an assignment the port's contract forbids."""


@dataclass(slots=True)
class _Call:
    sim: SimCall
    q: int
    handle_s: float
    wrap_s: float
    convert_draw: float
    measured: bool
    waiting: bool = True


@dataclass(slots=True)
class _Agent:
    spec: AgentSpec
    state: str = "off"  # off | free | busy | wrap
    idle_since: float = 0.0
    calls_taken: int = 0
    talk_s: float = 0.0
    busy_s: float = 0.0
    logged_s: float = 0.0
    login_at: float = 0.0
    busy_from: float = 0.0
    leaving: bool = False
    call: _Call | None = None


@dataclass
class RunResult:
    scenario: str
    router: str
    seed: int
    queues: dict[str, QueueTally]
    busy_s: float
    logged_s: float
    assignments: int
    trace: list[tuple[float, str, str, str]] = field(default_factory=list)

    @property
    def total(self) -> QueueTally:
        total = QueueTally()
        for t in self.queues.values():
            total.add(t)
        return total

    @property
    def occupancy_pct(self) -> float | None:
        return 100.0 * self.busy_s / self.logged_s if self.logged_s > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "router": self.router,
            "seed": self.seed,
            **self.total.kpis(),
            "occupancy_pct": self.occupancy_pct,
            "queues": {name: t.kpis() for name, t in self.queues.items()},
        }


class InboundSimulator:
    def __init__(
        self,
        scenario: InboundScenario,
        router: RouterPort,
        seed: int,
        *,
        record_trace: bool = False,
    ) -> None:
        self.sc = scenario
        self.router = router
        self.seed = seed
        self.record_trace = record_trace
        self.trace: list[tuple[float, str, str, str]] = []
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._lo, self._hi = scenario.warmup_s, scenario.duration_s

        def stream(queue: str, purpose: str) -> random.Random:
            return random.Random(f"acd-sim:{seed}:{queue}:{purpose}")

        self._r_arrival = [stream(q.name, "arrival") for q in scenario.queues]
        self._r_segment = [stream(q.name, "segment") for q in scenario.queues]
        self._r_convert = [stream(q.name, "conversion") for q in scenario.queues]
        self._handle = [q.handle_s.sampler(stream(q.name, "handle")) for q in scenario.queues]
        self._wrap = [q.wrap_s.sampler(stream(q.name, "wrap")) for q in scenario.queues]
        self._patience: list[Callable[[], float] | None] = [
            None if q.patience_s is None else q.patience_s.sampler(stream(q.name, "patience"))
            for q in scenario.queues
        ]
        self._calls: list[_Call] = []
        self._waiting: dict[str, _Call] = {}
        self._agents = [_Agent(spec) for spec in scenario.agents]
        self._agent_index = {a.spec.id: i for i, a in enumerate(self._agents)}
        self._tally = {q.name: QueueTally() for q in scenario.queues}
        self._busy_in_window = 0.0
        self._logged_in_window = 0.0
        self._assignments = 0

    # -- plumbing -------------------------------------------------------------------------------
    def _push(self, t: float, kind: int, ref: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, ref))

    def _note(self, t: float, what: str, call: str = "", agent: str = "") -> None:
        if self.record_trace:
            self.trace.append((round(t, 6), what, call, agent))

    def _next_arrival(self, q: QueueSpec, r: random.Random, t: float) -> float | None:
        """Next arrival after ``t`` of a Poisson process with a piecewise-constant rate: an
        exponential gap at the current rate, restarted at the next rate change if it would cross
        it (exact, by memorylessness)."""
        while t < self._hi:
            rate = q.rate_per_s(t)
            nxt = min([p.from_s for p in q.arrivals if p.from_s > t] + [self._hi])
            if rate > 0:
                arrival = t + r.expovariate(rate)
                if arrival < nxt:
                    return arrival
            t = nxt
        return None

    # -- calls ----------------------------------------------------------------------------------
    def _arrive(self, qi: int, now: float) -> None:
        q = self.sc.queues[qi]
        segment = None
        if q.segments:
            segment = self._r_segment[qi].choices(q.segments, [s.share for s in q.segments])[0]
        handle, wrap = self._handle[qi](), self._wrap[qi]()
        patience_draw = self._patience[qi]
        patience = None if patience_draw is None else patience_draw()
        convert_draw = self._r_convert[qi].random()
        sim = SimCall(
            id=f"{q.name}-{len(self._calls) + 1}",
            queue=q.name,
            priority=q.priority,
            required_skills=q.skills,
            features=None if segment is None else segment.features,
            segment=None if segment is None else segment.name,
            arrived_at=now,
        )
        call = _Call(sim, qi, handle, wrap, convert_draw, self._lo <= now < self._hi)
        self._calls.append(call)
        self._waiting[sim.id] = call
        if call.measured:
            self._tally[q.name].offered += 1
        if patience is not None:
            self._push(now + patience, _ABANDON, len(self._calls) - 1)
        self._note(now, "arrive", sim.id)
        self.router.on_call_arrived(sim, now)
        nxt = self._next_arrival(q, self._r_arrival[qi], now)
        if nxt is not None:
            self._push(nxt, _ARRIVAL, qi)

    def _abandon(self, ci: int, now: float) -> None:
        call = self._calls[ci]
        if not call.waiting:
            return
        call.waiting = False
        del self._waiting[call.sim.id]
        if call.measured:
            self._tally[call.sim.queue].abandoned += 1
        self._note(now, "abandon", call.sim.id)
        self.router.on_call_left(call.sim.id, now)

    # -- agents ---------------------------------------------------------------------------------
    def _snapshot(self, a: _Agent, now: float) -> SimAgent:
        return SimAgent(
            id=a.spec.id,
            skills=a.spec.skills,
            capability=a.spec.capability,
            idle_since=a.idle_since,
            calls_taken=a.calls_taken,
            talk_time_s=a.talk_s,
            busy_s=a.busy_s,
            # Finished shifts plus the one in progress (logged_s only grows at logout).
            logged_in_s=a.logged_s + (now - a.login_at),
        )

    def _free(self, a: _Agent, now: float) -> None:
        a.state = "free"
        a.idle_since = now
        self._note(now, "free", agent=a.spec.id)
        self.router.on_agent_free(self._snapshot(a, now), now)

    def _log_out(self, a: _Agent, now: float) -> None:
        a.logged_s += now - a.login_at
        self._logged_in_window += overlap(a.login_at, now, self._lo, self._hi)
        a.state = "off"
        self._note(now, "logout", agent=a.spec.id)

    def _shift_start(self, ai: int, now: float) -> None:
        a = self._agents[ai]
        a.login_at = now
        self._free(a, now)

    def _shift_end(self, ai: int, now: float) -> None:
        a = self._agents[ai]
        if a.state == "free":
            self.router.on_agent_away(a.spec.id, now)
            self._log_out(a, now)
        elif a.state != "off":
            a.leaving = True

    def _connect(self, call_id: str, agent_id: str, now: float) -> None:
        call = self._waiting.pop(call_id)
        call.waiting = False
        ai = self._agent_index[agent_id]
        a = self._agents[ai]
        a.state, a.call, a.busy_from = "busy", call, now
        a.calls_taken += 1
        self._assignments += 1
        if call.measured:
            t = self._tally[call.sim.queue]
            wait = now - call.sim.arrived_at
            t.answered += 1
            t.wait_s += wait
            t.handle_s += call.handle_s + call.wrap_s
            if wait <= self.sc.queues[call.q].service_level_s:
                t.answered_in_sl += 1
            if call.sim.segment is not None:
                rate = a.spec.conversion.get(call.sim.segment, 0.0)
                if call.convert_draw < rate:
                    t.converted += 1
        self._note(now, "connect", call_id, agent_id)
        self._push(now + call.handle_s, _HANDLE_END, ai)

    def _handle_end(self, ai: int, now: float) -> None:
        a = self._agents[ai]
        assert a.call is not None
        a.talk_s += a.call.handle_s
        a.state = "wrap"
        self._push(now + a.call.wrap_s, _WRAP_END, ai)

    def _wrap_end(self, ai: int, now: float) -> None:
        a = self._agents[ai]
        a.busy_s += now - a.busy_from
        self._busy_in_window += overlap(a.busy_from, now, self._lo, self._hi)
        a.call = None
        if a.leaving:
            a.leaving = False
            self._log_out(a, now)
        else:
            self._free(a, now)

    # -- routing --------------------------------------------------------------------------------
    def _route(self, now: float) -> None:
        pairs = self.router.decide(now)
        seen_calls: set[str] = set()
        seen_agents: set[str] = set()
        for call_id, agent_id in pairs:
            call = self._waiting.get(call_id)
            ai = self._agent_index.get(agent_id)
            problem = None
            if call is None or call_id in seen_calls:
                problem = "the call is not waiting (unknown, served, abandoned or assigned twice)"
            elif ai is None or self._agents[ai].state != "free" or agent_id in seen_agents:
                problem = "the agent is not available (unknown, busy, away or assigned twice)"
            elif not all(
                self._agents[ai].spec.skills.get(s, 0) >= lvl
                for s, lvl in call.sim.required_skills.items()
            ):
                problem = "the agent lacks a required skill level"
            if problem:
                raise RouterContractError(
                    f"router {self.router.name!r} at t={now:.3f}s assigned call {call_id!r} "
                    f"to agent {agent_id!r}: {problem}"
                )
            seen_calls.add(call_id)
            seen_agents.add(agent_id)
            self._connect(call_id, agent_id, now)

    # -- run ------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        for qi, q in enumerate(self.sc.queues):
            first = self._next_arrival(q, self._r_arrival[qi], 0.0)
            if first is not None:
                self._push(first, _ARRIVAL, qi)
        for ai, a in enumerate(self._agents):
            self._push(a.spec.shift_start_s, _SHIFT_START, ai)
            if a.spec.shift_end_s is not None:
                self._push(a.spec.shift_end_s, _SHIFT_END, ai)
        handlers = {
            _ARRIVAL: self._arrive,
            _ABANDON: self._abandon,
            _HANDLE_END: self._handle_end,
            _WRAP_END: self._wrap_end,
            _SHIFT_START: self._shift_start,
            _SHIFT_END: self._shift_end,
        }
        heap = self._heap
        now = 0.0
        while heap:
            now, _, kind, ref = heapq.heappop(heap)
            handlers[kind](ref, now)
            # Route once per instant, after every event at that instant has been applied.
            if not heap or heap[0][0] > now:
                self._route(now)
        end = max(now, self._hi)
        for a in self._agents:
            if a.state != "off":
                self._log_out(a, end)
        for call in self._waiting.values():
            if call.measured:
                self._tally[call.sim.queue].unserved += 1
        return RunResult(
            scenario=self.sc.name,
            router=self.router.name,
            seed=self.seed,
            queues=self._tally,
            busy_s=self._busy_in_window,
            logged_s=self._logged_in_window,
            assignments=self._assignments,
            trace=self.trace,
        )


def simulate(
    scenario: InboundScenario, router: RouterPort, seed: int, *, record_trace: bool = False
) -> RunResult:
    return InboundSimulator(scenario, router, seed, record_trace=record_trace).run()
