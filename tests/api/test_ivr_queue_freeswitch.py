"""Issue 12: the IVR `queue` step with the ACD on FreeSWITCH, end to end: the whole engine
(real PostgreSQL and Redis) against the fake ESL peer (tests/fakes/fake_esl.py).

The engine originates a 66XXX call through the recorded carrier gateway with ``then: ivr``:
its answered leg runs the flow on the outbound socket (``socket ... async full``), and the far
end keys the menu choice (``fs.far_end_digits``, at the recorded DTMF spacing of
outbound-socket-gather-success.esl). The inbound case: a 67XXX call, whose carrier-side leg
runs ``socket`` to the engine (outbound-socket-ivr.esl), is adopted at its `queue` step.

What the fake replays, and from where (tests/fixtures/freeswitch-1.10/README.md):
- recorded: the outbound session's connect/myevents/linger, execute answer and
  play_and_get_digits with its DTMF (first and second batch); the hold music (third batch,
  acd-moh-bridge-agent-hangs-up.esl: ``uuid_broadcast`` of the rig's looping tone stream,
  CHANNEL_EXECUTE playback, PLAYBACK_START); the agent's phone (the SIPp agent of that
  recording, ``user/agent1`` answering at once), ``uuid_bridge`` breaking the music
  (PLAYBACK_STOP, ONE CHANNEL_BRIDGE on the caller); the replies of ``uuid_park`` (``+OK``)
  and the other uuid_* commands.
- modelled on the FreeSWITCH 1.10.12 source (mod_event_socket.c, switch_ivr.c,
  switch_core_state_machine.c at a88d069d6f), because no recording has it: ``uuid_park`` of
  a leg whose socket app is still running (the app's park loop ends: CHANNEL_UNPARK, the
  socket app's CHANNEL_EXECUTE_COMPLETE, then the core's park: CHANNEL_PARK with no
  CHANNEL_EXECUTE; all three reach the session, as myevents lists them), and the session's
  ``exit`` afterwards (``+OK bye``, a disconnect notice with Content-Disposition:
  disconnect, the socket closes, and the parked leg stays up: no hangup, the dialplan is
  not resumed); a parked 67XXX carrier-side leg then ends, when hung up, with its session's
  recorded hangup events. See docs/freeswitch.md "The IVR `queue` step on FreeSWITCH".
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.app import Engine
from engine.pbx import base
from tests.fakes.carrier_ami import CarrierFakeAmi
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.harness import (
    Client,
    engine_config,
    event_log,
    freeswitch_switch_toml,
    running_engine,
    wait_for,
)
from tests.integration.engine_process import free_port

SWITCH = "freeswitch-1"
#: The hold music of the third batch's recordings (README "Third batch": the rig's
#: local_stream://moh has no files).
MOH = "tone_stream://%(400,200,440,480);loops=-1"

FLOW = """\
name: fs-queue
steps:
  - answer
  - id: main
    menu:
      prompt: beep
      options:
        - {dtmf: "1", goto: sales}
        - {dtmf: "2", goto: after_hours}
      timeout_s: 6
      into: choice
  - id: sales
    queue: {queue: sales, tags: [vip], customer: {menu_choice: "{choice}"}}
  - id: sorry
    play: sorry
  - hangup
  - id: after_hours
    set: {wanted: after_hours}
  - queue: {intent: {from: wanted}}
  - goto: sorry
