"""The corpus admission rule: progressive dialling must hold the gates in expectation, computed
from the scenario's parameters alone (engine/dialer/sim/feasibility.py)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from engine.dialer.sim import load_scenario
from engine.dialer.sim.feasibility import _binomial_sf, assess

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "pacing_scenarios"


def test_binomial_tail_matches_the_sum_of_the_pmf() -> None:
    n, p = 40, 0.07
    for k in (-1, 0, 2, 5, 39, 40):
        want = sum(math.comb(n, x) * p**x * (1 - p) ** (n - x) for x in range(k + 1, n + 1))
        assert _binomial_sf(n, p, k) == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_run_five_held_out_scenarios_are_admitted_but_h24() -> None:
    # All twelve passed the rule as first written (answer count taken at its mean); H24 broke
    # an hour for progressive on 2 false positives in 38 answers, and the count's noise is now
    # in the rule, which rejects it.
    paths = sorted((CORPUS / "holdout").glob("*.json"))
    assert len(paths) >= 12
    for path in paths:
        verdict = assess(load_scenario(path))
        assert verdict.admitted == (path.stem != "H24-duo-amd-fp05"), verdict.reason


@pytest.mark.parametrize(
    "name",
    [
        "train/H08-amd-small",
        "train/H13-five-amd-fp15",
        "train/H22-fifteen-amd-lowlive",
        "train/H24-duo-amd-fp05",
    ],
)
def test_small_amd_teams_where_progressive_broke_an_hour_fail_the_rule(name: str) -> None:
    verdict = assess(load_scenario(CORPUS / f"{name}.json"))
    assert not verdict.admitted and verdict.expected_breaks > 0.1
    assert "progressive dialling breaks a gate" in verdict.reason


def test_the_same_false_positives_pass_on_a_large_team_and_the_volume_is_the_simulators() -> None:
    h13 = load_scenario(CORPUS / "train" / "H13-five-amd-fp15.json")
    # Run 4 measured ~71 people connected per hour for progressive on 5 agents (14.3 conn/ah).
    assert 65 < assess(h13).answers_per_hour[0] < 80
    big = assess(dataclasses.replace(h13, agents=60))
    assert big.admitted and big.answers_per_hour[0] == pytest.approx(12 * 72, rel=0.1)


def test_a_verdict_that_comes_after_the_window_abandons_every_person() -> None:
    h13 = load_scenario(CORPUS / "train" / "H13-five-amd-fp15.json")
    assert h13.amd is not None
    late = dataclasses.replace(h13, agents=200, abandon_window_s=1.0)  # 2.5 s verdict > 1 + 1 s
    verdict = assess(late)
    assert verdict.abandon_share == 1.0 and not verdict.admitted


def test_a_mass_log_off_orphans_the_calls_in_flight_and_fails_the_rule() -> None:
    # Run 9's H30 (35 agents, 70 -> 3 at 5.0 h): progressive broke hour 6 on 7 of 10 seeds
    # (101-110), every abandon a call already ringing when 67 agents left (about 2.8 a seed in
    # ~45 answers). The rule, from the parameters: idle agents go at once and orphan their calls.
    h30 = load_scenario(CORPUS / "train" / "H30-35-login-waves.json")
    verdict = assess(h30)
    assert not verdict.admitted and verdict.expected_breaks > 1.0, verdict.reason
    assert "log" in verdict.reason and "orphan" in verdict.reason
    assert 1.5 < verdict.logoff_abandons[5] < 4.0
    assert 35 < verdict.answers_per_hour[5] < 55
    # The same wave with 50 agents left after the drop: few orphans, a busy hour: admitted.
    softer = [
        dataclasses.replace(ch, value=50.0) if ch.at_hour == 5.0 else ch for ch in h30.changes
    ]
    mild = assess(dataclasses.replace(h30, changes=tuple(softer)))
    assert mild.admitted, mild.reason
    assert mild.logoff_abandons[5] < 0.5 * verdict.logoff_abandons[5]
    # No drop, no orphans: a log-in only scenario has none.
    grow = [dataclasses.replace(ch, value=80.0) for ch in h30.changes if ch.key == "agents"]
    assert not any(assess(dataclasses.replace(h30, changes=tuple(grow))).logoff_abandons)


def test_orphaned_abandons_and_false_positives_add_up_in_the_hour() -> None:
    from engine.dialer.sim.feasibility import _break_chance

    # 40 answers: 2 abandons hold the 5 % hour (2.0 of 40), 3 break it.
    alone = _break_chance(40.0, 0.0, 5.0, extra=1.0)
    assert 0.0 < alone < _break_chance(40.0, 0.0, 5.0, extra=3.0) < 1.0
    assert _break_chance(40.0, 0.01, 5.0, extra=1.0) > max(alone, _break_chance(40.0, 0.01, 5.0))
    assert _break_chance(40.0, 0.0, 5.0) == 0.0
