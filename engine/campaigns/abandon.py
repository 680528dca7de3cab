"""The abandon rate a campaign is held to, computed exactly as the simulator computes it. Pure.

Abandoned = live answers the dialer released because no agent took them within the safe-harbour
time; the rate is abandoned / live answers handed to the agent pool, over the campaign's legal
period (FCC: 30 days; Ofcom: 24 hours). The estimate adds the people the detector hung up on
(``PacingStats.false_positive_estimate``), as the pacing policy steers on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.dialer.pacing.view import PacingStats

# The guard trips a little below the limit, so a burst of drops cannot cross it before the
# dialler has slowed: at the limit minus this margin the campaign dials progressive only.
GUARD_MARGIN = 0.005
# Fewer live answers than this in the period and the rate says nothing yet.
MIN_LIVE_FOR_GUARD = 20


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


def guard_tripped(period: AbandonFigures, limit: float) -> bool:
    """Whether the campaign must fall back to progressive dialling (always compliant)."""
    if period.live < MIN_LIVE_FOR_GUARD:
        return period.abandoned > 0 and period.abandoned / max(period.live, 1.0) >= limit
    return period.rate >= limit - GUARD_MARGIN
