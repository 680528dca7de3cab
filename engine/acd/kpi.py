"""Queue KPIs: pure maths over finished queue entries, waiting callers and agents.

The same functions serve ``GET /v1/queues/{name}`` (live, over the entries
finished within a window) and a report that recomputes them from the
``queue_entries`` and ``agent_state_history`` tables. Definitions
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
    outcome: str  # answered | abandoned | overflow-ivr | max-wait | interrupted
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


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def queue_kpis(
    finished: Iterable[FinishedEntry],
    waiting_since: Iterable[float],
    agents: Iterable[AgentTime],
    now: float,
    service_level_s: float,
    window_s: float | None = None,
) -> QueueKpis:
    """KPIs at ``now``; ``window_s`` keeps only entries that ended within it."""
    done = [e for e in finished if window_s is None or e.ended_at >= now - window_s]
    answered = [e for e in done if e.outcome == ANSWERED]
    abandoned = [e for e in done if e.outcome == ABANDONED]
    counted = len(answered) + len(abandoned)
    within = sum(1 for e in answered if e.wait_s <= service_level_s)
    waits = [max(0.0, now - t) for t in waiting_since]
    handled = [e for e in answered if e.wrap_up_s is not None]
    aht = _mean([e.talk_s + (e.wrap_up_s or 0.0) for e in handled])
    times = list(agents)
    busy = sum(a.busy_s for a in times)
    staffed = busy + sum(a.available_s for a in times)
    return QueueKpis(
        waiting=len(waits),
        longest_wait_s=max(waits, default=0.0),
        answered=len(answered),
        abandoned=len(abandoned),
        service_level_pct=100.0 * within / counted if counted else None,
        asa_s=_mean([e.wait_s for e in answered]),
        aht_s=aht,
        abandon_pct=100.0 * len(abandoned) / counted if counted else None,
        occupancy_pct=100.0 * busy / staffed if staffed > 0 else None,
    )
