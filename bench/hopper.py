"""Hopper pick latency on a 1,000,000-contact campaign.

``python -m bench.hopper`` (after ``python -m bench.contacts_import``, which leaves the
``bench_contacts`` database with campaign ``bench``): turns the imported list into a campaign
in mid-flight (half the contacts done, some dialling or held, due and future retries,
callbacks, attempt counts, a global and a campaign DNC list), then times
:meth:`engine.campaigns.hopper.Hopper.pick` (limit 50) at several instants, whose open zones
come from :func:`engine.campaigns.windows.open_timezones` over the campaign's zones: US and UK
open, only China open, only the US West, and a near-empty case (only Hawaii and Alaska, a small
share of the list: the index scan walks far for each row). p50/p99 per case, and each case's
EXPLAIN (ANALYZE, BUFFERS), the CPU time the PostgreSQL backends spent per pick (from /proc,
as bench/contacts_import.py does: what the pick costs whatever else runs), the load average
and the time of the zones query (:meth:`Hopper.distinct_timezones`, refreshed once a minute).
Writes ``reports/hopper.json``. Figures only.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.contacts_import import cpu_s
from engine.campaigns.hopper import PICK, Hopper
from engine.campaigns.model import CallingWindow
from engine.campaigns.windows import open_timezones

ROOT = Path(__file__).resolve().parent.parent
DSN = os.environ.get(
    "ENGINE_BENCH_HOPPER_DSN", "postgresql://postgres@127.0.0.1:5432/bench_contacts"
)
CAMPAIGN = "bench"
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # a Wednesday
RUNS = 300

MIX = """
UPDATE contacts SET
  state = CASE WHEN h < 50 THEN 'done' WHEN h < 53 THEN 'dialing' WHEN h < 55 THEN 'held'
          ELSE 'ready' END,
  final_outcome = CASE WHEN h < 50 THEN 'no_answer' END,
  rank = CASE WHEN h BETWEEN 55 AND 69 THEN 1 WHEN h = 70 THEN 0 ELSE 2 END,
  next_at = CASE WHEN h BETWEEN 55 AND 70
                 THEN $2::timestamptz + ((contact_id % 240) - 120) * interval '1 minute'
                 WHEN h BETWEEN 53 AND 54 THEN $2::timestamptz + interval '1 hour'
                 ELSE '-infinity' END,
  attempts = CASE WHEN h BETWEEN 55 AND 69 THEN 1 + (contact_id % 3) ELSE 0 END,
  attempts_day = CASE WHEN h BETWEEN 55 AND 62 THEN $2::date END,
  attempts_today = CASE WHEN h BETWEEN 55 AND 62 THEN 1 + (contact_id % 2) ELSE 0 END
FROM (SELECT contact_id AS id, (hashtext(phone) & 2147483647) % 100 AS h FROM contacts
      WHERE campaign_id = $1) x
