"""An engine with the ACD on the fake FreeSWITCH peer (and the fake AMI carrier), shared by the
FreeSWITCH ACD and supervisor API tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.acd.service import AcdService
from engine.app import Engine
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import Client, engine_config, freeswitch_switch_toml, running_engine

SWITCH = "freeswitch-1"


@dataclass
class Fs:
    engine: Engine
    client: Client
    fs: FakeFreeSwitch

    @property
    def acd(self) -> AcdService:
        assert self.engine.acd is not None
        return self.engine.acd

    def state(self, agent_id: str) -> str:
        return self.acd.status(agent_id).state.value


@asynccontextmanager
async def fs_acd_engine(
    *, pg_dsn: str, redis_url: str, data_dir: Path, name: str, config: str, time_scale: float
) -> AsyncIterator[Fs]:
    """``config``: the TOML after the switch (trunks, [acd], agents, queues)."""
    async with CarrierFakeAmi() as ami, FakeFreeSwitch(time_scale=time_scale) as fs:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"{name}:{uuid.uuid4().hex[:8]}:",
            data_dir=data_dir / f"engine-{name}",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=freeswitch_switch_toml(SWITCH, fs.host, fs.port, fs.password) + config,
        )
        async with running_engine(cfg) as (engine, client):
            yield Fs(engine, client, fs)
