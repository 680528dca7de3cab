"""The ACD on the real Asterisk 22 sandbox with real SIP agent phones (issue 9 "Real parts").

One engine (a separate process, so scenario (f) can SIGKILL it) and eight SIPp phones
(tests/sip_agents.py, PJSIP endpoints agent1..agent8) serve the whole module. Callers are
loopback-carrier calls the engine places to 01XX (answered, up 60 s), handed to
``POST /v1/queues/{name}/calls`` with tags, intent and customer data. Each scenario uses
its own queues and skills and logs its agents in and out, so the scenarios do not see each
other's calls.

Run under the sandbox lock (docs/acd.md "Integration scenarios"):
    flock -o /tmp/asterisk-sandbox.lock .venv/bin/python -m pytest \
        tests/integration/test_acd_live.py
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.acd_scenarios import (
    Events,
    acd_section,
    agent_view,
    enter,
    fresh_ready,
    hang_up,
    log_out,
    mix_toml,
    overflow_queues,
    run_mix,
    run_overflow,
    run_restart,
    wait_links_up,
)
from tests.harness import Client, engine_config_text, event_log, wait_for
from tests.integration import sandbox
from tests.integration.engine_process import EngineProcess, free_port
from tests.sip_agents import AgentPhones, AgentSpec

pytestmark = pytest.mark.asterisk

SWITCH = "asterisk-1"
RING_S = 2.0  # (b): an agent who does not answer is given up after this
WRAP_S = 2.0  # (d)
OVERFLOW_S = 2.0  # (e)
RESTART_WRAP_S = 1.0  # (f)
TOLERANCE_S = 0.5  # the "wrap-up timing within 0.5 s"

# Agents beyond scenario (a)'s a1..a3 (tests/acd_scenarios.py), each on its own phone.
# Every scenario has its own skill names, so no agent can take another scenario's caller.
MORE = f"""
[[agents]]
id = "a4"
endpoints = {{ {SWITCH} = "PJSIP/agent4" }}
skills = {{ na = 9, rg = 5 }}
max_no_answer = 2
[[agents]]
id = "a5"
endpoints = {{ {SWITCH} = "PJSIP/agent5" }}
skills = {{ na = 5, ib = 5 }}
[[agents]]
id = "a6"
endpoints = {{ {SWITCH} = "PJSIP/agent6" }}
skills = {{ wu = 5 }}
[[agents]]
id = "a7"
endpoints = {{ {SWITCH} = "PJSIP/agent7" }}
skills = {{ ov = 4, rs = 5 }}
[[agents]]
id = "a8"
endpoints = {{ {SWITCH} = "PJSIP/agent8" }}
skills = {{ help = 5, wa = 5, rs = 5 }}

[[queues]]
name = "noans"
skills = {{ na = 5 }}
strategy = "highest-skill-level"
ring_timeout_s = {RING_S}
[[queues]]
name = "ringq"
skills = {{ rg = 5 }}
ring_timeout_s = 30.0
[[queues]]
name = "wrap"
skills = {{ wu = 5 }}
wrap_up_s = {WRAP_S}
[[queues]]
name = "wrapapi"
skills = {{ wa = 5 }}
wrap_up_s = {WRAP_S}
{overflow_queues(OVERFLOW_S)}[[queues]]
name = "inbq"
skills = {{ ib = 5 }}
[[queues]]
name = "restart"
skills = {{ rs = 5 }}
wrap_up_s = {RESTART_WRAP_S}
"""

INBOUND_FLOW = """\
name: inbound
steps:
  - answer
  - queue:
      queue: inbq
      tags: [vip]
      customer:
        line: inbound
  - hangup
"""

PHONES = [
    AgentSpec("agent1"),
    AgentSpec("agent2"),
    AgentSpec("agent3"),
    AgentSpec("agent4", mode="ring"),
    AgentSpec("agent5"),
    AgentSpec("agent6", mode="answer-hangup", hold_s=1.0),
    AgentSpec("agent7"),
    AgentSpec("agent8"),
]

_numbers = itertools.count(0)


@dataclass
class Live:
    proc: EngineProcess
    client: Client
    phones: AgentPhones
    redis: aioredis.Redis
    prefix: str

    async def caller(self, _: int = 0) -> str:
        """A customer's call (01XX: answered, up 60 s), answered; its call id."""
        number = f"01{next(_numbers) % 100:02d}"
        call = await self.client.originate(number, timeout_s=10)
        await self.client.wait_state(call["call_id"], "answered", timeout_s=20)
        return str(call["call_id"])

    async def stored_state(self, agent_id: str) -> str:
        raw = await self.redis.hget(f"{self.prefix}acd:agent:{agent_id}", "status")
        return str(json.loads(raw)["state"]) if raw else ""


