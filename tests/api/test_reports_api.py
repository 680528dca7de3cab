"""The reports API on the running engine, real PostgreSQL: a seeded day of history (COPY, so
the triggers mark its buckets), the engine's own refresher fills the intervals, and the
reports come back as JSON and CSV with the same figures as the raw rows."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from scripts.reports_seed import seed, unseed
from tests.api.conftest import Api

DAY = datetime(2026, 11, 3, tzinfo=UTC)
RANGE = {"from": DAY.isoformat(), "to": (DAY + timedelta(days=1, hours=1)).isoformat()}


@pytest.fixture(scope="module")
async def counts(api: Api, pg_dsn: str) -> AsyncIterator[dict[str, int]]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        counts = await seed(conn, DAY, 1, 1500, queues=3, agents=12, trunks=2, campaigns=2)
        assert api.engine.reports is not None
        assert await api.engine.reports.round() > 0  # what the engine's loop does every refresh_s
        yield counts
        await unseed(conn)  # the session database is shared with other modules' engines
    finally:
        await conn.close()


async def test_reports_json_and_csv_over_a_seeded_day(api: Api, counts: dict[str, int]) -> None:
    client = api.client
    status, doc, _ = await client.request("GET", "/reports/queues", params=RANGE)
    assert status == 200, doc
    inbound_entries = sum(r["offered"] for r in doc["rows"])
    # Every queue entry of the day is offered in exactly one row (campaign queues included).
    assert inbound_entries == counts["queue_entries"]
    assert {r["queue"] for r in doc["rows"]} == {
        "queue00",
        "queue01",
        "queue02",
        "seed-camp0-q",
        "seed-camp1-q",
    }
    for r in doc["rows"]:
        assert (
            r["answered"] + r["abandoned"] + r["short_abandoned"] + r["overflowed"] <= r["offered"]
        )
        if r["answered"] + r["abandoned"]:
            assert r["service_level_pct"] == round(
                100 * r["answered_in_sl"] / (r["answered"] + r["abandoned"]), 3
            )

    status, text, resp = await client.request(
        "GET", "/reports/queues", params=RANGE, headers={"Accept": "text/csv"}
    )
    assert status == 200 and resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(doc["rows"])
    assert [(r["queue"], r["start"], int(r["offered"])) for r in rows] == [
        (r["queue"], r["start"], r["offered"]) for r in doc["rows"]
    ]

    status, day, _ = await client.request(
        "GET", "/reports/trunks", params={**RANGE, "interval": "total"}
    )
    assert status == 200
    assert sum(r["seizures"] for r in day["rows"]) == counts["cdr"]
    for r in day["rows"]:
        assert r["asr_pct"] == round(100 * r["answered"] / r["seizures"], 3)
        assert r["pdd_s"] is not None and 0.5 <= r["pdd_s"] <= 4.0  # seeded 0.5..4 s

    status, camp, _ = await client.request(
        "GET", "/reports/campaigns", params={**RANGE, "interval": "1d", "format": "csv"}
    )
    assert status == 200
    crow = list(csv.DictReader(io.StringIO(camp)))
    assert sum(int(r["dials"]) for r in crow) == counts["campaign_attempts"]
    assert all(r["period_limit_pct"] == "3.0" for r in crow)

    status, agents, _ = await client.request(
        "GET", "/reports/agents", params={**RANGE, "interval": "1h"}
    )
    assert status == 200 and agents["rows"]
    assert all(0 <= (r["occupancy_pct"] or 0) <= 100 for r in agents["rows"])


async def test_ab_results_and_bad_parameters(api: Api, counts: dict[str, int]) -> None:
    client = api.client
    status, res, _ = await client.request(
        "GET", "/reports/experiments/splits/greeting", params=RANGE
    )
    assert status == 200, res
    assert [v["variant"] for v in res["variants"]] == ["long", "short"]
    assert sum(v["n"] for v in res["variants"]) > 0
    assert res["verdict"]
    status, err, _ = await client.request(
        "GET", "/reports/queues", params={**RANGE, "interval": "5m"}
    )
    assert status == 400 and err["error_id"] == "invalid-request"
    assert err["message"].startswith("interval: expected one of")
    status, err, _ = await client.request("GET", "/reports/trunks", params={"to": RANGE["to"]})
    assert status == 400 and err["message"].startswith("from: required")
