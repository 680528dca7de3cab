"""ACD integration scenarios (a), (e) and (f) on FreeSWITCH: the same runners as the real
Asterisk's (tests/acd_scenarios.py, tests/integration/test_acd_live.py), against the fake
FreeSWITCH (tests/fakes/fake_esl.py), whose agents' phones (``user/agentN``), parking, hold
music and ``uuid_bridge`` replay the recorded SIPp agents. (b), (c) and (d) on FreeSWITCH are
in tests/api/test_acd_freeswitch.py.

Callers are 66XXX calls through the recorded carrier gateway, answered and kept up
30 s x ``time_scale``. (f) runs the engine as a process so it can be SIGKILLed while the
fake switch keeps the calls up.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.acd_scenarios import (
    acd_section,
    mix_toml,
    overflow_queues,
    run_mix,
    run_overflow,
    run_restart,
)
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import (
    Client,
    engine_config,
    engine_config_text,
    freeswitch_switch_toml,
    running_engine,
)
from tests.integration.engine_process import EngineProcess, free_port

SWITCH = "freeswitch-1"
# 66XXX callers stay up 30 s x SCALE: long enough for scenario (a)'s eight callers.
SCALE = 0.5
OVERFLOW_S = 2.0
RESTART_WRAP_S = 1.0
TOLERANCE_S = 0.5

TRUNK = f"""
[[trunks]]
name = "fs-good"
switch = "{SWITCH}"
target = "carrier"
max_channels = 50
max_cps = 100
cps_burst = 50
"""

MORE = f"""
[[agents]]
id = "a7"
endpoints = {{ {SWITCH} = "user/agent7" }}
skills = {{ ov = 4, rs = 5 }}
[[agents]]
id = "a8"
endpoints = {{ {SWITCH} = "user/agent8" }}
skills = {{ help = 5, rs = 5 }}
{overflow_queues(OVERFLOW_S)}[[queues]]
name = "restart"
skills = {{ rs = 5 }}
wrap_up_s = {RESTART_WRAP_S}
"""

_numbers = itertools.count(100)


def _extra(fs: FakeFreeSwitch) -> str:
    return (
        f"""{freeswitch_switch_toml(SWITCH, fs.host, fs.port, fs.password)}"""
        + TRUNK
        + acd_section()
        + mix_toml(SWITCH, lambda phone: f"user/{phone}")
        + MORE
    )


def _placer(client: Client) -> Callable[[int], Awaitable[str]]:
    async def place(_: int = 0) -> str:
        call = await client.originate(f"66{next(_numbers):03d}", trunk="fs-good", timeout_s=10)
        await client.wait_state(call["call_id"], "answered")
        return str(call["call_id"])

    return place


@pytest.fixture(scope="module")
async def fs_client(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Client]:
    async with CarrierFakeAmi() as ami, FakeFreeSwitch(time_scale=SCALE) as fs:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"acdfsx:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / f"engine-acd-fsx-{uuid.uuid4().hex[:6]}",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=_extra(fs),
        )
        async with running_engine(cfg) as (_, client):
            yield client


async def test_a_mixed_callers_served_in_strategy_order(fs_client: Client) -> None:
    served = await run_mix(fs_client, _placer(fs_client))
    assert len(served) == 8


@pytest.mark.parametrize(
    ("queue", "agent_id", "action"),
    [("ovrelax", "a7", {"relax_skills": {"ov": 3}}), ("ovfall", "a8", {"add_queue": "help"})],
    ids=["relax-skill-minimum", "fallback-queue"],
)
async def test_e_overflow_after_n_seconds(
    fs_client: Client, queue: str, agent_id: str, action: dict[str, Any]
) -> None:
    await run_overflow(
        fs_client,
        _placer(fs_client),
        queue=queue,
        agent_id=agent_id,
        action=action,
        after_s=OVERFLOW_S,
        tolerance_s=TOLERANCE_S,
    )


async def test_f_engine_restart_with_two_agents_on_calls(
    pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"acdfsr:{uuid.uuid4().hex[:8]}:"
    redis = aioredis.from_url(redis_url, decode_responses=True)
    # The kept call must outlive the restart: 15 s (30 s x SCALE) ran out on embedded storage
    # at load 10 before the engine was back; the scenario hangs it up itself.
    long_fs = FakeFreeSwitch(time_scale=SCALE, long_call_s=240.0)
    async with CarrierFakeAmi() as ami, long_fs as fs:
        port = free_port()
        config = tmp_path / "engine.toml"
        config.write_text(
            engine_config_text(
                pg_dsn=pg_dsn,
                redis_url=redis_url,
                prefix=prefix,
                data_dir=tmp_path / "engine",
                ami_port=ami.port,
                agi_bind_port=free_port(),
                api_port=port,
                extra=_extra(fs),
            )
        )
        proc = EngineProcess(config, port, tmp_path / "engine.log", redis_prefix=prefix)

        async def stored_state(agent_id: str) -> str:
            raw = await redis.hget(f"{prefix}acd:agent:{agent_id}", "status")
            return str(json.loads(raw)["state"]) if raw else ""

        async def leave_while_down(call: dict[str, Any], agent_id: str) -> None:
            # The customer hangs up while the engine is dead: FreeSWITCH hangs the agent
            # up with it (the fake replays acd-moh-bridge-caller-hangs-up.esl).
            await fs.kill(call["call_id"], "NORMAL_CLEARING")

        try:
            await proc.start()
            async with aiohttp.ClientSession() as http:
                client = proc.client(http)
                await run_restart(
                    client,
                    proc,
                    _placer(client),
                    stored_state=stored_state,
                    leave_while_down=leave_while_down,
                    queue="restart",
                    agents=("a7", "a8"),
                    all_agents=["a1", "a2", "a3", "a7", "a8"],
                    wrap_s=RESTART_WRAP_S,
                    tolerance_s=TOLERANCE_S,
                )
        except BaseException:
            print(proc.tail(60))
            raise
        finally:
            proc.stop()
            await redis.aclose()