@pytest.fixture(scope="module")
async def live(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Live]:
    assert sandbox.status(), "the Asterisk sandbox must be running (scripts/asterisk-sandbox start)"
    work = store_data_dir / f"acd-live-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    port = free_port()
    prefix = f"acdlive:{uuid.uuid4().hex[:8]}:"
    # The sandbox's inbound number (8XXX -> [engine-inbound]) runs the flow "inbound".
    ivr = work / "ivr"
    ivr.mkdir()
    (ivr / "inbound.yaml").write_text(INBOUND_FLOW)
    text = engine_config_text(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        prefix=prefix,
        data_dir=work / "engine",
        # (g): a call from the carrier runs [engine-ivr] with the dialplan's default
        # FastAGI address (127.0.0.1:4573, no ENGINE_AGI_* of an originate): bind there.
        agi_bind_port=None,
        api_port=port,
        ivr_dir=ivr,
        extra=acd_section() + mix_toml(SWITCH, lambda phone: f"PJSIP/{phone}") + MORE,
    )
    config = work / "engine.toml"
    config.write_text(text)
    proc = EngineProcess(config, port, work / "engine.log", redis_prefix=prefix)
    redis = aioredis.from_url(redis_url, decode_responses=True)
    try:
        async with AgentPhones(PHONES, work / "phones") as phones:
            await proc.start()
            async with aiohttp.ClientSession() as http:
                client = proc.client(http)
                await wait_links_up(client)
                yield Live(proc, client, phones, redis, prefix)
    finally:
        proc.stop()
        await redis.aclose()


def _ended(ev: Events, call_id: str, mark: int = 0) -> list[dict[str, Any]]:
    return ev.since(mark, "CallStateChanged", call_id=call_id, state="ended")


# ------------------------------------------------------------------------------------ (a)


async def test_a_mixed_callers_served_in_strategy_order(live: Live) -> None:
    served = await run_mix(live.client, live.caller)
    assert len(served) == 8


# ------------------------------------------------------------------------------------ (b)


async def test_b_no_answer_goes_to_the_next_agent_then_auto_pauses(live: Live) -> None:
    c = live.client
    ringer = live.phones["agent4"]
    await fresh_ready(c, "a4")  # na 9: highest-skill-level rings it first; never answers
    await fresh_ready(c, "a5")  # na 5: answers
    cancels = len([s for s in ringer.steps() if s.step == "CANCELLED"])
    first, second = await asyncio.gather(live.caller(), live.caller())
    async with event_log(c) as messages:
        ev = Events(messages)
        await enter(c, "noans", first, tags=["normal"], intent="pre_sale")
        connected = await ev.wait("QueueCallConnected", call_id=first, timeout_s=RING_S + 15)
        assert connected["agent_id"] == "a5"
        offers = [e["agent_id"] for e in ev.since(0, "QueueCallOffered", call_id=first)]
        assert offers == ["a4", "a5"]
        # The phone really rang and was cancelled when the ring timeout ran out.
        await ringer.wait_for("CANCELLED", count=cancels + 1)
        one_miss = await agent_view(c, "a4")
        assert (one_miss["state"], one_miss["missed_in_row"]) == ("available", 1)

        # a5 is busy: the second caller rings a4 again; the second miss in a row
        # (max_no_answer = 2) pauses it with reason no-answer.
        await enter(c, "noans", second, tags=["vip"])
        paused = await ev.wait(
            "AgentStateChanged", agent_id="a4", state="paused", timeout_s=RING_S + 15
        )
        assert paused["pause_reason"] == "no-answer"
        await ringer.wait_for("CANCELLED", count=cancels + 2)
        view = await agent_view(c, "a4")
        # The pause starts the count again (engine/agents/fsm.py): ready means a clean slate.
        assert (view["state"], view["pause_reason"], view["missed_in_row"]) == (
            "paused",
            "no-answer",
            0,
        )
        # The second caller waits for a5 and is never offered to a4 again.
        await hang_up(c, first)
        connected2 = await ev.wait("QueueCallConnected", call_id=second)
        assert connected2["agent_id"] == "a5"
        assert [e["agent_id"] for e in ev.since(0, "QueueCallOffered", call_id=second)] == [
            "a4",
            "a5",
        ]
        await hang_up(c, second)
    await log_out(c, "a4", "a5")


