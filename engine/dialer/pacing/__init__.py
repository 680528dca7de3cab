"""Pacing: how many calls a campaign dials now. Pure policies behind :class:`PacingPolicy`."""

from __future__ import annotations

import re
from collections.abc import Callable

from engine.dialer.pacing.adapt import AdaptPolicy
from engine.dialer.pacing.baselines import PowerPolicy, ProgressivePolicy, RatioPolicy
from engine.dialer.pacing.predictive import PredictiveConfig, PredictivePolicy
from engine.dialer.pacing.view import (
    AgentTaskDone,
    DialResolved,
    Observation,
    PacingPolicy,
    PacingStats,
    PacingView,
    clamp_dials,
)

__all__ = [
    "BASELINES",
    "POLICY_NAMES",
    "AdaptPolicy",
    "AgentTaskDone",
    "DialResolved",
    "Observation",
    "PacingPolicy",
    "PacingStats",
    "PacingView",
    "PowerPolicy",
    "PredictiveConfig",
    "PredictivePolicy",
    "ProgressivePolicy",
    "RatioPolicy",
    "clamp_dials",
    "make_policy",
]

BASELINES = (
    "progressive",
    "power-2",
    "power-3",
    "ratio-1.2",
    "adapt-hard",
    "adapt-tapered",
    "adapt-average",
)
POLICY_NAMES = ("predictive", *BASELINES)

_NUMBERED = re.compile(r"^(power|ratio)-([0-9]+(?:\.[0-9]+)?)$")


def make_policy(name: str, *, shift_s: float = 8 * 3600.0) -> PacingPolicy:
    """A fresh policy object by name: ``predictive``, ``progressive``, ``power-K``,
    ``ratio-LEVEL``, ``adapt-hard``, ``adapt-tapered`` or ``adapt-average``."""
    simple: dict[str, Callable[[], PacingPolicy]] = {
        "predictive": PredictivePolicy,
        "progressive": ProgressivePolicy,
        "adapt-hard": lambda: AdaptPolicy(mode="hard", shift_s=shift_s),
        "adapt-tapered": lambda: AdaptPolicy(mode="tapered", shift_s=shift_s),
        "adapt-average": lambda: AdaptPolicy(mode="average", shift_s=shift_s),
    }
    if name in simple:
        return simple[name]()
    match = _NUMBERED.match(name)
    if match:
        value = float(match.group(2))
        return PowerPolicy(k=value) if match.group(1) == "power" else RatioPolicy(level=value)
    raise ValueError(
        f"unknown pacing policy {name!r}; expected one of {', '.join(POLICY_NAMES)} "
        "(or power-K / ratio-LEVEL with a number)"
    )
