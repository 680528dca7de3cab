"""What the calls service needs from ``[calls]`` in engine.toml, as one value."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.calls.sweep import Limits


@dataclass(frozen=True, slots=True)
class CallSettings:
    storage_timeout_s: float = 5.0
    unknown_outcome_window_s: float = 45.0
    probe_interval_s: float = 1.0
    sweep_interval_s: float = 5.0
    limits: Limits = field(default_factory=Limits)
