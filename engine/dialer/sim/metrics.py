"""Shift figures, exactly as bench/pacing_scenarios/README.md defines them.

:class:`ShiftTally` is fed segment by segment (the simulator does it as events happen; tests do it
with hand-made traces) and :meth:`ShiftTally.figures` turns it into the reported numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Figures:
    busy_pct: float
    """(talk + wrap agent-seconds) / logged-in agent-seconds, in %."""
    talk_min_per_agent_hour: float
    """Minutes agents spent talking to humans, per logged-in agent-hour."""
    abandon_pct: float
    """Abandoned live answers (AMD false positives included) / live answers, over the shift."""
    worst_hour_abandon_pct: float
    """The same ratio in the worst single shift hour (hours with no live answer count as 0)."""
    connections_per_agent_hour: float
    """Humans connected to an agent, per logged-in agent-hour."""
    dials_per_agent_hour: float
    live_answers: int
    abandons: int
    hourly_abandon_pct: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ShiftTally:
    shift_s: float
    hours: int = field(init=False)
    agent_s: float = 0.0
    busy_s: float = 0.0
    human_talk_s: float = 0.0
    dials: int = 0
    connects: int = 0
    live_by_hour: list[int] = field(init=False)
    abandon_by_hour: list[int] = field(init=False)

    def __post_init__(self) -> None:
        if self.shift_s <= 0:
            raise ValueError(f"shift length must be positive, got {self.shift_s}")
        self.hours = max(1, int(-(-self.shift_s // 3600)))
        self.live_by_hour = [0] * self.hours
        self.abandon_by_hour = [0] * self.hours

    def _clip(self, start: float, end: float) -> float:
        return max(0.0, min(end, self.shift_s) - max(start, 0.0))

    def logged_in(self, start: float, end: float, agents: int = 1) -> None:
        """``agents`` agents were logged in over [start, end)."""
        self.agent_s += agents * self._clip(start, end)

    def busy(self, start: float, end: float, *, human_talk: bool = False) -> None:
        """One agent was occupied (talk, machine handling or wrap-up) over [start, end)."""
        span = self._clip(start, end)
        self.busy_s += span
        if human_talk:
            self.human_talk_s += span

    def dial(self) -> None:
        self.dials += 1

    def connect(self) -> None:
        self.connects += 1

    def live_answer(self, at: float, *, abandoned: bool) -> None:
        if not 0 <= at < self.shift_s:
            return
        hour = min(self.hours - 1, int(at // 3600))
        self.live_by_hour[hour] += 1
        if abandoned:
            self.abandon_by_hour[hour] += 1

    def figures(self) -> Figures:
        agent_h = self.agent_s / 3600.0
        live = sum(self.live_by_hour)
        ab = sum(self.abandon_by_hour)
        hourly = tuple(
            100.0 * a / n if n else 0.0
            for a, n in zip(self.abandon_by_hour, self.live_by_hour, strict=True)
        )
        return Figures(
            busy_pct=100.0 * self.busy_s / self.agent_s if self.agent_s else 0.0,
            talk_min_per_agent_hour=self.human_talk_s / 60.0 / agent_h if agent_h else 0.0,
            abandon_pct=100.0 * ab / live if live else 0.0,
            worst_hour_abandon_pct=max(hourly) if hourly else 0.0,
            connections_per_agent_hour=self.connects / agent_h if agent_h else 0.0,
            dials_per_agent_hour=self.dials / agent_h if agent_h else 0.0,
            live_answers=live,
            abandons=ab,
            hourly_abandon_pct=hourly,
        )


SHIFT_GATE_PCT = 3.0
HOUR_GATE_PCT = 5.0


def gates_hold(runs: list[Figures]) -> bool:
    """The README's compliance gate: on every seed, shift abandon <= 3.0 % and no hour > 5.0 %."""
    return all(
        f.abandon_pct <= SHIFT_GATE_PCT + 1e-9 and f.worst_hour_abandon_pct <= HOUR_GATE_PCT + 1e-9
        for f in runs
    )
