"""CPS token bucket (GCRA) and channel limits, alone and through the planner."""

from __future__ import annotations

import heapq
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.trunks import planner
from engine.trunks.causes import default_policy
from engine.trunks.fleet import Fleet
from engine.trunks.limits import CpsBucket, cps_ready_at, cps_take
from engine.trunks.model import GroupSpec, TrunkSpec


def _allowed(b: CpsBucket, rate: float, burst: int, now: float) -> bool:
    return now >= cps_ready_at(b, rate, burst)


def test_bucket_allows_then_says_when() -> None:
    b = CpsBucket()
    assert _allowed(b, 2, 1, 100.0)
    b = cps_take(b, 2, 100.0)
    assert not _allowed(b, 2, 1, 100.2) and cps_ready_at(b, 2, 1) == 100.5
    # Coming back at exactly the ready time is always admitted (no rounding loop).
    assert _allowed(b, 2, 1, cps_ready_at(b, 2, 1))


def test_burst_allows_back_to_back_starts() -> None:
    b = CpsBucket()
    for _ in range(3):
        assert _allowed(b, 1, 3, 0.0)
        b = cps_take(b, 1, 0.0)
    assert not _allowed(b, 1, 3, 0.0)
    assert cps_ready_at(b, 1, 3) == 1.0


@settings(max_examples=300, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 2.5]),
    burst=st.integers(1, 4),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=80),
)
def test_property_at_most_burst_plus_rate_in_any_window(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Requests at arbitrary times, each retried at ready_at when refused:
    no one-second window [t, t+1) ever holds more than burst-1+ceil(rate) starts."""
    b = CpsBucket()
    now = 0.0
    starts: list[float] = []
    for gap in gaps:
        now += gap
        at = max(now, cps_ready_at(b, rate, burst))
        assert _allowed(b, rate, burst, at)
        b = cps_take(b, rate, at)
        starts.append(at)
        now = at
    limit = burst - 1 + math.ceil(rate - 1e-9)
    for s in starts:
        # 1e-9: spacing is 1/rate accumulated in floats.
        assert sum(1 for x in starts if s <= x < s + 1 - 1e-9) <= limit


# ---------------------------------------------------------------------------
# The scenario: 20 calls at once, one trunk of 5 channels and 2 CPS.
# ---------------------------------------------------------------------------


def _simulate(queue_timeout_s: float, hold_s: float = 3.0) -> dict[str, object]:
    trunk = TrunkSpec("t", "ast1", "t", max_channels=5, max_cps=2)
    group = GroupSpec("g", ("t",), default_policy(), queue_timeout_s=queue_timeout_s)
    fleet = Fleet.build([trunk], [group])
    rng = random.Random(1)
    plans: dict[str, planner.CallPlan] = {}
    waiting: list[str] = []  # arrival order, as the service keeps it
    events: list[tuple[float, int, str, str]] = []  # (time, seq, kind, call)
    seq = 0
    starts: list[float] = []
    in_use = 0
    max_in_use = 0
    results: dict[str, planner.Decision] = {}

    def push(at: float, kind: str, call: str) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, call))

    def carry_out(call: str, step: planner.Step, now: float) -> None:
        nonlocal fleet, in_use, max_in_use
        plans[call] = step.plan
        fleet = step.fleet
        d = step.decision
        if isinstance(d, planner.Dial):
            starts.append(now)
            in_use += 1
            max_in_use = max(max_in_use, in_use)
            push(now + 1.0, "answer", call)  # rings 1 s, then answers
        elif isinstance(d, planner.Wait):
            assert d.until > now
            if call not in waiting:
                waiting.append(call)
            push(d.until, "retry", call)
        else:
            results[call] = d
        if not isinstance(d, planner.Wait) and call in waiting:
            waiting.remove(call)

    for i in range(20):
        push(0.0, "new", f"c{i:02d}")
    while events:
        now, _, kind, call = heapq.heappop(events)
        if kind == "new":
            carry_out(call, planner.start(call, "g", fleet, now, rng), now)
        elif kind == "retry":
            if call in waiting:
                carry_out(call, planner.retry(plans[call], fleet, now, rng), now)
        elif kind == "answer":
            out = planner.AttemptOutcome(attempt_no=1, answered=True, pdd_s=1.0)
            carry_out(call, planner.on_attempt_result(plans[call], out, fleet, now, rng), now)
            push(now + hold_s, "hangup", call)
        elif kind == "hangup":
            fleet = fleet.release("t")
            in_use -= 1
            for w in list(waiting):  # a channel freed: waiting calls retry, oldest first
                carry_out(w, planner.retry(plans[w], fleet, now, rng), now)
    assert fleet.states["t"].in_use == 0
    return {"starts": starts, "max_in_use": max_in_use, "results": results, "plans": plans}


def _max_in_window(starts: list[float]) -> int:
    return max(sum(1 for x in starts if s <= x < s + 1) for s in starts)


def test_twenty_calls_five_channels_two_cps_refuses_after_queue_timeout() -> None:
    out = _simulate(queue_timeout_s=5.0)
    starts = out["starts"]
    assert isinstance(starts, list)
    assert out["max_in_use"] == 5
    assert _max_in_window(starts) == 2
    results = out["results"]
    assert isinstance(results, dict) and len(results) == 20
    done = [c for c, d in results.items() if isinstance(d, planner.Done)]
    refused = [d for d in results.values() if isinstance(d, planner.Fail)]
    assert len(done) == len(starts)
    assert 5 <= len(done) < 20
    assert refused and all(d.reason == "all-trunks-full" for d in refused)
    assert all(d.retry_after_s is not None and d.retry_after_s >= 1 for d in refused)
    # Every refused call waited its full queue timeout, no more.
    plans = out["plans"]
    assert isinstance(plans, dict)
    for c, d in results.items():
        if isinstance(d, planner.Fail):
            assert plans[c].waited_s == 5.0


def test_twenty_calls_all_complete_with_a_long_queue_timeout() -> None:
    out = _simulate(queue_timeout_s=60.0)
    starts = out["starts"]
    assert isinstance(starts, list) and len(starts) == 20
    assert out["max_in_use"] == 5
    assert _max_in_window(starts) == 2
    results = out["results"]
    assert isinstance(results, dict)
    assert all(isinstance(d, planner.Done) for d in results.values())


def test_zero_queue_timeout_refuses_at_once() -> None:
    out = _simulate(queue_timeout_s=0.0)
    results = out["results"]
    assert isinstance(results, dict)
    # burst 1: one start at t=0; the next token is 0.5 s away and nobody may wait.
    assert sum(isinstance(d, planner.Done) for d in results.values()) == 1
    assert sum(isinstance(d, planner.Fail) for d in results.values()) == 19
