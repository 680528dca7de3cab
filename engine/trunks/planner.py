"""The attempt plan of one call through a trunk group. Pure.

The service asks what to do and carries it out::

    step = planner.start(call_id, group, fleet, now, rng)      # -> Dial | Wait | Fail
    step = planner.on_attempt_result(step.plan, outcome, step.fleet, now, rng)
    step = planner.retry(step.plan, step.fleet, now, rng)       # after a Wait

Every function returns a :class:`Step`: the new plan, the new fleet (the
chosen trunk already holds a channel and a CPS token; the result of an attempt
is already recorded in the trunk's health) and one :class:`Decision`:

- :class:`Dial`: originate attempt ``attempt_no`` on ``trunk`` now.
- :class:`Wait`: every eligible member is full; call :func:`retry` at
  ``until`` (or earlier, when a channel of the group is released).
- :class:`Fail`: stop; ``reason`` says why (see :data:`FailReason`).
- :class:`Done`: the call was answered on ``trunk``.
- :class:`Ignored`: a duplicate or late outcome; nothing to do.

Rules: a failover cause moves to the next eligible member at once, in the
same call, with the next attempt number; a final cause ends the call; no
member is tried twice for one call; at most ``max_attempts`` attempts; the
call waits for capacity at most ``queue_timeout_s`` in total, then fails with
``all-trunks-full``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from engine.core.frozen import replace
from engine.trunks.causes import classify
from engine.trunks.fleet import Fleet
from engine.trunks.model import AttemptVerdict, CauseInfo
from engine.trunks.selection import AllFull, NoneEligible, select

FailReason = Literal[
    "final-cause",  # the callee's side ended it (busy, rejected, no answer...): no failover
    "max-attempts",  # failover causes on max_attempts trunks
    "no-trunk-available",  # every member down, drained or already tried
    "switch-unavailable",  # every member is on a switch whose link is down
    "all-trunks-full",  # queue_timeout_s spent waiting for a free channel / CPS token
    "unknown-group",
]


@dataclass(frozen=True, slots=True)
class Attempt:
    no: int  # 1-based
    trunk: str
    probe: bool
    started_at: float  # wall clock (a timestamp for the CDR), not the planner's ``now``
    verdict: AttemptVerdict | None = None  # None while the attempt is in flight
    ended_at: float | None = None
    cause: CauseInfo | None = None


@dataclass(frozen=True, slots=True)
class CallPlan:
    call_id: str
    group: str
    created_at: float
    attempts: tuple[Attempt, ...] = ()
    waited_s: float = 0.0  # capacity wait already spent (closed wait periods)
    wait_started: float | None = None  # start of the current wait period
    finished: bool = False
    #: Switches an attempt of this call could not reach (link down): their
    #: trunks are skipped for the rest of the call.
    skip_switches: frozenset[str] = frozenset()

    @property
    def tried(self) -> frozenset[str]:
        return frozenset(a.trunk for a in self.attempts)

    @property
    def placed(self) -> int:
        """Attempts that reached a switch (what ``max_attempts`` counts)."""
        return sum(1 for a in self.attempts if a.verdict != "not-placed")

    @property
    def current(self) -> Attempt | None:
        """The attempt in flight, if any."""
        if self.attempts and self.attempts[-1].verdict is None:
            return self.attempts[-1]
        return None


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What became of attempt ``attempt_no``: answered, or ended with a cause
    (from ``HungUp``/``OriginateFailed``). ``pdd_s``: post-dial delay, from the
    originate to the first ringing/progress or the answer, if known.
    ``placed=False``: the originate never reached a carrier (the driver or
    the switch refused it): not the carrier's verdict, so no breaker hears of
    it, and the call moves on to the next member. ``link_down``: because the
    switch link was down, so every trunk of that switch is skipped too."""

    attempt_no: int
    placed: bool = True
    link_down: bool = False
    answered: bool = False
    cause: int | None = None
    sip_code: int | None = None
    cause_text: str = ""
    pdd_s: float | None = None