# ------------------------------------------------------------------------------------ (c)


async def test_c_abandon_while_waiting_and_while_the_agent_rings(live: Live) -> None:
    c = live.client
    ringer = live.phones["agent4"]
    waiting, ringing = await asyncio.gather(live.caller(), live.caller())
    async with event_log(c) as messages:
        ev = Events(messages)
        # Nobody serves ringq yet (a4 logged out): the caller waits, then hangs up.
        assert (await agent_view(c, "a4"))["state"] == "logged_out"
        body = await enter(c, "ringq", waiting, tags=["normal"])
        assert body["state"] == "waiting"
        await hang_up(c, waiting)
        gone = await ev.wait("QueueCallAbandoned", call_id=waiting)
        assert (gone["while"], gone["offers"]) == ("waiting", 0)

        # a4's phone rings (ring-forever) and the caller hangs up meanwhile.
        await fresh_ready(c, "a4")
        invites = len(ringer.calls())
        await enter(c, "ringq", ringing, tags=["vip"], customer={"crm": "42"})
        invite = await ringer.wait_for("INVITE", count=invites + 1)
        assert (await agent_view(c, "a4"))["state"] == "reserved"
        await hang_up(c, ringing)
        gone2 = await ev.wait("QueueCallAbandoned", call_id=ringing)
        assert (gone2["while"], gone2["offers"]) == ("ringing", 1)
        # The agent's leg is cancelled: the phone sees CANCEL for that very INVITE.
        await ringer.wait_for("CANCELLED", sip_call_id=invite.sip_call_id)
        await ev.wait("AgentStateChanged", agent_id="a4", state="available")
        view = await agent_view(c, "a4")
        # Freed, and a withdrawn offer is not the agent's miss.
        assert (view["state"], view["missed_in_row"]) == ("available", 0)
    status, queue, _ = await c.request("GET", "/queues/ringq")
    assert status == 200, queue
    assert queue["waiting"] == []
    assert (queue["kpis"]["abandoned"], queue["kpis"]["answered"]) == (2, 0)
    assert queue["kpis"]["abandon_pct"] == 100.0
    await log_out(c, "a4")


# ------------------------------------------------------------------------------------ (d)


@pytest.mark.parametrize(
    ("agent_id", "queue", "how"),
    [("a6", "wrap", "phone"), ("a8", "wrapapi", "api")],
    ids=["agent-phone-hangs-up", "agent-leg-hung-up-by-api"],
)
async def test_d_wrap_up_lasts_the_queues_wrap_up(
    live: Live, agent_id: str, queue: str, how: str
) -> None:
    c = live.client
    await fresh_ready(c, agent_id)
    caller = await live.caller()
    async with event_log(c) as messages:
        ev = Events(messages)
        await enter(c, queue, caller, tags=["normal"])
        connected = await ev.wait("QueueCallConnected", call_id=caller)
        agent_leg = connected["agent_call_id"]
        if how == "api":
            await hang_up(c, agent_leg)
        # else: the SIPp phone (answer-hangup) sends BYE 1 s after answering.
        await wait_for(lambda: bool(_ended(ev, agent_leg)), 20, "agent leg ended")
        # The queue's after_agent_hangup is "hangup" (the default): the conversation
        # is over, so the engine ends the caller's call too, and does not queue it again.
        await wait_for(lambda: bool(_ended(ev, caller)), 20, "the caller's call ended too")
        assert not [
            m for m in messages if m.get("event", {}).get("requeued_from") == connected["entry_id"]
        ]
        wrap = await ev.wait("AgentStateChanged", agent_id=agent_id, state="wrap_up")
        free = await ev.wait(
            "AgentStateChanged", agent_id=agent_id, state="available", timeout_s=WRAP_S + 10
        )
    hung_up_at = _ended(ev, agent_leg)[0]["ts"]
    took = free["ts"] - hung_up_at
    print(f"\nwrap-up ({how}): configured {WRAP_S} s, measured {took:.3f} s")
    assert abs(took - WRAP_S) <= TOLERANCE_S, (took, wrap, free)
    # Exact: it never ends before wrap_up_until (Asterisk #1006).
    assert free["ts"] >= wrap["wrap_up_until"], (wrap, free)
    assert abs(wrap["wrap_up_until"] - wrap["ts"] - WRAP_S) < 1e-6
    await log_out(c, agent_id)


