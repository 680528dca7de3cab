"""Per-trunk limits: calls per second and concurrent channels.

The CPS limit is a token bucket in its GCRA form ("virtual scheduling", the
algorithm ATM policers use): the whole state is one float, the theoretical
arrival time ``tat`` of the next call. A call may start when
``now >= tat - (burst - 1) / rate``; starting one moves ``tat`` on by
``1 / rate``. This is exactly a bucket of ``burst`` tokens refilled at
``rate`` per second, but the time at which the next call becomes allowed is a
stored number, not a quotient recomputed from elapsed time, so a caller that
comes back at exactly that time is always admitted (no float-rounding loop).

With the default ``burst = 1`` starts are spaced at least ``1 / rate`` apart,
so any one-second window ``[t, t + 1)`` holds at most ``ceil(rate)`` starts.
Carriers police CPS with such sliding windows and answer 503 above it; a
larger burst allows up to ``burst - 1 + ceil(rate)`` in one window.
"""

from __future__ import annotations

from dataclasses import dataclass

_NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class CpsBucket:
    tat: float = _NEVER


def cps_ready_at(bucket: CpsBucket, rate: float, burst: int = 1) -> float:
    """The earliest time a start is allowed (a start at ``now >= ready`` is)."""
    if bucket.tat == _NEVER:
        return _NEVER
    return bucket.tat - (burst - 1) / rate


def cps_take(bucket: CpsBucket, rate: float, now: float) -> CpsBucket:
    """Record one start at ``now`` (call only after an allowed check)."""
    base = now if bucket.tat < now else bucket.tat
    return CpsBucket(tat=base + 1.0 / rate)