@dataclass(frozen=True, slots=True)
class Dial:
    trunk: str
    attempt_no: int
    switch: str
    target: str  # PJSIP endpoint / sofia gateway: DialTarget(kind="trunk", name=target)
    probe: bool


@dataclass(frozen=True, slots=True)
class Wait:
    until: float
    detail: str


@dataclass(frozen=True, slots=True)
class Fail:
    reason: FailReason
    detail: str
    cause: CauseInfo | None = None  # the last attempt's cause, when there was one
    retry_after_s: float | None = None  # hint for HTTP Retry-After (whole seconds)


@dataclass(frozen=True, slots=True)
class Done:
    trunk: str
    attempt_no: int


@dataclass(frozen=True, slots=True)
class Ignored:
    detail: str


Decision = Dial | Wait | Fail | Done | Ignored


@dataclass(frozen=True, slots=True)
class Step:
    plan: CallPlan
    fleet: Fleet
    decision: Decision


def _retry_after(at: float | None, now: float) -> float:
    # Whole seconds, at least 1: it goes into an HTTP Retry-After header.
    return float(max(1, math.ceil(at - now))) if at is not None else 1.0


def _next(
    plan: CallPlan,
    fleet: Fleet,
    now: float,
    rng: random.Random,
    last: CauseInfo | None,
    wall: float,
) -> Step:
    group = fleet.groups[plan.group]
    if plan.placed >= group.max_attempts:
        plan = replace(plan, finished=True)
        detail = f"{plan.placed} attempts failed over; max_attempts={group.max_attempts}"
        return Step(plan, fleet, Fail("max-attempts", detail, last))
    view = fleet
    if plan.skip_switches:
        view = fleet.with_down_switches(fleet.down_switches | plan.skip_switches)
    choice = select(view, plan.group, plan.tried, now, rng)
    if isinstance(choice, NoneEligible):
        plan = replace(plan, finished=True)
        detail = "; ".join(f"{m}: {why}" for m, why in choice.reasons) or "group has no members"
        reason: FailReason = "switch-unavailable" if choice.links_down else "no-trunk-available"
        return Step(plan, fleet, Fail(reason, detail, last, _retry_after(choice.retry_at, now)))
    if isinstance(choice, AllFull):
        waited = plan.waited_s + (now - plan.wait_started if plan.wait_started is not None else 0)
        left = group.queue_timeout_s - waited
        if left <= 0:
            plan = replace(plan, finished=True, waited_s=waited, wait_started=None)
            detail = (
                f"every member full for {waited:.1f}s (queue_timeout_s={group.queue_timeout_s})"
            )
            return Step(
                plan,
                fleet,
                Fail("all-trunks-full", detail, last, _retry_after(choice.retry_at, now)),
            )
        if plan.wait_started is None:
            plan = replace(plan, wait_started=now)
        until = now + left if choice.retry_at is None else min(now + left, choice.retry_at)
        what = "a channel release" if choice.retry_at is None else "a CPS token"
        return Step(plan, fleet, Wait(until, f"every member full; waiting for {what}"))
    # Picked.
    if plan.wait_started is not None:
        plan = replace(plan, waited_s=plan.waited_s + now - plan.wait_started, wait_started=None)
    attempt = Attempt(len(plan.attempts) + 1, choice.trunk, choice.probe, wall)
    plan = replace(plan, attempts=(*plan.attempts, attempt))
    fleet = fleet.dispatch(choice.trunk, now, choice.probe)
    if choice.cursor != fleet.cursors.get(plan.group, 0):
        fleet = fleet.with_cursor(plan.group, choice.cursor)
    spec = fleet.trunks[choice.trunk]
    return Step(plan, fleet, Dial(choice.trunk, attempt.no, spec.switch, spec.target, choice.probe))


# Every function takes ``now`` (the clock of timers: breakers, CPS, queue
# waits; monotonic in the service) and optionally ``wall`` (the timestamps
# written into attempts for CDRs; defaults to ``now``).


