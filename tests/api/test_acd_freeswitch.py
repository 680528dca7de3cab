"""The ACD scenarios on FreeSWITCH: the whole engine against the fake FreeSWITCH
(tests/fakes/fake_esl.py), whose agents' phones (``user/agentN``), parking, hold music
and ``uuid_bridge`` replay the recorded third batch.

Callers are 66XXX calls through the recorded carrier gateway (answered, kept up 30 s x
``time_scale``); agents answer at once or ring until ``originate_timeout``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fs_acd_rig import Fs, fs_acd_engine
from tests.harness import (
    event_log,
    wait_for,
)

SCALE = 0.1  # a 66XXX caller stays up 3 s unless hung up

ACD = """
[[trunks]]
name = "fs-good"
switch = "freeswitch-1"
target = "carrier"
max_channels = 50
max_cps = 100
cps_burst = 50
[acd]
pause_reasons = ["break"]
[[agents]]
id = "a1"
endpoints = { freeswitch-1 = "user/agent1" }
skills = { sales = 9 }
[[agents]]
id = "a2"
endpoints = { freeswitch-1 = "user/agent2" }
skills = { sales = 8 }
max_no_answer = 1
[[agents]]
id = "a9"
endpoints = { freeswitch-1 = "user/agent9" }
skills = { support = 5 }
max_no_answer = 1
[[queues]]
name = "sales"
skills = { sales = 5 }
ring_timeout_s = 1.0
wrap_up_s = 1.5
[[queues]]
name = "support"
skills = { support = 5 }
ring_timeout_s = 1.0
"""


@pytest.fixture(scope="module")
async def fs_acd(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Fs]:
    async with fs_acd_engine(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        data_dir=store_data_dir,
        name="acdfs",
        config=ACD,
        time_scale=SCALE,
    ) as f:
        yield f


async def _caller(f: Fs, number: str = "66001") -> str:
    call = await f.client.originate(number, trunk="fs-good", timeout_s=10)
    await f.client.wait_state(call["call_id"], "answered")
    return str(call["call_id"])


async def _enter(f: Fs, call_id: str, **extra: Any) -> dict[str, Any]:
    status, body, _ = await f.client.request(
        "POST", "/queues/sales/calls", json={"call_id": call_id, **extra}
    )
    assert status == 201, body
    assert isinstance(body, dict)
    return body


async def _agent(f: Fs, agent_id: str, *actions: str) -> None:
    for action in actions:
        status, body, _ = await f.client.request("POST", f"/agents/{agent_id}/{action}")
        assert status == 200, body


class _Events:
    """The engine events of the WebSocket messages (``{"seq": n, "event": {...}}``)."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self._messages = messages

    def __iter__(self) -> Any:
        return iter([m["event"] for m in list(self._messages) if isinstance(m.get("event"), dict)])


def _of(events: _Events, kind: str, call_id: str) -> Callable[[], bool]:
    return lambda: any(e["type"] == kind and e.get("call_id") == call_id for e in events)


async def test_offer_bridge_and_exact_wrap_up(fs_acd: Fs) -> None:
    f = fs_acd
    f.fs.agents["agent1"] = "answer"
    await _agent(f, "a1", "login", "ready")
    async with event_log(f.client) as messages:
        events = _Events(messages)
        caller = await _caller(f)
        await _enter(f, caller, customer={"name": "Ann"})
        await wait_for(_of(events, "QueueCallConnected", caller), 20, "QueueCallConnected")
        offered = next(e for e in events if e["type"] == "QueueCallOffered")
        assert offered["agent_id"] == "a1" and offered["customer"] == {"name": "Ann"}
        await wait_for(
            lambda: any(f"uuid_bridge {caller} " in c for c in f.fs.received),
            10,
            "uuid_bridge",
        )
        # The 66XXX far end hangs up (30 s x SCALE): a1 wraps up, then is available.
        await wait_for(lambda: f.state("a1") == "available", 20, "a1 available")

        def changes(state: str) -> list[dict[str, Any]]:
            return [
                e
                for e in events
                if e["type"] == "AgentStateChanged"
                and e["agent_id"] == "a1"
                and e["state"] == state
            ]

        def wrapped() -> bool:
            wraps = changes("wrap_up")
            return bool(wraps) and any(e["ts"] >= wraps[-1]["ts"] for e in changes("available"))

        await wait_for(wrapped, 10, "AgentStateChanged wrap_up, then available")
        wrap, free = changes("wrap_up")[-1], changes("available")[-1]
        assert abs((free["ts"] - wrap["ts"]) - 1.5) <= 0.5, (wrap, free)


