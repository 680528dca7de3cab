"""The agents and queues API on the real app with real PostgreSQL and Redis
(the switch is the fake AMI carrier; agents' phones are the integration tests')."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.acd.history import AcdRepository
from engine.acd.schemas import PauseBody, QueueCallBody
from tests.api.openapi_check import DOC, check
from tests.api.test_openapi_contract import _constraints, _flat
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.harness import Client, engine_config, running_engine, wait_for

ACD = """
[acd]
pause_reasons = ["break", "lunch"]
[acd.intents]
pre_sale = "sales"
[[agents]]
id = "alice"
endpoints = { asterisk-1 = "PJSIP/agent1" }
skills = { sales = 9 }
[[agents]]
id = "bob"
endpoints = { asterisk-1 = "PJSIP/agent2" }
skills = { tech = 5 }
[[queues]]
name = "sales"
skills = { sales = 5 }
service_level_s = 20.0
"""


@pytest.fixture(scope="module")
async def acd_api(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Any]:
    async with CarrierFakeAmi(hold_s=3.0) as ami:
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"acdapi:{uuid.uuid4().hex[:8]}:",
            data_dir=store_data_dir / "engine-acd-api",
            ami_port=ami.port,
            agi_bind_port=0,
            extra=ACD,
        )
        async with running_engine(cfg) as (engine, client):
            yield engine, client


async def _req(client: Client, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    status, body, _ = await client.request(method, path, **kw)
    return status, body


async def test_agents_list_get_and_state_changes(acd_api: Any) -> None:
    engine, client = acd_api
    status, body = await _req(client, "GET", "/agents")
    assert status == 200
    check("/v1/agents", "GET", 200, body)
    assert [a["id"] for a in body["agents"]] == ["alice", "bob"]
    assert {a["state"] for a in body["agents"]} == {"logged_out"}

    status, body = await _req(client, "POST", "/agents/alice/login")
    assert status == 200 and body["state"] == "paused" and body["pause_reason"] == "login"
    check("/v1/agents/{agent_id}/login", "POST", 200, body)
    status, body = await _req(client, "POST", "/agents/alice/ready")
    assert status == 200 and body["state"] == "available"
    status, body = await _req(client, "POST", "/agents/alice/pause", json={"reason": "lunch"})
    assert status == 200 and body["state"] == "paused" and body["pause_reason"] == "lunch"
    status, body = await _req(client, "GET", "/agents/alice")
    assert status == 200 and body["pause_reason"] == "lunch"
    check("/v1/agents/{agent_id}", "GET", 200, body)
    status, body = await _req(client, "POST", "/agents/alice/logout")
    assert status == 200 and body["state"] == "logged_out"

    # Every change is in PostgreSQL (through the outbox) with its session.
    assert engine.pg is not None
    repo = AcdRepository(engine.pg.pool)
    rows: list[dict[str, Any]] = []

    async def stored() -> bool:
        rows[:] = await repo.fetch("agent_state_history", "agent_id = $1 ORDER BY at", "alice")
        return len(rows) >= 4

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not await stored():
        assert loop.time() < deadline, rows
        await asyncio.sleep(0.1)
    assert [r["state"] for r in rows[:4]] == ["paused", "available", "paused", "logged_out"]
    sessions = await repo.fetch("agent_sessions", "agent_id = $1", "alice")
    assert len(sessions) == 1 and sessions[0]["session_id"] == rows[0]["session_id"]


async def test_agent_errors(acd_api: Any) -> None:
    _, client = acd_api
    status, body = await _req(client, "GET", "/agents/nobody")
    assert status == 404 and body["error_id"] == "unknown-agent"
    status, body = await _req(client, "POST", "/agents/bob/ready")
    assert status == 409 and body["error_id"] == "illegal-agent-transition"
    assert body["details"]["allowed"] == ["login"]
    await _req(client, "POST", "/agents/bob/login")
    status, body = await _req(client, "POST", "/agents/bob/pause", json={"reason": "nap"})
    assert status == 400 and body["error_id"] == "unknown-pause-reason"
    status, body = await _req(client, "POST", "/agents/bob/pause", json={"why": "x"})
    assert status == 400
    status, body = await _req(client, "POST", "/agents/bob/logout")
    assert status == 200


async def test_queue_entry_wait_abandon_and_kpis(acd_api: Any) -> None:
    engine, client = acd_api
    status, body = await _req(client, "GET", "/queues")
    assert status == 200 and [q["name"] for q in body["queues"]] == ["sales"]
    check("/v1/queues", "GET", 200, body)
    status, body = await _req(client, "GET", "/queues/nowhere")
    assert status == 404 and body["error_id"] == "unknown-queue"
    status, body = await _req(client, "POST", "/queues/sales/calls", json={"call_id": "nope"})
    assert status == 404
    status, body = await _req(
        client, "POST", "/queues/sales/calls", json={"call_id": "x", "customer": {"k": "a|b"}}
    )
    assert status == 400

    call = await client.originate("1001", timeout_s=6)
    await client.wait_state(call["call_id"], "answered")
    body_in = {
        "call_id": call["call_id"],
        "tags": ["vip"],
        "intent": "pre_sale",
        "customer": {"name": "Ann Lee"},
    }
    status, entered = await _req(client, "POST", "/queues/sales/calls", json=body_in)
    assert status == 201, entered
    check("/v1/queues/{name}/calls", "POST", 201, entered)
    assert entered["priority"] == 3 and entered["state"] == "waiting"
    status, again = await _req(client, "POST", "/queues/sales/calls", json=body_in)
    assert status == 409 and again["error_id"] == "call-already-queued"
    status, view = await _req(client, "GET", "/queues/sales")
    check("/v1/queues/{name}", "GET", 200, view)
    (waiting,) = view["waiting"]
    assert waiting["call_id"] == call["call_id"] and waiting["position"] == 1
    assert view["kpis"]["waiting"] == 1 and view["kpis"]["longest_wait_s"] >= 0

    # The carrier's far end hangs up (hold_s): the caller abandons while waiting.
    acd = engine.acd

    await wait_for(lambda: acd.entry_of(call["call_id"]) is None, 20, "the caller to leave")
    status, view = await _req(client, "GET", "/queues/sales")
    assert view["waiting"] == [] and view["kpis"]["abandoned"] >= 1
    assert view["kpis"]["abandon_pct"] is not None
    repo = AcdRepository(engine.pg.pool)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        rows = await repo.fetch("queue_entries", "call_id = $1", call["call_id"])
        if rows and rows[0]["outcome"] == "abandoned":
            break
        assert loop.time() < deadline, rows
        await asyncio.sleep(0.1)
    assert rows[0]["priority"] == 3 and rows[0]["intent"] == "pre_sale"


@pytest.mark.parametrize(
    ("spec_name", "model"), [("PauseRequest", PauseBody), ("QueueCallRequest", QueueCallBody)]
)
def test_acd_request_constraints_match_the_server(spec_name: str, model: Any) -> None:
    server = model.model_json_schema()
    defs = server.get("$defs", {})
    spec = DOC["components"]["schemas"][spec_name]
    assert spec.get("additionalProperties") is False
    for field in model.model_fields:
        documented = _constraints(spec["properties"][field])
        enforced = _constraints(_flat(server["properties"][field], defs))
        if field in ("tags", "features"):
            continue  # arrays: item patterns are compared below
        assert documented == enforced, field
    if "tags" in model.model_fields:
        tag = spec["properties"]["tags"]["items"]["pattern"]
        assert tag == _flat(server["properties"]["tags"], defs)["items"]["pattern"]


def test_queue_call_examples_are_valid_on_both_sides() -> None:
    body = DOC["paths"]["/v1/queues/{name}/calls"]["post"]["requestBody"]["content"]
    for ex in body["application/json"]["examples"].values():
        QueueCallBody.model_validate(ex["value"])
