"""Supervisor listen / whisper / barge on the real Asterisk 22 sandbox, heard through real RTP
(issue 14 item 4, docs/supervisor.md).

Three SIPp phones with a real audio path (tests/sip_agents.py mode ``media``, RTP sockets of
tests/rtp_media.py): the caller ``customer1`` says a 440 Hz tone, the agent ``agent1`` a
620 Hz tone, the supervisor ``supervisor1`` a 1700 Hz tone. The engine places the caller's
call, queues it, rings and bridges the agent (the ACD as in production), then
``POST /v1/agents/{agent}/spy`` rings the supervisor's phone into ChanSpy on the agent's leg.
What each phone RECEIVES is decoded and judged by its spectrum:

- listen: the supervisor hears the caller (440) and the agent (620); nobody hears 1700;
- whisper (mode switched through the API: ChanSpy's ``d`` digit received on the leg): the
  agent hears the supervisor, the caller does not;
- barge: both hear the supervisor;
- a second session started in barge (ChanSpy option ``B``) is heard by both at once;
- ending the spy (``DELETE``) hangs up the supervisor's phone; the call stays up.

Run under the sandbox lock:
    flock -o /tmp/asterisk-sandbox.lock .venv/bin/python -m pytest \
        tests/integration/test_supervisor_live.py
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.app import Engine
from tests.harness import Client, engine_config, event_log, running_engine, wait_for
from tests.integration import sandbox
from tests.media_phone import HEARS, SILENT, MediaPhone
from tests.rtp_media import RtpMedia
from tests.sip_agents import AgentPhones, AgentSpec

pytestmark = pytest.mark.asterisk

CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 440.0, 620.0, 1700.0

CONFIG = """
[acd]
supervisor_endpoints = { asterisk-1 = ["PJSIP/supervisor1"] }
[[agents]]
id = "spy-a1"
endpoints = { asterisk-1 = "PJSIP/agent1" }
skills = { spyskill = 5 }
[[queues]]
name = "spyq"
skills = { spyskill = 5 }
"""


@dataclass
class Live:
    engine: Engine
    client: Client
    caller: MediaPhone
    agent: MediaPhone
    supervisor: MediaPhone


@pytest.fixture(scope="module")
async def live(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Live]:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    medias = {name: await RtpMedia.open() for name in ("customer1", "agent1", "supervisor1")}
    specs = [AgentSpec(n, mode="media", rtp_port=m.port) for n, m in medias.items()]
    cfg = engine_config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=f"suplive:{uuid.uuid4().hex[:8]}:",
        data_dir=store_data_dir / f"engine-sup-{uuid.uuid4().hex[:6]}",
        agi_bind_port=0,
        extra=CONFIG,
    )
    try:
        async with AgentPhones(specs) as phones, running_engine(cfg) as (engine, client):
            yield Live(
                engine,
                client,
                *(MediaPhone(phones[n], medias[n]) for n in ("customer1", "agent1", "supervisor1")),
            )
    finally:
        for m in medias.values():
            await m.close()


def _spy_events(messages: list[dict[str, Any]], spy_id: str, state: str) -> list[dict[str, Any]]:
    return [
        m["event"]
        for m in list(messages)
        if isinstance(m.get("event"), dict)
        and m["event"].get("type") == "SupervisorSpy"
        and m["event"].get("spy_id") == spy_id
        and m["event"].get("state") == state
    ]


async def _until(what: str, check: Any, timeout_s: float = 8.0) -> None:
    await wait_for(check, timeout_s, what)


def _levels(live: Live, stage: str) -> None:
    """Print what each phone hears now (pytest -s): the figures of docs/supervisor.md."""
    who = {"caller": live.caller, "agent": live.agent, "supervisor": live.supervisor}
    heard = {
        name: {f"{hz:g}": round(p.hears(hz), 3) for hz in (CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ)}
        for name, p in who.items()
    }
    print(f"{stage}: {heard}")


async def test_listen_whisper_barge_are_heard_by_the_right_phones(live: Live) -> None:
    c = live.client
    for action in ("login", "ready"):
        status, body, _ = await c.request("POST", f"/agents/spy-a1/{action}")
        assert status == 200, body
    call = await c.originate("100", trunk=None, endpoint="customer1", timeout_s=10)
    caller_id = str(call["call_id"])
    await live.caller.answered_and_talking(CALLER_HZ)
    await c.wait_state(caller_id, "answered")
    status, body, _ = await c.request("POST", "/queues/spyq/calls", json={"call_id": caller_id})
    assert status == 201, body
    await live.agent.answered_and_talking(AGENT_HZ)
    await _until("the agent hears the caller", lambda: live.agent.hears(CALLER_HZ) > HEARS)

    async with event_log(c) as messages:
        # ---- listen
        status, spy, _ = await c.request(
            "POST", "/agents/spy-a1/spy", json={"mode": "listen", "endpoint": "PJSIP/supervisor1"}
        )
        assert status == 201, spy
        assert spy["call_id"] == caller_id and spy["mode"] == "listen"
        await live.supervisor.answered_and_talking(SUPERVISOR_HZ)
        await _until(
            "SupervisorSpy connected", lambda: _spy_events(messages, spy["spy_id"], "connected")
        )
        await _until(
            "the supervisor hears the caller and the agent",
            lambda: (
                live.supervisor.hears(CALLER_HZ) > HEARS and live.supervisor.hears(AGENT_HZ) > HEARS
            ),
        )
        assert live.agent.hears(SUPERVISOR_HZ) < SILENT
        assert live.caller.hears(SUPERVISOR_HZ) < SILENT
        _levels(live, "listen")

        # ---- whisper, by switching the running session (no second ring)
        status, body, _ = await c.request(
            "POST", "/agents/spy-a1/spy", json={"mode": "whisper", "endpoint": "supervisor1"}
        )
        assert status == 200 and body["spy_id"] == spy["spy_id"], body
        await _until("the agent hears the whisper", lambda: live.agent.hears(SUPERVISOR_HZ) > HEARS)
        assert live.caller.hears(SUPERVISOR_HZ) < SILENT
        assert live.supervisor.hears(CALLER_HZ) > HEARS
        _levels(live, "whisper")

        # ---- barge
        status, body, _ = await c.request(
            "POST", "/agents/spy-a1/spy", json={"mode": "barge", "endpoint": "supervisor1"}
        )
        assert status == 200 and body["mode"] == "barge", body
        await _until(
            "both parties hear the supervisor",
            lambda: (
                live.caller.hears(SUPERVISOR_HZ) > HEARS and live.agent.hears(SUPERVISOR_HZ) > HEARS
            ),
        )
        _levels(live, "barge")

        # ---- the supervisor leaves; the call goes on
        byes = len([s for s in live.supervisor.agent.steps() if s.step == "BYE-RECEIVED"])
        status, body, _ = await c.request("DELETE", "/agents/spy-a1/spy")
        assert status == 200, body
        await live.supervisor.agent.wait_for("BYE-RECEIVED", count=byes + 1)
        await _until("SupervisorSpy ended", lambda: _spy_events(messages, spy["spy_id"], "ended"))
        await _until(
            "nobody hears the supervisor any more",
            lambda: (
                live.caller.hears(SUPERVISOR_HZ) < SILENT
                and live.agent.hears(SUPERVISOR_HZ) < SILENT
            ),
        )
        assert live.agent.hears(CALLER_HZ) > HEARS
        _levels(live, "after the spy")
        status, agent, _ = await c.request("GET", "/agents/spy-a1")
        assert agent["state"] == "on_call" and agent["call_id"] == caller_id

        # ---- a session that starts in barge (ChanSpy option B), not switched into it
        await live.supervisor.media.stop_talking()
        status, spy2, _ = await c.request(
            "POST", "/agents/spy-a1/spy", json={"mode": "barge", "endpoint": "supervisor1"}
        )
        assert status == 201 and spy2["spy_id"] != spy["spy_id"], spy2
        await live.supervisor.answered_and_talking(SUPERVISOR_HZ, nth=2)
        await _until(
            "both parties hear the barging supervisor",
            lambda: (
                live.caller.hears(SUPERVISOR_HZ) > HEARS and live.agent.hears(SUPERVISOR_HZ) > HEARS
            ),
        )
        _levels(live, "barge from the start")

        # ---- the caller hangs up: ChanSpy's E ends the supervisor's leg with the call
        byes = len([s for s in live.supervisor.agent.steps() if s.step == "BYE-RECEIVED"])
        status, _, _ = await c.request("DELETE", f"/calls/{caller_id}")
        assert status == 202
        await live.supervisor.agent.wait_for("BYE-RECEIVED", count=byes + 1)
        await _until("SupervisorSpy ended", lambda: _spy_events(messages, spy2["spy_id"], "ended"))
