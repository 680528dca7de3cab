"""An engine with agents, a queue and trunks on the fake carrier, plus tokens of every role,
for the RBAC, audit and webhook tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.app import Engine
from engine.auth.roles import Role
from scripts.fuzz_api import FUZZ_TRUNKS, FuzzCarrier
from tests.harness import Client, engine_config, running_engine

AGENTS = """
[[agents]]
id = "alice"
endpoints = { asterisk-1 = "PJSIP/agent1" }
skills = { fuzz = 5 }
[[agents]]
id = "bob"
endpoints = { asterisk-1 = "PJSIP/agent2" }
skills = { fuzz = 5 }
"""


@dataclass
class Rig:
    engine: Engine
    client: Client
    # role -> token; the agent token is bound to "alice"
    tokens: dict[Role, str] = field(default_factory=dict)

    async def as_role(
        self, role: Role, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        return await self.client.request(method, path, token=self.tokens[role], **kwargs)


async def make_token(client: Client, role: Role, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"label": f"test {role.value}", "role": role.value, **extra}
    if role is Role.AGENT and "agent_id" not in extra:
        body["agent_id"] = "alice"
    status, data, _ = await client.request("POST", "/tokens", json=body)
    assert status == 201, data
    assert isinstance(data, dict)
    return data


@asynccontextmanager
async def security_engine(
    data_dir: Path, *, pg_dsn: str, redis_url: str, extra: str = "", trunks: str = FUZZ_TRUNKS
) -> AsyncIterator[Rig]:
    async with FuzzCarrier() as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"sec:{uuid.uuid4().hex[:8]}:",
            data_dir=data_dir,
            ami_port=ami.port,
            agi_bind_port=0,
            extra=trunks + AGENTS + extra,
        )
        async with running_engine(cfg) as (engine, client):
            rig = Rig(engine, client)
            for role in Role:
                rig.tokens[role] = (await make_token(client, role))["token"]
            yield rig
