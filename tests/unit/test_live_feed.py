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
    # The engine taps the event lane with feed.observe; here the ACD's events are handed on.
    seen = 0

    def look() -> list[dict[str, Any]]:
        nonlocal seen
        for event in r.events.items[seen:]:
            feed.observe(event)
        seen = len(r.events.items)
        return feed.collect()

    (first,) = look()
    assert first["type"] == "QueueStats" and first["queue"] == "sales"
    assert (first["waiting"], first["available"], first["staffed"]) == (0, 0, 0)
    assert first["service_level_pct"] is None and first["ts"] == r.clock.t
    assert look() == []  # nothing changed: nothing published

    r.acd.login("alice")
    r.acd.ready("alice")
    r.acd.login("bob")
    (ready,) = look()
    assert (ready["available"], ready["staffed"]) == (1, 2)

    # A caller waits (bob paused, alice rung): waiting 1, its wait measured from its entry.
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    r.clock.t += 4
    (waiting,) = look()
    assert waiting["waiting"] == 1 and waiting["longest_wait_s"] == 4.0
    assert waiting["oldest_waiting_at"] == r.clock.t - 4.0
    # The wait growing is not a change (the page counts it from oldest_waiting_at).
    r.clock.t += 3
    assert look() == []

    # Answered after 7 s (within the 10 s threshold), then talk and hang-up: the KPIs move.
    r.answered(r.calls.leg_of("alice"))
    await r.settle()
    r.clock.t += 20
    r.hung_up("c1")  # the caller ends the call: the entry ends answered
    await r.settle()
    (done,) = look()
    view = r.acd.queue_view("sales")["kpis"]
    assert done["waiting"] == 0 and done["oldest_waiting_at"] is None
    for key in ("answered", "abandoned", "service_level_pct", "asa_s", "aht_s", "abandon_pct"):
        assert done[key] == view[key], key
    assert (done["answered"], done["service_level_pct"], done["asa_s"]) == (1, 100.0, 7.0)


async def test_after_a_move_queue_stats_follow_the_agent_to_its_new_queue() -> None:
    # A supervisor moves bob from sales to tech: sales loses a staffed agent at once, and a
    # QueueStats says so (the move marked no queue: sales showed bob until its turn came).
    tech = QueueSpec(name="tech", skills={"tech": 5})
    quiet = QueueSpec(name="zz", skills={"none": 1})  # the round-robin look lands here
    r = rig(
        [agent("alice", {"sales": 9}), agent("bob", {"sales": 6, "tech": 6})],
        [SALES, tech, quiet],
    )
    source = queue_stats(r.acd, budget_s=10.0)
    feed = LiveFeed(lambda e: None, [source], clock=lambda: r.clock.t)
    seen = 0

    def look() -> dict[str, dict[str, Any]]:
        nonlocal seen
        for event in r.events.items[seen:]:
            feed.observe(event)
        seen = len(r.events.items)
        source._turn = 1  # the next quiet look is at "zz"
        return {e["queue"]: e for e in feed.collect()}

    look()
    r.acd.login("bob")
    r.acd.ready("bob")
    assert set(look()) == {"sales", "tech"}
    r.acd.move("bob", "sales", "tech", "token:sup")
    moved = look()
    assert "sales" in moved, "the move changed sales' staffing but no QueueStats said so"
    assert (moved["sales"]["available"], moved["sales"]["staffed"]) == (0, 0)
    r.acd.pause("bob", "break")
    paused = look()
    assert set(paused) == {"tech"}  # his changes count where he serves now
    assert (paused["tech"]["available"], paused["tech"]["staffed"]) == (0, 1)


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


class ManyQueues:
    """Queue views that cost a known time, and a count of the views made."""

    def __init__(self, n: int) -> None:
        self.queues = {f"q{i}": QueueSpec(name=f"q{i}", skills={"s": 1}) for i in range(n)}
        self.viewed: list[str] = []

    def agent_ids(self) -> list[str]:
        return ["a1"]

    def agent_view(self, agent_id: str) -> dict[str, Any]:
        return {"skills": {"s": 5}, "queues": sorted(self.queues)}

    def queue_view(self, name: str) -> dict[str, Any]:
        self.viewed.append(name)
        kpis = {
            k: None for k in ("service_level_pct", "asa_s", "aht_s", "abandon_pct", "occupancy_pct")
        }
        return {
            "service_level_s": 20.0,
            "agents": {"available": ["a1"]},
            "kpis": {**kpis, "waiting": 0, "longest_wait_s": 0.0, "answered": 0, "abandoned": 0},
        }


def test_queues_are_looked_at_when_an_event_names_them_within_a_time_budget() -> None:
    acd = ManyQueues(10)
    source = queue_stats(acd, budget_s=0.05)
    ticks = iter(x * 0.02 for x in range(10_000))
    source._timer = lambda: next(ticks)  # 20 ms pass between two looks at the clock
    feed = LiveFeed(lambda e: None, [source], clock=Clock())
    # Every queue is due at first: two views fit in the 50 ms of a look, the rest wait.
    feed.collect()
    assert len(acd.viewed) == 2
    while len(set(acd.viewed)) < 10 or source._dirty:
        feed.collect()
    # Quiet: one queue per look in turn (the KPI window moves without events).
    acd.viewed.clear()
    feed.collect()
    assert len(acd.viewed) == 1
    # A caller's event names its queue; an agent's change marks the queues it may serve.
    acd.viewed.clear()
    feed.observe({"type": "QueueCallEntered", "queue": "q7"})
    feed.observe({"type": "QueueStats", "queue": "q8"})  # the feed's own: not a change
    assert list(source._dirty) == ["q7"]
    feed.collect()
    assert acd.viewed[0] == "q7"
    acd.viewed.clear()
    feed.observe({"type": "AgentStateChanged", "agent_id": "a1", "queue": None})
    assert set(source._dirty) == set(acd.queues)  # a1's skills fit every queue
    for _ in range(10):
        feed.collect()
    assert set(acd.viewed) == set(acd.queues)


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        LiveFeed(lambda e: None, [], interval_s=0)
