"""Supervisor listen / whisper / barge on FreeSWITCH: the whole engine against the fake
FreeSWITCH, whose eavesdrop replays tests/fixtures/freeswitch-1.10/transcripts/eavesdrop-*.esl
(docs/supervisor.md).

Each mode's originate is checked against the recorded ``.sent`` line (application, target,
the eavesdrop variables and their order), the mode switch against the recorded
``uuid_recv_dtmf`` digits, and the engine's handling of the recorded events through its own
``SupervisorSpy`` events (ringing, connected when S answers, ended at S's hangup).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.esl_transcripts import TRANSCRIPTS
from tests.fs_acd_rig import Fs, fs_acd_engine
from tests.harness import (
    event_log,
    wait_for,
)

SCALE = 0.2  # a 66XXX caller stays up 6 s unless hung up

CONFIG = """
[[trunks]]
name = "fs-good"
switch = "freeswitch-1"
target = "carrier"
max_channels = 50
max_cps = 100
cps_burst = 50
[acd]
pause_reasons = ["break"]
supervisor_endpoints = { freeswitch-1 = ["user/supervisor1"] }
[[agents]]
id = "s1"
endpoints = { freeswitch-1 = "user/agent1" }
skills = { spy = 5 }
[[queues]]
name = "spyq"
skills = { spy = 5 }
"""


@pytest.fixture(scope="module")
async def fs_sup(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Fs]:
    async with fs_acd_engine(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        data_dir=store_data_dir,
        name="supfs",
        config=CONFIG,
        time_scale=SCALE,
    ) as f:
        yield f


def recorded_originate(file: str) -> tuple[list[tuple[str, str]], str]:
    """The supervisor's originate of a recording: its variables in order, and its application
    with the agent leg written as ``<A>``."""
    sent = (TRANSCRIPTS / f"{file}.sent").read_text()
    line = next(c for c in sent.split("\n\n") if "&eavesdrop(" in c).split("\n")[0]
    return _parse_originate(line)


def _parse_originate(line: str) -> tuple[list[tuple[str, str]], str]:
    m = re.fullmatch(r"bgapi originate \{([^}]*)\}(\S+) (&eavesdrop\(([^)]+)\))", line)
    assert m is not None, line
    pairs = [tuple(p.split("=", 1)) for p in m.group(1).split(",")]
    return [(k, v) for k, v in pairs], m.group(3).replace(m.group(4), "<A>")


async def _on_call(f: Fs, number: str) -> tuple[str, str]:
    """A 66XXX caller queued and connected to s1; (caller call id, s1's leg)."""
    await wait_for(
        lambda: f.acd.status("s1").state.value in ("logged_out", "paused", "available"),
        20,
        "s1 free",
    )
    if f.acd.status("s1").state.value == "logged_out":
        await f.client.request("POST", "/agents/s1/login")
    if f.acd.status("s1").state.value == "paused":
        status, body, _ = await f.client.request("POST", "/agents/s1/ready")
        assert status == 200, body
    call = await f.client.originate(number, trunk="fs-good", timeout_s=10)
    await f.client.wait_state(call["call_id"], "answered")
    status, body, _ = await f.client.request(
        "POST", "/queues/spyq/calls", json={"call_id": call["call_id"]}
    )
    assert status == 201, body
    await wait_for(lambda: f.acd.status("s1").state.value == "on_call", 20, "s1 on the call")
    await wait_for(lambda: bool(f.fs.bridged_agent_legs()), 10, "bridge")
    return str(call["call_id"]), f.fs.bridged_agent_legs()[-1]


def _spy_events(messages: list[dict[str, Any]], spy_id: str) -> list[dict[str, Any]]:
    return [
        m["event"]
        for m in list(messages)
        if isinstance(m.get("event"), dict)
        and m["event"].get("type") == "SupervisorSpy"
        and m["event"].get("spy_id") == spy_id
    ]


async def _spy(f: Fs, mode: str, expect: int) -> dict[str, Any]:
    status, body, _ = await f.client.request(
        "POST", "/agents/s1/spy", json={"mode": mode, "endpoint": "user/supervisor1"}
    )
    assert status == expect, body
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize(
    ("mode", "file"),
    [
        ("listen", "eavesdrop-listen.esl"),
        ("whisper", "eavesdrop-whisper-agent.esl"),
        ("barge", "eavesdrop-barge.esl"),
    ],
)
async def test_each_mode_sends_the_recorded_originate_and_follows_its_events(
    fs_sup: Fs, mode: str, file: str
) -> None:
    f = fs_sup
    async with event_log(f.client) as messages:
        caller, agent_leg = await _on_call(f, f"6605{len(mode)}")
        spy = await _spy(f, mode, 201)
        assert spy["agent_call_id"] == agent_leg and spy["call_id"] == caller
        assert spy["state"] == "ringing" and spy["mode"] == mode
        sid = spy["spy_id"]
        await wait_for(
            lambda: any(e["state"] == "connected" for e in _spy_events(messages, sid)),
            10,
            "SupervisorSpy connected (S answered, recorded CHANNEL_ANSWER)",
        )
        sent = next(c for c in f.fs.received if "&eavesdrop(" in c and sid in c)
        variables, app = _parse_originate(sent.split("\n")[0])
        rec_vars, rec_app = recorded_originate(file)
        assert app.replace(agent_leg, "<A>") == rec_app == "&eavesdrop(<A>)"
        assert ("origination_uuid", sid) == variables[0]
        # The recorded mode variables, in the recorded order (the caller id is the rig's).
        mode_vars = [kv for kv in variables if kv[0].startswith("eavesdrop_")]
        assert mode_vars == [kv for kv in rec_vars if kv[0].startswith("eavesdrop_")]
        assert f.fs.spies[sid].mode == mode
        # The recorded MEDIA_BUG_START fired on the agent's leg; the call goes on.
        assert f.acd.status("s1").state.value == "on_call"
        status, body, _ = await f.client.request("DELETE", "/agents/s1/spy")
        assert status == 200 and body["spies"][0]["spy_id"] == sid
        await wait_for(
            lambda: any(e["state"] == "ended" for e in _spy_events(messages, sid)),
            10,
            "SupervisorSpy ended (recorded uuid_kill S end)",
        )
        assert f"api uuid_kill {sid} NORMAL_CLEARING" in f.fs.received
        assert f.acd.status("s1").state.value == "on_call"  # C and A stay bridged
        assert [e["state"] for e in _spy_events(messages, sid)] == ["ringing", "connected", "ended"]
    status, _, _ = await f.client.request("DELETE", f"/calls/{caller}")
    await wait_for(lambda: f.acd.entry_of(caller) is None, 20, "caller gone")


async def test_mode_switch_sends_the_recorded_digits_and_the_agents_hangup_ends_the_spy(
    fs_sup: Fs,
) -> None:
    f = fs_sup
    async with event_log(f.client) as messages:
        caller, _ = await _on_call(f, "66061")
        sid = (await _spy(f, "listen", 201))["spy_id"]
        await wait_for(
            lambda: any(e["state"] == "connected" for e in _spy_events(messages, sid)),
            10,
            "connected",
        )
        # Same endpoint again: no second ring, the digit is received on S (recorded).
        assert (await _spy(f, "whisper", 200))["spy_id"] == sid
        assert (await _spy(f, "barge", 200))["mode"] == "barge"
        assert (await _spy(f, "listen", 200))["mode"] == "listen"
        assert [c for c in f.fs.received if c.startswith(f"api uuid_recv_dtmf {sid}")] == [
            f"api uuid_recv_dtmf {sid} 2",
            f"api uuid_recv_dtmf {sid} 3",
            f"api uuid_recv_dtmf {sid} 0",
        ]
        await wait_for(lambda: len(f.fs.spies[sid].modes) == 4, 5, "digits received")
        assert f.fs.spies[sid].modes == ["listen", "whisper", "barge", "listen"]
        await wait_for(
            lambda: (
                [e["mode"] for e in _spy_events(messages, sid)][-3:]
                == ["whisper", "barge", "listen"]
            ),
            10,
            "SupervisorSpy events of each mode switch",
        )
        # The caller hangs up: the agent's leg goes, and with it the supervisor's.
        _status, _, _ = await f.client.request("DELETE", f"/calls/{caller}")
        await wait_for(
            lambda: any(e["state"] == "ended" for e in _spy_events(messages, sid)),
            10,
            "the spy ends with the agent's call",
        )
    assert not f.acd.supervisor.spies


async def test_refusals_name_what_was_wrong(fs_sup: Fs) -> None:
    f = fs_sup
    await wait_for(lambda: f.acd.status("s1").state.value != "on_call", 20, "s1 off the call")
    status, body, _ = await f.client.request(
        "POST", "/agents/s1/spy", json={"mode": "listen", "endpoint": "user/supervisor1"}
    )
    assert status == 409 and body["error_id"] == "agent-not-on-call", body
    status, body, _ = await f.client.request(
        "POST", "/agents/s1/spy", json={"mode": "shout", "endpoint": "user/supervisor1"}
    )
    assert status == 400, body
    status, body, _ = await f.client.request(
        "POST", "/agents/s1/spy", json={"mode": "listen", "endpoint": "user/x}{bad"}
    )
    assert status == 400, body
    status, body, _ = await f.client.request("DELETE", "/agents/s1/spy")
    assert status == 404 and body["error_id"] == "no-spy-session", body