async def test_no_answer_goes_to_the_next_agent_and_auto_pauses(fs_acd: Fs) -> None:
    f = fs_acd
    f.fs.agents["agent2"] = "ring"
    f.fs.agents["agent1"] = "answer"
    await _agent(f, "a2", "login", "ready")
    # a1 is busy elsewhere: paused, so a2 (idle) gets the first offer.
    status, _, _ = await f.client.request("POST", "/agents/a1/pause", json={"reason": "break"})
    assert status == 200
    async with event_log(f.client) as messages:
        events = _Events(messages)
        caller = await _caller(f, "66002")
        await _enter(f, caller)
        await wait_for(lambda: f.state("a2") == "paused", 20, "a2 auto-paused")
        assert f.acd.status("a2").pause_reason == "no-answer"
        await _agent(f, "a1", "ready")
        await wait_for(_of(events, "QueueCallConnected", caller), 20, "connected to a1")
        connected = next(e for e in events if e["type"] == "QueueCallConnected")
        assert connected["agent_id"] == "a1"
    status, _, _ = await f.client.request("DELETE", f"/calls/{caller}")
    await wait_for(lambda: f.acd.entry_of(caller) is None, 20, "caller gone")


async def test_an_unregistered_phone_pauses_its_agent_unreachable(fs_acd: Fs) -> None:
    # user/agent9 has no registration: FreeSWITCH fails the originate before any channel
    # (BACKGROUND_JOB -ERR USER_NOT_REGISTERED, cause 20). On the base the agent was paused
    # "no-answer", as if it had let its phone ring.
    f = fs_acd
    assert "agent9" not in f.fs.agents
    await _agent(f, "a9", "login", "ready")
    caller = await _caller(f, "66004")
    status, body, _ = await f.client.request(
        "POST", "/queues/support/calls", json={"call_id": caller}
    )
    assert status == 201, body
    await wait_for(lambda: f.state("a9") == "paused", 20, "a9 paused")
    status, body, _ = await f.client.request("GET", "/agents/a9")
    assert status == 200 and body["pause_reason"] == "unreachable", body
    entry = f.acd.entry_of(caller)
    assert entry is not None and entry.phase.value == "waiting"  # still queued
    await f.client.request("DELETE", f"/calls/{caller}")
    await wait_for(lambda: f.acd.entry_of(caller) is None, 20, "caller gone")


async def test_abandon_while_waiting_and_while_the_agent_rings(fs_acd: Fs) -> None:
    f = fs_acd
    await wait_for(lambda: f.state("a1") == "available", 20, "a1 free")
    status, _, _ = await f.client.request("POST", "/agents/a1/pause", json={"reason": "break"})
    assert status == 200
    async with event_log(f.client) as messages:
        events = _Events(messages)
        waiting = await _caller(f, "66003")
        await _enter(f, waiting)
        status, _, _ = await f.client.request("DELETE", f"/calls/{waiting}")
        assert status == 202
        await wait_for(_of(events, "QueueCallAbandoned", waiting), 20, "abandon while waiting")
        gone = next(e for e in events if e["type"] == "QueueCallAbandoned")
        assert gone["while"] == "waiting"

        f.fs.agents["agent1"] = "ring"
        await _agent(f, "a1", "ready")
        ringing = await _caller(f, "66004")
        await _enter(f, ringing)
        await wait_for(lambda: f.state("a1") == "reserved", 10, "a1 rung")
        status, _, _ = await f.client.request("DELETE", f"/calls/{ringing}")
        await wait_for(_of(events, "QueueCallAbandoned", ringing), 20, "abandon while ringing")
        last = [e for e in events if e["type"] == "QueueCallAbandoned"][-1]
        assert last["while"] == "ringing"
        assert f.state("a1") == "available"
        assert f.acd.status("a1").missed_in_row == 0
    f.fs.agents["agent1"] = "answer"
