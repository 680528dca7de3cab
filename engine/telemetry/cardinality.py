"""Bounded label values for per-queue, per-campaign and per-trunk metrics. Pure.

A Prometheus series is one label combination, kept by the server for as long as it is
scraped; a label fed from open-ended values (caller numbers, call ids, free text) grows
the server's memory without bound. So every name label goes through a :class:`LabelBudget`:

- only names the engine already knows as configured objects are given to it (queues and
  trunks from engine.toml, campaigns from PostgreSQL), never a value from a call;
- the first ``cap`` distinct names keep their own value, in the order they were first
  admitted (the configured ones at start, sorted, so a restart gives the same split);
- every later name is folded into the one bucket ``other``, whose series sum (counters,
  counts) or take the worst value (longest wait) of the names folded into it.

A name once admitted keeps its own label for the life of the process, so a series never
changes meaning between scrapes. Docs: docs/metrics.md "Cardinality".
"""

from __future__ import annotations

from collections.abc import Iterable

OTHER = "other"
DEFAULT_CAP = 100


class LabelBudget:
    def __init__(self, kind: str, cap: int = DEFAULT_CAP, names: Iterable[str] = ()) -> None:
        if cap < 1:
            raise ValueError(f"{kind}: the label cap must be at least 1 (got {cap})")
        self.kind = kind
        self.cap = cap
        self._admitted: dict[str, str] = {}
        self.folded = 0  # distinct names sent to "other" (engine_metrics_labels_folded)
        self._folded_seen: set[str] = set()
        for name in sorted(set(names)):
            self.label(name)

    def label(self, name: str) -> str:
        """The label value to use for ``name``: itself while under the cap, else ``other``."""
        got = self._admitted.get(name)
        if got is not None:
            return got
        if len(self._admitted) < self.cap and name != OTHER:
            self._admitted[name] = name
            return name
        if name not in self._folded_seen and len(self._folded_seen) < 10 * self.cap:
            # Remember a bounded number of folded names, only to count them once each.
            self._folded_seen.add(name)
            self.folded += 1
        return OTHER

    @property
    def admitted(self) -> list[str]:
        return list(self._admitted)
