"""Circuit breaker and health of one trunk: pure transitions over simulated time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.trunks import breaker as brk
from engine.trunks import health as hl
from engine.trunks.model import BreakerParams, Health, Phase, TrunkSpec

P = BreakerParams(failure_threshold=3, cooldown_s=30, close_after=2, max_cooldown_s=120)
SPEC = TrunkSpec("t", "ast1", "t", max_channels=100, max_cps=1000, cps_burst=1000, breaker=P)


def call(st_: hl.TrunkState, now: float, *, failed: bool) -> hl.TrunkState:
    """One live call: admitted as what the breaker says, then its verdict."""
    admit = brk.admission(st_.breaker, P, now)
    assert admit is not None, "test placed a call the breaker refuses"
    probe = admit == "probe"
    st_ = hl.dispatch(st_, SPEC, now, probe)
    return hl.record(st_, SPEC, now + 1, failed=failed, probe=probe, answered=not failed)


def test_opens_after_n_consecutive_failures() -> None:
    s = hl.TrunkState()
    s = call(s, 0, failed=True)
    s = call(s, 2, failed=True)
    assert hl.health(s, P, 3) is Health.UP and s.breaker.consecutive == 2
    s = call(s, 4, failed=True)
    assert s.breaker.phase is Phase.OPEN and s.breaker.reason == "consecutive-failures"
    assert hl.health(s, P, 6) is Health.DOWN
    assert brk.admission(s.breaker, P, 6) is None
    assert s.counters.failovers == 3 and s.counters.attempts == 3


def test_success_resets_the_consecutive_count() -> None:
    # Two successes, two failures, again and again: never 3 failures in a row,
    # and the error rate never exceeds X=0.5 (it peaks at exactly 50%).
    s = hl.TrunkState()
    for t in range(0, 50, 5):
        s = call(s, t, failed=False)
        s = call(s, t + 1, failed=False)
        s = call(s, t + 2, failed=True)
        s = call(s, t + 3, failed=True)
    assert s.breaker.phase is Phase.CLOSED
    assert s.window.totals(P.window_s, 50).total >= P.min_samples


def test_error_rate_opens_over_min_samples() -> None:
    p = BreakerParams(failure_threshold=100, error_rate=0.5, min_samples=10, window_s=60)
    spec = TrunkSpec("t", "a", "t", 100, 1000, 1000, breaker=p)
    s = hl.TrunkState()
    verdicts = [True, False] * 4 + [True, True]  # 6 of 10 failed, never 3 in a row
    for i, failed in enumerate(verdicts):
        s = hl.dispatch(s, spec, float(i), False)
        s = hl.record(s, spec, float(i), failed=failed)
        if i < 9:
            assert s.breaker.phase is Phase.CLOSED, i
    assert s.breaker.phase is Phase.OPEN and s.breaker.reason == "error-rate"


def test_old_results_leave_the_window() -> None:
    p = BreakerParams(failure_threshold=100, error_rate=0.5, min_samples=4, window_s=60)
    spec = TrunkSpec("t", "a", "t", 100, 1000, 1000, breaker=p)
    s = hl.TrunkState()
    for i in range(3):
        s = hl.record(hl.dispatch(s, spec, i, False), spec, i, failed=True)
    # 2 minutes later the three failures are out of the window: one more is 1/1 < min_samples.
    s = hl.record(hl.dispatch(s, spec, 200, False), spec, 200, failed=True)
    assert s.breaker.phase is Phase.CLOSED
    assert s.window.totals(60, 200).total == 1


def test_half_opens_for_one_probe_after_cooldown_then_closes_after_m() -> None:
    s = hl.TrunkState()
    for t in (0, 1, 2):
        s = call(s, t, failed=True)
    opened = 3.0  # the third result was recorded at t=3
    assert brk.admission(s.breaker, P, opened + 29.9) is None
    assert hl.health(s, P, opened + 30) is Health.PROBING
    assert brk.admission(s.breaker, P, opened + 30) == "probe"
    # Exactly ONE probe at a time.
    s = hl.dispatch(s, SPEC, opened + 30, probe=True)
    assert brk.admission(s.breaker, P, opened + 30.5) is None
    s = hl.record(s, SPEC, opened + 31, failed=False, probe=True, answered=True)
    assert s.breaker.phase is Phase.HALF_OPEN and s.breaker.probe_successes == 1
    s = call(s, opened + 32, failed=False)  # second probe
    assert s.breaker.phase is Phase.CLOSED
    assert hl.health(s, P, opened + 40) is Health.UP
    # The window was cleared on closing: one new failure does not reopen it.
    s = call(s, opened + 41, failed=True)
    assert s.breaker.phase is Phase.CLOSED


def test_probe_failure_reopens_with_capped_backoff() -> None:
    s = hl.TrunkState()
    for t in (0, 1, 2):
        s = call(s, t, failed=True)
    now = 3.0
    cooldowns = []
    for _ in range(5):
        now = s.breaker.open_until
        s = call(s, now, failed=True)  # the probe fails
        assert s.breaker.phase is Phase.OPEN and s.breaker.reason == "probe-failed"
        cooldowns.append(s.breaker.cooldown_s)
    assert cooldowns == [60, 120, 120, 120, 120]
    assert s.breaker.times_opened == 6
    # Recovery resets the backoff to the base cooldown.
    now = s.breaker.open_until
    s = call(s, now, failed=False)
    s = call(s, now + 2, failed=False)
    assert s.breaker.phase is Phase.CLOSED
    for t in (10, 11, 12):
        s = call(s, now + t, failed=True)
    assert s.breaker.cooldown_s == 30


def test_results_of_calls_started_before_opening_do_not_move_it() -> None:
    s = hl.TrunkState()
    old = hl.dispatch(s, SPEC, 0, False)  # in flight while the breaker opens
    for t in (1, 2, 3):
        old = call(old, t, failed=True)
    assert old.breaker.phase is Phase.OPEN
    late = hl.record(old, SPEC, 5, failed=False)
    assert late.breaker == old.breaker and late.in_use == 0


def test_qualify_down_is_down_and_recovery_probes() -> None:
    s = hl.report(hl.TrunkState(), SPEC, 10, "unreachable")
    assert hl.health(s, P, 11) is Health.DOWN and s.breaker.reason == "unreachable"
    # The ordinary cooldown does not bring it back while the report is fresh.
    assert hl.health(s, P, 10 + P.cooldown_s + 1) is Health.DOWN
    s = hl.report(s, SPEC, 50, "reachable")
    assert hl.health(s, P, 50) is Health.PROBING
    s = call(s, 51, failed=False)
    s = call(s, 53, failed=False)
    assert hl.health(s, P, 60) is Health.UP


def test_qualify_ok_does_not_close_a_breaker_calls_opened() -> None:
    # The congested carrier: OPTIONS answered 200, every INVITE 503.
    s = hl.report(hl.TrunkState(), SPEC, 0, "reachable")
    for t in (1, 2, 3):
        s = call(s, t, failed=True)
    s = hl.report(s, SPEC, 5, "reachable")
    assert hl.health(s, P, 5) is Health.DOWN
    assert hl.health(s, P, s.breaker.open_until) is Health.PROBING


def test_a_stale_unreachable_report_never_pins_a_trunk_down() -> None:
    # The "Reachable" event was lost (e.g. AMI reconnect); nothing refreshes the old report.
    s = hl.report(hl.TrunkState(), SPEC, 0, "unreachable")
    assert hl.health(s, P, P.report_ttl_s - 1) is Health.DOWN
    assert hl.health(s, P, P.report_ttl_s) is Health.PROBING
    s = call(s, P.report_ttl_s, failed=False)
    s = call(s, P.report_ttl_s + 2, failed=False)
    assert hl.health(s, P, P.report_ttl_s + 5) is Health.UP
    assert s.reach == "unknown"  # live calls beat the stale report
    # A refreshed report (the service polls) keeps it down.
    s2 = hl.report(hl.TrunkState(), SPEC, 0, "unreachable")
    s2 = hl.report(s2, SPEC, 200, "unreachable")
    assert hl.health(s2, P, P.report_ttl_s + 10) is Health.DOWN


def test_lost_probe_frees_the_slot() -> None:
    s = hl.report(hl.TrunkState(), SPEC, 0, "unreachable")
    s = hl.report(s, SPEC, 1, "reachable")
    s = hl.dispatch(s, SPEC, 2, probe=True)
    assert brk.admission(s.breaker, P, 3) is None
    assert hl.next_change(s, P) == 2 + P.probe_timeout_s
    assert brk.admission(s.breaker, P, 2 + P.probe_timeout_s) == "probe"


def test_unknown_report_falls_back_to_cooldown() -> None:
    s = hl.report(hl.TrunkState(), SPEC, 0, "unreachable")
    s = hl.report(s, SPEC, 10, "unknown")
    assert hl.health(s, P, 10 + P.cooldown_s) is Health.PROBING


def test_degraded_on_error_rate_or_pdd() -> None:
    p = BreakerParams(min_samples=10, degraded_error_rate=0.2, error_rate=0.5, degraded_pdd_s=5)
    spec = TrunkSpec("t", "a", "t", 100, 1000, 1000, breaker=p)
    s = hl.TrunkState()
    for i in range(10):
        s = hl.record(hl.dispatch(s, spec, i, False), spec, i, failed=i in (2, 6, 9))
    assert hl.health(s, p, 10) is Health.DEGRADED  # 30% > 20%, below the 50% that opens
    slow = hl.TrunkState()
    for i in range(6):
        slow = hl.record(hl.dispatch(slow, spec, i, False), spec, i, failed=False, pdd_s=7.0)
    assert hl.health(slow, p, 7) is Health.DEGRADED
    fast = hl.TrunkState()
    for i in range(6):
        fast = hl.record(hl.dispatch(fast, spec, i, False), spec, i, failed=False, pdd_s=1.0)
    assert hl.health(fast, p, 7) is Health.UP


def test_view_reports_state_breaker_counters_cause_and_pdd() -> None:
    from engine.trunks.model import CauseInfo

    s = hl.dispatch(hl.TrunkState(), SPEC, 0, False)
    s = hl.record(s, SPEC, 1, failed=True, cause=CauseInfo(34, 503, "Circuit/channel congestion"))
    s = hl.record(
        hl.dispatch(s, SPEC, 2, False),
        SPEC,
        3,
        failed=False,
        answered=True,
        pdd_s=1.5,
        release=False,
    )
    v = hl.view("t", SPEC, s, 4)
    assert v["state"] == "up" and v["admin"] == "enabled"
    assert v["breaker"]["phase"] == "closed"
    assert v["counters"] == {"attempts": 2, "probes": 0, "answered": 1, "failovers": 1, "finals": 0}
    assert v["last_failure"] == {
        "cause": 34,
        "sip_code": 503,
        "cause_text": "Circuit/channel congestion",
        "at": 1,
    }
    assert v["last_pdd_s"] == 1.5 and v["channels"] == {"in_use": 1, "max": 100}
    assert v["window"]["samples"] == 2 and v["window"]["error_rate"] == 0.5


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.floats(0.01, 50),
            st.sampled_from(["ok", "fail", "unreachable", "reachable", "unknown"]),
        ),
        max_size=60,
    )
)
def test_property_never_stuck_down(events: list[tuple[float, str]]) -> None:
    """Whatever happened, once inputs stop the trunk admits a probe within
    max(max_cooldown_s, report_ttl_s, probe_timeout_s), and a run of
    successful probes brings it back up."""
    s = hl.TrunkState()
    now = 0.0
    for gap, what in events:
        now += gap
        if what in ("ok", "fail"):
            admit = brk.admission(s.breaker, P, now)
            if admit is None:
                continue
            s = hl.dispatch(s, SPEC, now, admit == "probe")
            s = hl.record(s, SPEC, now, failed=what == "fail", probe=admit == "probe")
        else:
            s = hl.report(s, SPEC, now, what)  # type: ignore[arg-type]
    horizon = now + max(P.max_cooldown_s, P.report_ttl_s, P.probe_timeout_s)
    assert brk.admission(s.breaker, P, horizon) is not None
    t = horizon
    for _ in range(P.close_after):
        s = call(s, t, failed=False)
        t += 2
    assert hl.health(s, P, t) is Health.UP
