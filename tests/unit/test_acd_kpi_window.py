"""The live KPI window (engine/acd/kpi_window.py): exact per-minute sums behind
``GET /v1/queues/{name}`` and the queue metrics, for any volume, and their restore at start."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.acd.entries import Entry
from engine.acd.kpi import FinishedEntry, queue_kpis
from engine.acd.kpi_window import BUCKET_S, KpiWindow
from engine.acd.metrics import queue_figures
from engine.acd.model import QueueSpec
from engine.acd.state import AcdSettings
from tests.unit.acd_fakes import Clock, Rig, agent, rig

SALES = QueueSpec("sales", skills={"sales": 5}, ring_timeout_s=10, wrap_up_s=4.0)
T0 = 1_000_020.0  # not on a bucket boundary


def _ended(
    r: Rig, n: int, outcome: str, wait: float, talk: float = 0.0, wrap: float | None = None
) -> FinishedEntry:
    """An entry of "sales" that ends now (r.clock), through the lifecycle's finish."""
    now = r.clock.t
    e = Entry(f"e{n}", f"c{n}", f"l{n}", "sw", "sales", 1, now - wait - talk)
    if outcome == "answered":
        e.answered_at = e.entered_at + wait
        e.talk_s, e.wrap_up_s = talk, wrap
    r.acd._life.finish(e, outcome, now)
    return FinishedEntry(e.entered_at, now, outcome, wait, talk, wrap)


def _trace(r: Rig, count: int, step_s: float) -> list[FinishedEntry]:
    out = []
    for k in range(count):
        r.clock.t += step_s
        if k % 4 == 0:
            out.append(_ended(r, k, "abandoned", wait=float(k % 50)))
        elif k % 7 == 0:
            out.append(_ended(r, k, "overflow-ivr", wait=90.0))
        else:
            wrap = None if k % 5 == 0 else float(k % 9)  # some wrap-ups not over yet
            out.append(_ended(r, k, "answered", wait=float(k % 37), talk=60.0 + k % 11, wrap=wrap))
    return out


def test_six_thousand_entries_in_the_window_count_exactly() -> None:
    # 6,000 entries in 10 h: the live view kept the last 5,000 only, so answered, abandoned,
    # SL, ASA, AHT and abandon % were of the newest 5,000, silently (a normal day for a
    # 100-seat inbound centre is more than that).
    r = rig([agent("alice", {"sales": 9})], [SALES], clock=Clock(T0))
    trace = _trace(r, 6000, 6.0)
    want = queue_kpis(trace, [], [], r.clock.t, 20.0, window_s=24 * 3600.0)
    assert (want.answered, want.abandoned) == (3857, 1500)
    got = r.acd.queue_view("sales")["kpis"]
    assert got == want.to_dict()
    f = queue_figures(r.acd._state, "sales", r.clock.t)  # the metrics: the same sums
    within = sum(1 for e in trace if e.outcome == "answered" and e.wait_s <= 20.0)
    assert (f.answered, f.abandoned, f.within) == (3857, 1500, within)
    assert f.handled == sum(1 for e in trace if e.outcome == "answered" and e.wrap_up_s is not None)


