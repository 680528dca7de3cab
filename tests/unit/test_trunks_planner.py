"""The per-call attempt planner: failover, final causes, limits, refusals."""

from __future__ import annotations

import random
from typing import TypedDict

from engine.trunks import planner as pl
from engine.trunks.causes import default_policy
from engine.trunks.fleet import Fleet
from engine.trunks.model import BreakerParams, GroupSpec, Health, TrunkSpec

RNG = random.Random(0)
P = BreakerParams(failure_threshold=3, cooldown_s=30, close_after=2)


def trunk(name: str, prio: int, chans: int = 10, cps: float = 100) -> TrunkSpec:
    return TrunkSpec(
        name, "ast1", f"ep-{name}", chans, cps, cps_burst=100, priority=prio, breaker=P
    )


def make(max_attempts: int = 3, queue_timeout_s: float = 5.0) -> Fleet:
    """The issue's test group: dead, congested and good trunk, in that order."""
    trunks = [trunk("dead", 1), trunk("congested", 2), trunk("good", 3)]
    g = GroupSpec(
        "out",
        ("dead", "congested", "good"),
        default_policy(),
        max_attempts=max_attempts,
        queue_timeout_s=queue_timeout_s,
    )
    return Fleet.build(trunks, [g])


class Ending(TypedDict, total=False):
    """How an attempt ended, as keyword arguments of AttemptOutcome."""

    cause: int
    sip_code: int
    cause_text: str


DEAD = Ending(cause=38, cause_text="NETWORK_OUT_OF_ORDER (OriginateResponse Failure, Reason 0)")
CONGESTED = Ending(cause=34, sip_code=503, cause_text="Circuit/channel congestion")
BUSY = Ending(cause=17, sip_code=486, cause_text="User busy")
DECLINED = Ending(cause=21, sip_code=603, cause_text="Call Rejected")


def test_fails_over_through_the_group_and_records_attempts() -> None:
    fleet = make()
    step = pl.start("call-1", "out", fleet, 0.0, RNG)
    assert step.decision == pl.Dial("dead", 1, "ast1", "ep-dead", False)
    step = pl.on_attempt_result(step.plan, pl.AttemptOutcome(1, **DEAD), step.fleet, 0.01, RNG)
    assert step.decision == pl.Dial("congested", 2, "ast1", "ep-congested", False)
    step = pl.on_attempt_result(step.plan, pl.AttemptOutcome(2, **CONGESTED), step.fleet, 0.5, RNG)
    assert step.decision == pl.Dial("good", 3, "ast1", "ep-good", False)
    step = pl.on_attempt_result(
        step.plan, pl.AttemptOutcome(3, answered=True, pdd_s=1.2), step.fleet, 2.0, RNG
    )
    assert step.decision == pl.Done("good", 3)
    plan, fleet = step.plan, step.fleet
    assert [(a.no, a.trunk, a.verdict) for a in plan.attempts] == [
        (1, "dead", "failover"),
        (2, "congested", "failover"),
        (3, "good", "success"),
    ]
    assert plan.attempts[1].cause is not None and plan.attempts[1].cause.sip_code == 503
    assert plan.finished
    # Channels: failed legs released at once, the answered one held until hangup.
    assert [fleet.states[n].in_use for n in ("dead", "congested", "good")] == [0, 0, 1]
    assert fleet.release("good").states["good"].in_use == 0
    assert fleet.states["congested"].counters.last_failure == plan.attempts[1].cause


def test_busy_and_declined_are_never_retried_on_another_trunk() -> None:
    for outcome in (BUSY, DECLINED):
        fleet = make()
        step = pl.start("c", "out", fleet.drain("dead"), 0.0, RNG)
        assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "congested"
        step = pl.on_attempt_result(step.plan, pl.AttemptOutcome(1, **outcome), step.fleet, 1, RNG)
        assert isinstance(step.decision, pl.Fail)
        assert step.decision.reason == "final-cause"
        assert step.decision.cause is not None
        assert step.decision.cause.sip_code == outcome["sip_code"]
        assert len(step.plan.attempts) == 1
        # A busy callee is a WORKING trunk for the breaker.
        assert step.fleet.states["congested"].counters.failovers == 0


