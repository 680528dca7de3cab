"""A queue's live KPIs (``GET /v1/queues/{name}``, the wallboard's SL / ASA / AHT / abandon)
survive an engine restart: they are over the last 24 h of finished entries (docs/acd.md
"KPIs"), which the engine reads back from ``queue_entries`` at start. Real PostgreSQL and
Redis; the switch is the fake AMI carrier."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from engine.acd.history import AcdRepository
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import engine_config, running_engine, wait_for

# Its own queue name: the session's database holds other modules' entries of "sales".
QUEUE = f"kpi{uuid.uuid4().hex[:8]}"
ACD = f"""
[[agents]]
id = "alice"
endpoints = {{ asterisk-1 = "PJSIP/agent1" }}
skills = {{ sales = 9 }}
[[queues]]
name = "{QUEUE}"
skills = {{ sales = 5 }}
"""


async def test_queue_kpis_are_the_same_after_a_restart(
    pg_dsn: str, redis_url: str, store_data_dir: Path
) -> None:
    # Found walking the wallboard: after a restart every queue showed "-" for SL, ASA, AHT and
    # abandon, and 0 answered / abandoned, as if the day had begun at the restart.
    async with CarrierFakeAmi(hold_s=1.0) as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"acdkpi:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / f"engine-acd-kpi-{uuid.uuid4().hex[:6]}",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=ACD,
        )
        async with running_engine(cfg) as (engine, client):
            # Nobody is logged in: the caller waits and hangs up (the carrier's hold_s).
            call = await client.originate("1001", timeout_s=6)
            await client.wait_state(call["call_id"], "answered")
            status, body, _ = await client.request(
                "POST", f"/queues/{QUEUE}/calls", json={"call_id": call["call_id"]}
            )
            assert status == 201, body
            acd = engine.acd
            assert acd is not None and engine.pg is not None
            await wait_for(lambda: acd.entry_of(call["call_id"]) is None, 20, "the abandon")
            status, before, _ = await client.request("GET", f"/queues/{QUEUE}")
            assert status == 200
            assert (before["kpis"]["abandoned"], before["kpis"]["abandon_pct"]) == (1, 100.0)
            repo = AcdRepository(engine.pg.pool)
            rows: list[dict[str, Any]] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not (rows and rows[0]["outcome"] == "abandoned"):
                assert loop.time() < deadline, rows
                await asyncio.sleep(0.1)
                rows = await repo.fetch("queue_entries", "call_id = $1", call["call_id"])

        async with running_engine(cfg) as (engine, client):
            status, after, _ = await client.request("GET", f"/queues/{QUEUE}")
            assert status == 200
            for key in ("answered", "abandoned", "service_level_pct", "asa_s", "abandon_pct"):
                assert after["kpis"][key] == before["kpis"][key], (key, after["kpis"])