def start(
    call_id: str,
    group: str,
    fleet: Fleet,
    now: float,
    rng: random.Random,
    wall: float | None = None,
) -> Step:
    plan = CallPlan(call_id=call_id, group=group, created_at=now)
    if group not in fleet.groups:
        plan = replace(plan, finished=True)
        return Step(plan, fleet, Fail("unknown-group", f"no trunk group named {group!r}"))
    return _next(plan, fleet, now, rng, None, now if wall is None else wall)


def retry(
    plan: CallPlan, fleet: Fleet, now: float, rng: random.Random, wall: float | None = None
) -> Step:
    """Try again after a :class:`Wait` (its time came, or a channel was released)."""
    if plan.finished or plan.current is not None or plan.group not in fleet.groups:
        return Step(plan, fleet, Ignored("no wait in progress for this call"))
    last = plan.attempts[-1].cause if plan.attempts else None
    return _next(plan, fleet, now, rng, last, now if wall is None else wall)


def unwind(plan: CallPlan, fleet: Fleet) -> Step:
    """Take back the attempt just dispatched, as if it had never been decided
    (the shared limit refused it: another engine took the capacity first).
    The caller then syncs the trunk's counters and calls :func:`retry`."""
    cur = plan.current
    if cur is None:
        return Step(plan, fleet, Ignored("no attempt in flight"))
    if cur.trunk in fleet.trunks:
        fleet = fleet.abandon(cur.trunk, probe=cur.probe, uncount=True)
    plan = replace(plan, attempts=plan.attempts[:-1], finished=False)
    return Step(plan, fleet, Ignored("attempt taken back"))


def on_attempt_result(
    plan: CallPlan,
    outcome: AttemptOutcome,
    fleet: Fleet,
    now: float,
    rng: random.Random,
    wall: float | None = None,
) -> Step:
    stamp = now if wall is None else wall
    cur = plan.current
    if plan.finished or cur is None or cur.no != outcome.attempt_no:
        return Step(plan, fleet, Ignored(f"no attempt {outcome.attempt_no} in flight"))
    if cur.trunk not in fleet.trunks or plan.group not in fleet.groups:
        # Removed by a config reload while the attempt was in flight.
        plan = replace(plan, finished=True)
        return Step(plan, fleet, Fail("no-trunk-available", f"trunk {cur.trunk!r} was removed"))
    info = CauseInfo(outcome.cause, outcome.sip_code, outcome.cause_text)
    if not outcome.placed:
        # Nothing reached a carrier: not its verdict. The channel and a
        # probe slot go back untouched by the breaker; after a link drop this
        # call skips every trunk of that switch from now on.
        switch = fleet.trunks[cur.trunk].switch
        fleet = fleet.abandon(cur.trunk, probe=cur.probe, uncount=False)
        done = replace(cur, verdict="not-placed", ended_at=stamp, cause=info)
        skip = plan.skip_switches | {switch} if outcome.link_down else plan.skip_switches
        plan = replace(plan, attempts=(*plan.attempts[:-1], done), skip_switches=skip)
        return _next(plan, fleet, now, rng, info, stamp)
    policy = fleet.groups[plan.group].causes
    verdict: AttemptVerdict = (
        "success"
        if outcome.answered
        else classify(outcome.cause, outcome.sip_code, outcome.cause_text, policy)
    )
    failed = verdict == "failover"
    fleet = fleet.record(
        cur.trunk,
        now,
        failed=failed,
        answered=outcome.answered,
        probe=cur.probe,
        pdd_s=outcome.pdd_s,
        cause=None if outcome.answered else info,
        # An answered leg keeps its channel until it hangs up (Fleet.release).
        release=not outcome.answered,
    )
    done = replace(cur, verdict=verdict, ended_at=stamp, cause=None if outcome.answered else info)
    plan = replace(plan, attempts=(*plan.attempts[:-1], done))
    if verdict == "success":
        plan = replace(plan, finished=True)
        return Step(plan, fleet, Done(cur.trunk, cur.no))
    if verdict == "final":
        plan = replace(plan, finished=True)
        return Step(plan, fleet, Fail("final-cause", f"attempt {cur.no} on {cur.trunk}", info))
    return _next(plan, fleet, now, rng, info, stamp)
