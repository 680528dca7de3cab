"""The wallboard's summary events (engine/api/live_feed.py): published when their figures
change, never while nothing does, with the same numbers as the API's views."""

from __future__ import annotations

from typing import Any

import pytest

from engine.acd.model import QueueSpec
from engine.api.live_feed import LiveFeed, Source, queue_stats, trunk_stats
from tests.unit.acd_fakes import Clock, agent, rig

SALES = QueueSpec(name="sales", skills={"sales": 5}, service_level_s=10.0)


async def test_queue_stats_follow_the_queue_view_and_repeat_nothing() -> None:
    r = rig([agent("alice", {"sales": 9}), agent("bob", {"sales": 6})], [SALES])
    published: list[dict[str, Any]] = []
    feed = LiveFeed(published.append, [queue_stats(r.acd)], clock=lambda: r.clock.t)
    (first,) = feed.collect()
    assert first["type"] == "QueueStats" and first["queue"] == "sales"
    assert (first["waiting"], first["available"], first["staffed"]) == (0, 0, 0)
    assert first["service_level_pct"] is None and first["ts"] == r.clock.t
    assert feed.collect() == []  # nothing changed: nothing published

    r.acd.login("alice")
    r.acd.ready("alice")
    r.acd.login("bob")
    (ready,) = feed.collect()
    assert (ready["available"], ready["staffed"]) == (1, 2)

    # A caller waits (bob paused, alice rung): waiting 1, its wait measured from its entry.
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    r.clock.t += 4
    (waiting,) = feed.collect()
    assert waiting["waiting"] == 1 and waiting["longest_wait_s"] == 4.0
    assert waiting["oldest_waiting_at"] == r.clock.t - 4.0
    # The wait growing is not a change (the page counts it from oldest_waiting_at).
    r.clock.t += 3
    assert feed.collect() == []

    # Answered after 7 s (within the 10 s threshold), then talk and hang-up: the KPIs move.
    r.answered(r.calls.leg_of("alice"))
    await r.settle()
    r.clock.t += 20
    r.hung_up("c1")  # the caller ends the call: the entry ends answered
    await r.settle()
    (done,) = feed.collect()
    view = r.acd.queue_view("sales")["kpis"]
    assert done["waiting"] == 0 and done["oldest_waiting_at"] is None
    for key in ("answered", "abandoned", "service_level_pct", "asa_s", "aht_s", "abandon_pct"):
        assert done[key] == view[key], key
    assert (done["answered"], done["service_level_pct"], done["asa_s"]) == (1, 100.0, 7.0)


class FakeTrunks:
    def __init__(self) -> None:
        self.attempts = 0
        self.in_use = 0
        self.state = "up"

    def views(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "t1",
                "switch": "sw",
                "state": self.state,
                "admin": "enabled",
                "channels": {"in_use": self.in_use, "max": 30},
                "cps": {"max": 5.0},
                "counters": {"attempts": self.attempts, "answered": 0, "failovers": 0},
                "last_failure": None,
            }
        ]


def test_trunk_stats_measure_calls_per_second_between_looks() -> None:
    trunks, clock = FakeTrunks(), Clock(100.0)
    published: list[dict[str, Any]] = []
    feed = LiveFeed(published.append, [trunk_stats(trunks)], clock=clock)
    (first,) = feed.collect()
    assert (first["cps"], first["in_use"], first["max_channels"]) == (0.0, 0, 30)
    trunks.attempts, trunks.in_use = 8, 3
    clock.t += 2.0
    (busy,) = feed.collect()
    assert (busy["cps"], busy["in_use"]) == (4.0, 3)
    clock.t += 2.0
    (calm,) = feed.collect()  # no new attempts: the rate falls back to 0
    assert calm["cps"] == 0.0
    trunks.state = "down"
    clock.t += 2.0
    (down,) = feed.collect()
    assert down["state"] == "down"
    assert feed.collect() == []


def test_a_failing_source_does_not_stop_the_others() -> None:
    def broken(now: float) -> Any:
        raise RuntimeError("runner mid-stop")

    trunks = FakeTrunks()
    published: list[dict[str, Any]] = []
    sources: list[Source] = [broken, trunk_stats(trunks)]
    feed = LiveFeed(published.append, sources, clock=Clock())
    assert [e["type"] for e in feed.collect()] == ["TrunkStats"]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        LiveFeed(lambda e: None, [], interval_s=0)
