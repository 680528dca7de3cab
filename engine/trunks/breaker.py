"""Circuit breaker of one trunk, with hysteresis. Pure: every function takes
``now`` and returns a new :class:`BreakerState`.

CLOSED --(N consecutive failures, or error rate > X over >= min_samples)--> OPEN
CLOSED --(switch reports unreachable)--> OPEN (reason "unreachable")
OPEN --(cooldown elapsed; time alone, no event needed)--> HALF_OPEN
OPEN(unreachable) --(switch reports reachable again)--> HALF_OPEN at once
HALF_OPEN: one probe call at a time;
    probe fails -> OPEN, cooldown x backoff (capped at max_cooldown_s)
    M probes succeed in a row -> CLOSED (cooldown back to its base)

Why it can never keep a healthy trunk dead for good (the complaint that
started issue 4): every OPEN has a finite ``open_until``. An "unreachable"
report holds the breaker open only while it is fresh (``report_ttl_s``):
Asterisk sends ContactStatus only on a change, so a lost "Reachable" event (a
reconnect at the wrong moment) would otherwise pin the trunk down. A probe
that never reports (lost hangup event) frees the probe slot after
``probe_timeout_s``. The cooldown backoff is capped.

Why a "reachable" report does NOT close a breaker that calls opened: qualify
is a SIP OPTIONS ping, and a congested carrier keeps answering OPTIONS with
200 while it rejects every INVITE with 503. Only probe calls close it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.core.frozen import replace
from engine.trunks.model import BreakerParams, Phase

OpenReason = Literal["", "consecutive-failures", "error-rate", "unreachable", "probe-failed"]
Admission = Literal["normal", "probe"]


@dataclass(frozen=True, slots=True)
class BreakerState:
    phase: Phase = Phase.CLOSED
    reason: OpenReason = ""  # why it last opened (kept after closing, for the API)
    opened_at: float | None = None
    open_until: float = 0.0  # OPEN: when it half-opens by itself
    cooldown_s: float = 0.0  # cooldown of the current opening; the base of the next backoff
    consecutive: int = 0  # CLOSED: failures in a row
    probe_since: float | None = None  # HALF_OPEN: start of the probe in flight
    probe_successes: int = 0  # HALF_OPEN: successful probes in a row
    times_opened: int = 0


def advance(b: BreakerState, p: BreakerParams, now: float) -> BreakerState:
    """Apply the transitions that time alone causes."""
    if b.phase is Phase.OPEN and now >= b.open_until:
        return replace(b, phase=Phase.HALF_OPEN, probe_since=None, probe_successes=0)
    if (
        b.phase is Phase.HALF_OPEN
        and b.probe_since is not None
        and now - b.probe_since >= p.probe_timeout_s
    ):
        # The probe's outcome was lost; neither a success nor a failure.
        return replace(b, probe_since=None)
    return b


def admission(b: BreakerState, p: BreakerParams, now: float) -> Admission | None:
    """May a new call use this trunk now, and as what? ``None``: no."""
    b = advance(b, p, now)
    if b.phase is Phase.CLOSED:
        return "normal"
    if b.phase is Phase.HALF_OPEN and b.probe_since is None:
        return "probe"
    return None


def next_change(b: BreakerState, p: BreakerParams) -> float | None:
    """When :func:`advance` would change this state without any input."""
    if b.phase is Phase.OPEN:
        return b.open_until
    if b.phase is Phase.HALF_OPEN and b.probe_since is not None:
        return b.probe_since + p.probe_timeout_s
    return None


def _open(
    b: BreakerState, reason: OpenReason, cooldown: float, until: float, now: float
) -> BreakerState:
    return BreakerState(
        phase=Phase.OPEN,
        reason=reason,
        opened_at=now if b.phase is not Phase.OPEN else b.opened_at,
        open_until=until,
        cooldown_s=cooldown,
        times_opened=b.times_opened + (b.phase is not Phase.OPEN),
    )


def on_dispatch(b: BreakerState, p: BreakerParams, now: float, probe: bool) -> BreakerState:
    b = advance(b, p, now)
    if probe and b.phase is Phase.HALF_OPEN:
        return replace(b, probe_since=now)
    return b


def on_abandon(b: BreakerState) -> BreakerState:
    """A dispatched attempt never reached the carrier (the switch link was
    down, or another engine took the shared capacity first): no verdict, but
    a probe's slot is free again."""
    if b.phase is Phase.HALF_OPEN and b.probe_since is not None:
        return replace(b, probe_since=None)
    return b


def on_result(
    b: BreakerState,
    p: BreakerParams,
    now: float,
    *,
    failed: bool,
    probe: bool,
    window_failures: int,
    window_total: int,
) -> BreakerState:
    """Feed one call outcome. ``failed`` means a trunk failure (a failover
    cause); the callee saying busy or no is a working trunk. ``window_*`` are
    the sliding-window counts INCLUDING this result."""
    b = advance(b, p, now)
    if b.phase is Phase.CLOSED:
        if not failed:
            return replace(b, consecutive=0) if b.consecutive else b
        consecutive = b.consecutive + 1
        if consecutive >= p.failure_threshold:
            return _open(b, "consecutive-failures", p.cooldown_s, now + p.cooldown_s, now)
        if window_total >= p.min_samples and window_failures > p.error_rate * window_total:
            return _open(b, "error-rate", p.cooldown_s, now + p.cooldown_s, now)
        return replace(b, consecutive=consecutive)
    if b.phase is Phase.HALF_OPEN and probe:
        if failed:
            base = b.cooldown_s if b.cooldown_s > 0 else p.cooldown_s
            cooldown = min(base * p.backoff, p.max_cooldown_s)
            return _open(b, "probe-failed", cooldown, now + cooldown, now)
        successes = b.probe_successes + 1
        if successes >= p.close_after:
            return BreakerState(reason=b.reason, opened_at=None, times_opened=b.times_opened)
        return replace(b, probe_since=None, probe_successes=successes)
    # OPEN, or a non-probe call that was started before the breaker opened:
    # it says nothing about the trunk NOW, so the phase does not move.
    return b


def on_report(
    b: BreakerState,
    p: BreakerParams,
    now: float,
    *,
    status: Literal["reachable", "unreachable", "unknown"],
    recovered: bool,
) -> BreakerState:
    """Feed a switch reachability report. ``recovered``: the previous report
    for this trunk said unreachable and this one says reachable."""
    b = advance(b, p, now)
    if status == "unreachable":
        until = now + p.report_ttl_s
        if b.phase is Phase.OPEN:
            return replace(b, reason="unreachable", open_until=max(b.open_until, until))
        cooldown = b.cooldown_s if b.cooldown_s > 0 else p.cooldown_s
        return _open(b, "unreachable", cooldown, until, now)
    if b.phase is not Phase.OPEN:
        return b
    if status == "reachable" and (recovered or b.reason == "unreachable"):
        # Qualify came back: let probes decide, do not wait for the cooldown.
        return replace(b, phase=Phase.HALF_OPEN, probe_since=None, probe_successes=0)
    if status == "unknown" and b.reason == "unreachable":
        # The switch no longer knows (qualify switched off, contact removed):
        # stop trusting the old "unreachable" and fall back to the cooldown.
        return replace(b, open_until=min(b.open_until, now + b.cooldown_s))
    return b
