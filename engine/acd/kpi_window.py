"""A queue's live KPI window: exact sums per minute of end time (docs/acd.md "KPIs").

The live view's service level, ASA, AHT and abandon rate are over the entries that ended in
the last ``kpi_window_s`` (24 h by default). Holding those entries themselves capped what a
queue could count (5,000 a day is a normal day for a 100-seat inbound centre) and made every
read walk them all. Instead each queue keeps one :class:`KpiSums` per ``BUCKET_S`` of end
time: adding an entry is O(1), a read adds at most ``window / BUCKET_S + 1`` records (1,441
for 24 h), and the figures are exact for any volume. The price is the window's edge: a bucket
counts while its end is after ``now - window``, so the window is between ``window`` and
``window + BUCKET_S`` long.

An answered entry's wrap-up ends after the entry (``wrap_up_s`` is filled later): its handle
time goes into the bucket of the entry's end when the wrap-up is over, once
(:meth:`KpiWindow.wrapped`), so AHT counts each handled call once whichever comes last.
"""

from __future__ import annotations

import math

from engine.acd.kpi import KpiSums

BUCKET_S = 60.0


def bucket_of(t: float, bucket_s: float = BUCKET_S) -> int:
    """The bucket a time falls in: ``[i * bucket_s, (i + 1) * bucket_s)``."""
    return math.floor(t / bucket_s)


class KpiWindow:
    """One queue's sums per bucket of end time, over a sliding window."""

    __slots__ = ("_buckets", "_newest", "bucket_s", "window_s")

    def __init__(self, window_s: float, bucket_s: float = BUCKET_S) -> None:
        self.window_s = window_s
        self.bucket_s = bucket_s
        self._buckets: dict[int, KpiSums] = {}
        self._newest = -math.inf

    def _first(self, now: float) -> int:
        """The oldest bucket still in the window at ``now``: its end is after ``now - window``."""
        return math.floor((now - self.window_s) / self.bucket_s)

    def _bucket(self, at: float) -> KpiSums | None:
        i = bucket_of(at, self.bucket_s)
        b = self._buckets.get(i)
        if b is not None:
            return b
        if at > self._newest:
            self._newest = at
            self._drop_before(self._first(at))
        elif i < self._first(self._newest):
            return None  # already out of the window
        b = self._buckets[i] = KpiSums()
        return b

    def _drop_before(self, first: int) -> None:
        # Once per new bucket (at most once a minute of traffic): memory stays bounded by the
        # window even when nothing reads the figures.
        for i in [i for i in self._buckets if i < first]:
            del self._buckets[i]

    def ended(self, at: float, outcome: str, wait_s: float, service_level_s: float) -> None:
        """An entry that ended at ``at``. The live view counts every abandon (no short-abandon
        threshold: that is the reports', docs/reports.md)."""
        b = self._bucket(at)
        if b is not None:
            b.ended(outcome, wait_s, service_level_s)

    def wrapped(self, ended_at: float, talk_s: float, wrap_up_s: float) -> None:
        """An answered entry (ended at ``ended_at``) whose wrap-up is over: its handle time."""
        b = self._bucket(ended_at)
        if b is not None:
            b.wrapped(talk_s, wrap_up_s)

    def add(self, index: int, sums: KpiSums) -> None:
        """Sums of bucket ``index`` read back from storage (restore at start)."""
        self._newest = max(self._newest, index * self.bucket_s)
        if index < self._first(self._newest):
            return
        b = self._buckets.setdefault(index, KpiSums())
        b.add(sums)

    def sums(self, now: float) -> KpiSums:
        """The window's sums at ``now``."""
        first = self._first(now)
        out = KpiSums()
        for i, b in self._buckets.items():
            if i >= first:
                out.add(b)
        return out

    def since(self, now: float) -> float:
        """The start of the oldest bucket in the window at ``now`` (what a restore reads from)."""
        return self._first(now) * self.bucket_s
