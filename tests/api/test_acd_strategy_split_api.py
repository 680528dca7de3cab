"""A queue that splits its callers between two routing strategies, end to end: calls placed
through the API (the switch is the fake AMI carrier) enter the queue, each entry is given a
strategy by the seeded random split, the queue view shows it, and the A/B report
(``GET /v1/reports/experiments/queues/{name}``, real PostgreSQL) finds both variants with
exactly the entries the split gave them (docs/acd.md "Alternating strategies",
docs/reports.md "A/B results")."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.acd.model import QueueSpec, Strategy
from engine.acd.strategy_split import StrategySplitter
from tests.api.openapi_check import check
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import engine_config, running_engine, wait_for

CALLS = 6
SEED = 11


async def test_a_seeded_split_queue_yields_both_variants_in_the_ab_report(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> None:
    queue = f"ab-{uuid.uuid4().hex[:8]}"  # the report reads the shared database by queue name
    # What the engine's split will give, from the same pure code and seed.
    spec = QueueSpec(
        queue, strategies=(Strategy.BEST_MATCH, Strategy.LONGEST_IDLE), strategy_split="random"
    )
    split = StrategySplitter(SEED)
    expected = [split.assign(spec).value for _ in range(CALLS)]
    assert set(expected) == {"best-match", "longest-idle"}, expected  # the seed makes a mix
    config = f"""
[acd]
seed = {SEED}
[[queues]]
name = "{queue}"
strategies = ["best-match", "longest-idle"]
strategy_split = "random"
"""
    start = datetime.now(UTC) - timedelta(minutes=1)
    # The carrier keeps each callee on the line 4 s: long enough to queue it (no agent serves
    # the queue, so each caller waits, then abandons when the carrier hangs up).
    async with CarrierFakeAmi(hold_s=4.0) as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"absplit:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / f"engine-ab-split-{uuid.uuid4().hex[:6]}",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=config,
        )
        async with running_engine(cfg) as (engine, client):
            acd = engine.acd
            assert acd is not None
            calls = await asyncio.gather(
                *(client.originate(f"10{n:02d}", timeout_s=6) for n in range(CALLS))
            )
            ids = [str(c["call_id"]) for c in calls]
            got = []
            for call_id in ids:
                await client.wait_state(call_id, "answered")
                status, body, _ = await client.request(
                    "POST", f"/queues/{queue}/calls", json={"call_id": call_id}
                )
                assert status == 201, body
                got.append(acd.entry_of(call_id).strategy)  # type: ignore[union-attr]
            assert got == expected

            status, view, _ = await client.request("GET", f"/queues/{queue}")
            assert status == 200, view
            check("/v1/queues/{name}", "GET", 200, view)
            assert view["strategies"] == ["best-match", "longest-idle"]
            assert view["strategy_split"] == "random"
            assert {w["call_id"]: w["strategy"] for w in view["waiting"]} == dict(
                zip(ids, expected, strict=True)
            )

            # Each caller abandons when the carrier hangs up: the entries are finished rows.
            await wait_for(
                lambda: all(acd.entry_of(c) is None for c in ids), 20, "the callers to leave"
            )
            params = {
                "from": start.isoformat(),
                "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
            }
            report: dict[str, Any] = {}

            async def counted() -> bool:
                status, body, _ = await client.request(
                    "GET", f"/reports/experiments/queues/{queue}", params=params
                )
                assert status == 200, body
                report.update(body)
                return bool(sum(v["n"] for v in body["variants"]) == CALLS)

            await wait_for_async(counted, 20, "every entry in the report")
            check("/v1/reports/experiments/queues/{name}", "GET", 200, report)
            variants = {v["variant"]: v["n"] for v in report["variants"]}
            assert variants == dict(Counter(expected))
            assert all(v["conversions"] == 0 for v in report["variants"])
            # Six abandoned callers prove nothing about either strategy, and it says so.
            assert report["conclusive"] is False
            assert str(report["verdict"]).startswith("too small to conclude:")


async def wait_for_async(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
