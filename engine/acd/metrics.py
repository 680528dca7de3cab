"""Per-queue metrics, read from the ACD's live state at scrape time (docs/metrics.md).

Labels: ``queue`` (a configured queue name through a :class:`LabelBudget`: at most
``cap`` names, the rest in ``other``), ``state`` (:class:`AgentState`, fixed) and
``outcome`` (:data:`OUTCOMES`, fixed). No per-agent label: 500 agents x 6 states would
be 3,000 series for what the wallboard and ``GET /v1/agents/{id}`` already show; the
metrics count agents per state, overall and per queue they can serve.

The windowed KPIs (service level, ASA, AHT, abandon ratio) use the same definitions and
window as ``GET /v1/queues/{name}`` (engine/acd/kpi.py), from the same per-minute sums
(engine/acd/kpi_window.py: up to 1,441 small records a queue for a 24 h window), computed in
:meth:`QueueMetrics.prepare`, one queue at a time with a yield to the loop between queues,
never in one long synchronous step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from engine.acd.entries import Phase
from engine.acd.state import AcdState
from engine.acd.views import serves
from engine.agents.model import AgentState
from engine.telemetry.cardinality import LabelBudget

#: Finished-entry outcomes as label values (the ACD's own words, ``-`` as ``_``).
OUTCOMES = ("answered", "abandoned", "overflow_ivr", "max_wait", "interrupted", "other")
_WAITING = (Phase.WAITING, Phase.RINGING)


@dataclass(slots=True)
class _QueueFigures:
    """What one queue label shows; sums, so folded queues ("other") simply add up."""

    waiting: int = 0
    longest_wait_s: float = 0.0
    agents: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in AgentState})
    answered: int = 0  # within the KPI window
    abandoned: int = 0
    within: int = 0
    wait_sum_s: float = 0.0
    handled: int = 0
    handle_sum_s: float = 0.0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    answered_within_sl: int = 0
    answered_wait_s: float = 0.0
    sl_target_s: float = 0.0

    def add(self, o: _QueueFigures) -> None:
        self.waiting += o.waiting
        self.longest_wait_s = max(self.longest_wait_s, o.longest_wait_s)
        for k, v in o.agents.items():
            self.agents[k] += v
        self.answered += o.answered
        self.abandoned += o.abandoned
        self.within += o.within
        self.wait_sum_s += o.wait_sum_s
        self.handled += o.handled
        self.handle_sum_s += o.handle_sum_s
        for k, v in o.outcomes.items():
            self.outcomes[k] += v
        self.answered_within_sl += o.answered_within_sl
        self.answered_wait_s += o.answered_wait_s
        self.sl_target_s = max(self.sl_target_s, o.sl_target_s)


def outcome_label(outcome: str) -> str:
    v = outcome.replace("-", "_")
    return v if v in OUTCOMES else "other"


def queue_figures(state: AcdState, name: str, now: float) -> _QueueFigures:
    """One queue's figures at ``now`` (kpi.kpis_of's definitions, from the queue's KPI
    window: this runs for every queue on every scrape)."""
    q = state.queues[name]
    f = _QueueFigures(sl_target_s=q.service_level_s)
    for e in state.entries.values():
        if e.queue == name and e.phase in _WAITING:
            f.waiting += 1
            f.longest_wait_s = max(f.longest_wait_s, now - e.entered_at)
    for rec in state.agents.values():
        # As GET /v1/queues/{name} counts them: skills, and the roster after a supervisor's move.
        if serves(rec.config, q):
            f.agents[rec.status.state.value] += 1
    w = state.kpi[name].sums(now)
    f.answered, f.abandoned, f.within = w.answered, w.abandoned, w.answered_in_sl
    f.wait_sum_s, f.handled, f.handle_sum_s = w.answered_wait_s, w.handled, w.handle_s
    totals = state.totals[name]
    for outcome, n in totals.outcomes.items():
        f.outcomes[outcome_label(outcome)] += n
    f.answered_within_sl = totals.answered_within_sl
    f.answered_wait_s = totals.answered_wait_s
    return f


class QueueMetrics:
    def __init__(self, state: AcdState, cap: int) -> None:
        self._state = state
        self.budget = LabelBudget("queue", cap, state.queues)
        self._snapshot: dict[str, _QueueFigures] | None = None

    async def prepare(self) -> None:
        s = self._state
        out: dict[str, _QueueFigures] = {}
        for name in list(s.queues):
            fig = queue_figures(s, name, s.now())
            label = self.budget.label(name)
            if label in out:
                out[label].add(fig)
            else:
                out[label] = fig
            await asyncio.sleep(0)  # one queue per loop turn
        self._snapshot = out

    def _figures(self) -> dict[str, _QueueFigures]:
        snap, self._snapshot = self._snapshot, None
        if snap is not None:
            return snap
        # Rendered without prepare() (a direct render()): compute in one go.
        s, out = self._state, dict[str, _QueueFigures]()
        now = s.now()
        for name in s.queues:
            fig = queue_figures(s, name, now)
            label = self.budget.label(name)
            if label in out:
                out[label].add(fig)
            else:
                out[label] = fig
        return out

    def families(self) -> Iterable[Metric]:
        figs = self._figures()
        q = ["queue"]
        waiting = GaugeMetricFamily(
            "engine_queue_waiting", "Callers waiting in the queue (or being offered)", labels=q
        )
        longest = GaugeMetricFamily(
            "engine_queue_longest_wait_seconds", "The longest current wait, now", labels=q
        )
        agents = GaugeMetricFamily(
            "engine_queue_agents",
            "Agents who serve the queue (skills, and roster after a move), by state "
            "(an agent counts in each queue it serves)",
            labels=["queue", "state"],
        )
        calls = CounterMetricFamily(
            "engine_queue_calls",
            "Callers who left the queue, by outcome, since start",
            labels=["queue", "outcome"],
        )
        within = CounterMetricFamily(
            "engine_queue_answered_within_sl",
            "Answered callers whose wait was within the queue's service-level threshold",
            labels=q,
        )
        wait_total = CounterMetricFamily(
            "engine_queue_answered_wait_seconds",
            "Summed waits of answered callers (rate / rate of answered = ASA over any range)",
            labels=q,
        )
        sl = GaugeMetricFamily(
            "engine_queue_service_level_ratio",
            "Answered within the threshold / (answered + abandoned) over the KPI window "
            "(absent with no calls)",
            labels=q,
        )
        target = GaugeMetricFamily(
            "engine_queue_service_level_threshold_seconds",
            "The queue's service-level threshold (service_level_s)",
            labels=q,
        )
        asa = GaugeMetricFamily(
            "engine_queue_asa_seconds",
            "Average speed of answer over the KPI window (absent with no answered calls)",
            labels=q,
        )
        aht = GaugeMetricFamily(
            "engine_queue_aht_seconds",
            "Average handle time (talk + wrap-up) over the KPI window",
            labels=q,
        )
        abandon = GaugeMetricFamily(
            "engine_queue_abandon_ratio",
            "Abandoned / (answered + abandoned) over the KPI window",
            labels=q,
        )
        for label, f in sorted(figs.items()):
            waiting.add_metric([label], f.waiting)
            longest.add_metric([label], f.longest_wait_s)
            for st, n in f.agents.items():
                agents.add_metric([label, st], n)
            for outcome, n in f.outcomes.items():
                calls.add_metric([label, outcome], n)
            within.add_metric([label], f.answered_within_sl)
            wait_total.add_metric([label], f.answered_wait_s)
            target.add_metric([label], f.sl_target_s)
            counted = f.answered + f.abandoned
            if counted:
                sl.add_metric([label], f.within / counted)
                abandon.add_metric([label], f.abandoned / counted)
            if f.answered:
                asa.add_metric([label], f.wait_sum_s / f.answered)
            if f.handled:
                aht.add_metric([label], f.handle_sum_s / f.handled)
        agents_all = GaugeMetricFamily(
            "engine_agents", "Configured agents by state (no per-agent label)", labels=["state"]
        )
        by_state = dict.fromkeys((s.value for s in AgentState), 0)
        for rec in self._state.agents.values():
            by_state[rec.status.state.value] += 1
        for st, n in by_state.items():
            agents_all.add_metric([st], n)
        return [
            *(waiting, longest, agents, calls, within, wait_total),
            *(sl, target, asa, aht, abandon, agents_all),
        ]
