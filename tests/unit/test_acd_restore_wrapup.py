"""Restart and takeover of an agent in wrap-up, and a takeover's KPI window read back
(engine/acd/restore.py, docs/acd.md "Restart safety")."""

from __future__ import annotations

from typing import Any

import pytest

from engine.acd.live_store import LiveSnapshot, StoredAgent
from engine.acd.model import QueueSpec
from engine.acd.reservations import Reservation
from tests.unit.acd_fakes import Rig, agent, rig
from tests.unit.test_acd_kpi_window import _ended, _Reader

SALES = QueueSpec("sales", skills={"sales": 5}, ring_timeout_s=10, wrap_up_s=4.0)


class _Store:
    def __init__(self, snap: LiveSnapshot) -> None:
        self.snap = snap

    async def snapshot(self) -> LiveSnapshot:
        return self.snap

    async def reservations(self) -> list[Reservation]:
        return []


def _ready(r: Rig, *ids: str) -> None:
    for agent_id in ids:
        r.acd.login(agent_id)
        r.clock.t += 1
        r.acd.ready(agent_id)


def _snapshot(r: Rig) -> LiveSnapshot:
    written = r.live.writes
    stored: dict[str, StoredAgent] = {
        ident: v for (kind, ident), v in written.items() if kind == "agent"
    }
    entries: list[dict[str, Any]] = [v for (k, _), v in written.items() if k == "entry" and v]
    return LiveSnapshot(stored, [], entries)


async def _talked_then_caller_left(r: Rig) -> None:
    """alice answers c1 (3 s wait), talks 20 s, the caller hangs up: alice in wrap-up."""
    _ready(r, "alice")
    r.calls.caller("c1")
    await r.acd.enter("c1", queue="sales")
    await r.settle()
    leg = r.calls.leg_of("alice")
    r.clock.t += 3
    r.answered(leg)
    await r.settle()
    r.clock.t += 20
    r.hung_up("c1")
    r.hung_up(leg)
    await r.settle()
    assert r.states() == {"alice": "wrap_up"}


async def test_a_takeover_reads_what_the_previous_owner_ended_and_counts_its_own_once() -> None:
    # Regression: a takeover rebuilt the agents and callers but not the KPI window: the new
    # owner's live KPIs had nothing of what the previous owner ended since its start.
    owner = rig([agent("alice", {"sales": 9})], [SALES])
    standby = rig([agent("alice", {"sales": 9})], [SALES])
    owner.clock.t = standby.clock.t = 1_000_020.0
    reader = _Reader([])
    assert await standby.acd.restore_finished(reader) == 0  # its start: nothing yet
    # The standby once owned the queue: one entry it ended itself (its row is stored too).
    standby.clock.t += 30
    _ended(standby, 1, "answered", wait=2.0, talk=10.0, wrap=1.0)
    reader.rows.append(standby.history.of("queue_entry", "kind")[-1])
    for n in range(2, 5):  # the owner ends three more
        owner.clock.t += 60
        _ended(owner, n, "abandoned" if n == 4 else "answered", wait=5.0, talk=30.0, wrap=2.0)
        reader.rows.append(owner.history.of("queue_entry", "kind")[-1])
    standby.clock.t = owner.clock.t + 5
    standby.acd._store = _Store(LiveSnapshot({}, [], []))  # type: ignore[assignment]
    await standby.acd.take_over({"sw": []})
    since, until, exclude = reader.calls[-1][1], reader.calls[-1][2], reader.calls[-1][5]
    assert (since, until, exclude) == (1_000_020.0, standby.clock.t, ["e1"])
    kpis = standby.acd.queue_view("sales")["kpis"]
    assert (kpis["answered"], kpis["abandoned"]) == (3, 1)
    assert kpis["aht_s"] == pytest.approx((11.0 + 32.0 + 32.0) / 3)
    # Taken over again later: nothing is read twice.
    await standby.acd.take_over({"sw": []})
    assert standby.acd.queue_view("sales")["kpis"] == kpis


async def test_a_takeover_whose_read_times_out_keeps_its_figures_and_still_confirms() -> None:
    standby = rig([agent("alice", {"sales": 9})], [SALES])
    await standby.acd.restore_finished(_Reader([]))
    standby.clock.t += 30
    _ended(standby, 1, "answered", wait=2.0, talk=10.0, wrap=1.0)

    async def down(*args: Any) -> list[dict[str, Any]]:
        raise TimeoutError("storage timeout")

    standby.acd._finished = down
    standby.acd._store = _Store(LiveSnapshot({}, [], []))  # type: ignore[assignment]
    await standby.acd.take_over({"sw": []})
    assert standby.acd.queue_view("sales")["kpis"]["answered"] == 1
    # Read next time from where the last read ended, the entry still left out.
    reader = _Reader([])
    standby.acd._finished = reader
    await standby.acd.take_over({"sw": []})
    assert reader.calls[-1][5] == ["e1"]
