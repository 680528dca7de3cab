"""ACD routing decision cost, pure part only (no switch, no storage).

``python -m bench.acd_routing`` prints the figures as JSON and writes
reports/acd_routing.json; ``run()`` returns them (``make bench`` puts them in
reports/bench.json).

One *decision* is one event reaching the router plus the router's pick, timed together:

- ``agent_free_us``: 5,000 agents over 100 skills and 100 queues, 2,000 callers waiting,
  every agent busy; one agent becomes available (``upsert_agent``) and ``decide`` picks
  the call it takes (highest priority, longest waiting, across all its queues). This is
  the busy call centre's hot path; it does not depend on the strategy.
- ``call_enters_us``: the same 5,000 agents, 1,000 of them available, nobody waiting;
  one call enters (``add_call``) and ``decide`` picks its agent, per strategy (the
  scored ones, load-aware and best-match, look at every available agent that fits).
- ``call_enters_busy_us``: 2,000 waiting and no agent free; a call enters and
  ``decide`` finds nothing (the common case under load).
- ``agent_free_split_us``: ``agent_free`` with every queue splitting its callers between its
  strategy and a second one (docs/acd.md "Alternating strategies"): an agent freed goes into
  one more pool per queue, and each caller is routed by the strategy the split gave it.

Untimed between samples: the chosen agent answers and the state is put back, so every
sample sees the same sizes. Figures only; nothing is asserted.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from engine.acd.model import AgentView, OverflowRule, QueueSpec, Strategy, WaitingCall
from engine.acd.routing import Router

AGENTS = 5000
SKILLS = 100
QUEUES = 100
WAITING = 2000
DIM = 8
NOW = 10_000.0


def _queues(strategy: Strategy | None, split: bool = False) -> list[QueueSpec]:
    out = []
    for i in range(QUEUES):
        skills = {f"s{i}": 3}
        overflow: tuple[OverflowRule, ...] = (OverflowRule(30, relax_skills={f"s{i}": 1}),)
        if i % 3 == 0:
            skills[f"s{(i + 1) % SKILLS}"] = 2
            overflow += (OverflowRule(60, add_queue=f"q{(i + 7) % QUEUES}"),)
        chosen = strategy or list(Strategy)[i % len(Strategy)]
        if chosen is Strategy.RING_ALL and strategy is None:
            chosen = Strategy.LONGEST_IDLE  # ringing 50 phones per call is not a routing figure
        if split:
            other = (
                Strategy.BEST_MATCH if chosen is Strategy.LONGEST_IDLE else Strategy.LONGEST_IDLE
            )
            out.append(QueueSpec(f"q{i}", skills, strategies=(chosen, other), overflow=overflow))
        else:
            out.append(QueueSpec(f"q{i}", skills, chosen, overflow=overflow))
    return out


def _agents(rng: random.Random) -> list[AgentView]:
    out = []
    for i in range(AGENTS):
        skills = {f"s{s}": rng.randint(1, 10) for s in rng.sample(range(SKILLS), rng.randint(3, 6))}
        out.append(
            AgentView(
                f"agent{i:05d}",
                skills,
                available=False,
                idle_since=NOW - rng.uniform(0, 600),
                calls_handled=rng.randint(0, 40),
                talk_s=rng.uniform(0, 7200),
                busy_s=rng.uniform(0, 7200),
                available_s=rng.uniform(1, 3600),
                available_since=NOW - rng.uniform(0, 600),
                capability=tuple(rng.random() for _ in range(DIM)),
            )
        )
    return out


def _call(
    rng: random.Random, n: int, at: float, specs: dict[str, QueueSpec] | None = None
) -> WaitingCall:
    queue = f"q{rng.randrange(QUEUES)}"
    strategies = specs[queue].strategies if specs is not None else ()
    return WaitingCall(
        f"call{n}",
        queue,
        at,
        priority=rng.choice((1, 1, 1, 2, 3)),
        features=tuple(rng.random() for _ in range(DIM)),
        # A split queue's callers alternate between its strategies (StrategySplitter's turn).
        strategy=strategies[n % len(strategies)] if strategies else None,
    )


def _stats(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Wall-clock and CPU (this thread's) percentiles: on a shared machine the wall
    figures include time the scheduler gave to other processes; CPU time does not."""
    out: dict[str, float] = {"samples": len(samples)}
    for i, label in ((0, "wall"), (1, "cpu")):
        times = sorted(s[i] for s in samples)
        out[f"{label}_p50"] = round(times[len(times) // 2], 1)
        out[f"{label}_p99"] = round(times[int(len(times) * 0.99)], 1)
        out[f"{label}_max"] = round(times[-1], 1)
        out[f"{label}_mean"] = round(statistics.fmean(times), 1)
    return out


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
    fn()
    t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
    return (t1 - t0) / 1000.0, (c1 - c0) / 1000.0


def agent_free(samples: int, split: bool = False) -> dict[str, object]:
    rng = random.Random(1)
    agents = _agents(rng)
    queues = _queues(None, split)
    specs = {q.name: q for q in queues} if split else None
    router = Router(queues, seed=1)
    for a in agents:
        router.upsert_agent(a)
    n = 0
    for _ in range(WAITING):
        n += 1
        router.add_call(_call(rng, n, NOW - rng.uniform(0, 300), specs))
    now = NOW
    router.decide(now)
    times: list[tuple[float, float]] = []
    picked = 0
    for i in range(samples + 200):
        now += 0.01
        a = agents[rng.randrange(AGENTS)]
        free = replace(a, available=True, idle_since=now)
        decision = None

        def event(free: AgentView = free, now: float = now) -> None:
            nonlocal decision
            router.upsert_agent(free)
            decision = router.decide(now)

        took = _timed(event)
        if i >= 200:  # warm-up
            times.append(took)
        assert decision is not None
        for asg in decision.assignments:  # untimed: answered, and a new caller replaces it
            picked += 1
            router.offer_answered(asg.call_id, asg.agent_ids[0], now)
            n += 1
            router.add_call(_call(rng, n, now, specs))
        router.upsert_agent(a)  # busy again (unavailable)
    return {**_stats(times), "events_that_assigned": picked, "waiting": WAITING}


def call_enters(strategy: Strategy, samples: int) -> dict[str, float]:
    rng = random.Random(2)
    agents = _agents(rng)
    router = Router(_queues(strategy), seed=2)
    free = set(rng.sample(range(AGENTS), 1000))
    for i, a in enumerate(agents):
        router.upsert_agent(replace(a, available=i in free))
    now = NOW
    router.decide(now)
    by_id = {a.agent_id: a for a in agents}
    times: list[tuple[float, float]] = []
    for i in range(samples + 100):
        now += 0.01
        call = _call(rng, i, now)
        decision = None

        def event(call: WaitingCall = call, now: float = now) -> None:
            nonlocal decision
            router.add_call(call)
            decision = router.decide(now)

        took = _timed(event)
        if i >= 100:
            times.append(took)
        assert decision is not None
        for asg in decision.assignments:  # untimed: answered at once, agent free again
            router.offer_answered(asg.call_id, asg.agent_ids[0], now)
            for agent_id in asg.agent_ids:
                router.upsert_agent(replace(by_id[agent_id], available=True, idle_since=now))
        if not decision.assignments:
            router.remove_call(call.call_id, now)
    return _stats(times)


def call_enters_busy(samples: int) -> dict[str, float]:
    rng = random.Random(3)
    router = Router(_queues(None), seed=3)
    for a in _agents(rng):
        router.upsert_agent(a)
    for n in range(WAITING):
        router.add_call(_call(rng, n, NOW - rng.uniform(0, 20)))
    now = NOW
    router.decide(now)
    times: list[tuple[float, float]] = []
    for i in range(samples):
        now += 0.001
        call = _call(rng, WAITING + i, now)

        def event(call: WaitingCall = call, now: float = now) -> None:
            router.add_call(call)
            router.decide(now)

        times.append(_timed(event))
        router.remove_call(call.call_id, now)  # untimed: keep 2,000 waiting
    return _stats(times)


def run(samples: int = 3000) -> dict[str, object]:
    return {
        "agents": AGENTS,
        "skills": SKILLS,
        "queues": QUEUES,
        "waiting": WAITING,
        "agent_free_us": agent_free(samples),
        "agent_free_split_us": agent_free(samples, split=True),
        "call_enters_busy_us": call_enters_busy(samples),
        "call_enters_us": {
            s.value: call_enters(s, samples // 3) for s in Strategy if s is not Strategy.RING_ALL
        },
    }


if __name__ == "__main__":
    result = run()
    print(json.dumps(result, indent=2))
    out = Path(__file__).resolve().parent.parent / "reports" / "acd_routing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
