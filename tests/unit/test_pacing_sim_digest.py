"""The simulator's results for fixed seeds, pinned: a speed-up of the simulator or of the
predictive policy's arithmetic must leave every figure and every traced event as it was.

The digests are of the figures and the full event trace (connects, abandons, log-offs, changes,
each with its instant to the microsecond) of short cuts of three training scenarios that between
them take every scheduling path of the predictive policy: a 100-agent team (sd > 2: ticks only),
an AMD campaign, and a small team growing by log-ins (floor on every release). A change that
means to alter decisions must say so and re-pin them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.dialer.pacing import make_policy
from engine.dialer.sim import load_scenario, simulate

SCENARIOS = Path(__file__).resolve().parents[2] / "bench" / "pacing_scenarios"

PINNED = {
    # (scenario file, hours simulated, seed): sha256 of figures + trace, first 16 hex digits
    ("S4-large.json", 1.0, 1): "f07438ad7ba4124e",
    ("train/C15-amd-heavy.json", 1.0, 2): "55f05299d8e865e4",
    ("train/C13-login-ramp.json", 1.2, 3): "dcdb68c2caba94e9",
}


def _digest(path: str, hours: float, seed: int, policy: str = "predictive") -> str:
    scenario = replace(load_scenario(SCENARIOS / path), shift_hours=hours)
    result = simulate(
        scenario, make_policy(policy, shift_s=scenario.shift_s), seed, record_trace=True
    )
    blob = json.dumps([result.figures.as_dict(), result.trace], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@pytest.mark.parametrize(("path", "hours", "seed"), sorted(PINNED))
def test_predictive_results_for_fixed_seeds_are_pinned(path: str, hours: float, seed: int) -> None:
    assert _digest(path, hours, seed) == PINNED[(path, hours, seed)]