def test_max_attempts_stops_failover() -> None:
    step = pl.start("c", "out", make(max_attempts=2), 0.0, RNG)
    step = pl.on_attempt_result(step.plan, pl.AttemptOutcome(1, **DEAD), step.fleet, 0.1, RNG)
    step = pl.on_attempt_result(step.plan, pl.AttemptOutcome(2, **CONGESTED), step.fleet, 0.2, RNG)
    d = step.decision
    assert isinstance(d, pl.Fail) and d.reason == "max-attempts"
    assert d.cause is not None and d.cause.cause == 34
    assert "max_attempts=2" in d.detail


def test_no_member_twice_per_call_then_no_trunk_available() -> None:
    fleet = make(max_attempts=10)
    step = pl.start("c", "out", fleet, 0.0, RNG)
    for no, out in ((1, DEAD), (2, CONGESTED), (3, CONGESTED)):
        step = pl.on_attempt_result(step.plan, pl.AttemptOutcome(no, **out), step.fleet, no, RNG)
    d = step.decision
    assert isinstance(d, pl.Fail) and d.reason == "no-trunk-available"
    assert "already tried by this call" in d.detail
    assert len(step.plan.attempts) == 3


def test_qualify_down_trunk_is_skipped_from_the_first_attempt() -> None:
    fleet = make().report("dead", "unreachable", 0.0)
    assert fleet.health("dead", 0.0) is Health.DOWN
    step = pl.start("c", "out", fleet, 1.0, RNG)
    assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "congested"


def test_breaker_opens_on_the_congested_trunk_and_closes_when_repaired() -> None:
    fleet = make().report("dead", "unreachable", 0.0)
    now = 1.0
    for i in range(3):  # failure_threshold = 3
        step = pl.start(f"c{i}", "out", fleet, now, RNG)
        assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "congested"
        step = pl.on_attempt_result(
            step.plan, pl.AttemptOutcome(1, **CONGESTED), step.fleet, now, RNG
        )
        assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "good"
        step = pl.on_attempt_result(
            step.plan, pl.AttemptOutcome(2, answered=True), step.fleet, now, RNG
        )
        fleet = step.fleet.release("good")
        now += 1
    assert fleet.health("congested", now) is Health.DOWN
    step = pl.start("c-open", "out", fleet, now, RNG)
    assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "good"
    fleet = pl.on_attempt_result(
        step.plan, pl.AttemptOutcome(1, answered=True), step.fleet, now, RNG
    ).fleet.release("good")
    # Carrier repaired. After the cooldown, live calls probe it one at a time.
    now += 30
    for i in range(2):  # close_after = 2
        step = pl.start(f"p{i}", "out", fleet, now, RNG)
        assert step.decision == pl.Dial("congested", 1, "ast1", "ep-congested", True)
        step = pl.on_attempt_result(
            step.plan, pl.AttemptOutcome(1, answered=True), step.fleet, now, RNG
        )
        fleet = step.fleet.release("congested")
        now += 1
    assert fleet.health("congested", now) is Health.UP
    step = pl.start("after", "out", fleet, now, RNG)
    assert step.decision == pl.Dial("congested", 1, "ast1", "ep-congested", False)


def test_failed_probe_fails_over_at_once() -> None:
    fleet = make().drain("dead")
    fleet = fleet.report("congested", "unreachable", 0).report("congested", "reachable", 1)
    step = pl.start("c", "out", fleet, 2.0, RNG)
    assert step.decision == pl.Dial("congested", 1, "ast1", "ep-congested", True)
    step = pl.on_attempt_result(step.plan, pl.AttemptOutcome(1, **CONGESTED), step.fleet, 2.1, RNG)
    assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "good"
    assert step.fleet.health("congested", 2.2) is Health.DOWN


