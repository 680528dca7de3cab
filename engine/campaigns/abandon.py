"""The abandon rate a campaign is held to, computed exactly as the simulator computes it. Pure.

Abandoned = live answers the dialer released because no agent took them within the safe-harbour
time; the rate is abandoned / live answers handed to the agent pool, over the campaign's legal
period (FCC: 30 days; Ofcom: 24 hours). The estimate adds the people the detector hung up on
(``PacingStats.false_positive_estimate``), as the pacing policy steers on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.dialer.pacing.view import PacingStats

# The guard trips a little below the limit, so a burst of drops cannot cross it before the
# dialler has slowed: at the limit minus this margin the campaign dials progressive only.
GUARD_MARGIN = 0.005
# From this many live answers in the period the rate itself is judged (what the regulator
# measures: abandoned / live answers). Below it one drop moves the rate by whole points (1 in 20
# is 5 %), so the rate says little about how the dialler drops calls: only strong evidence trips.
MIN_LIVE_FOR_RATE = 100
# Strong evidence: the lower end of the 95 % Wilson score interval of the drop rate is at the
# threshold or above (1 drop in 5 live answers: 3.6 %; 1 in 19: 0.9 %; 3 in 40: 2.6 %).
GUARD_Z = 1.959964


@dataclass(frozen=True, slots=True)
class AbandonFigures:
    live: float
    abandoned: float
    rate: float  # 0..1

    @property
    def pct(self) -> float:
        return 100.0 * self.rate


def figures(stats: PacingStats) -> AbandonFigures:
    live, abandoned = stats.live_estimate, stats.abandon_estimate
    return AbandonFigures(live, abandoned, abandoned / live if live > 0 else 0.0)


def wilson_lower(abandoned: float, live: float, z: float = GUARD_Z) -> float:
    """The lower end of the Wilson score interval of ``abandoned / live`` (0 when no live)."""
    if live <= 0:
        return 0.0
    p = min(max(abandoned / live, 0.0), 1.0)
    z2 = z * z
    centre = p + z2 / (2 * live)
    spread = z * math.sqrt(p * (1 - p) / live + z2 / (4 * live * live))
    return max(0.0, (centre - spread) / (1 + z2 / live))


def guard_tripped(period: AbandonFigures, limit: float) -> bool:
    """Whether the campaign must fall back to progressive dialling (always compliant): its
    period's abandon rate is at the limit minus GUARD_MARGIN, judged on the rate itself from
    MIN_LIVE_FOR_RATE live answers, and before that only when the drops are strong evidence
    (the Wilson lower bound is there already)."""
    threshold = limit - GUARD_MARGIN
    if period.live <= 0:
        return False
    if period.live >= MIN_LIVE_FOR_RATE and period.rate >= threshold:
        return True
    return wilson_lower(period.abandoned, period.live) >= threshold
