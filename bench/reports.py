"""Report query time over 30 days of a 1,000,000-call history (docs/reports.md "Bench").

Seeds a scratch database (``ENGINE_BENCH_PG_DSN``, default the local server; dropped after)
with ``scripts/reports_seed.py``'s history by COPY: 1,000,000 calls over 30 days, 20 queues,
200 agents, 8 trunks, 10 campaigns. Every COPY marks its buckets (the triggers of migration
0011); the bench then fills the intervals with ``reports rebuild`` over the 30 days, and
times the report reads (:func:`engine.reports.query.report`, what the API answers, JSON
built) for the whole 30-day range, each kind and interval, ``RUNS`` times: p50 and p95.

    python -m bench reports                     # make bench's way
    python bench/reports.py [--calls N]         # alone

Writes ``reports/reports.json``. Figures only: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from engine.reports import query  # noqa: E402
from engine.reports.fill import FillSettings, rebuild  # noqa: E402
from engine.store.pg.admin import create_database, drop_database  # noqa: E402
from engine.store.pg.pool import PgStore  # noqa: E402
from scripts.reports_seed import seed  # noqa: E402

SERVER_DSN = os.environ.get("ENGINE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
CALLS = 1_000_000
DAYS = 30
RUNS = 20
START = datetime(2026, 10, 1, tzinfo=UTC)
CASES = (
    ("queues", "15m"),
    ("queues", "1h"),
    ("queues", "1d"),
    ("agents", "1d"),
    ("agents", "total"),
    ("campaigns", "1h"),
    ("campaigns", "1d"),
    ("trunks", "15m"),
    ("trunks", "1d"),
)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(calls: int) -> dict[str, Any]:
    name = f"engine_bench_reports_{uuid.uuid4().hex[:8]}"
    dsn = await create_database(SERVER_DSN, name)
    result: dict[str, Any] = {"calls": calls, "days": DAYS, "runs": RUNS}
    try:
        async with PgStore(dsn, Path("."), min_size=1, max_size=4) as store:
            conn = await asyncpg.connect(dsn)
            try:
                t = time.perf_counter()
                counts = await seed(conn, START, DAYS, calls)
                result["seed_s"] = round(time.perf_counter() - t, 1)
                result["rows"] = counts
                await conn.execute("ANALYZE")
            finally:
                await conn.close()
            end = START + timedelta(days=DAYS)
            t = time.perf_counter()
            await rebuild(store.pool, START, end, FillSettings(), timeout_s=3600)
            result["rebuild_30d_s"] = round(time.perf_counter() - t, 1)
            await store.pool.execute("ANALYZE")
            params = {"from": START.isoformat(), "to": end.isoformat()}
            cases: dict[str, Any] = {}
            for kind, interval in CASES:
                p = query.parse_params({**params, "interval": interval})
                times, n = [], 0
                for _ in range(RUNS):
                    t = time.perf_counter()
                    doc = await query.report(store.pool, kind, p, timeout_s=120)
                    times.append((time.perf_counter() - t) * 1000)
                    n = len(doc["rows"])
                cases[f"{kind}/{interval}"] = {
                    "rows": n,
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(_pct(times, 0.95), 1),
                }
                print(f"  {kind}/{interval}: {cases[f'{kind}/{interval}']}", flush=True)
            result["cases"] = cases
    finally:
        await drop_database(SERVER_DSN, name)
    return result


def run(calls: int = CALLS) -> dict[str, Any]:
    result = asyncio.run(measure(calls))
    out = ROOT / "reports" / "reports.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description="report query time over 30 days")
    parser.add_argument("--calls", type=int, default=CALLS)
    result = run(parser.parse_args().calls)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
