"""A naive, independent longest-idle and best-match router for the simulator: the test oracle
for the engine's router (tests/unit/test_acd_sim.py).

These were the simulator's stand-ins before it drove the engine's router; the simulator no longer
offers them. They stay here, in tests only, because they are a second implementation written
without the engine router's indexes: a brute-force scan of every waiting call in service order
(highest priority, then arrival) against every free agent that has the skills. The engine's
router is incremental (pools per queue and overflow stage, nominations by freed agents), and a
differential test (same scenario, same seed: identical traces) catches a decision the indexes
get wrong that its own property tests, which check invariants rather than exact choices, would
let through. Ties follow the engine's documented rule: longest idle, then the lower id.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from engine.acd.sim.router_port import RouterPort, SimAgent, SimCall

_WaitKey = tuple[int, float, int]  # (-priority, arrived_at, arrival number)


def fits(agent: SimAgent, call: SimCall) -> bool:
    """The agent has every skill the call requires, at least at its minimum level."""
    return all(agent.skills.get(skill, 0) >= level for skill, level in call.required_skills.items())


class _Pool:
    """Waiting calls in service order and available agents; the strategies share it."""

    def __init__(self) -> None:
        self.order: list[_WaitKey] = []
        self.calls: dict[_WaitKey, SimCall] = {}
        self.key_of: dict[str, _WaitKey] = {}
        self.free: dict[str, SimAgent] = {}
        self._n = 0

    def add_call(self, call: SimCall) -> None:
        self._n += 1
        key = (-call.priority, call.arrived_at, self._n)
        bisect.insort(self.order, key)
        self.calls[key] = call
        self.key_of[call.id] = key

    def drop_call(self, call_id: str) -> None:
        key = self.key_of.pop(call_id, None)
        if key is None:
            return
        del self.calls[key]
        del self.order[bisect.bisect_left(self.order, key)]

    def assign(self, pick: Callable[[SimCall, list[SimAgent]], SimAgent]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not self.free or not self.order:
            return out
        for key in list(self.order):
            call = self.calls[key]
            eligible = [a for a in self.free.values() if fits(a, call)]
            if not eligible:
                continue
            agent = pick(call, eligible)
            out.append((call.id, agent.id))
            self.drop_call(call.id)
            del self.free[agent.id]
            if not self.free:
                break
        return out


def _idle_key(agent: SimAgent) -> tuple[float, str]:
    return (agent.idle_since, agent.id)


class _PoolRouter:
    """Event plumbing common to both oracle routers."""

    name = "oracle"

    def __init__(self) -> None:
        self.pool = _Pool()

    def on_call_arrived(self, call: SimCall, now: float) -> None:
        self.pool.add_call(call)

    def on_call_left(self, call_id: str, now: float) -> None:
        self.pool.drop_call(call_id)

    def on_agent_free(self, agent: SimAgent, now: float) -> None:
        self.pool.free[agent.id] = agent

    def on_agent_away(self, agent_id: str, now: float) -> None:
        self.pool.free.pop(agent_id, None)


class LongestIdleRouter(_PoolRouter):
    """Each call goes to the eligible agent idle the longest (ties: lowest id)."""

    name = "longest-idle"

    def decide(self, now: float) -> list[tuple[str, str]]:
        return self.pool.assign(lambda _call, agents: min(agents, key=_idle_key))


def cosine(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Cosine similarity; 0.0 when either vector is all zeros."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


class BestMatchRouter(_PoolRouter):
    """Each call goes to the eligible agent whose capability vector is most similar (cosine) to
    the call's feature vector; ties, missing vectors or vectors of another length fall back to
    longest-idle order (an agent without a comparable vector scores 0)."""

    name = "best-match"

    def __init__(self) -> None:
        super().__init__()
        self._cap: dict[str, npt.NDArray[np.float64]] = {}

    def on_agent_free(self, agent: SimAgent, now: float) -> None:
        super().on_agent_free(agent, now)
        if agent.capability is not None and agent.id not in self._cap:
            self._cap[agent.id] = np.asarray(agent.capability, dtype=np.float64)

    def _pick(self, call: SimCall, agents: list[SimAgent]) -> SimAgent:
        if call.features is None:
            return min(agents, key=_idle_key)
        features = np.asarray(call.features, dtype=np.float64)

        def score(agent: SimAgent) -> float:
            cap = self._cap.get(agent.id)
            if cap is None or cap.shape != features.shape:
                return 0.0
            return cosine(features, cap)

        return min(agents, key=lambda a: (-score(a), *_idle_key(a)))

    def decide(self, now: float) -> list[tuple[str, str]]:
        return self.pool.assign(self._pick)


ORACLES: dict[str, Callable[[], RouterPort]] = {
    LongestIdleRouter.name: LongestIdleRouter,
    BestMatchRouter.name: BestMatchRouter,
}
"""Strategy name -> oracle router."""
