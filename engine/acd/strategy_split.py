"""Which of its queue's strategies an entering caller gets (an A/B test of routing).

A queue with several ``strategies`` (docs/acd.md "Alternating strategies") gives each new
entry one of them, and that strategy alone chooses the entry's agents for its whole stay
(the router keeps one set of pools per strategy, engine/acd/routing.py). The entry records it
(``queue_entries.strategy``), which is what the A/B report groups by (docs/reports.md).

- ``alternate``: in turn, per queue: the 1st, 2nd, ... caller since start gets strategies[0],
  strategies[1], ... wrapping round. Deterministic.
- ``random``: drawn per caller from a generator seeded with ``[acd] seed`` and the queue's
  name, weighted by ``strategy_weights`` (equal if none): the same seed and the same arrivals
  give the same split, and one queue's draws do not shift another's.

Pure: no I/O, no clock. A re-queued caller keeps its entry's strategy and is not counted again.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from itertools import accumulate

from engine.acd.model import QueueSpec, Strategy


class StrategySplitter:
    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._turn: dict[str, int] = {}
        self._rng: dict[str, random.Random] = {}

    def assign(self, queue: QueueSpec) -> Strategy:
        """The strategy of the next caller entering ``queue``."""
        options = queue.strategies
        if len(options) == 1:
            return options[0]
        if queue.strategy_split == "alternate":
            turn = self._turn.get(queue.name, 0)
            self._turn[queue.name] = turn + 1
            return options[turn % len(options)]
        rng = self._rng.get(queue.name)
        if rng is None:
            # A str seed is hashed with SHA-512 by random.seed: stable across runs and hosts.
            rng = self._rng[queue.name] = random.Random(f"{self._seed}/{queue.name}")
        cum = list(accumulate(queue.strategy_weights or (1.0,) * len(options)))
        i = bisect_right(cum, rng.random() * cum[-1])
        return options[min(i, len(options) - 1)]