def test_wait_then_dial_when_a_channel_frees() -> None:
    t = TrunkSpec("only", "ast1", "only", 1, 100, cps_burst=100)
    fleet = Fleet.build([t], [GroupSpec("g", ("only",), default_policy(), queue_timeout_s=4)])
    first = pl.start("a", "g", fleet, 0.0, RNG)
    first = pl.on_attempt_result(
        first.plan, pl.AttemptOutcome(1, answered=True), first.fleet, 1, RNG
    )
    second = pl.start("b", "g", first.fleet, 1.0, RNG)
    assert second.decision == pl.Wait(5.0, "every member full; waiting for a channel release")
    # Waking early with nothing freed: wait for the rest of the budget only.
    again = pl.retry(second.plan, second.fleet, 3.0, RNG)
    assert isinstance(again.decision, pl.Wait) and again.decision.until == 5.0
    freed = again.fleet.release("only")
    dial = pl.retry(again.plan, freed, 3.5, RNG)
    assert dial.decision == pl.Dial("only", 1, "ast1", "only", False)
    assert dial.plan.waited_s == 2.5


def test_refused_after_queue_timeout_with_retry_hint() -> None:
    t = TrunkSpec("only", "ast1", "only", 5, 0.5)
    fleet = Fleet.build([t], [GroupSpec("g", ("only",), default_policy(), queue_timeout_s=1)])
    a = pl.start("a", "g", fleet, 0.0, RNG)
    b = pl.start("b", "g", a.fleet, 0.0, RNG)
    assert b.decision == pl.Wait(1.0, "every member full; waiting for a CPS token")
    b = pl.retry(b.plan, b.fleet, 1.0, RNG)
    d = b.decision
    assert isinstance(d, pl.Fail) and d.reason == "all-trunks-full"
    assert d.retry_after_s == 1.0  # token at t=2.0
    assert "queue_timeout_s=1" in d.detail


def test_stale_and_duplicate_outcomes_are_ignored() -> None:
    step = pl.start("c", "out", make(), 0.0, RNG)
    step = pl.on_attempt_result(step.plan, pl.AttemptOutcome(1, **DEAD), step.fleet, 0.1, RNG)
    late = pl.on_attempt_result(step.plan, pl.AttemptOutcome(1, **DEAD), step.fleet, 0.2, RNG)
    assert isinstance(late.decision, pl.Ignored)
    assert late.plan == step.plan and late.fleet == step.fleet
    assert isinstance(pl.retry(step.plan, step.fleet, 1, RNG).decision, pl.Ignored)


def test_unknown_group() -> None:
    step = pl.start("c", "nope", make(), 0.0, RNG)
    assert isinstance(step.decision, pl.Fail) and step.decision.reason == "unknown-group"


def test_reload_keeps_live_state() -> None:
    fleet = make()
    step = pl.start("c", "out", fleet, 0.0, RNG)
    specs = list(step.fleet.trunks.values())
    reloaded = Fleet.build(specs, list(step.fleet.groups.values()), previous=step.fleet)
    assert reloaded.states["dead"].in_use == 1
    assert reloaded.trunk_for("ast1", "ep-good") == "good"


def two_switches() -> Fleet:
    """Two trunks on switch ast1 and one on ast2, all in one group."""
    trunks = [
        trunk("a1", 1),
        trunk("a2", 2),
        TrunkSpec("b1", "ast2", "ep-b1", 10, 100, cps_burst=100, priority=3, breaker=P),
    ]
    g = GroupSpec("out", ("a1", "a2", "b1"), default_policy(), max_attempts=2)
    return Fleet.build(trunks, [g])


def untouched(fleet: Fleet, name: str) -> None:
    st = fleet.states[name]
    assert st.breaker.consecutive == 0 and st.breaker.times_opened == 0
    assert st.window.totals(P.window_s, 1.0).total == 0
    assert st.counters.failovers == 0 and st.in_use == 0