"""

ACD = f"""
[[trunks]]
name = "fs-good"
switch = "{SWITCH}"
target = "carrier"
max_channels = 20
max_cps = 20
[acd]
intents = {{ pre_sale = "sales" }}
pause_reasons = ["break"]
[[agents]]
id = "a1"
endpoints = {{ {SWITCH} = "user/agent1" }}
skills = {{ sales = 9 }}
[[queues]]
name = "sales"
skills = {{ sales = 5 }}
ring_timeout_s = 5.0
wrap_up_s = 0.5
"""


@dataclass
class Rig:
    engine: Engine
    client: Client
    fs: FakeFreeSwitch


@pytest.fixture(scope="module")
async def rig(pg_dsn: str, redis_url: str, store_data_dir: Path) -> AsyncIterator[Rig]:
    base = store_data_dir / f"ivr-queue-fs-{uuid.uuid4().hex[:6]}"
    flows = base / "ivr"
    flows.mkdir(parents=True)
    (flows / "fs-queue.yaml").write_text(FLOW)
    outbound_port = free_port()
    # 67XXX: the carrier's far end runs `socket` to the engine (an inbound call).
    async with (
        CarrierFakeAmi() as ami,
        FakeFreeSwitch(time_scale=0.05, carrier_socket=("127.0.0.1", outbound_port)) as fs,
    ):
        fs.long_call_s = 30.0  # 66XXX: up 1.5 s x 20 unless hung up (the tests hang up)
        switch = freeswitch_switch_toml(
            SWITCH,
            fs.host,
            fs.port,
            fs.password,
            f'moh_streams = {{ default = "{MOH}" }}',
            outbound_port=outbound_port,
        )
        cfg = engine_config(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"ivrqfs:{uuid.uuid4().hex[:8]}:",
            data_dir=base / "engine",
            ami_port=ami.port,
            agi_bind_port=0,
            ivr_dir=flows,
            extra=switch + ACD,
        )
        async with running_engine(cfg) as (engine, client):
            assert engine.ivr is not None and engine.ivr.errors == []
            yield Rig(engine, client, fs)


def _events(log: list[dict[str, Any]], call_id: str) -> list[dict[str, Any]]:
    return [
        m["event"]
        for m in list(log)
        if isinstance(m.get("event"), dict) and m["event"].get("call_id") == call_id
    ]


def _of(log: list[dict[str, Any]], call_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in _events(log, call_id) if e["type"] == kind]


async def _call(rig: Rig, keys: str) -> str:
    number = f"66{uuid.uuid4().int % 1000:03d}"
    rig.fs.far_end_digits[number] = keys
    call = await rig.client.originate(
        number, trunk="fs-good", then={"kind": "ivr", "flow": "fs-queue"}, timeout_s=10
    )
    return str(call["call_id"])


def _index(commands: list[str], prefix: str) -> int:
    return next(k for k, c in enumerate(commands) if c.startswith(prefix))


async def test_menu_choice_queues_the_caller_and_an_agent_is_bridged(rig: Rig) -> None:
    """Menu 1 -> `queue: sales`: the leg is parked (uuid_park) while its session is open,
    the ACD plays the hold music; the session ends with ``exit`` and no hangup, IvrFinished
    says queued; the parked caller stays up with its music, and once a1 is ready the call is
    offered and bridged, the bridge breaking the music as recorded."""
    fs = rig.fs
    fs.agents["agent1"] = "answer"
    await _a1_ready(rig)
    # a1 on a break while the caller is queued: the caller waits with the hold music.
    status, body, _ = await rig.client.request("POST", "/agents/a1/pause", json={"reason": "break"})
    assert status == 200, body
    seen: list[base.PbxEvent] = []  # what the driver made of the switch's events

    async def collect() -> None:
        async for e in rig.engine.drivers[SWITCH].events():
            seen.append(e)

    collector = asyncio.create_task(collect())
    async with event_log(rig.client) as log:
        call_id = await _call(rig, "1")
        await wait_for(lambda: _of(log, call_id, "IvrFinished"), 30, "IvrFinished")
        (done,) = _of(log, call_id, "IvrFinished")
        assert (done["reason"], done["queue"]) == ("queued", "sales"), done
        (menu,) = _of(log, call_id, "IvrInput")
        assert (menu["digits"], menu["outcome"]) == ("1", "ok"), menu
        (entered,) = _of(log, call_id, "QueueCallEntered")
        assert (entered["queue"], entered["tags"]) == ("sales", ["vip"]), entered
        assert entered["entry_id"] == done["entry_id"]
        # The recorded hold music (acd-moh-bridge-agent-hangs-up.esl): uuid_broadcast of the
        # looping stream, PLAYBACK_START on the parked caller.
        await wait_for(lambda: _kinds(seen, call_id) == ["MohStarted"], 10, "MohStarted")

        # The IVR session: the menu, then exit; never a hangup. The leg outlived it.
        (session,) = [s for s in fs.sessions if s.uid == call_id]
        sent = [c.split("\n", 1)[0] + " " + _app(c) for c in session.received]
        assert sent[-1].startswith("exit"), sent
        assert not any("call-command: hangup" in c for c in session.received), sent
        assert session.released and not session.hung_up
        status, call, _ = await rig.client.request("GET", f"/calls/{call_id}")
        assert status == 200 and call["state"] == "answered", call

        status, body, _ = await rig.client.request("POST", "/agents/a1/ready")
        assert status == 200, body
        await wait_for(lambda: _of(log, call_id, "QueueCallConnected"), 30, "connected")
        (offered,) = _of(log, call_id, "QueueCallOffered")
        assert offered["agent_id"] == "a1"
        assert offered["customer"] == {"menu_choice": "1"}
        assert _of(log, call_id, "QueueCallConnected")[0]["agent_id"] == "a1"
        # The bridge breaks the music (PLAYBACK_STOP) before its CHANNEL_BRIDGE (recorded).
        await wait_for(lambda: "Bridged" in _kinds(seen, call_id), 10, "Bridged")
        assert _kinds(seen, call_id) == ["MohStarted", "MohStopped", "Bridged"], seen
        collector.cancel()
        # The switch side, in order: park, hold music, agent bridged; the caller never killed.
        commands = fs.received
        park = _index(commands, f"api uuid_park {call_id}")
        moh = _index(commands, f"api uuid_broadcast {call_id} {MOH} aleg")
        bridge = _index(commands, f"api uuid_bridge {call_id} ")
        assert park < moh < bridge, commands[park:]
        assert not any(c.startswith(f"api uuid_kill {call_id}") for c in commands[:bridge])
        status, call, _ = await rig.client.request("GET", f"/calls/{call_id}")
        assert status == 200 and call["state"] == "bridged", call
        assert fs.channels[call_id].bridged_to in fs.bridged_agent_legs()

        status, _, _ = await rig.client.request("DELETE", f"/calls/{call_id}")
        assert status == 202
        await rig.client.wait_state(call_id, "ended", timeout_s=20)
    await wait_for(lambda: rig.engine.acd is not None and rig.engine.acd.entry_of(call_id) is None)


def _kinds(events: list[base.PbxEvent], call_id: str) -> list[str]:
    wanted = (base.MohStarted, base.MohStopped, base.Bridged, base.HungUp)
    return [type(e).__name__ for e in events if e.call_id == call_id and isinstance(e, wanted)]


def _app(command: str) -> str:
    return next(
        (h.split(": ", 1)[1] for h in command.split("\n") if h.startswith("execute-app-name: ")),
        "",
    )


async def test_a_refused_queue_runs_the_steps_after_it(rig: Rig) -> None:
    """Menu 2 -> `queue` with an intent that maps to no queue: the ACD refuses it
    (IvrQueueRefused, nothing sent to the switch for it), and the steps after the queue
    run: the apology, then the hangup; the flow ends `completed`."""
    async with event_log(rig.client) as log:
        call_id = await _call(rig, "2")
        await wait_for(lambda: _of(log, call_id, "IvrFinished"), 30, "IvrFinished")
        await rig.client.wait_state(call_id, "ended", timeout_s=20)
        (refused,) = _of(log, call_id, "IvrQueueRefused")
        assert "'after_hours' maps to no queue" in refused["reason"], refused
        (done,) = _of(log, call_id, "IvrFinished")
        assert done["reason"] == "completed", done
        steps = [p.split(":", 1)[1] for p in done["path"]]
        assert steps == [
            "answer@0",
            "main",
            "after_hours",
            "queue@6",
            "goto@7",
            "sorry",
            "hangup@4",
        ], steps
        assert _of(log, call_id, "QueueCallEntered") == []
    assert not any(c.startswith(f"api uuid_park {call_id}") for c in rig.fs.received)
    (session,) = [s for s in rig.fs.sessions if s.uid == call_id]
    assert [_app(c) for c in session.received if _app(c)][-1] == "playback"
    assert any("call-command: hangup" in c for c in session.received)


async def test_an_inbound_carrier_call_is_adopted_queued_and_bridged(rig: Rig) -> None:
    """A call that arrives from the carrier into the IVR (67XXX: its far-end leg runs
    ``socket`` to the engine, outbound-socket-ivr.esl): a leg the engine did not place. The
    flow's name comes in the channel variable the carrier dialplan sets (here through the
    originate's variables). At its `queue` step the engine adopts the leg (``show channels``
    lists it answered, inbound), parks it, queues it and bridges it to a1."""
    fs = rig.fs
    fs.agents["agent1"] = "answer"
    await _a1_ready(rig)
    number = f"67{uuid.uuid4().int % 1000:03d}"
    fs.far_end_digits[number] = "1"
    async with event_log(rig.client) as log:
        ours = await rig.client.originate(
            number, trunk="fs-good", timeout_s=10, variables={"engine_ivr_flow": "fs-queue"}
        )

        def finished() -> list[dict[str, Any]]:
            return [
                m["event"]
                for m in list(log)
                if isinstance(m.get("event"), dict)
                and m["event"].get("type") == "IvrFinished"
                and m["event"].get("call_id") != ours["call_id"]
            ]

        await wait_for(finished, 30, "IvrFinished of the carrier's leg")
        (done,) = finished()
        leg = done["call_id"]
        assert (done["reason"], done["queue"]) == ("queued", "sales"), done
        await wait_for(lambda: _of(log, leg, "QueueCallConnected"), 30, "connected")
        assert _of(log, leg, "QueueCallOffered")[0]["agent_id"] == "a1"
        status, call, _ = await rig.client.request("GET", f"/calls/{leg}")
        assert status == 200, call
        assert (call["direction"], call["state"]) == ("inbound", "bridged"), call
        (session,) = [s for s in fs.sessions if s.uid == leg]
        assert session.released and not session.hung_up
        commands = fs.received
        park = _index(commands, f"api uuid_park {leg}")
        assert park < _index(commands, f"api uuid_bridge {leg} "), commands[park:]
        # Hanging up the carrier's leg ends the call: our parked leg gets the BYE (the
        # recorded end of outbound-socket-ivr.esl), and a1's leg is hung up with it.
        status, _, _ = await rig.client.request("DELETE", f"/calls/{leg}")
        assert status == 202
        await rig.client.wait_state(leg, "ended", timeout_s=20)
        await rig.client.wait_state(ours["call_id"], "ended", timeout_s=20)
    assert rig.engine.acd is not None
    await wait_for(lambda: rig.engine.acd is not None and rig.engine.acd.entry_of(leg) is None)
    await wait_for(lambda: _agent_free(rig, "a1"), 20, "a1 free after the wrap-up")


def _agent_free(rig: Rig, agent_id: str) -> bool:
    assert rig.engine.acd is not None
    return rig.engine.acd.status(agent_id).state.value == "available"


async def _a1_ready(rig: Rig) -> None:
    """a1 logged in and available (an earlier test's call may still be wrapping up)."""
    assert rig.engine.acd is not None
    state = rig.engine.acd.status("a1").state.value
    actions = {"logged_out": ("login", "ready"), "paused": ("ready",)}.get(state, ())
    for action in actions:
        status, body, _ = await rig.client.request("POST", f"/agents/a1/{action}")
        assert status == 200, body
    await wait_for(lambda: _agent_free(rig, "a1"), 20, "a1 available")