def test_entries_older_than_the_window_drop_out_by_minute() -> None:
    r = rig(
        [agent("alice", {"sales": 9})],
        [SALES],
        clock=Clock(T0),
        settings=AcdSettings(kpi_window_s=600.0),
    )
    _ended(r, 1, "abandoned", wait=30.0)  # in the bucket [T0 - 60 + 60k ...)
    r.clock.t += 300
    _ended(r, 2, "answered", wait=5.0, talk=10.0, wrap=2.0)
    k = r.acd.queue_view("sales")["kpis"]
    assert (k["answered"], k["abandoned"], k["aht_s"]) == (1, 1, 12.0)
    # The first entry's bucket counts while its end is after now - window.
    first_end = (T0 // BUCKET_S + 1) * BUCKET_S
    r.clock.t = first_end + 600 - 0.001
    assert r.acd.queue_view("sales")["kpis"]["abandoned"] == 1
    r.clock.t = first_end + 600
    k = r.acd.queue_view("sales")["kpis"]
    assert (k["answered"], k["abandoned"], k["abandon_pct"]) == (1, 0, 0.0)
    r.clock.t += 400
    k = r.acd.queue_view("sales")["kpis"]
    assert (k["answered"], k["service_level_pct"], k["aht_s"]) == (0, None, None)


async def test_a_wrap_up_ending_after_the_entry_counts_once_in_aht() -> None:
    r = rig([agent("alice", {"sales": 9})], [SALES], clock=Clock(T0))
    r.acd.login("alice")
    r.acd.ready("alice")
    for n, talk in enumerate((20.0, 10.0)):
        r.calls.caller(f"c{n}")
        await r.acd.enter(f"c{n}", queue="sales")
        await r.settle()
        leg = r.calls.leg_of("alice")
        r.clock.t += 3
        r.answered(leg)
        await r.settle()
        r.clock.t += talk
        r.hung_up(f"c{n}")
        r.hung_up(leg)
        await r.settle()
        assert r.states()["alice"] == "wrap_up"
        k = r.acd.queue_view("sales")["kpis"]
        # Ended, answered, but its handling is not over: not in AHT yet.
        assert k["answered"] == n + 1
        assert k["aht_s"] == (None if n == 0 else 24.0)
        r.clock.t += 4.0
        r.acd.tick()
        await r.settle()
        assert r.states()["alice"] == "available"
    f = queue_figures(r.acd._state, "sales", r.clock.t)
    assert (f.handled, f.handle_sum_s) == (2, 24.0 + 14.0)
    assert r.acd.queue_view("sales")["kpis"]["aht_s"] == 19.0


def test_a_window_bucket_added_late_is_dropped_once_out_of_the_window() -> None:
    w = KpiWindow(600.0)
    w.ended(10_000.0, "answered", 5.0, 20.0)
    w.ended(10_000.0 - 700, "answered", 5.0, 20.0)  # out already: not held
    w.wrapped(10_000.0 - 700, 10.0, 2.0)
    s = w.sums(10_000.0)
    assert (s.answered, s.answered_in_sl, s.handled) == (1, 1, 0)


class _Reader:
    """A PostgreSQL stand-in: the sums of the rows it holds, as ``kpi_buckets`` answers."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.calls: list[tuple[str, float, float, float, float, list[str]]] = []

    async def __call__(
        self,
        queue: str,
        since: float,
        until: float,
        bucket_s: float,
        sl_s: float,
        exclude: Sequence[str],
    ) -> list[dict[str, Any]]:
        self.calls.append((queue, since, until, bucket_s, sl_s, list(exclude)))
        w = KpiWindow(1e12, bucket_s)
        for row in self.rows:
            if row["entry_id"] in exclude or not since <= row["ended_at"] < until:
                continue
            w.ended(row["ended_at"], row["outcome"], row["wait_s"], sl_s)
            if row["outcome"] == "answered" and row["wrap_up_s"] is not None:
                w.wrapped(row["ended_at"], row["talk_s"], row["wrap_up_s"])
        return [
            {"bucket": i, **{k: getattr(b, k) for k in b.__slots__}} for i, b in w._buckets.items()
        ]


async def test_the_restore_rebuilds_the_same_figures_and_counts_each_entry_once() -> None:
    before = rig([agent("alice", {"sales": 9})], [SALES], clock=Clock(T0))
    trace = _trace(before, 6000, 6.0)
    want = before.acd.queue_view("sales")["kpis"]
    rows = [r for r in before.history.of("queue_entry", "kind") if r["ended_at"] is not None]

    after = rig([agent("alice", {"sales": 9})], [SALES], clock=Clock(before.clock.t))
    # One entry ended here before the read (its row is stored too): counted once.
    after.clock.t += 1
    _ended(after, 9999, "answered", wait=1.0, talk=1.0, wrap=1.0)
    rows.append(after.history.of("queue_entry", "kind")[-1])
    reader = _Reader(rows)
    restored = await after.acd.restore_finished(reader)
    assert restored == sum(1 for e in trace if e.outcome in ("answered", "abandoned"))
    ((queue, since, until, bucket_s, sl_s, exclude),) = reader.calls
    assert (queue, until, bucket_s, sl_s, exclude) == (
        "sales",
        after.clock.t,
        60.0,
        20.0,
        ["e9999"],
    )
    assert since <= after.clock.t - 24 * 3600
    got = after.acd.queue_view("sales")["kpis"]
    assert got["answered"] == want["answered"] + 1
    assert got["abandoned"] == want["abandoned"]
    live = queue_kpis(
        [*trace, FinishedEntry(0.0, after.clock.t, "answered", 1.0, 1.0, 1.0)],
        [],
        [],
        after.clock.t,
        20.0,
    )
    assert got == live.to_dict()
    # Read once: a second read would count the window twice.
    assert await after.acd.restore_finished(reader) == 0
    assert after.acd.queue_view("sales")["kpis"] == got
