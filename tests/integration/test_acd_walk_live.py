"""Supervisor and agent flows walked on the real Asterisk 22 sandbox with real SIPp phones:
what a queued caller's call does when it is sent elsewhere (a redirect through the API).

Run under the sandbox lock:
    flock -o /tmp/asterisk-sandbox.lock .venv/bin/python -m pytest \
        tests/integration/test_acd_walk_live.py
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.acd_scenarios import Events, agent_view, enter, fresh_ready, hang_up, wait_links_up
from tests.harness import Client, engine_config_text, event_log
from tests.integration import sandbox
from tests.integration.engine_process import EngineProcess, free_port
from tests.sip_agents import AgentPhones, AgentSpec

pytestmark = pytest.mark.asterisk

SWITCH = "asterisk-1"
ACD = f"""
[acd]
pause_reasons = ["break"]
[[agents]]
id = "w1"
endpoints = {{ {SWITCH} = "PJSIP/agent1" }}
skills = {{ walk = 5 }}
[[agents]]
# A phone Asterisk has no contact for (no such PJSIP endpoint: chan_pjsip fails the request
# before any channel, as for an endpoint whose contact is missing or Unavailable).
id = "gone1"
endpoints = {{ {SWITCH} = "PJSIP/absent-phone" }}
skills = {{ gone = 5 }}
max_no_answer = 2
[[queues]]
name = "walk"
skills = {{ walk = 5 }}
wrap_up_s = 1.0
[[queues]]
name = "gone"
skills = {{ gone = 5 }}
"""

_numbers = itertools.count(40)


@dataclass
class Live:
    client: Client
    phones: AgentPhones

    async def caller(self) -> str:
        """A customer's call (01XX: answered, up 60 s), answered; its call id."""
        call = await self.client.originate(f"01{next(_numbers) % 100:02d}", timeout_s=10)
        await self.client.wait_state(call["call_id"], "answered", timeout_s=20)
        return str(call["call_id"])


@pytest.fixture(scope="module")
async def live(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Live]:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    work = store_data_dir / f"acd-walk-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    port = free_port()
    prefix = f"acdwalk:{uuid.uuid4().hex[:8]}:"
    text = engine_config_text(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=prefix,
        data_dir=work / "engine",
        agi_bind_port=0,
        api_port=port,
        extra=ACD,
    )
    config = work / "engine.toml"
    config.write_text(text)
    proc = EngineProcess(config, port, work / "engine.log", redis_prefix=prefix)
    try:
        async with AgentPhones([AgentSpec("agent1")], work / "phones") as phones:
            await proc.start()
            async with aiohttp.ClientSession() as http:
                client = proc.client(http)
                await wait_links_up(client)
                yield Live(client, phones)
    finally:
        proc.stop()


async def _call_state(c: Client, call_id: str) -> str:
    status, body, _ = await c.request("GET", f"/calls/{call_id}")
    assert status == 200, body
    return str(body["state"])


async def test_a_connected_caller_redirected_away_is_not_hung_up_by_the_queue(live: Live) -> None:
    # Found walking an agent's blind transfer: POST /v1/calls/{caller}/redirect while the
    # caller talks to the agent. The agent's leg left the bridge, the queue took it for the
    # agent hanging up, and its after_agent_hangup ("hangup") hung the transferred caller up.
    c = live.client
    await fresh_ready(c, "w1")
    caller = await live.caller()
    async with event_log(c) as messages:
        ev = Events(messages)
        await enter(c, "walk", caller)
        await ev.wait("QueueCallConnected", call_id=caller, timeout_s=20)
        mark = ev.mark()
        status, body, _ = await c.request(
            "POST", f"/calls/{caller}/redirect", json={"then": {"kind": "park"}}
        )
        assert status == 202, body
        # The agent wraps up (1 s), then is available: by then the queue would have hung the
        # caller up (0.5 s after the agent's leg left).
        await ev.wait("AgentStateChanged", mark, agent_id="w1", state="wrap_up", timeout_s=20)
        await ev.wait("AgentStateChanged", mark, agent_id="w1", state="available", timeout_s=20)
        assert await _call_state(c, caller) == "answered", ev.since(mark, "CallStateChanged")
        status, queue, _ = await c.request("GET", "/queues/walk")
        assert queue["waiting"] == [] and queue["connected"] == [], queue
    await hang_up(c, caller)


async def test_a_waiting_caller_redirected_away_leaves_the_queue(live: Live) -> None:
    # A supervisor sends a waiting caller elsewhere (voicemail, another number): it stayed in
    # the queue, and the next free agent was rung and bridged to it, pulling it back.
    c = live.client
    view = await agent_view(c, "w1")
    if view["state"] != "logged_out":
        status, body, _ = await c.request("POST", "/agents/w1/logout")
        assert status == 200, body
    caller = await live.caller()
    async with event_log(c) as messages:
        ev = Events(messages)
        await enter(c, "walk", caller)
        await ev.wait("MohStarted", call_id=caller, timeout_s=10)  # waiting on hold
        status, body, _ = await c.request(
            "POST", f"/calls/{caller}/redirect", json={"then": {"kind": "park"}}
        )
        assert status == 202, body
        left = await ev.wait("QueueCallOverflowed", call_id=caller, timeout_s=10)
        assert left["exit"] == "redirected"
        status, queue, _ = await c.request("GET", "/queues/walk")
        assert queue["waiting"] == [], queue
        status, body, _ = await c.request("POST", "/agents/w1/login")
        status, body, _ = await c.request("POST", "/agents/w1/ready")
        assert status == 200 and body["state"] == "available", body  # nobody to offer
        assert ev.since(0, "QueueCallOffered", call_id=caller) == []
        assert await _call_state(c, caller) == "answered"
    await hang_up(c, caller)


async def test_a_phone_asterisk_cannot_reach_pauses_its_agent_unreachable(live: Live) -> None:
    # The originate of an agent whose phone has no contact fails at once (OriginateResponse
    # Failure, Reason 0: OriginateFailed cause 38). The agent was paused "no-answer" after
    # max_no_answer such offers, as if it had let its phone ring; now "unreachable".
    c = live.client
    await fresh_ready(c, "gone1")
    callers = [await live.caller(), await live.caller()]
    async with event_log(c) as messages:
        ev = Events(messages)
        for n, caller in enumerate(callers):
            mark = ev.mark()
            await enter(c, "gone", caller)
            await ev.wait("QueueCallOffered", mark, call_id=caller, agent_id="gone1", timeout_s=10)
            state = "available" if n == 0 else "paused"  # max_no_answer = 2
            await ev.wait(
                "AgentStateChanged", mark, agent_id="gone1", previous="reserved", state=state
            )
        view = await agent_view(c, "gone1")
        assert (view["state"], view["pause_reason"]) == ("paused", "unreachable"), view
        paused = ev.since(0, "AgentStateChanged", agent_id="gone1", state="paused")
        assert paused[-1]["pause_reason"] == "unreachable"
        # What Asterisk really sent for those legs: no channel, Reason 0 -> cause 38.
        failed = [
            e
            for e in ev.since(0, "CallStateChanged", state="ended")
            if "OriginateResponse Failure" in (e.get("cause_text") or "")
        ]
        assert [e["cause"] for e in failed] == [38, 38], failed
        status, queue, _ = await c.request("GET", "/queues/gone")
        assert status == 200, queue
        assert sorted(w["call_id"] for w in queue["waiting"]) == sorted(callers), queue
    for caller in callers:
        await hang_up(c, caller)
