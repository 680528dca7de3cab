"""Live state of one trunk and its pure transitions.

:class:`TrunkState` gathers everything the engine learns about a trunk while
running: the breaker, a sliding window of call results (error rate and
post-dial delay), the switch's last reachability report, the channels in use,
the CPS bucket, the admin switch (drain/enable) and counters for the API.
Every function takes ``now`` and returns a new state.

The sliding window is bucketed (12 buckets over ``window_s``) so recording a
result costs the same at 1 call/s and at 500 calls/s and the state stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.core.frozen import replace
from engine.trunks import breaker as brk
from engine.trunks.limits import CpsBucket, cps_ready_at, cps_take
from engine.trunks.model import (
    BreakerParams,
    CauseInfo,
    Health,
    Phase,
    Reachability,
    TrunkSpec,
)

BUCKETS = 12


@dataclass(frozen=True, slots=True)
class Bucket:
    index: int  # floor(ts / bucket_s)
    ok: int = 0
    failed: int = 0
    pdd_sum: float = 0.0
    pdd_n: int = 0


@dataclass(frozen=True, slots=True)
class WindowTotals:
    ok: int
    failed: int
    pdd_sum: float
    pdd_n: int

    @property
    def total(self) -> int:
        return self.ok + self.failed

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.total if self.total else None

    @property
    def pdd_avg_s(self) -> float | None:
        return self.pdd_sum / self.pdd_n if self.pdd_n else None


@dataclass(frozen=True, slots=True)
class Window:
    buckets: tuple[Bucket, ...] = ()

    def add(self, window_s: float, now: float, failed: bool, pdd_s: float | None) -> Window:
        idx = int(now // (window_s / BUCKETS))
        keep = [b for b in self.buckets if b.index > idx - BUCKETS]
        last = keep.pop() if keep and keep[-1].index == idx else Bucket(index=idx)
        last = Bucket(
            index=idx,
            ok=last.ok + (not failed),
            failed=last.failed + failed,
            pdd_sum=last.pdd_sum + (pdd_s or 0.0),
            pdd_n=last.pdd_n + (pdd_s is not None),
        )
        keep.append(last)
        return Window(tuple(keep))

    def totals(self, window_s: float, now: float) -> WindowTotals:
        low = int(now // (window_s / BUCKETS)) - BUCKETS
        ok = failed = pdd_n = 0
        pdd_sum = 0.0
        for b in self.buckets:
            if b.index > low:
                ok += b.ok
                failed += b.failed
                pdd_sum += b.pdd_sum
                pdd_n += b.pdd_n
        return WindowTotals(ok, failed, pdd_sum, pdd_n)


@dataclass(frozen=True, slots=True)
class Counters:
    attempts: int = 0  # Dial decisions on this trunk
    probes: int = 0  # of which probe calls (breaker half-open)
    answered: int = 0
    failovers: int = 0  # attempts that ended with a failover cause (trunk failures)
    finals: int = 0  # attempts that ended with a final cause (callee's verdict)
    last_failure: CauseInfo | None = None  # last failover-cause outcome
    last_failure_at: float | None = None
    last_pdd_s: float | None = None


@dataclass(frozen=True, slots=True)
class TrunkState:
    enabled: bool = True  # False: drained by an operator; no new calls
    breaker: brk.BreakerState = field(default_factory=brk.BreakerState)
    window: Window = field(default_factory=Window)
    reach: Reachability = "unknown"
    reach_at: float | None = None
    rtt_ms: float | None = None
    in_use: int = 0
    cps: CpsBucket = field(default_factory=CpsBucket)
    counters: Counters = field(default_factory=Counters)


def health(st: TrunkState, p: BreakerParams, now: float) -> Health:
    b = brk.advance(st.breaker, p, now)
    if b.phase is Phase.OPEN:
        return Health.DOWN
    if b.phase is Phase.HALF_OPEN:
        return Health.PROBING
    t = st.window.totals(p.window_s, now)
    if t.total >= p.min_samples and t.failed > p.degraded_error_rate * t.total:
        return Health.DEGRADED
    pdd = t.pdd_avg_s
    if pdd is not None and t.pdd_n >= min(p.min_samples, 5) and pdd > p.degraded_pdd_s:
        return Health.DEGRADED
    return Health.UP


def dispatch(st: TrunkState, spec: TrunkSpec, now: float, probe: bool) -> TrunkState:
    """A Dial on this trunk was decided: hold a channel and a CPS token."""
    c = st.counters
    return replace(
        st,
        in_use=st.in_use + 1,
        cps=cps_take(st.cps, spec.max_cps, now),
        breaker=brk.on_dispatch(st.breaker, spec.breaker, now, probe),
        counters=replace(c, attempts=c.attempts + 1, probes=c.probes + probe),
    )


def record(
    st: TrunkState,
    spec: TrunkSpec,
    now: float,
    *,
    failed: bool,
    answered: bool = False,
    probe: bool = False,
    pdd_s: float | None = None,
    cause: CauseInfo | None = None,
    release: bool = True,
) -> TrunkState:
    """One attempt's verdict on this trunk. ``failed``: a trunk failure
    (failover cause). ``release``: the leg is gone, free its channel (False
    for an answered leg that is still up; call :func:`release` at hangup)."""
    p = spec.breaker
    window = st.window.add(p.window_s, now, failed, pdd_s)
    totals = window.totals(p.window_s, now)
    b = brk.on_result(
        st.breaker,
        p,
        now,
        failed=failed,
        probe=probe,
        window_failures=totals.failed,
        window_total=totals.total,
    )
    if b.phase is Phase.CLOSED and st.breaker.phase is not Phase.CLOSED:
        # Closed again after probes: the failures that opened it must not
        # count against the recovered trunk (hysteresis, not a hair trigger).
        window = Window()
    c = st.counters
    counters = replace(
        c,
        answered=c.answered + answered,
        failovers=c.failovers + failed,
        finals=c.finals + (not failed and not answered),
        last_failure=cause if failed else c.last_failure,
        last_failure_at=now if failed else c.last_failure_at,
        last_pdd_s=pdd_s if pdd_s is not None else c.last_pdd_s,
    )
    reach = st.reach
    if not failed and reach == "unreachable":
        # A call just went through: that beats an old "unreachable" report.
        reach = "unknown"
    return replace(
        st,
        window=window,
        breaker=b,
        counters=counters,
        reach=reach,
        in_use=max(0, st.in_use - 1) if release else st.in_use,
    )


def release(st: TrunkState) -> TrunkState:
    return replace(st, in_use=max(0, st.in_use - 1))


def abandon(st: TrunkState, *, probe: bool, uncount: bool) -> TrunkState:
    """A dispatched attempt that never reached the carrier: give the channel
    back and free a probe slot, with no verdict (the breaker and the window
    learn nothing). ``uncount``: the attempt never happened at all (another
    engine took the shared capacity first), so it leaves the counters too."""
    c = st.counters
    if uncount:
        c = replace(c, attempts=max(0, c.attempts - 1), probes=max(0, c.probes - probe))
    return replace(
        st,
        in_use=max(0, st.in_use - 1),
        breaker=brk.on_abandon(st.breaker) if probe else st.breaker,
        counters=c,
    )


def sync(st: TrunkState, in_use: int, tat: float | None) -> TrunkState:
    """Take the shared counters (Redis, every engine's calls) as the truth:
    channels held and the CPS bucket's theoretical arrival time (local clock)."""
    cps = st.cps if tat is None else CpsBucket(tat=tat)
    return replace(st, in_use=max(0, in_use), cps=cps)


def report(
    st: TrunkState, spec: TrunkSpec, now: float, status: Reachability, rtt_ms: float | None = None
) -> TrunkState:
    """A switch reachability report (``TrunkStatus``: PJSIP ContactStatus /
    PeerStatus on Asterisk, sofia gateway state or ping on FreeSWITCH, or a poll)."""
    recovered = st.reach == "unreachable" and status == "reachable"
    b = brk.on_report(st.breaker, spec.breaker, now, status=status, recovered=recovered)
    return replace(st, breaker=b, reach=status, reach_at=now, rtt_ms=rtt_ms)


def next_change(st: TrunkState, p: BreakerParams) -> float | None:
    return brk.next_change(st.breaker, p)


def view(
    name: str, spec: TrunkSpec, st: TrunkState, now: float, wall_offset: float = 0.0
) -> dict[str, Any]:
    """JSON-ready view for ``GET /v1/trunks`` (see docs/trunks.md for fields).

    ``now`` is the clock the state was built with (monotonic in the service);
    ``wall_offset`` turns its instants into epoch timestamps for the API."""

    def at(t: float | None) -> float | None:
        return None if t is None else t + wall_offset

    p = spec.breaker
    b = brk.advance(st.breaker, p, now)
    t = st.window.totals(p.window_s, now)
    c = st.counters
    ready = cps_ready_at(st.cps, spec.max_cps, spec.cps_burst)
    return {
        "name": name,
        "switch": spec.switch,
        "target": spec.target,
        "tags": list(spec.tags),
        "priority": spec.priority,
        "weight": spec.weight,
        "state": health(st, p, now).value,
        "admin": "enabled" if st.enabled else "drained",
        "breaker": {
            "phase": b.phase.value,
            "reason": b.reason or None,
            "opened_at": at(b.opened_at),
            "half_opens_at": at(b.open_until) if b.phase is Phase.OPEN else None,
            "cooldown_s": b.cooldown_s or None,
            "consecutive_failures": b.consecutive,
            "probe_in_flight": b.probe_since is not None,
            "probe_successes": b.probe_successes,
            "times_opened": b.times_opened,
        },
        "reachability": {"status": st.reach, "at": at(st.reach_at), "rtt_ms": st.rtt_ms},
        "channels": {"in_use": st.in_use, "max": spec.max_channels},
        "cps": {
            "max": spec.max_cps,
            "burst": spec.cps_burst,
            "next_start_in_s": max(0.0, ready - now) if ready > now else 0.0,
        },
        "window": {
            "seconds": p.window_s,
            "samples": t.total,
            "failures": t.failed,
            "error_rate": t.error_rate,
            "pdd_avg_s": t.pdd_avg_s,
        },
        "counters": {
            "attempts": c.attempts,
            "probes": c.probes,
            "answered": c.answered,
            "failovers": c.failovers,
            "finals": c.finals,
        },
        "last_failure": (
            None
            if c.last_failure is None
            else {**c.last_failure.to_dict(), "at": at(c.last_failure_at)}
        ),
        "last_pdd_s": c.last_pdd_s,
    }
