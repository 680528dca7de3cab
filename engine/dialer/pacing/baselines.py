"""Baseline pacing rules the predictive policy is measured against.

All three are memoryless and react to the view alone; they keep ``observe`` only to satisfy the
policy interface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.dialer.pacing.view import Observation, PacingView, clamp_dials


@dataclass
class ProgressivePolicy:
    """Progressive 1:1: one call in progress per idle agent, so an answer always finds an agent."""

    name: str = "progressive"

    def decide(self, view: PacingView, now: float) -> int:
        pending = len(view.ringing_since) + len(view.waiting_since)
        return clamp_dials(len(view.idle_since) - pending, view)

    def observe(self, obs: Observation) -> None:
        return None


@dataclass
class PowerPolicy:
    """Power dialing: keep ``k`` calls in progress for every idle agent."""

    k: float = 2.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.k <= 0:
            raise ValueError(f"power dialing needs k > 0 lines per idle agent, got {self.k}")
        if not self.name:
            self.name = f"power-{self.k:g}"

    def decide(self, view: PacingView, now: float) -> int:
        pending = len(view.ringing_since) + len(view.waiting_since)
        return clamp_dials(math.floor(self.k * len(view.idle_since) + 1e-9) - pending, view)

    def observe(self, obs: Observation) -> None:
        return None


def ratio_dials(level: float, view: PacingView) -> int:
    """VICIdial RATIO arithmetic: keep ``level`` lines per logged-in agent.

    Lines are every call the campaign holds (ringing, answered and waiting, connected to an
    agent), and agents are all logged-in, unpaused agents whatever their state; this is how
    VICIdial's auto-dial loop tallies "active agents x dial level - active calls".
    """
    target = math.floor(level * view.agents + 1e-9)
    return clamp_dials(target - view.lines_in_use, view)


@dataclass
class RatioPolicy:
    """Fixed dial level over working agents (VICIdial RATIO)."""

    level: float = 1.2
    name: str = ""

    def __post_init__(self) -> None:
        if self.level < 1.0:
            raise ValueError(f"a RATIO dial level below 1.0 is not pacing, got {self.level}")
        if not self.name:
            self.name = f"ratio-{self.level:g}"

    def decide(self, view: PacingView, now: float) -> int:
        return ratio_dials(self.level, view)

    def observe(self, obs: Observation) -> None:
        return None
