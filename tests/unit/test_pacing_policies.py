"""Pacing policies: interface properties (hypothesis) and the behaviour of each rule."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dialer.assign import LongestIdleAssigner
from engine.dialer.pacing import (
    POLICY_NAMES,
    AdaptPolicy,
    AgentTaskDone,
    DialResolved,
    PacingPolicy,
    PacingStats,
    PacingView,
    PredictiveConfig,
    PredictivePolicy,
    ProgressivePolicy,
    make_policy,
)
from engine.dialer.pacing.learn import STEP, DialModel
from engine.dialer.sim import load_scenario, simulate

NOW = 1000.0


def stamps(max_size: int) -> st.SearchStrategy[tuple[float, ...]]:
    # Timestamps up to an hour before NOW (elapsed 0..3600 s), and a few "from the future" to
    # prove clock skew cannot produce a negative or oversized dial count.
    return st.lists(st.floats(NOW - 3600.0, NOW + 5.0), max_size=max_size).map(tuple)


@st.composite
def views(draw: st.DrawFn) -> PacingView:
    live = draw(st.integers(0, 500))
    return PacingView(
        idle_since=draw(stamps(30)),
        talking_since=draw(stamps(30)),
        wrap_since=draw(stamps(10)),
        ringing_since=draw(stamps(60)),
        waiting_since=draw(stamps(5)),
        line_cap=draw(st.integers(0, 200)),
        stats=PacingStats(
            dials=draw(st.integers(0, 5000)),
            handed_over=live,
            dropped=draw(st.integers(0, live)),
            connects=draw(st.integers(0, live)),
        ),
    )


@pytest.mark.parametrize("name", POLICY_NAMES)
@settings(max_examples=60, deadline=None)
@given(view=views())
def test_dial_count_is_never_negative_nor_past_the_line_cap(name: str, view: PacingView) -> None:
    policy = make_policy(name)
    n = policy.decide(view, NOW)
    assert isinstance(n, int)
    assert 0 <= n <= view.free_lines
    if view.agents == 0:
        assert n == 0


@pytest.mark.parametrize("name", POLICY_NAMES)
@settings(max_examples=25, deadline=None)
@given(ringing=stamps(40), waiting=stamps(5), live=st.integers(0, 300))
def test_no_agents_means_no_dials(
    name: str, ringing: tuple[float, ...], waiting: tuple[float, ...], live: int
) -> None:
    view = PacingView(
        ringing_since=ringing,
        waiting_since=waiting,
        line_cap=500,
        stats=PacingStats(handed_over=live),
    )
    assert make_policy(name).decide(view, NOW) == 0


def test_every_policy_satisfies_the_protocol() -> None:
    for name in POLICY_NAMES:
        assert isinstance(make_policy(name), PacingPolicy)


def test_progressive_keeps_one_call_per_idle_agent() -> None:
    policy = make_policy("progressive")
    view = PacingView(idle_since=(1.0, 2.0, 3.0), ringing_since=(990.0,), line_cap=100)
    assert policy.decide(view, NOW) == 2
    view = PacingView(idle_since=(1.0,), ringing_since=(990.0, 991.0), line_cap=100)
    assert policy.decide(view, NOW) == 0


def test_power_dials_k_lines_per_idle_agent_minus_calls_in_progress() -> None:
    view = PacingView(
        idle_since=(1.0, 2.0), waiting_since=(999.0,), ringing_since=(995.0,), line_cap=100
    )
    assert make_policy("power-3").decide(view, NOW) == 3 * 2 - 2
    assert make_policy("power-2").decide(view, NOW) == 2 * 2 - 2


def test_line_cap_bounds_power_dialing() -> None:
    view = PacingView(idle_since=(1.0,) * 10, talking_since=(5.0,) * 5, line_cap=12)
    # 12 lines, 5 held by connected calls: 7 free even though power-3 wants 30.
    assert make_policy("power-3").decide(view, NOW) == 7


def test_ratio_counts_every_logged_in_agent_and_every_held_line() -> None:
    view = PacingView(
        idle_since=(1.0,) * 2,
        talking_since=(5.0,) * 6,
        wrap_since=(7.0,) * 2,
        ringing_since=(990.0,) * 3,
        line_cap=100,
    )
    # floor(1.2 * 10 agents) = 12 lines; 6 talking + 3 ringing held -> 3 more.
    assert make_policy("ratio-1.2").decide(view, NOW) == 3


def test_unknown_policy_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown pacing policy 'nope'"):
        make_policy("nope")


def _adapt_view(idle: int, busy: int, live: int, abandons: int) -> PacingView:
    return PacingView(
        idle_since=(0.0,) * idle,
        talking_since=(0.0,) * busy,
        line_cap=1000,
        stats=PacingStats(handed_over=live, dropped=abandons),
    )


def test_adapt_raises_level_while_agents_wait_and_hard_limit_drops_to_one() -> None:
    policy = AdaptPolicy(mode="hard")
    idle = _adapt_view(idle=10, busy=10, live=100, abandons=0)
    for t in range(0, 61):
        policy.decide(idle, float(t))
    assert policy.level > 1.5
    over = _adapt_view(idle=10, busy=10, live=100, abandons=5)  # 5 % > 3 % limit
    for t in range(61, 80):
        policy.decide(over, float(t))
    assert policy.level == 1.0


def test_adapt_tapered_tolerates_overshoot_early_but_not_late() -> None:
    early = AdaptPolicy(mode="tapered", shift_s=3600.0)
    late = AdaptPolicy(mode="tapered", shift_s=3600.0)
    view = _adapt_view(idle=10, busy=10, live=100, abandons=4)  # 4 % against a 3 % limit
    for t in range(0, 61):
        early.decide(view, float(t))
    for t in range(3500, 3561):
        late.decide(view, float(t))
    assert early.level > 1.0
    assert late.level == 1.0


def test_predictive_dials_for_idle_agents_at_cold_start() -> None:
    policy = PredictivePolicy()
    view = PacingView(idle_since=(0.0,) * 10, line_cap=100)
    n = policy.decide(view, 0.0)
    # With no data it assumes up to half the dials need an agent: more than 1:1, not reckless.
    assert 10 <= n <= 30


def test_predictive_learns_a_low_answer_rate_and_dials_more() -> None:
    cold = PredictivePolicy()
    warm = PredictivePolicy()
    t = 0.0
    for i in range(3000):
        t = i * 0.2
        live = i % 10 == 0
        warm.observe(DialResolved(t, t + (9.0 if live else 25.0), live, 2.0 if live else None))
    # Both see the same campaign: 10 idle agents, 30 answers over the last minute (so the hour
    # has abandon budget to spend) and nothing abandoned.
    before = PacingView(idle_since=(t,) * 10, line_cap=500, stats=PacingStats(handed_over=300))
    view = PacingView(idle_since=(t,) * 10, line_cap=500, stats=PacingStats(handed_over=330))
    now = t + 60.0
    for policy in (cold, warm):
        policy.decide(before, t)
    warm_n = warm.decide(view, now)
    assert warm.dials.p_demand == pytest.approx(0.1, abs=0.03)
    assert warm_n > cold.decide(view, now)


def test_predictive_counts_agents_in_wrap_up_as_supply() -> None:
    policy = PredictivePolicy()
    for _ in range(60):
        policy.observe(AgentTaskDone("talk", 120.0))
        policy.observe(AgentTaskDone("wrap", 10.0))
    # Ten minutes of campaign with 200 clean answers: the hour has abandon budget to spend.
    policy.decide(PacingView(talking_since=(0.0,) * 10, line_cap=200), NOW - 600.0)
    answered = PacingStats(handed_over=200)
    base = PacingView(talking_since=(900.0,) * 10, line_cap=200, stats=answered)
    nearly_free = PacingView(
        talking_since=(900.0,) * 5, wrap_since=(NOW - 9.0,) * 5, line_cap=200, stats=answered
    )
    assert policy.decide(nearly_free, NOW) > policy.decide(base, NOW)


def test_predictive_throttles_when_the_hour_budget_is_spent() -> None:
    relaxed = PredictivePolicy()
    spent = PredictivePolicy()
    view_ok = PacingView(
        idle_since=(0.0,) * 5,
        talking_since=(900.0,) * 15,
        line_cap=200,
        stats=PacingStats(handed_over=300, dropped=0),
    )
    view_bad = PacingView(
        idle_since=(0.0,) * 5,
        talking_since=(900.0,) * 15,
        line_cap=200,
        stats=PacingStats(handed_over=300, dropped=20),
    )
    start = PacingView(idle_since=(0.0,) * 5, line_cap=200)
    for policy, view in ((relaxed, view_ok), (spent, view_bad)):
        policy.decide(start, 10.0)  # the shift hour starts with a clean slate
        policy.decide(view, NOW)
    assert spent.last_theta < relaxed.last_theta / 10


def test_predictive_margin_closes_as_answers_accumulate() -> None:
    policy = PredictivePolicy(PredictiveConfig())  # 0.6-point cap, 0.5 SE + 4 abandons, 0.1 floor
    margins = [policy.margin_pct(live) for live in (0, 50, 1000, 4000, 8000, 20000, 10**6)]
    assert margins[0] == pytest.approx(0.6)  # no answers yet: the widest margin
    assert margins[1] == pytest.approx(0.6)  # 1.2 SE points + 8 points of guard jitter: capped
    assert margins[2] == pytest.approx(0.6)  # 0.27 + 0.4 points: still capped
    # 0.5 * sqrt(0.03 * 0.97 / n) + 4 / n, in points.
    assert margins[3] == pytest.approx(0.1349 + 0.1, abs=1e-3)
    assert margins[4] == pytest.approx(0.0954 + 0.05, abs=1e-3)
    assert margins[5] == pytest.approx(0.1)  # 0.08 would be under the floor
    assert margins[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(margins))


def test_predictive_same_abandon_rate_is_over_target_young_and_under_target_mature() -> None:
    # 2.67 % abandoned either way: after 300 answers the margin is 0.6 point (target 2.4 %),
    # after 6000 it is ~0.18 point (target ~2.8 %), so only the young campaign is throttled.
    young, mature = PredictivePolicy(), PredictivePolicy()
    start = PacingView(idle_since=(0.0,) * 5, line_cap=200)
    for policy, live, ab in ((young, 300, 8), (mature, 6000, 160)):
        policy.decide(start, 10.0)
        view = PacingView(
            idle_since=(0.0,) * 5,
            talking_since=(900.0,) * 15,
            line_cap=200,
            stats=PacingStats(handed_over=live, dropped=ab),
        )
        policy.decide(view, NOW)
    theta0 = PredictiveConfig().theta_init
    assert young.last_theta < theta0 < mature.last_theta


def test_predictive_config_rejects_a_floor_above_the_margin_cap() -> None:
    with pytest.raises(ValueError, match="min_margin_pct"):
        PredictiveConfig(safety_margin_pct=0.2, min_margin_pct=0.3)
    with pytest.raises(ValueError, match="margin_se_factor"):
        PredictiveConfig(margin_se_factor=-1.0)


def test_longest_idle_assigner_picks_in_idle_order() -> None:
    a = LongestIdleAssigner()
    a.agent_ready(7, 1.0)
    a.agent_ready(3, 2.0)
    a.agent_ready(9, 3.0)
    a.agent_unready(3)
    assert a.pick(4.0) == 7
    assert a.pick(4.0) == 9
    assert a.pick(4.0) is None
    with pytest.raises(ValueError, match="time order"):
        a.agent_ready(1, 5.0)
        a.agent_ready(2, 4.0)


# -- pacing v2: the progressive floor, learning from cold -------------------------------------
TRAIN = Path(__file__).resolve().parents[2] / "bench" / "pacing_scenarios" / "train"


@settings(max_examples=80, deadline=None)
@given(view=views(), spent=st.booleans())
def test_predictive_never_dials_fewer_than_progressive(view: PacingView, spent: bool) -> None:
    policy = PredictivePolicy()
    if spent:
        # A throttled controller (abandon budget gone) must still not fall under 1:1 dialling.
        policy.decide(PacingView(idle_since=(0.0,), line_cap=10), 10.0)
        view = replace(view, stats=PacingStats(handed_over=100, dropped=30))
    assert policy.decide(view, NOW) >= ProgressivePolicy().decide(view, NOW)
    assert policy.decide_floor(view, NOW) == ProgressivePolicy().decide(view, NOW)


def test_progressive_floor_holds_on_a_small_team_with_a_high_answer_rate() -> None:
    # C02-trio (training half): 3 agents, 45 % live answers. Power and ratio dialling abandon
    # 20 %+ here; the model can add almost nothing, so the floor decides. It must never lose to
    # 1:1 dialling, and must not spend abandons to get there.
    sc = replace(load_scenario(TRAIN / "C02-trio.json"), shift_hours=2)
    for seed in (1, 2, 3):
        ours = simulate(sc, make_policy("predictive"), seed).figures
        prog = simulate(sc, make_policy("progressive"), seed).figures
        assert ours.busy_pct >= prog.busy_pct
        assert ours.abandon_pct <= 3.0 and ours.worst_hour_abandon_pct <= 5.0


def test_predictive_learns_another_timing_family_from_cold() -> None:
    # C02-trio's timing is not the public scenarios' family: 2 s post-dial delay, lognormal ring
    # with a 12 s mean (8 s sd), 35 s timeout, gamma talk with a 200 s mean, 20 s wrap-up.
    sc = replace(load_scenario(TRAIN / "C02-trio.json"), agents=12, shift_hours=2)
    policy = PredictivePolicy()
    cold_horizon = policy.dials.horizon
    simulate(sc, policy, 4)
    assert policy.talk.mean() == pytest.approx(200.0, rel=0.15)
    assert policy.wrap.mean() == pytest.approx(20.0, rel=0.01)
    # Hand-over share: 45 % live, nearly all answered before the 35 s timeout.
    assert policy.dials.p_demand == pytest.approx(0.45, abs=0.06)
    # Median hand-over time from the dial: 2 s + the lognormal's median (12 / sqrt(1 + (8/12)^2)).
    median = float(np.searchsorted(policy.dials.demand_cdf, 0.5)) * STEP
    assert median == pytest.approx(2.0 + 12.0 / (1 + (8 / 12) ** 2) ** 0.5, abs=1.5)
    assert policy.dials.patience == pytest.approx(2.0, abs=0.05)
    # The flat prior's 80 s horizon shrinks to the learned one (timeout 35 s: at most 71 bins).
    assert cold_horizon >= 150 and policy.dials.horizon <= 71


# -- run 3: the answer share of a big team's opening burst ------------------------------------
def test_a_big_dial_cohort_reads_its_answer_share_whatever_the_order_of_its_outcomes() -> None:
    # 400 dials in one second, 30 % of them handed over: folded as one cohort, the fast and the
    # slow estimate both read ~0.3 (they used to read ~0 when the misses came after the hits).
    dm = DialModel()
    for i in range(400):
        dm.add(0.2, 10.0 if i < 120 else 20.0, i < 120, 2.0 if i < 120 else None)
    dm.advance(60.0, math.inf)
    assert abs(dm.p_demand - 0.3) < 0.03 and abs(dm.fast.value - 0.3) < 0.03


def test_a_cohort_waits_for_its_last_ringing_call() -> None:
    # Only the quick outcomes of a cohort are back (fast failures and early answers): while one
    # of its calls still rings, the cohort must not count, or the share is biased to the fast.
    dm = DialModel()
    for i in range(100):
        dm.add(5.0, 1.0 if i < 70 else 6.0, i >= 70, 2.0 if i >= 70 else None)
    dm.advance(60.0, 5.0)  # a call dialled at 5.0 is still ringing
    assert dm.p_demand == pytest.approx(0.5)  # still the prior
    dm.advance(200.0, math.inf)
    assert dm.p_demand < 0.45


def test_a_call_stuck_ringing_does_not_stop_the_learning() -> None:
    # A live switch may lose a hang-up: a call listed as ringing for ever must not freeze the
    # answer share (cohorts past the 80 s grid plus 10 s count whatever is still listed).
    dm = DialModel()
    for i in range(100):
        dm.add(5.0, 1.0 if i < 80 else 6.0, i >= 80, 2.0 if i >= 80 else None)
    dm.advance(60.0, 0.0)
    assert dm.p_demand == pytest.approx(0.5)
    dm.advance(200.0, 0.0)
    assert dm.p_demand < 0.45


def test_hour_guard_holds_the_noise_of_amd_false_positives_on_a_small_team() -> None:
    # 4 agents, 20 minutes in, 20 answers, no drop. Without AMD the hour still has budget;
    # with a 1 % false-positive detector the ~0.6 false positives the hour expects have an sd
    # of ~0.8 that no feedback sees: the guard keeps ~2 sd of them and throttles to the floor.
    plain, amd = PredictivePolicy(), PredictivePolicy()
    start = PacingView(idle_since=(0.0,) * 4, line_cap=40)
    for policy, stats in (
        (plain, PacingStats(handed_over=20)),
        (amd, PacingStats(handed_over=20, amd_human=30, amd_false_positive_rate=0.01)),
    ):
        policy.decide(start, 0.0)
        view = PacingView(
            idle_since=(1100.0,), talking_since=(1150.0,) * 3, line_cap=40, stats=stats
        )
        policy.decide(view, 1200.0)
    assert amd.last_theta < plain.last_theta / 4


@pytest.mark.parametrize(("hour_abandons", "throttled"), [(14, False), (22, True)])
def test_hour_guards_reserve_only_for_what_is_still_to_come(
    hour_abandons: int, throttled: bool
) -> None:
    # Run 5: 20 agents, 55 minutes into hour 1, 460 answers this hour. At 14 abandons (3.0 %)
    # the hour can end at most ~3.1 %: the guards leave theta alone (their reserve covers the
    # answers of the last 5 minutes, and of the next 10 in the rolling hour; a reserve of
    # 1.5 % of the whole hour's answers throttled this hour, which is S0 running on target).
    # At 22 (4.8 %) the hour is near its 5 % limit and the guard cuts theta.
    policy = PredictivePolicy()
    view = PacingView(idle_since=(3600.0,) * 2, talking_since=(3590.0,) * 18, line_cap=200)
    policy.decide(replace(view, stats=PacingStats(handed_over=4000, dropped=100)), 3601.0)
    stats = PacingStats(handed_over=4460, dropped=100 + hour_abandons)
    policy.decide(replace(view, stats=stats), 6900.0)
    controller = min(0.6, max(0.0005, math.exp(policy._log_theta)))
    if throttled:
        assert policy.last_theta < 0.5 * controller
    else:
        assert policy.last_theta == pytest.approx(controller)
