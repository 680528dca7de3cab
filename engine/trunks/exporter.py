"""Pushes the trunks' per-call metrics: attempts, answers and failures (counted from
what a planner step changed) and the state gauges (health, channels in use, drained).

What only time or config changes is read at scrape time instead (engine/trunks/metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from engine.telemetry.metrics import Metrics
from engine.trunks.fleet import Fleet
from engine.trunks.metrics import FAILURE_CLASSES, failure_class

if TYPE_CHECKING:
    from engine.trunks.changes import Seen

_HEALTH_STATES: tuple[Literal["up", "degraded", "down", "probing"], ...] = (
    "up",
    "degraded",
    "down",
    "probing",
)


class MetricsExporter:
    def __init__(self, metrics: Metrics, now: Callable[[], float]) -> None:
        self._metrics = metrics
        self._now = now
        self._exported: dict[str, tuple[str, int, bool]] = {}
        # Gauge and counter children per label values, looked up once (labels() hashes
        # and validates its arguments on every call, several times per call placed).
        self._children: dict[tuple[object, ...], Any] = {}

    def start(self, names: Iterable[str]) -> None:
        for name in names:
            for cls in FAILURE_CLASSES:  # every class at 0, so rate() has a series to start
                self._metrics.trunk_failures_by_class.labels(name, cls)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per service (no child is ever
        removed from these metrics, so a cached child stays the exported one)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count(self, before: Fleet, after: Fleet, names: Iterable[str]) -> None:
        for name in names:
            st = after.states[name]
            old = before.states.get(name)
            if old is None or old is st:
                continue
            a, b = old.counters, st.counters
            m = self._metrics
            if b.attempts > a.attempts:
                self._child(m.trunk_attempts, name).inc(b.attempts - a.attempts)
            if b.failovers > a.failovers:
                self._child(m.trunk_failures, name).inc(b.failovers - a.failovers)
                cls = failure_class(b.last_failure)
                self._child(m.trunk_failures_by_class, name, cls).inc(b.failovers - a.failovers)
            if b.answered > a.answered:
                self._child(m.trunk_answered, name).inc(b.answered - a.answered)

    def export(self, fleet: Fleet, names: Iterable[str], seen: Mapping[str, Seen]) -> None:
        """Mirror the trunks' state into the gauges, only what changed: this
        runs several times per call (take, release, shared-count syncs), and
        setting six labelled gauges each time was a visible share of the
        engine's CPU per call. The health is the one the change reporter just
        read (``seen``). A take or release changes only ``in_use``: one gauge."""
        m = self._metrics
        for name in names:
            st = fleet.states[name]
            last = seen.get(name)
            health = last.state if last is not None else fleet.health(name, self._now()).value
            value = (health, st.in_use, st.enabled)
            old = self._exported.get(name)
            if old == value:
                continue
            self._exported[name] = value
            if old is None or old[0] != health:
                for s in _HEALTH_STATES:
                    self._child(m.trunk_state, name, s).set(1 if health == s else 0)
            if old is None or old[1] != st.in_use:
                self._child(m.trunk_channels_in_use, name).set(st.in_use)
            if old is None or old[2] != st.enabled:
                self._child(m.trunk_drained, name).set(0 if st.enabled else 1)
