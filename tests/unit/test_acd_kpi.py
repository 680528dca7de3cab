"""Queue KPIs on hand-made traces (engine/acd/kpi.py)."""

from __future__ import annotations

import pytest

from engine.acd.kpi import AgentTime, FinishedEntry, queue_kpis


def _e(
    entered: float, wait: float, outcome: str, talk: float = 0.0, wrap: float | None = None
) -> FinishedEntry:
    return FinishedEntry(entered, entered + wait + talk, outcome, wait, talk, wrap)


def test_a_small_trace() -> None:
    finished = [
        _e(0, 5, "answered", talk=60, wrap=10),  # within 20 s
        _e(10, 30, "answered", talk=120, wrap=0),  # late
        _e(20, 15, "abandoned"),
        _e(30, 19.5, "answered", talk=30),  # wrap-up not over: out of AHT
        _e(40, 100, "overflow-ivr"),  # neither answered nor abandoned
    ]
    k = queue_kpis(
        finished,
        waiting_since=[190.0, 170.0],
        agents=[AgentTime(busy_s=300, available_s=100), AgentTime(busy_s=100, available_s=300)],
        now=200.0,
        service_level_s=20.0,
    )
    assert k.waiting == 2 and k.longest_wait_s == 30.0
    assert (k.answered, k.abandoned) == (3, 1)
    assert k.service_level_pct == pytest.approx(100 * 2 / 4)
    assert k.asa_s == pytest.approx((5 + 30 + 19.5) / 3)
    assert k.aht_s == pytest.approx(((60 + 10) + (120 + 0)) / 2)
    assert k.abandon_pct == pytest.approx(25.0)
    assert k.occupancy_pct == pytest.approx(50.0)


def test_no_calls_means_no_rates_not_zero() -> None:
    k = queue_kpis([], [], [], now=10.0, service_level_s=20.0)
    assert k.waiting == 0 and k.longest_wait_s == 0.0
    assert k.service_level_pct is None and k.asa_s is None and k.aht_s is None
    assert k.abandon_pct is None and k.occupancy_pct is None


def test_the_window_keeps_recent_entries_only() -> None:
    finished = [_e(0, 50, "abandoned"), _e(1000, 2, "answered", talk=10, wrap=5)]
    k = queue_kpis(finished, [], [], now=1100.0, service_level_s=20.0, window_s=600.0)
    assert (k.answered, k.abandoned) == (1, 0)
    assert k.service_level_pct == 100.0 and k.abandon_pct == 0.0 and k.aht_s == 15.0


def test_threshold_is_inclusive() -> None:
    k = queue_kpis([_e(0, 20.0, "answered")], [], [], now=100.0, service_level_s=20.0)
    assert k.service_level_pct == 100.0
    k = queue_kpis([_e(0, 20.001, "answered")], [], [], now=100.0, service_level_s=20.0)
    assert k.service_level_pct == 0.0
