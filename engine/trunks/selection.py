"""Pick the next trunk of a group for one call attempt. Pure.

A member is, at ``now``:
- skipped: its switch's link is not up (nothing can be placed there; this
  is not the carrier's fault, so no breaker is involved), already tried by
  this call (never twice per call), drained by an operator, or its breaker
  admits nothing (open: down; half-open with its one
  probe already in flight);
- full: it would be admitted, but all its channels are in use or its CPS
  bucket is empty;
- available: anything else. A half-open member is available as a *probe*.

Available members are chosen by the group's policy. If none is available but
some are full, the answer is :class:`AllFull` with the earliest time a CPS
token frees up (``None`` when only channels are missing: that time depends on
a hangup, so the service retries on the next channel release). Otherwise
:class:`NoneEligible`, with the reasons and the earliest time a breaker
half-opens (a retry hint).

Policies:
- ``priority``: the lowest ``priority`` value with an available member wins
  (SRV order, RFC 2782); inside that tier a weighted random choice with the
  injected RNG (weights all 0: uniform). Full or down members of a better tier
  are passed over, not waited for (overflow to the next tier).
- ``round_robin``: the first available member from the group cursor on, in
  member order; the cursor moves past it.
- ``least_used``: the lowest channel utilisation (in_use / max_channels),
  then fewer channels in use, then priority, then member order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from engine.trunks import breaker as brk
from engine.trunks.fleet import Fleet
from engine.trunks.limits import cps_ready_at
from engine.trunks.model import Phase, Selection


@dataclass(frozen=True, slots=True)
class Picked:
    trunk: str
    probe: bool  # the call is the breaker's half-open probe
    cursor: int  # the group's new round-robin cursor


@dataclass(frozen=True, slots=True)
class AllFull:
    retry_at: float | None  # earliest CPS token; None: wait for a channel release


@dataclass(frozen=True, slots=True)
class NoneEligible:
    reasons: tuple[tuple[str, str], ...]  # (member, why) for every member
    retry_at: float | None  # earliest breaker half-open among down members
    links_down: bool = False  # every member skipped because its switch's link is down


Choice = Picked | AllFull | NoneEligible

_AVAILABLE = 0
_PROBE = 1
_FULL = 2
_SKIP = 3
_LINK = 4  # skipped: its switch's link is not up


def _assess(
    fleet: Fleet, name: str, tried: frozenset[str], now: float
) -> tuple[int, str, float | None]:
    """(kind, why, time): why is for NoneEligible; time is the CPS ready time
    for FULL, the half-open time for a down member."""
    spec = fleet.trunks[name]
    if spec.switch in fleet.down_switches:
        return _LINK, f"switch {spec.switch} unavailable (link not up)", None
    if name in tried:
        return _SKIP, "already tried by this call", None
    st = fleet.states[name]
    if not st.enabled:
        return _SKIP, "drained", None
    admit = brk.admission(st.breaker, spec.breaker, now)
    if admit is None:
        b = brk.advance(st.breaker, spec.breaker, now)
        if b.phase is Phase.OPEN:
            return _SKIP, f"down (breaker open: {b.reason})", b.open_until
        return _SKIP, "probing (probe call in flight)", brk.next_change(b, spec.breaker)
    if st.in_use >= spec.max_channels:
        return _FULL, "all channels in use", None
    ready = cps_ready_at(st.cps, spec.max_cps, spec.cps_burst)
    if now < ready:
        return _FULL, "calls-per-second limit", ready
    return (_PROBE if admit == "probe" else _AVAILABLE), "", None


def _weighted(fleet: Fleet, names: list[str], rng: random.Random) -> str:
    if len(names) == 1:
        return names[0]
    weights = [fleet.trunks[n].weight for n in names]
    total = sum(weights)
    if total <= 0:
        return names[rng.randrange(len(names))]
    point = rng.random() * total
    for n, w in zip(names, weights, strict=True):
        point -= w
        if point < 0:
            return n
    return names[-1]  # float rounding at the very top of the range


def select(
    fleet: Fleet,
    group: str,
    tried: Iterable[str],
    now: float,
    rng: random.Random,
) -> Choice:
    g = fleet.groups[group]
    tried_set = tried if isinstance(tried, frozenset) else frozenset(tried)
    cursor = fleet.cursors.get(group, 0)
    full_at: list[float | None] = []
    down_at: list[float] = []
    reasons: list[tuple[str, str]] = []
    links = 0

    def note(name: str, kind: int, why: str, at: float | None) -> None:
        nonlocal links
        links += kind == _LINK
        if kind == _FULL:
            full_at.append(at)
        elif at is not None:
            down_at.append(at)
        reasons.append((name, why))

    if g.selection is Selection.PRIORITY:
        for tier in fleet.tiers[group]:
            ready: list[str] = []
            probes: set[str] = set()
            for name in tier:
                kind, why, at = _assess(fleet, name, tried_set, now)
                if kind <= _PROBE:
                    ready.append(name)
                    if kind == _PROBE:
                        probes.add(name)
                else:
                    note(name, kind, why, at)
            if ready:
                chosen = _weighted(fleet, ready, rng)
                return Picked(chosen, chosen in probes, cursor)
    elif g.selection is Selection.ROUND_ROBIN:
        n = len(g.members)
        for k in range(n):
            i = (cursor + k) % n
            name = g.members[i]
            kind, why, at = _assess(fleet, name, tried_set, now)
            if kind <= _PROBE:
                return Picked(name, kind == _PROBE, (i + 1) % n)
            note(name, kind, why, at)
    else:
        best: tuple[float, int, int, int] | None = None
        best_name = ""
        best_probe = False
        for i, name in enumerate(g.members):
            kind, why, at = _assess(fleet, name, tried_set, now)
            if kind > _PROBE:
                note(name, kind, why, at)
                continue
            spec = fleet.trunks[name]
            used = fleet.states[name].in_use
            key = (used / spec.max_channels, used, spec.priority, i)
            if best is None or key < best:
                best, best_name, best_probe = key, name, kind == _PROBE
        if best is not None:
            return Picked(best_name, best_probe, cursor)

    if full_at:
        cps_times = [t for t in full_at if t is not None]
        return AllFull(retry_at=min(cps_times) if cps_times else None)
    return NoneEligible(
        tuple(reasons),
        min(down_at) if down_at else None,
        links_down=bool(reasons) and links == len(reasons),
    )


def unusable(fleet: Fleet, group: str, now: float) -> tuple[tuple[str, str], ...]:
    """Why no member of ``group`` could take a call now, member by member; empty when one
    could (available, a half-open probe, or only full: a channel or CPS token frees up).
    Nothing is chosen and nothing changes (the campaign runner asks before it dials)."""
    reasons: list[tuple[str, str]] = []
    for name in fleet.groups[group].members:
        kind, why, _at = _assess(fleet, name, frozenset(), now)
        if kind <= _FULL:
            return ()
        reasons.append((name, why))
    return tuple(reasons) or (("", "group has no members"),)
