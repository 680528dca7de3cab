"""The real aiohttp app with real PostgreSQL and Redis, and the Asterisk
driver talking to a fake AMI peer that replays the recorded carrier."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.app import Engine
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import Client, engine_config, running_engine


@dataclass
class Api:
    engine: Engine
    client: Client
    ami: CarrierFakeAmi


@pytest.fixture(scope="module")
async def api(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Api]:
    async with CarrierFakeAmi() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"api:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-api",
            ami_port=ami.port,
            agi_bind_port=0,
        )
        async with running_engine(cfg) as (engine, client):
            yield Api(engine, client, ami)
