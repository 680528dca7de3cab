"""The live KPI window against real PostgreSQL: more than 5,000 entries in a day, read back at
start by the SQL sums (AcdRepository.kpi_buckets), and recomputed by the reports
(engine/reports) from the same rows: the three agree (one definition of each KPI)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from engine.acd.entries import Entry
from engine.acd.history import AcdRepository
from engine.acd.model import QueueSpec
from engine.reports import query
from engine.reports.fill import FillSettings, rebuild
from engine.store.outbox import Record
from engine.store.pg.pool import PgStore
from tests.unit.acd_fakes import Clock, Rig, agent, rig

QUEUE = f"kw{uuid.uuid4().hex[:8]}"  # the session's database is shared with other modules
SPEC = QueueSpec(QUEUE, skills={"sales": 5}, wrap_up_s=4.0)
T0 = datetime(2026, 3, 10, 8, 0, 20, tzinfo=UTC)
COUNT = 6000
STEP_S = 6.0


@pytest.fixture
async def pg(pg_store: PgStore) -> AsyncIterator[PgStore]:
    yield pg_store
    await pg_store.pool.execute("DELETE FROM queue_entries WHERE queue = $1", QUEUE)
    await pg_store.pool.execute("DELETE FROM report_queue_intervals WHERE queue = $1", QUEUE)


def _day(r: Rig) -> None:
    """COUNT entries end, one every STEP_S: abandons, overflows, answered calls (some still in
    wrap-up, some whose wrap-up ends only after the next entry ended)."""
    life, state = r.acd._life, r.acd._state
    records = life._records
    late: Entry | None = None
    for k in range(COUNT):
        r.clock.t += STEP_S
        now = r.clock.t
        if late is not None:
            # The agent's wrap-up is over after the entry ended (agent_desk.py's path).
            state.wrap_up_over(late, float(k % 7))
            records.save_entry_row(late)
            late = None
        wait = float(k % 41)
        e = Entry(f"e{k}", f"c{k}", f"l{k}", "sw", QUEUE, 1, now - wait - 30.0)
        if k % 4 == 0:
            e.entered_at = now - wait
            life.finish(e, "abandoned", now)
        elif k % 7 == 0:
            e.entered_at = now - 90.0
            life.finish(e, "overflow-ivr", now)
        else:
            e.answered_at = e.entered_at + wait
            e.talk_s = 30.0
            if k % 5 == 1:
                e.wrap_up_s = float(k % 9)
            life.finish(e, "answered", now)
            if k % 5 == 2:
                late = e


async def test_restore_and_reports_agree_with_the_live_figures_past_5000_entries(
    pg: PgStore,
) -> None:
    before = rig([agent("alice", {"sales": 9})], [SPEC], clock=Clock(T0.timestamp()))
    _day(before)
    live = before.acd.queue_view(QUEUE)["kpis"]
    assert live["answered"] + live["abandoned"] > 5000
    repo = AcdRepository(pg.pool, timeout_s=30.0)
    rows = before.history.of("queue_entry", "kind")
    for i in range(0, len(rows), 2000):
        await repo.write([Record(n, 0.0, p) for n, p in enumerate(rows[i : i + 2000], i)])

    # A restart: the window read back as sums per minute gives the same figures.
    after = rig([agent("alice", {"sales": 9})], [SPEC], clock=Clock(before.clock.t + 1))
    restored = await after.acd.restore_finished(repo.kpi_buckets)
    assert restored == live["answered"] + live["abandoned"]
    assert after.acd.queue_view(QUEUE)["kpis"] == live

    # The reports, from the same rows (no short-abandon threshold, as the live view).
    start = T0 - timedelta(hours=1)
    end = T0 + timedelta(seconds=COUNT * STEP_S + 3600)
    await rebuild(pg.pool, start, end, FillSettings(service_level_s={QUEUE: 20.0}))
    params = query.parse_params(
        {"from": start.isoformat(), "to": end.isoformat(), "interval": "total"}
    )
    (rep,) = [
        r for r in (await query.report(pg.pool, "queues", params))["rows"] if r["queue"] == QUEUE
    ]
    assert (rep["answered"], rep["abandoned"]) == (live["answered"], live["abandoned"])
    assert rep["service_level_pct"] == live["service_level_pct"]
    assert rep["abandon_pct"] == live["abandon_pct"]
    assert rep["asa_s"] == pytest.approx(live["asa_s"], abs=0.0011)
    assert rep["aht_s"] == pytest.approx(live["aht_s"], abs=0.0011)