def test_an_attempt_not_placed_is_no_carrier_verdict_and_skips_that_switch() -> None:
    # Issue 8 defect 5: a dropped link was fed to the planner as cause 38, so
    # every trunk of the switch took a failure and their breakers opened.
    step = pl.start("c", "out", two_switches(), 0.0, RNG)
    assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "a1"
    lost = pl.AttemptOutcome(1, placed=False, link_down=True, **DEAD)
    step = pl.on_attempt_result(step.plan, lost, step.fleet, 0.01, RNG)
    # a2 is on the same (unreachable) switch: straight to b1 on the other one.
    assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "b1"
    assert step.plan.attempts[0].verdict == "not-placed"
    untouched(step.fleet, "a1")
    untouched(step.fleet, "a2")
    # Not placed does not use up max_attempts (2): b1 may still fail over... to nothing.
    assert step.plan.placed == 1


def test_not_placed_on_the_only_switch_fails_with_switch_unavailable() -> None:
    fleet = make()
    for _ in range(5):  # more than failure_threshold: the breaker would have opened
        step = pl.start("c", "out", fleet, 0.0, RNG)
        step = pl.on_attempt_result(
            step.plan,
            pl.AttemptOutcome(1, placed=False, link_down=True, **DEAD),
            step.fleet,
            0.01,
            RNG,
        )
        assert isinstance(step.decision, pl.Fail)
        assert step.decision.reason == "switch-unavailable", step.decision
        fleet = step.fleet
    for name in ("dead", "congested", "good"):
        untouched(fleet, name)
        assert fleet.health(name, 1.0) is Health.UP


def test_members_of_a_switch_whose_link_is_down_are_not_selected() -> None:
    fleet = two_switches().with_down_switches(frozenset({"ast1"}))
    step = pl.start("c", "out", fleet, 0.0, RNG)
    assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "b1"
    everything = fleet.with_down_switches(frozenset({"ast1", "ast2"}))
    fail = pl.start("c", "out", everything, 0.0, RNG).decision
    assert isinstance(fail, pl.Fail) and fail.reason == "switch-unavailable"


def test_unwind_takes_back_a_dispatched_attempt() -> None:
    step = pl.start("c", "out", make(), 0.0, RNG)
    assert step.fleet.states["dead"].in_use == 1
    back = pl.unwind(step.plan, step.fleet)
    assert back.plan.attempts == () and not back.plan.finished
    assert back.fleet.states["dead"].in_use == 0
    assert back.fleet.states["dead"].counters.attempts == 0


def test_attempts_carry_the_wall_clock_while_timers_use_now() -> None:
    step = pl.start("c", "out", make(), 5.0, RNG, wall=1_700_000_000.0)
    assert step.plan.attempts[0].started_at == 1_700_000_000.0
    step = pl.on_attempt_result(
        step.plan, pl.AttemptOutcome(1, **DEAD), step.fleet, 6.0, RNG, wall=1_700_000_001.0
    )
    assert step.plan.attempts[0].ended_at == 1_700_000_001.0
    assert step.plan.attempts[1].started_at == 1_700_000_001.0
    # The breaker and window ran on ``now`` (6.0), not the wall clock.
    assert step.fleet.states["dead"].counters.last_failure_at == 6.0


def test_an_originate_the_switch_refused_moves_on_without_a_verdict() -> None:
    step = pl.start("c", "out", two_switches(), 0.0, RNG)
    refused = pl.AttemptOutcome(1, placed=False, cause=38, cause_text="not placed")
    step = pl.on_attempt_result(step.plan, refused, step.fleet, 0.01, RNG)
    # Same switch is fine (its link is up): the next member, a2.
    assert isinstance(step.decision, pl.Dial) and step.decision.trunk == "a2"
    untouched(step.fleet, "a1")
