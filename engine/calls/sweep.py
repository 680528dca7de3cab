"""Maximum durations: which live calls have overstayed (pure, takes ``now``).

A call can get stuck when the switch never reports its end (a lost event, a
channel that leaked on the switch, an engine that was down when it ended and
a switch that still lists it). The sweeper asks this function which calls
exceeded a limit and ends them: first by asking the switch to hang up, then,
if no hangup event comes within ``force_after_s``, by ending the call as
``interrupted`` with its CDR.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.calls.model import Call, CallState


@dataclass(frozen=True, slots=True)
class Limits:
    max_setup_s: float = 120.0  # created/dialing without ringing or answer
    max_ring_s: float = 300.0  # ringing without answer
    max_call_s: float = 4 * 3600.0  # answered or bridged, from the answer
    force_after_s: float = 15.0  # hangup asked, no HungUp seen: end it ourselves
    # 0 disables a limit.


@dataclass(frozen=True, slots=True)
class Overstay:
    call_id: str
    limit: str  # "max_setup_s" | "max_ring_s" | "max_call_s"
    age_s: float


def overstays(calls: Iterable[Call], now: float, limits: Limits) -> list[Overstay]:
    out: list[Overstay] = []
    for call in calls:
        if call.is_ended:
            continue
        if call.state in (CallState.ANSWERED, CallState.BRIDGED):
            since = call.answered_at or call.bridged_at or call.created_at
            name, limit = "max_call_s", limits.max_call_s
        elif call.state is CallState.RINGING:
            since = call.ringing_at or call.created_at
            name, limit = "max_ring_s", limits.max_ring_s
        else:
            since = call.dialing_at or call.created_at
            name, limit = "max_setup_s", limits.max_setup_s
        age = now - since
        if limit > 0 and age > limit:
            out.append(Overstay(call.call_id, name, age))
    return out