WHERE contacts.contact_id = x.id
"""
DNC = """
INSERT INTO dnc (campaign_id, phone, source)
SELECT CASE WHEN contact_id % 3 = 0 THEN $1 ELSE '' END, phone, 'bench' FROM contacts
WHERE campaign_id = $1 AND (hashtext(phone || 'dnc') & 2147483647) % 100 = 0
ON CONFLICT DO NOTHING
"""

CASES = {
    "us_and_uk_open": NOW,  # 15:00 UTC: New York 10:00, London 15:00, LA 07:00 (shut)
    "us_all_open": NOW + timedelta(hours=3),  # 18:00 UTC: LA 10:00, London 18:00
    "china_only": NOW - timedelta(hours=13),  # 02:00 UTC: Shanghai 10:00, US night
    "us_west_only": NOW + timedelta(hours=9),  # 00:00 UTC: LA 16:00, Honolulu 14:00
    "hawaii_alaska_only": NOW + timedelta(hours=14),  # 05:00 UTC: HNL 19:00, ANC 20:00 shut
}


async def prepare(conn: asyncpg.Connection) -> dict[str, Any]:
    started = time.perf_counter()
    await conn.execute("DELETE FROM dnc")
    await conn.execute(MIX, CAMPAIGN, NOW, timeout=600)
    await conn.execute(DNC, CAMPAIGN, timeout=600)
    await conn.execute("VACUUM ANALYZE contacts", timeout=600)
    await conn.execute("ANALYZE dnc", timeout=600)
    rows = await conn.fetch(
        "SELECT state, count(*) AS n FROM contacts WHERE campaign_id = $1 GROUP BY state",
        CAMPAIGN,
    )
    dnc = await conn.fetchval("SELECT count(*) FROM dnc")
    return {
        "states": {r["state"]: r["n"] for r in rows},
        "dnc_numbers": dnc,
        "prepare_s": round(time.perf_counter() - started, 1),
    }


async def measure() -> dict[str, Any]:
    conn = await asyncpg.connect(DSN)
    try:
        setup = await prepare(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=2)
    try:
        hopper = Hopper(pool, timeout_s=5)
        # Both pooled connections open, so their backends' CPU can be read around each case.
        async with pool.acquire() as a, pool.acquire() as b:
            backends = [
                await a.fetchval("SELECT pg_backend_pid()"),
                await b.fetchval("SELECT pg_backend_pid()"),
            ]
        zones_ms = []
        for _ in range(5):
            t = time.perf_counter()
            zones = await hopper.distinct_timezones(CAMPAIGN, refresh=True)
            zones_ms.append((time.perf_counter() - t) * 1000)
        window = CallingWindow()
        out: dict[str, Any] = {
            "zones": len(zones),
            "zones_query_ms_median_of_5": round(statistics.median(zones_ms), 1),
            **setup,
            "loadavg_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()],
            "cases": {},
        }
        # The worst shape: the only open zone is the campaign's smallest (the scan walks the
        # ready rows of every other zone before it finds 50).
        rare = await pool.fetchrow(
            "SELECT tz, count(*) AS n FROM contacts WHERE campaign_id = $1 AND state = 'ready'"
            " GROUP BY tz ORDER BY count(*) LIMIT 1",
            CAMPAIGN,
        )
        out["rarest_zone"] = {"tz": rare["tz"], "ready": rare["n"]}
        cases = {name: (now, open_timezones(window, zones, now)) for name, now in CASES.items()}
        cases["rarest_zone_only"] = (NOW, [rare["tz"]])
        for name, (now, open_tzs) in cases.items():
            args = dict(limit=50, now=now, open_tzs=open_tzs, max_attempts=3, max_per_day=2)
            picked = await hopper.pick(CAMPAIGN, **args)  # type: ignore[arg-type]
            times = []
            cpu0 = sum(cpu_s(pid) for pid in backends)
            for _ in range(RUNS):
                t = time.perf_counter()
                await hopper.pick(CAMPAIGN, **args)  # type: ignore[arg-type]
                times.append((time.perf_counter() - t) * 1000)
            backend_cpu_ms = (sum(cpu_s(pid) for pid in backends) - cpu0) * 1000 / RUNS
            times.sort()
            plan = await _plan(pool, now, open_tzs)
            out["cases"][name] = {
                "open_zones": open_tzs,
                "picked": len(picked),
                "p50_ms": round(statistics.median(times), 2),
                "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
                "max_ms": round(times[-1], 2),
                "postgres_cpu_ms_per_pick": round(backend_cpu_ms, 2),
                "plan": plan,
            }
        out["loadavg_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return out
    finally:
        await pool.close()


async def _plan(pool: asyncpg.Pool, now: datetime, open_tzs: list[str]) -> list[str]:
    """The plan of the fresh contacts' SELECT for priority 0, the most common."""
    rows = await pool.fetch(
        "EXPLAIN (ANALYZE, BUFFERS) " + PICK, CAMPAIGN, now, open_tzs, 3, 2, 50, [2], [0]
    )
    return [r[0] for r in rows]


def run() -> dict[str, Any]:
    result = asyncio.run(measure())
    out = ROOT / "reports" / "hopper.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> int:
    result = run()
    for name, case in result["cases"].items():
        print(
            f"{name}: {len(case['open_zones'])} open zones, picked {case['picked']}, "
            f"p50 {case['p50_ms']} ms, p99 {case['p99_ms']} ms, max {case['max_ms']} ms, "
            f"PostgreSQL CPU {case['postgres_cpu_ms_per_pick']} ms a pick"
        )
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
