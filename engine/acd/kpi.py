"""Queue KPIs: pure maths over finished queue entries, waiting callers and agents.

The same definitions serve ``GET /v1/queues/{name}`` (live, over per-minute sums of the
entries finished within a window: engine/acd/kpi_window.py) and a report that recomputes
them from the ``queue_entries`` and ``agent_state_history`` tables. Definitions
(docs/acd.md "KPIs"):

- waiting: callers in the queue now (waiting or being offered);
- longest wait: the longest of their waits, now;
- service level: answered within the threshold / (answered + abandoned), in %;
  calls that left by overflow to an IVR or max-wait are not in it;
- ASA (average speed of answer): mean wait of answered calls;
- AHT (average handle time): mean talk time + mean wrap-up time of answered
  calls whose handling is over;
- abandon rate: abandoned / (answered + abandoned), in %;
- occupancy: the agents' busy time (reserved, on call, wrap-up) over their
  staffed time (busy + available), pauses excluded, in %.

Rates are None when their denominator is zero (no calls yet), never 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ANSWERED = "answered"
ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class FinishedEntry:
    """One caller's stay in a queue, over."""

    entered_at: float
    ended_at: float
    outcome: str  # answered | abandoned | overflow-ivr | max-wait | interrupted | redirected
    wait_s: float  # entering -> answered (answered) or -> leaving (others)
    talk_s: float = 0.0
    wrap_up_s: float | None = None  # the agent's wrap-up after it, once over


@dataclass(frozen=True, slots=True)
class AgentTime:
    """An agent's busy and available seconds (states left plus the current one, at now)."""

    busy_s: float
    available_s: float


@dataclass(frozen=True, slots=True)
class QueueKpis:
    waiting: int
    longest_wait_s: float
    answered: int
    abandoned: int
    service_level_pct: float | None
    asa_s: float | None
    aht_s: float | None
    abandon_pct: float | None
    occupancy_pct: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        def r(v: float | None) -> float | None:
            return round(v, 3) if v is not None else None

        return {
            "waiting": self.waiting,
            "longest_wait_s": round(self.longest_wait_s, 3),
            "answered": self.answered,
            "abandoned": self.abandoned,
            "service_level_pct": r(self.service_level_pct),
            "asa_s": r(self.asa_s),
            "aht_s": r(self.aht_s),
            "abandon_pct": r(self.abandon_pct),
            "occupancy_pct": r(self.occupancy_pct),
        }


# The ratios, from counts and sums: the live view (below) and the interval reports
# (engine/reports/kpi.py, over the 15-minute tables' sums) share them, so each KPI has one
# definition.


def ratio_pct(part: float, whole: float) -> float | None:
    """``100 * part / whole``; None when nothing counts yet (never 0)."""
    return 100.0 * part / whole if whole > 0 else None


def service_level_pct(answered_in_sl: int, answered: int, abandoned: int) -> float | None:
    """Answered within the threshold / (answered + abandoned), in %."""
    return ratio_pct(answered_in_sl, answered + abandoned)


def abandon_pct(answered: int, abandoned: int) -> float | None:
    """Abandoned / (answered + abandoned), in %."""
    return ratio_pct(abandoned, answered + abandoned)


def mean_of(total: float, count: int) -> float | None:
    """ASA (total wait of answered calls / answered), AHT (total handle time / handled)."""
    return total / count if count > 0 else None


def occupancy_pct(busy_s: float, available_s: float) -> float | None:
    """Busy (reserved, on call, wrap-up) over staffed (busy + available) time, in %."""
    return ratio_pct(busy_s, busy_s + available_s)


@dataclass(slots=True)
class KpiSums:
    """The counts and sums the windowed KPIs are ratios of: one record per time bucket of the
    live view (engine/acd/kpi_window.py), added up over the window. Exact for any volume."""

    answered: int = 0
    answered_in_sl: int = 0
    answered_wait_s: float = 0.0
    abandoned: int = 0  # abandons not short (waited at least the short-abandon threshold)
    handled: int = 0  # answered calls whose wrap-up is over
    handle_s: float = 0.0  # their talk + wrap-up seconds

    def add(self, o: KpiSums) -> None:
        self.answered += o.answered
        self.answered_in_sl += o.answered_in_sl
        self.answered_wait_s += o.answered_wait_s
        self.abandoned += o.abandoned
        self.handled += o.handled
        self.handle_s += o.handle_s

    def ended(
        self, outcome: str, wait_s: float, service_level_s: float, short_abandon_s: float = 0.0
    ) -> None:
        """One entry that ended with ``outcome`` after waiting ``wait_s``."""
        if outcome == ANSWERED:
            self.answered += 1
            self.answered_wait_s += wait_s
            if wait_s <= service_level_s:
                self.answered_in_sl += 1
        elif outcome == ABANDONED and wait_s >= short_abandon_s:
            self.abandoned += 1

    def wrapped(self, talk_s: float, wrap_up_s: float) -> None:
        """An answered entry whose wrap-up is over (counted once, when both are true)."""
        self.handled += 1
        self.handle_s += talk_s + wrap_up_s


def queue_kpis(
    finished: Iterable[FinishedEntry],
    waiting_since: Iterable[float],
    agents: Iterable[AgentTime],
    now: float,
    service_level_s: float,
    window_s: float | None = None,
    short_abandon_s: float = 0.0,
) -> QueueKpis:
    """KPIs at ``now``; ``window_s`` keeps only entries that ended within it. Callers who
    hung up within ``short_abandon_s`` of waiting (short abandons) are in no rate."""
    sums = KpiSums()
    for e in finished:
        if window_s is not None and e.ended_at < now - window_s:
            continue
        sums.ended(e.outcome, e.wait_s, service_level_s, short_abandon_s)
        if e.outcome == ANSWERED and e.wrap_up_s is not None:
            sums.wrapped(e.talk_s, e.wrap_up_s)
    return kpis_of(sums, waiting_since, agents, now)


def kpis_of(
    sums: KpiSums, waiting_since: Iterable[float], agents: Iterable[AgentTime], now: float
) -> QueueKpis:
    """KPIs at ``now`` from the window's sums, the callers waiting and the agents' times."""
    waits = [max(0.0, now - t) for t in waiting_since]
    times = list(agents)
    return QueueKpis(
        waiting=len(waits),
        longest_wait_s=max(waits, default=0.0),
        answered=sums.answered,
        abandoned=sums.abandoned,
        service_level_pct=service_level_pct(sums.answered_in_sl, sums.answered, sums.abandoned),
        asa_s=mean_of(sums.answered_wait_s, sums.answered),
        aht_s=mean_of(sums.handle_s, sums.handled),
        abandon_pct=abandon_pct(sums.answered, sums.abandoned),
        occupancy_pct=occupancy_pct(
            sum(a.busy_s for a in times), sum(a.available_s for a in times)
        ),
    )
