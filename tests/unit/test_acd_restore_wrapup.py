"""Restart and takeover of an agent in wrap-up, and a takeover's KPI window read back
(engine/acd/restore.py, docs/acd.md "Restart safety")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.acd.live_store import AcdLiveStore, LiveSnapshot, StoredAgent
from engine.acd.model import QueueSpec
from engine.pbx.base import Resynced
from engine.store.redis.client import RedisStore
from tests.unit.acd_fakes import Rig, SnapshotStore, agent, rig
from tests.unit.test_acd_kpi_window import _ended, _Reader

SALES = QueueSpec("sales", skills={"sales": 5}, ring_timeout_s=10, wrap_up_s=4.0)


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


def _rows(r: Rig) -> list[dict[str, Any]]:
    """The ``queue_entries`` rows as PostgreSQL holds them: the newest version of each."""
    out: dict[str, dict[str, Any]] = {}
    for row in r.history.of("queue_entry", "kind"):
        if row["entry_id"] not in out or row["version"] >= out[row["entry_id"]]["version"]:
            out[row["entry_id"]] = row
    return [row for row in out.values() if row["ended_at"] is not None]


async def _restarted(before: Rig, dt: float = 1.0) -> Rig:
    after = rig([agent("alice", {"sales": 9})], [SALES])
    after.clock.t = before.clock.t + dt
    after.acd._store = SnapshotStore(_snapshot(before))  # type: ignore[assignment]
    await after.acd.restore()
    return after


async def test_a_wrap_up_at_a_restart_resumes_and_its_handle_time_reaches_aht_once() -> None:
    # Regression: the agent's record kept its wrap-up's end (it did end on time), but not the
    # call: the handle time of a call whose wrap-up was on at a restart never reached AHT,
    # and its row never got its wrap-up.
    before = rig([agent("alice", {"sales": 9})], [SALES])
    await _talked_then_caller_left(before)
    until = before.acd.status("alice").wrap_up_until
    assert until == before.clock.t + 4.0
    rows = _rows(before)
    assert [r["wrap_up_s"] for r in rows] == [None]

    after = await _restarted(before)
    reader = _Reader(rows)
    assert await after.acd.restore_finished(reader) == 1
    after.acd.handle(Resynced(switch="sw", call_id="", ts=after.clock.t, live=()))
    await after.settle()
    kpis = after.acd.queue_view("sales")["kpis"]
    assert (kpis["answered"], kpis["aht_s"]) == (1, None)  # read back; wrap-up not over
    after.clock.t = until - 0.01
    after.acd.tick()
    assert after.states() == {"alice": "wrap_up"}  # the remaining time, not less
    after.clock.t = until
    after.acd.tick()
    assert after.states() == {"alice": "available"}
    kpis = after.acd.queue_view("sales")["kpis"]
    assert (kpis["answered"], kpis["aht_s"]) == (1, 24.0)  # 20 s talk + 4 s wrap-up, once
    row = after.history.of("queue_entry", "kind")[-1]
    assert (row["entry_id"], row["wrap_up_s"]) == (rows[0]["entry_id"], 4.0)
    assert row["version"] > rows[0]["version"]  # PostgreSQL takes it (rows only move forward)
    # Read again later (a takeover): the row with its wrap-up is not counted twice.
    after.clock.t += 1
    await after.acd._restorer.read_windows(_Reader(_rows(after)), "")
    kpis = after.acd.queue_view("sales")["kpis"]
    assert (kpis["answered"], kpis["aht_s"]) == (1, 24.0)


async def test_a_wrap_up_over_before_the_window_is_read_counts_its_entry_once() -> None:
    before = rig([agent("alice", {"sales": 9})], [SALES])
    await _talked_then_caller_left(before)
    rows = _rows(before)
    after = await _restarted(before, dt=10.0)  # the wrap-up's end has passed
    after.acd.tick()
    assert after.states() == {"alice": "available"}
    assert after.history.of("queue_entry", "kind")[-1]["wrap_up_s"] == 4.0 + 6.0
    # PostgreSQL has the row with its wrap-up by the time the window is read.
    reader = _Reader([*rows, after.history.of("queue_entry", "kind")[-1]])
    await after.acd.restore_finished(reader)
    assert reader.calls[0][5] == [rows[0]["entry_id"]]  # counted here: left out of the read
    kpis = after.acd.queue_view("sales")["kpis"]
    assert (kpis["answered"], kpis["aht_s"]) == (1, 30.0)


async def test_a_wrap_up_after_the_agent_left_first_resumes_with_its_live_entry() -> None:
    # The agent hung up first: the entry was still live (the caller's end not seen yet).
    before = rig([agent("alice", {"sales": 9})], [SALES])
    _ready(before, "alice")
    before.calls.caller("c1")
    await before.acd.enter("c1", queue="sales")
    await before.settle()
    leg = before.calls.leg_of("alice")
    before.clock.t += 3
    before.answered(leg)
    await before.settle()
    before.clock.t += 20
    before.hung_up(leg)
    await before.settle()
    assert before.states() == {"alice": "wrap_up"}
    assert before.acd.entry_of("c1") is not None
    until = before.acd.status("alice").wrap_up_until

    after = await _restarted(before)
    await after.acd.restore_finished(_Reader([]))
    after.acd.handle(Resynced(switch="sw", call_id="", ts=after.clock.t, live=()))  # c1 gone
    await after.settle()
    assert after.acd.entry_of("c1") is None
    after.clock.t = until  # type: ignore[assignment]
    after.acd.tick()
    assert after.states() == {"alice": "available"}
    kpis = after.acd.queue_view("sales")["kpis"]
    assert (kpis["answered"], kpis["aht_s"]) == (1, 24.0)


async def test_an_agent_record_stored_before_wrap_ups_were_kept_still_loads() -> None:
    before = rig([agent("alice", {"sales": 9})], [SALES])
    await _talked_then_caller_left(before)
    snap = _snapshot(before)
    old = {
        a: StoredAgent(s.agent_id, s.status, s.session_id, s.leg, s.switch, s.queues)
        for a, s in snap.agents.items()
    }
    until = before.acd.status("alice").wrap_up_until
    after = rig([agent("alice", {"sales": 9})], [SALES])
    after.clock.t = before.clock.t + 1
    after.acd._store = SnapshotStore(LiveSnapshot(old, [], snap.entries))  # type: ignore[assignment]
    assert await after.acd.restore() == 1
    assert after.states() == {"alice": "wrap_up"}
    assert after.acd._state.wrapping == {}
    after.clock.t = until  # type: ignore[assignment]
    after.acd.tick()
    assert after.states() == {"alice": "available"}  # the wrap-up still ends on time


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
    standby.acd._store = SnapshotStore(LiveSnapshot({}, [], []))  # type: ignore[assignment]
    await standby.acd.take_over({"sw": []})
    await standby.acd.kpis_caught_up()
    since, until, exclude = reader.calls[-1][1], reader.calls[-1][2], reader.calls[-1][5]
    assert (since, until, exclude) == (1_000_020.0, standby.clock.t, ["e1"])
    kpis = standby.acd.queue_view("sales")["kpis"]
    assert (kpis["answered"], kpis["abandoned"]) == (3, 1)
    assert kpis["aht_s"] == pytest.approx((11.0 + 32.0 + 32.0) / 3)
    # Taken over again later: nothing is read twice.
    await standby.acd.take_over({"sw": []})
    await standby.acd.kpis_caught_up()
    assert standby.acd.queue_view("sales")["kpis"] == kpis


async def test_a_takeover_whose_read_times_out_keeps_its_figures_and_still_confirms() -> None:
    standby = rig([agent("alice", {"sales": 9})], [SALES])
    await standby.acd.restore_finished(_Reader([]))
    standby.clock.t += 30
    _ended(standby, 1, "answered", wait=2.0, talk=10.0, wrap=1.0)

    async def down(*args: Any) -> list[dict[str, Any]]:
        raise TimeoutError("storage timeout")

    standby.acd._finished = down
    standby.acd._store = SnapshotStore(LiveSnapshot({}, [], []))  # type: ignore[assignment]
    await standby.acd.take_over({"sw": []})
    await standby.acd.kpis_caught_up()
    assert standby.acd.queue_view("sales")["kpis"]["answered"] == 1
    # Read next time from where the last read ended, the entry still left out.
    reader = _Reader([])
    standby.acd._finished = reader
    await standby.acd.take_over({"sw": []})
    await standby.acd.kpis_caught_up()
    assert reader.calls[-1][5] == ["e1"]


async def test_a_takeover_serves_its_queues_while_postgresql_does_not_answer() -> None:
    # Regression: the takeover awaited the KPI read before confirming the restored legs
    # and returning (the queues are served only then: engine/cluster/takeover.py), so a
    # black-holed PostgreSQL held the queues for a storage timeout per queue.
    standby = rig([agent("alice", {"sales": 9})], [SALES])
    await standby.acd.restore_finished(_Reader([]))
    asked = asyncio.Event()

    async def black_hole(*args: Any) -> list[dict[str, Any]]:
        asked.set()
        await asyncio.Event().wait()  # never answers
        return []

    standby.acd._finished = black_hole
    standby.acd._store = SnapshotStore(LiveSnapshot({}, [], []))  # type: ignore[assignment]
    await asyncio.wait_for(standby.acd.take_over({"sw": []}), 5)
    await asyncio.wait_for(asked.wait(), 5)  # the read is out, in the background
    _ready(standby, "alice")
    standby.calls.caller("c9")
    await standby.acd.enter("c9", queue="sales")
    await standby.settle()
    assert standby.states() == {"alice": "reserved"}  # offered while the read hangs
    standby.acd.close()
    await standby.acd.kpis_caught_up()  # cancelled by close, not left running


async def test_redis_keeps_the_wrap_up_entry_with_the_agent_and_drops_it_after(
    redis_store: RedisStore, redis_prefix: str
) -> None:
    store = AcdLiveStore(redis_store.client, redis_prefix)
    status: dict[str, Any] = {"agent_id": "alice", "state": "wrap_up", "call_id": "c1"}
    row = {"entry_id": "e1", "call_id": "c1", "phase": "ended", "ended_at": 1024.0}
    await store.apply({("agent", "alice"): StoredAgent("alice", status, "s", "", "sw", None, row)})
    assert (await store.snapshot()).agents["alice"].wrapping == row
    # The wrap-up over: the field goes (HSET alone would keep it).
    status = {**status, "state": "available", "call_id": None}
    await store.apply({("agent", "alice"): StoredAgent("alice", status, "s", "", "sw")})
    assert (await store.snapshot()).agents["alice"].wrapping is None
    # A record written before the field existed loads as before.
    key = f"{redis_prefix}acd:agent:bob"
    await redis_store.client.hset(key, mapping={"status": '{"agent_id":"bob"}', "switch": "sw"})
    await redis_store.client.sadd(f"{redis_prefix}acd:agents", "bob")
    bob = (await store.snapshot()).agents["bob"]
    assert (bob.status, bob.wrapping) == ({"agent_id": "bob"}, None)
