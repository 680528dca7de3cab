"""A VICIdial-style ADAPT controller, re-implemented from the public description of the modes.

What the VICIdial manual says, and what this class does with it:

* The campaign dials at a *dial level* (lines per logged-in agent, the RATIO arithmetic), and a
  periodic job (every ``interval_s``) moves the level.
* The level goes up while agents sit waiting for calls and down while answered calls wait for
  agents, aiming at a configured *difference target* between the two (default 0); the *intensity
  modifier* scales how hard each adjustment pushes.
* The level never leaves ``[1.0, max_level]`` (VICIdial's "adaptive maximum dial level", 3.0).
* The drop (abandon) percentage of the day is compared with the campaign's drop limit:
  ``hard`` (ADAPT_HARD_LIMIT) falls back to level 1.0 as soon as the limit is reached and only
  dials predictively again once the day's figure is back under it; ``tapered`` (ADAPT_TAPERED)
  tolerates running over the limit early in the shift and tightens linearly to the limit at the
  end; ``average`` (ADAPT_AVERAGE) steers the day's drop rate around the limit without a hard
  stop, pulling the level down in proportion to the overshoot.

No VICIdial code was consulted or copied; only the behaviour above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from engine.dialer.pacing.baselines import ratio_dials
from engine.dialer.pacing.view import Observation, PacingView

AdaptMode = Literal["hard", "tapered", "average"]


@dataclass
class AdaptPolicy:
    mode: AdaptMode = "hard"
    drop_target_pct: float = 3.0
    max_level: float = 3.0
    start_level: float = 1.0
    diff_target: float = 0.0
    intensity: float = 0.0  # VICIdial offers -40..+40; 0 is neutral
    interval_s: float = 15.0
    shift_s: float = 8 * 3600.0
    name: str = ""
    level: float = field(init=False)
    _last_adjust: float | None = field(init=False, default=None)
    _last_sample: float | None = field(init=False, default=None)
    _idle_area: float = field(init=False, default=0.0)
    _waiting_area: float = field(init=False, default=0.0)
    _span: float = field(init=False, default=0.0)
    _last_idle: int = field(init=False, default=0)
    _last_waiting: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.mode not in ("hard", "tapered", "average"):
            raise ValueError(f"ADAPT mode must be hard, tapered or average, got {self.mode!r}")
        if not 1.0 <= self.start_level <= self.max_level:
            raise ValueError("ADAPT start_level must lie within [1.0, max_level]")
        self.level = self.start_level
        if not self.name:
            self.name = f"adapt-{self.mode}"

    def _drop_pct(self, view: PacingView) -> float:
        # The dialer's own counts (dropped hand-overs plus the detector's expected false
        # positives), as VICIdial's drop percentage is computed from its call log.
        live = view.stats.live_estimate
        return 100.0 * view.stats.abandon_estimate / live if live else 0.0

    def _limit_pct(self, view: PacingView, now: float) -> float:
        if self.mode != "tapered":
            return self.drop_target_pct
        progress = min(1.0, max(0.0, (now - view.stats.shift_start) / self.shift_s))
        # Twice the limit at the start of the shift, the limit itself at its end.
        return self.drop_target_pct * (2.0 - progress)

    def _adjust(self, view: PacingView, now: float) -> None:
        if self._span <= 0:
            return
        idle = self._idle_area / self._span
        waiting = self._waiting_area / self._span
        agents = max(1, view.agents)
        gain = 0.5 * max(0.0, 1.0 + self.intensity / 40.0)
        step = gain * (idle - waiting - self.diff_target) / agents
        drop = self._drop_pct(view)
        limit = self._limit_pct(view, now)
        if self.mode == "hard":
            self.level = 1.0 if drop >= limit else self.level + step
        elif self.mode == "tapered":
            self.level = self.level * 0.8 if drop >= limit else self.level + step
        else:
            over = (drop - limit) / limit
            self.level = self.level + step - (0.5 * over if over > 0 else 0.0)
        self.level = min(self.max_level, max(1.0, self.level))

    def decide(self, view: PacingView, now: float) -> int:
        # Time-average idle agents and waiting answers between adjustments, as a periodic job
        # sampling the live tables would.
        if self._last_sample is not None:
            dt = max(0.0, now - self._last_sample)
            self._idle_area += dt * self._last_idle
            self._waiting_area += dt * self._last_waiting
            self._span += dt
        self._last_sample = now
        self._last_idle = len(view.idle_since)
        self._last_waiting = len(view.waiting_since)
        if self._last_adjust is None:
            self._last_adjust = now
        elif now - self._last_adjust >= self.interval_s:
            self._adjust(view, now)
            self._last_adjust = now
            self._idle_area = self._waiting_area = self._span = 0.0
        return ratio_dials(self.level, view)

    def observe(self, obs: Observation) -> None:
        return None
