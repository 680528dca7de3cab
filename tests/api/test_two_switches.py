"""One engine, one API, two kinds of switch: Asterisk (fake AMI replaying the
recorded carrier) and FreeSWITCH (fake ESL replaying its recorded carrier)."""

from __future__ import annotations

import uuid
from pathlib import Path

from engine.store.pg.pool import PgStore
from tests.api.openapi_check import check
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import engine_config, freeswitch_switch_toml, running_engine, stored_cdrs


async def test_api_targets_either_switch_by_name(
    pg_dsn: str, redis_url: str, store_data_dir: Path, pg_store: PgStore
) -> None:
    async with CarrierFakeAmi() as ami, FakeFreeSwitch() as fs:
        extra = f"""{freeswitch_switch_toml("freeswitch-1", fs.host, fs.port, fs.password)}
[[trunks]]
name = "carrier"
switch = "freeswitch-1"
target = "carrier"
max_channels = 10
max_cps = 10
"""
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"two:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-two",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=extra,
        )
        async with running_engine(cfg) as (_, client):
            # Per-switch detail needs a token (engine/api/health.py).
            status, health, _ = await client.request("GET", "/health")
            assert status == 200
            check("/v1/health", "get", 200, health)
            assert health["switches"] == {
                "asterisk-1": {"kind": "asterisk", "state": "up"},
                "freeswitch-1": {"kind": "freeswitch", "state": "up"},
            }
            on_fs = await client.originate("62001", trunk="carrier", switch="freeswitch-1")
            on_ast = await client.originate("2001", switch="asterisk-1")
            assert (on_fs["switch"], on_ast["switch"]) == ("freeswitch-1", "asterisk-1")
            fs_final = await client.wait_state(on_fs["call_id"], "ended")
            ast_final = await client.wait_state(on_ast["call_id"], "ended")

    # The same busy callee reads the same on both switches.
    for final in (fs_final, ast_final):
        assert (final["cause"], final["sip_code"]) == (17, 486)
    assert any(on_fs["call_id"] in line for line in fs.received if "originate" in line)
    rows = await stored_cdrs(pg_store.pool, on_fs["call_id"])
    assert [(r.switch, r.trunk, r.cause) for r in rows] == [("freeswitch-1", "carrier", 17)]
