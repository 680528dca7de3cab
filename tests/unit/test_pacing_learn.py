"""The predictive policy's learners at a campaign's cold start: right-censored durations
(Kaplan-Meier over finished and running segments) and outcome times that wait for their dial
cohort. Pure logic, no simulation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from engine.dialer.pacing.learn import STEP, DialModel, DurationModel

_RND = random.Random(7)
TALKS = sorted(_RND.expovariate(1.0 / 150.0) for _ in range(200))
"""200 talks all begun at 0 (a big team's opening), exponential with a 150 s mean."""


def _opening(now: float) -> tuple[DurationModel, tuple[float, ...]]:
    """At ``now`` the model has seen the talks that ended (the shortest) and the rest still
    run (their start instants, as the policy's view gives them)."""
    model = DurationModel([600.0])
    for d in TALKS:
        if d <= now:
            model.add(d, d)
    return model, tuple(0.0 for d in TALKS if d > now)


def test_running_talks_are_censored_not_ignored() -> None:
    # 60 s into a 200-agent campaign a third of the 150 s talks have ended: all short ones.
    model, running = _opening(60.0)
    model.refresh(60.0, running)
    # Nothing is censored before 60 s, so below the tail (fitted past the last few events)
    # the estimate is the whole team's survival.
    for g in (10.0, 30.0, 45.0):
        expected = sum(d > g for d in TALKS) / len(TALKS)
        assert model.survival[round(g / STEP)] == pytest.approx(expected)
    assert model.mean() > 100.0


def test_finished_talks_alone_are_biased_short() -> None:
    # The same data without the running talks: the estimate the policy used to make.
    model, _ = _opening(60.0)
    model.refresh(60.0, ())
    assert model.mean() < 40.0


def test_without_running_segments_the_estimate_is_the_empirical_survival() -> None:
    values = [float(v) for v in range(1, 101)]
    model = DurationModel([5.0])
    for v in values:
        model.add(v)
    model.refresh(0.0)
    for g in (0.5, 10.0, 25.5, 50.0, 80.0):
        expected = sum(v > g for v in values) / len(values)
        assert model.survival[round(g / STEP)] == pytest.approx(expected)
    assert list(model.quantiles) == [13.0, 38.0, 63.0, 88.0]


def test_the_prior_stands_until_enough_segments_finish() -> None:
    model = DurationModel([600.0], min_real=30)
    for _ in range(29):
        model.add(10.0, 100.0)
    model.refresh(100.0, ())
    assert model.mean() == pytest.approx(600.0, rel=0.01)
    model.add(10.0, 100.0)
    model.refresh(100.0, ())
    assert model.mean() == pytest.approx(10.0)


def test_segments_begun_before_a_forgotten_one_leave_the_sample() -> None:
    # A window of 40: 39 short talks begun at 500-538 s, and a long one begun at 0 that ended
    # at 1000. While nothing is forgotten the long one is in the sample; once a talk begun at
    # 500 is forgotten, everything begun before 500 leaves (the short talks begun before it
    # that ended earlier were forgotten too, so keeping the long one would bias the sample).
    model = DurationModel([600.0], window=40, min_real=10, refresh_every=1)
    for i in range(39):
        model.add(10.0, 510.0 + i)
    model.add(1000.0, 1000.0)
    model.refresh(1000.0)
    assert model.survival[round(500.0 / STEP)] > 0.0
    model.add(10.0, 1010.0)  # forgets the talk begun at 500
    model.refresh(1010.0)
    assert model.survival[round(100.0 / STEP)] < 1e-9


def test_outcome_times_wait_for_their_cohort() -> None:
    # A cohort's quick hand-overs are back, one of its calls still rings: its times must not
    # enter the histogram yet (the fastest outcomes alone read as the whole distribution).
    dm = DialModel()
    prior = dm.demand_cdf.copy()
    for _ in range(40):
        dm.add(0.5, 2.0, True, 2.0)
    dm.advance(40.0, 0.5)
    assert np.array_equal(dm.demand_cdf, prior)
    for _ in range(40):
        dm.add(0.5, 20.0, True, 2.0)
    dm.advance(60.0, math.inf)
    k = round(10.0 / STEP)
    assert dm.demand_cdf[k] == pytest.approx(0.5)


def test_answer_share_uncertainty_is_wide_cold_narrow_later_and_wide_again_after_a_jump() -> None:
    dm = DialModel()
    cold = dm.p_sd  # the prior's weight only: sqrt(0.25 / 10)
    assert cold == pytest.approx(math.sqrt(0.25 / 10.0))
    for sec in range(100):  # 100 cohorts of 20 dials, 4 handed over each
        for i in range(20):
            dm.add(float(sec), 5.0, i < 4, 2.0 if i < 4 else None)
    dm.advance(200.0, math.inf)
    assert dm.p_demand == pytest.approx(0.2, abs=0.02)
    settled = dm.p_sd
    assert settled == pytest.approx(math.sqrt(0.2 * 0.8 / 2010.0), rel=0.1)
    for sec in range(300, 310):  # the list turns: 15 of 20 answered
        for i in range(20):
            dm.add(float(sec), 5.0, i < 15, 2.0 if i < 15 else None)
    dm.advance(400.0, math.inf)
    # The fast estimate took over: the share rests on its ~40-dial window plus the dials
    # since (~200 here), not on the 2000 before the jump.
    assert dm.p_demand > 0.5 and dm.p_sd > 3 * settled
