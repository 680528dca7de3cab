"""How each strategy picks among the free agents that fit a call.

The pools (:mod:`engine.acd.pools`) hold the candidates; :class:`AgentRows`
holds the numbers the weighted and scored strategies need as numpy rows, so
those strategies cost one vector operation over the candidates, not a Python
loop. :class:`Chooser` keeps the state strategies carry between decisions:
the seeded random generator and each queue's round-robin position.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from engine.acd.model import AgentView, Strategy
from engine.acd.pools import ORDERED, Key, Pool, agent_of, best_first, every, next_after
from engine.acd.scoring import CosineScorer, Scorer
from engine.core.errors import InvalidRequest

MIN_LOAD_WEIGHT = 0.05  # load-aware: a fully occupied agent still gets an occasional call
TIE_RTOL = 1e-9  # best-match: scores this close (relative) are a tie


class AgentRows:
    """One numpy row per agent: load figures, idle time and capability vector."""

    def __init__(self) -> None:
        self.dim: int | None = None
        # busy_s, available_s, available_since, idle_since
        self.load = np.zeros((0, 4))
        self.caps = np.zeros((0, 0))
        self.has_cap = np.zeros(0, dtype=bool)

    def grow(self, rows: int) -> None:
        if rows <= self.load.shape[0]:
            return
        size = max(rows, 2 * self.load.shape[0], 64)
        load = np.zeros((size, 4))
        load[: self.load.shape[0]] = self.load
        has = np.zeros(size, dtype=bool)
        has[: self.has_cap.shape[0]] = self.has_cap
        caps = np.zeros((size, self.dim or 0))
        caps[: self.caps.shape[0]] = self.caps
        self.load, self.has_cap, self.caps = load, has, caps

    def set(self, row: int, v: AgentView) -> None:
        self.load[row] = (v.busy_s, v.available_s, v.available_since, v.idle_since)
        if v.capability is None:
            self.has_cap[row] = False
            return
        if self.dim is None:
            self.dim = len(v.capability)
            self.caps = np.zeros((self.load.shape[0], self.dim))
        if len(v.capability) != self.dim:
            raise InvalidRequest(
                f"agent {v.agent_id}: capability vector has {len(v.capability)} numbers, "
                f"other agents have {self.dim}",
                details={"agent_id": v.agent_id},
            )
        self.caps[row] = v.capability
        self.has_cap[row] = True


class Chooser:
    def __init__(self, queues: Collection[str], scorer: Scorer | None, seed: int) -> None:
        self.scorer: Scorer = scorer or CosineScorer()
        self.rng = random.Random(seed)
        self.rr: dict[str, Key | None] = dict.fromkeys(queues)

    def choose(
        self,
        queue: str,
        strategy: Strategy,
        pools: Sequence[Pool],
        excluded: Collection[str],
        features: tuple[float, ...] | None,
        rows: AgentRows,
        now: float,
    ) -> tuple[str, ...]:
        if strategy in ORDERED:
            key = best_first(pools, excluded)
            return () if key is None else (agent_of(strategy, key),)
        if strategy is Strategy.ROUND_ROBIN:
            key = next_after(pools, excluded, self.rr[queue])
            if key is None:
                return ()
            self.rr[queue] = key
            return (key[0],)
        keys = list(every(pools, excluded))  # (agent_id, row, level), agent id order
        if not keys:
            return ()
        if strategy is Strategy.RING_ALL:
            return tuple(k[0] for k in keys)
        idx = np.fromiter(map(itemgetter(1), keys), dtype=np.intp, count=len(keys))
        if strategy is Strategy.WEIGHTED_RANDOM:
            levels = np.fromiter(map(itemgetter(2), keys), dtype=np.float64, count=len(keys))
            return (keys[self._draw(np.maximum(levels, 1.0))][0],)
        if strategy is Strategy.LOAD_AWARE:
            load = rows.load[idx]
            idle = load[:, 1] + np.maximum(0.0, now - load[:, 2])
            total = load[:, 0] + idle
            occ = np.divide(load[:, 0], total, out=np.zeros(len(keys)), where=total > 0)
            return (keys[self._draw(np.maximum(1.0 - occ, MIN_LOAD_WEIGHT))][0],)
        return (self._best_match(keys, idx, features, rows),)

    def _draw(self, weights: npt.NDArray[np.float64]) -> int:
        cum = np.cumsum(weights)
        i = int(np.searchsorted(cum, self.rng.random() * float(cum[-1]), side="right"))
        return min(i, len(weights) - 1)

    def _best_match(
        self,
        keys: list[Key],
        idx: npt.NDArray[np.intp],
        features: tuple[float, ...] | None,
        rows: AgentRows,
    ) -> str:
        has = rows.has_cap[idx]
        if features is None or rows.dim is None or not has.any():
            # Nothing to compare: the longest idle of the candidates (then the lower id).
            idle = rows.load[idx, 3]
            best = int(np.argmin(idle))  # keys are in agent id order: ties go to the lower id
            return str(keys[best][0])
        scores = np.full(len(keys), -np.inf)
        scores[has] = self.scorer.score(np.asarray(features, dtype=np.float64), rows.caps[idx[has]])
        # Ties go to the longest idle, then the lower id (keys are in agent id order and argmin
        # takes the first), as in the ordered strategies. Taking the first best alone sent every
        # call to the lowest id of a team sharing one capability vector while the rest sat idle.
        # "Tied" allows for rounding: equal rows need not give bit-equal BLAS dot products.
        tied = np.flatnonzero(np.isclose(scores, scores.max(), rtol=TIE_RTOL, atol=0.0))
        best = tied[int(np.argmin(rows.load[idx[tied], 3]))]
        return str(keys[int(best)][0])
