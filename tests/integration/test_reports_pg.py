"""KPI definitions on a hand-made trace, against real PostgreSQL: the rows go in through the
lanes' own sinks, the interval tables are filled incrementally between batches (as the engine's
refresher does), and a rebuild from the raw rows must give the very same rows. Every expected
figure below is worked out by hand from the trace (docs/reports.md "Definitions")."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.acd.history import AcdRepository
from engine.acd.kpi import FinishedEntry, queue_kpis
from engine.campaigns.stats import figures_of, period_counts
from engine.campaigns.store import CampaignStore
from engine.core.errors import InvalidRequest
from engine.dialer.sim.metrics import ShiftTally
from engine.reports import query
from engine.reports.fill import FillSettings, rebuild, refresh_dirty
from engine.store.outbox import Record
from engine.store.pg.cdr import CdrRepository, CdrRow
from engine.store.pg.pool import PgStore

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a bucket start
SETTINGS = FillSettings(service_level_s={"sales": 20.0}, short_abandon_s={"sales": 5.0})
TABLES = (
    "report_queue_intervals",
    "report_agent_intervals",
    "report_campaign_intervals",
    "report_campaign_dispositions",
    "report_trunk_intervals",
    "report_queue_days",
    "report_agent_days",
    "report_campaign_days",
    "report_campaign_disposition_days",
    "report_trunk_days",
)


def t(s: float) -> float:
    return (T0 + timedelta(seconds=s)).timestamp()


def dt(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def _at(s: float | None) -> datetime | None:
    return None if s is None else dt(s)


def entry(n: int, entered: float, outcome: str, wait: float, **kw: Any) -> dict[str, Any]:
    answered = t(entered + wait) if outcome == "answered" else None
    talk = kw.get("talk")
    ended = t(entered + wait + (talk or 0))
    return {
        "kind": "queue_entry",
        "entry_id": f"e{n}",
        "call_id": f"call-e{n}",
        "queue": "sales",
        "priority": 1,
        "entered_at": t(entered),
        "answered_at": answered,
        "ended_at": ended,
        "outcome": outcome,
        "agent_id": kw.get("agent"),
        "wait_s": wait,
        "talk_s": talk,
        "wrap_up_s": kw.get("wrap"),
        "strategy": "longest_idle",
        "version": kw.get("version", 1),
    }


def state(n: int, agent: str, at: float, new: str, prev: str, d: float) -> dict[str, Any]:
    return {
        "kind": "agent_state",
        "change_id": f"{agent}-{n}",
        "agent_id": agent,
        "at": t(at),
        "state": new,
        "previous": prev,
        "time_in_previous_s": d,
    }


# Queue "sales" (service level 20 s, short abandon 5 s), all entered in the first bucket.
ENTRIES_1 = [
    entry(1, 60, "answered", 10, talk=100, wrap=20, agent="alice"),  # within SL
    entry(2, 120, "answered", 30, talk=200, wrap=40, agent="carol"),  # outside SL
    entry(3, 180, "abandoned", 3),  # short abandon: in no rate
    entry(4, 240, "abandoned", 50),
    entry(5, 300, "overflow-ivr", 90),
    # Answered in the second bucket (by bob), wrap-up not over yet at first.
    entry(6, 840, "answered", 70, talk=60, agent="bob"),
]
ENTRY_6_WRAPPED = entry(6, 840, "answered", 70, talk=60, wrap=10, agent="bob", version=2)

# alice: available 65 s, reserved 5 s, on call 100 s, wrap-up 20 s, available 810 s (710 s in
# the first bucket, 100 s in the second), paused 600 s (second bucket).
STATES_1 = [
    state(0, "alice", 0, "available", "logged_out", 0),
    state(1, "alice", 65, "reserved", "available", 65),
    state(2, "alice", 70, "on_call", "reserved", 5),
    state(3, "alice", 170, "wrap_up", "on_call", 100),
]
STATES_2 = [
    state(4, "alice", 190, "available", "wrap_up", 20),
    state(5, "alice", 1000, "paused", "available", 810),
    state(6, "alice", 1600, "available", "paused", 600),
]


def cdr(n: int, start: float, end: float, ring: float | None, answer: float | None) -> CdrRow:
    return CdrRow(
        call_id=f"leg-{n}",
        switch="sw1",
        direction="outbound",
        channel=f"PJSIP/t1-{n}",
        destination="+15550100",
        trunk="t1",
        started_at=dt(start),
        ringing_at=dt(ring) if ring is not None else None,
        answered_at=dt(answer) if answer is not None else None,
        ended_at=dt(end),
        final_state="ended",
    )


# Trunk t1: 4 seizures, 2 answered (ASR 50 %); post-dial delay 2, 4 and 3 s (the last
# answered without a ringing: delay to the answer); no delay for the leg refused at once.
CDRS_1 = [cdr(1, 10, 80, 12, 20), cdr(2, 30, 60, 34, None)]
CDRS_2 = [cdr(3, 40, 41, None, None), cdr(4, 50, 63, None, 53)]

# Campaign c1: 6 attempts created in the first bucket; one still pending (written before its
# originate: a dial all the same, as GET /v1/campaigns/{id}/stats counts it).
ATTEMPTS = [
    # id, outcome, answered, agent, abandoned, disposition
    ("a1", "human", True, True, False, "sale"),
    ("a2", "human", True, True, False, "not_interested"),
    ("a3", "abandoned", True, False, True, None),
    ("a4", "machine", True, False, False, None),
    ("a5", "no_answer", False, False, False, None),
]


async def _records(repo: AcdRepository, payloads: list[dict[str, Any]]) -> None:
    await repo.write([Record(i, 0.0, p) for i, p in enumerate(payloads)])


async def _snapshot(pg: PgStore) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table in TABLES:
        rows = await pg.pool.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        out[table] = [dict(r) for r in rows]
    return out


async def _campaign_batch_1(pg: PgStore) -> None:
    await pg.pool.execute(
        "INSERT INTO campaigns (campaign_id, spec) VALUES ('c1', $1::jsonb) ON CONFLICT DO NOTHING",
        {"abandon_period": "ofcom_24h", "abandon_limit": 0.03, "trunk_group": "g", "queue": "q"},
    )
    for i, (aid, *_rest) in enumerate([*ATTEMPTS, ("a6",)]):
        await pg.pool.execute(
            "INSERT INTO campaign_attempts (attempt_id, campaign_id, contact_id, call_id, fence, "
            "seq, phone, created_at) VALUES ($1, 'c1', $2, $3, 1, 1, '+15550100', $4)",
            aid,
            i,
            f"call-{aid}",
            dt(100 + i),
        )


async def _campaign_batch_2(pg: PgStore) -> None:
    for aid, outcome, answered, agent, abandoned, disp in ATTEMPTS:
        await pg.pool.execute(
            "UPDATE campaign_attempts SET state = 'done', outcome = $2, answered_at = $3, "
            "agent_at = $4, abandoned = $5, disposition = $6, ended_at = $7 WHERE attempt_id = $1",
            aid,
            outcome,
            dt(120) if answered else None,
            dt(125) if agent else None,
            abandoned,
            disp,
            dt(300),
        )


async def _clean(pg: PgStore) -> None:
    for table in (*TABLES, "report_dirty"):
        await pg.pool.execute(f"DELETE FROM {table}")
    await pg.pool.execute("DELETE FROM queue_entries WHERE call_id LIKE 'call-e%'")
    await pg.pool.execute("DELETE FROM agent_state_history WHERE change_id LIKE 'alice-%'")
    await pg.pool.execute("DELETE FROM cdr WHERE call_id LIKE 'leg-%'")
    await pg.pool.execute("DELETE FROM campaigns WHERE campaign_id = 'c1'")


@pytest.fixture
async def pg(pg_store: PgStore) -> AsyncIterator[PgStore]:
    # The session database is shared with other modules (their engines load its campaigns).
    await _clean(pg_store)
    yield pg_store
    await _clean(pg_store)


async def test_incremental_fill_equals_rebuild_and_the_hand_worked_figures(pg: PgStore) -> None:
    acd = AcdRepository(pg.pool)
    cdrs = CdrRepository(pg.pool)
    # Batch 1 through the sinks, then the refresher's round (as the engine runs it).
    await _records(acd, [*STATES_1, *ENTRIES_1])
    await cdrs.insert_many(CDRS_1)
    await _campaign_batch_1(pg)
    assert await refresh_dirty(pg.pool, SETTINGS) > 0
    # Batch 2 changes buckets already filled: a later wrap-up, states closing across the
    # bucket boundary, more legs, attempts ending.
    await _records(acd, [*STATES_2, ENTRY_6_WRAPPED])
    await cdrs.insert_many(CDRS_2)
    await _campaign_batch_2(pg)
    while await refresh_dirty(pg.pool, SETTINGS, limit=2):
        pass
    incremental = await _snapshot(pg)
    await rebuild(pg.pool, T0 - timedelta(hours=1), T0 + timedelta(hours=2), SETTINGS)
    assert await _snapshot(pg) == incremental
    assert await pg.pool.fetchval("SELECT count(*) FROM report_dirty") == 0

    params = query.parse_params({"from": T0.isoformat(), "to": dt(3600).isoformat()})
    queues = (await query.report(pg.pool, "queues", params))["rows"]
    assert len(queues) == 1  # every entry entered in the first bucket
    q = queues[0]
    assert (q["start"], q["offered"], q["answered"], q["abandoned"]) == (
        "2026-11-02T09:00:00Z",
        6,
        3,
        1,
    )
    assert (q["short_abandoned"], q["overflowed"], q["answered_in_sl"]) == (1, 1, 1)
    assert q["service_level_pct"] == 25.0  # 1 within 20 s / (3 answered + 1 abandoned)
    assert q["abandon_pct"] == 25.0  # 1 / (3 + 1); the 3 s abandon is short
    assert q["asa_s"] == round((10 + 30 + 70) / 3, 3)
    assert q["aht_s"] == round((100 + 20 + 200 + 40 + 60 + 10) / 3, 3)
    assert q["max_wait_s"] == 90.0
    # The live view's function on the same entries agrees (one definition of each KPI).
    finished = [
        FinishedEntry(
            e["entered_at"],
            e["ended_at"],
            e["outcome"],
            e["wait_s"],
            e["talk_s"] or 0.0,
            e["wrap_up_s"],
        )
        for e in [*ENTRIES_1[:5], ENTRY_6_WRAPPED]
    ]
    live = queue_kpis(finished, [], [], t(3600), 20.0, short_abandon_s=5.0)
    assert live.service_level_pct == q["service_level_pct"]
    assert round(live.asa_s or 0, 3) == q["asa_s"]
    assert round(live.aht_s or 0, 3) == q["aht_s"]
    assert live.abandon_pct == q["abandon_pct"]

    agents = {
        (r["agent_id"], r["start"]): r
        for r in (await query.report(pg.pool, "agents", params))["rows"]
    }
    a0 = agents[("alice", "2026-11-02T09:00:00Z")]
    assert (a0["available_s"], a0["reserved_s"], a0["on_call_s"], a0["wrap_up_s"]) == (
        775.0,
        5.0,
        100.0,
        20.0,
    )
    assert a0["occupancy_pct"] == round(100 * 125 / 900, 3)  # busy / (busy + available)
    assert (a0["answered"], a0["talk_s"]) == (1, 100.0)
    a1 = agents[("alice", "2026-11-02T09:15:00Z")]
    assert (a1["available_s"], a1["paused_s"], a1["occupancy_pct"]) == (100.0, 600.0, 0.0)
    assert a1["paused_pct"] == round(100 * 600 / 700, 3)  # utilisation by state
    b1 = agents[("bob", "2026-11-02T09:15:00Z")]  # answered at 09:15:10
    assert (b1["answered"], b1["talk_s"], b1["occupancy_pct"]) == (1, 60.0, None)

    doc = await query.report(pg.pool, "campaigns", params)
    (c,) = doc["rows"]
    assert (c["dials"], c["answered"], c["human"], c["machine"], c["abandoned"]) == (6, 4, 3, 1, 1)
    assert c["connected"] == 2
    assert c["dispositions"] == {"not_interested": 1, "sale": 1}
    assert c["conversion_pct"] == {"not_interested": 50.0, "sale": 50.0}
    assert c["abandon_pct"] == round(100 / 3, 3)
    period = doc["abandon_period"]["c1"]
    assert (period["period"], period["start"]) == ("ofcom_24h", "2026-11-01T10:00:00Z")
    assert (period["abandoned"], period["human"], period["over_limit"]) == (1, 3, True)

    (tr,) = (await query.report(pg.pool, "trunks", params))["rows"]
    assert (tr["seizures"], tr["answered"], tr["asr_pct"]) == (4, 2, 50.0)
    assert (tr["pdd_calls"], tr["pdd_s"]) == (3, 3.0)  # (2 + 4 + 3) / 3

    total = query.parse_params(
        {"from": T0.isoformat(), "to": dt(3600).isoformat(), "interval": "total"}
    )
    (at,) = [
        r
        for r in (await query.report(pg.pool, "agents", total))["rows"]
        if r["agent_id"] == "alice"
    ]
    assert at["available_s"] == 875.0 and at["start"] == "2026-11-02T09:00:00Z"

    # A whole day is read from the day tables: the same figures as its 15-minute rows.
    day = {"from": "2026-11-02T00:00:00Z", "to": "2026-11-03T00:00:00Z"}
    for kind in query.KINDS:
        by_day = await query.report(pg.pool, kind, query.parse_params({**day, "interval": "1d"}))
        fine = await query.report(pg.pool, kind, query.parse_params(day))
        key = {"queues": "queue", "agents": "agent_id", "campaigns": "campaign_id"}.get(
            kind, "trunk"
        )
        for row in by_day["rows"]:
            assert row["start"] == "2026-11-02T00:00:00Z"
            parts = [r for r in fine["rows"] if r[key] == row[key]]
            for col in ("answered", "offered", "on_call_s", "seizures", "dials", "pdd_s"):
                if col in row:
                    assert row[col] == pytest.approx(sum(r[col] for r in parts)), (kind, col)
        assert {r[key] for r in by_day["rows"]} == {r[key] for r in fine["rows"]}
    agent_days = await pg.pool.fetchval(
        "SELECT count(*) FROM report_agent_days WHERE bucket = $1",
        datetime(2026, 11, 2, tzinfo=UTC),
    )
    assert agent_days == 3  # alice, bob, carol


async def test_short_abandon_threshold_is_configurable(pg: PgStore) -> None:
    await _records(AcdRepository(pg.pool), ENTRIES_1)
    await rebuild(pg.pool, T0, dt(900), FillSettings())  # defaults: 20 s, no short abandons
    params = query.parse_params({"from": T0.isoformat(), "to": dt(900).isoformat()})
    (q,) = (await query.report(pg.pool, "queues", params))["rows"]
    assert (q["abandoned"], q["short_abandoned"], q["abandon_pct"]) == (2, 0, 40.0)
    await rebuild(pg.pool, T0, dt(900), FillSettings(default_short_abandon_s=60.0))
    (q,) = (await query.report(pg.pool, "queues", params))["rows"]
    assert (q["abandoned"], q["short_abandoned"], q["abandon_pct"]) == (0, 2, 0.0)


async def test_a_report_too_long_for_one_answer_asks_for_a_longer_interval(
    pg: PgStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _records(AcdRepository(pg.pool), [*STATES_1, *STATES_2])
    await rebuild(pg.pool, T0, dt(3600), FillSettings())
    monkeypatch.setattr(query, "MAX_ROWS", 1)
    params = query.parse_params({"from": T0.isoformat(), "to": dt(3600).isoformat()})
    with pytest.raises(InvalidRequest) as err:
        await query.report(pg.pool, "agents", params)  # alice in two buckets
    assert "more than 1 rows at 15m; ask for a longer interval" in str(err.value)
    total = query.parse_params(
        {**{"from": T0.isoformat(), "to": dt(3600).isoformat()}, "interval": "total"}
    )
    assert len((await query.report(pg.pool, "agents", total))["rows"]) == 1


# Campaign c1 across a bucket boundary (B0 = 09:00, B1 = 09:15, B2 = 09:30): three attempts
# dialled in B0 and answered in B1, and none dialled in B1 (so only their answers can mark it
# for the refresher). (id, created, answered, agent, ended in seconds from T0; outcome,
# abandoned, disposition)
CROSSING = [
    ("x1", 890, 905, None, 907, "abandoned", True, None),  # dropped in B1
    ("x2", 895, 902, 903, 1200, "human", False, "sale"),  # to an agent in B1
    ("x3", 898, 901, None, 930, "machine", False, None),
    ("x4", 300, 310, 312, 1500, "human", False, "sale"),  # answered in B0, ended in B1
    ("x5", 320, 330, 331, 400, "human", False, None),
    ("x6", 1810, None, None, 1840, "no_answer", False, None),  # in B2: a dial alone
]


async def test_a_campaign_bucket_counts_what_the_stats_period_and_the_simulator_count(
    pg: PgStore,
) -> None:
    """A report bucket's campaign figures are what ``GET /v1/campaigns/{id}/stats``'s period
    query counts over the same 15 minutes (engine/campaigns/period.py): a dial in its dial
    bucket, all that follows an answer in the answer's, as the simulator books live answers and
    abandons. The report used to count the three attempts dialled at 09:14 and answered at
    09:15 in the 09:00 bucket. Written as the lane writes them (pending, answered, ended,
    disposed), refreshed after each step: the rebuild gives the same rows."""
    await pg.pool.execute(
        "INSERT INTO campaigns (campaign_id, spec) VALUES ('c1', $1::jsonb)",
        {"abandon_period": "ofcom_24h", "abandon_limit": 0.03, "trunk_group": "g", "queue": "q"},
    )
    for i, (aid, created, *_rest) in enumerate(CROSSING):
        await pg.pool.execute(
            "INSERT INTO campaign_attempts (attempt_id, campaign_id, contact_id, call_id, fence, "
            "seq, phone, created_at) VALUES ($1, 'c1', $2, $3, 1, 1, '+15550100', $4)",
            aid,
            i,
            f"call-{aid}",
            dt(created),
        )
    # (statement, its arguments from an attempt), in the lane's order
    steps: list[tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]]] = [
        (
            "UPDATE campaign_attempts SET state = 'dialing', answered_at = $2, agent_at = $3 "
            "WHERE attempt_id = $1",
            lambda x: (_at(x[2]), _at(x[3])),
        ),
        (
            "UPDATE campaign_attempts SET state = 'done', ended_at = $2, outcome = $3, "
            "abandoned = $4 WHERE attempt_id = $1",
            lambda x: (_at(x[4]), x[5], x[6]),
        ),
        ("UPDATE campaign_attempts SET disposition = $2 WHERE attempt_id = $1", lambda x: (x[7],)),
    ]
    for sql, args in steps:
        while await refresh_dirty(pg.pool, SETTINGS, limit=1):
            pass
        for x in CROSSING:
            await pg.pool.execute(sql, x[0], *args(x))
    while await refresh_dirty(pg.pool, SETTINGS, limit=1):
        pass
    incremental = await _snapshot(pg)
    await rebuild(pg.pool, T0 - timedelta(hours=1), T0 + timedelta(hours=2), SETTINGS)
    assert await _snapshot(pg) == incremental

    params = query.parse_params({"from": T0.isoformat(), "to": dt(2700).isoformat()})
    rows = (await query.report(pg.pool, "campaigns", params))["rows"]
    assert [r["start"] for r in rows] == [f"2026-11-02T09:{m}:00Z" for m in ("00", "15", "30")]
    store = CampaignStore(pg.pool)
    # (dials, answers, human, machine, abandoned, connected, abandon_pct) per bucket
    expected = [(5, 2, 2, 0, 0, 2, 0.0), (0, 3, 2, 1, 1, 1, 50.0), (1, 0, 0, 0, 0, 0, None)]
    for b, row in enumerate(rows):
        start = dt(900 * b)
        since = await period_counts(store, "c1", start)
        after = await period_counts(store, "c1", start + timedelta(minutes=15))
        span = {k: since[k] - after[k] for k in since}  # the stats' counts over the bucket
        pct = round(figures_of(span).pct, 3) if span["human"] else None  # null: none counted
        assert (*span.values(), pct) == expected[b], b
        assert (
            row["dials"],
            row["answered"],
            *(row[k] for k in ("human", "machine", "abandoned", "connected", "abandon_pct")),
        ) == expected[b], b
        # The simulator's tally of a 15-minute "shift" starting at the bucket.
        tally = ShiftTally(shift_s=900)
        for _a, _c, answered, _g, _e, outcome, dropped, _d in CROSSING:
            if answered is not None and outcome in ("human", "abandoned"):
                tally.live_answer(answered - 900 * b, abandoned=dropped)
        sim = tally.figures()
        assert (row["human"], row["abandoned"]) == (sim.live_answers, sim.abandons), b
    # Dispositions follow their connection into the answer's bucket.
    assert [(r["dispositions"], r["conversion_pct"]) for r in rows] == [
        ({"sale": 1}, {"sale": 50.0}),
        ({"sale": 1}, {"sale": 100.0}),
        ({}, {}),
    ]