# ------------------------------------------------------------------------------------ (e)


@pytest.mark.parametrize(
    ("queue", "agent_id", "action"),
    [("ovrelax", "a7", {"relax_skills": {"ov": 3}}), ("ovfall", "a8", {"add_queue": "help"})],
    ids=["relax-skill-minimum", "fallback-queue"],
)
async def test_e_overflow_after_n_seconds(
    live: Live, queue: str, agent_id: str, action: dict[str, Any]
) -> None:
    await run_overflow(
        live.client,
        live.caller,
        queue=queue,
        agent_id=agent_id,
        action=action,
        after_s=OVERFLOW_S,
        tolerance_s=TOLERANCE_S,
    )


# ------------------------------------------------------------------------------------ (f)


async def test_f_engine_restart_with_two_agents_on_calls(live: Live) -> None:
    async def leave_while_down(call: dict[str, Any], agent_id: str) -> None:
        # The customer hangs up while the engine is dead: the switch ends the bridge and
        # the agent's leg with it (the phone gets a BYE). Nobody tells the engine.
        phone = live.phones[f"agent{agent_id.removeprefix('a')}"]
        byes = len([s for s in phone.steps() if s.step == "BYE-RECEIVED"])
        await asyncio.to_thread(sandbox.rx, f"channel request hangup {call['channel']}")
        await phone.wait_for("BYE-RECEIVED", count=byes + 1)

    ringer = live.phones["agent4"]
    invites = len(ringer.calls())

    async def ringer_cancelled() -> None:
        # The INVITE sent before the crash is cancelled after the restart.
        first = await ringer.wait_for("INVITE", count=invites + 1)
        await ringer.wait_for("CANCELLED", sip_call_id=first.sip_call_id)

    await run_restart(
        live.client,
        live.proc,
        live.caller,
        stored_state=live.stored_state,
        leave_while_down=leave_while_down,
        queue="restart",
        agents=("a7", "a8"),
        all_agents=[f"a{n}" for n in range(1, 9)],
        wrap_s=RESTART_WRAP_S,
        tolerance_s=TOLERANCE_S,
        ringing=("a4", "ringq"),
        ringing_withdrawn=ringer_cancelled,
    )


def _answers(live: Live, phone: str) -> int:
    """How many calls the phone has answered so far (it may have served others)."""
    return sum(1 for step in live.phones[phone].steps() if step.step == "ANSWERED")


# ------------------------------------------------------------------------------------ (g)


async def test_g_inbound_carrier_call_through_the_ivr_reaches_an_agent(live: Live) -> None:
    """A call that arrives from the carrier (8XXX -> [engine-inbound] -> IVR flow
    "inbound", whose queue step hands it to the ACD): the engine did not place
    it, it takes charge of it, and a real phone answers it."""
    c = live.client
    await fresh_ready(c, "a5")
    answered_before = _answers(live, "agent5")
    async with event_log(c) as messages:
        ev = Events(messages)
        customer = await c.originate("8001", timeout_s=10)  # the customer's side, dialing in
        entered = await ev.wait("QueueCallEntered", queue="inbq")
        inbound_id = entered["call_id"]
        assert inbound_id != customer["call_id"]  # the carrier's leg into the IVR, not ours
        assert entered["tags"] == ["vip"] and entered["priority"] == 3
        offered = await ev.wait("QueueCallOffered", call_id=inbound_id)
        assert offered["agent_id"] == "a5" and offered["customer"] == {"line": "inbound"}
        await ev.wait("QueueCallConnected", call_id=inbound_id, agent_id="a5")
        status, call, _ = await c.request("GET", f"/calls/{inbound_id}")
        assert status == 200 and call["direction"] == "inbound", call
        await live.phones["agent5"].wait_for("ANSWERED", count=answered_before + 1)
        # The customer hangs up: the inbound call ends with a CDR; the agent wraps up.
        await hang_up(c, customer["call_id"])
        await wait_for(lambda: bool(_ended(ev, inbound_id)), 20, "the inbound call ended")
        await ev.wait("AgentStateChanged", agent_id="a5", state="available", timeout_s=20)
    status, cdrs, _ = await c.request("GET", "/cdrs", params={"call_id": inbound_id})
    assert status == 200, cdrs
    rows = cdrs["cdrs"] if isinstance(cdrs, dict) else cdrs
    assert [r["call_id"] for r in rows] == [inbound_id]
    await log_out(c, "a5")
