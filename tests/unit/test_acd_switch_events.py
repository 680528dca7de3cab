"""Normalized ACD events from the real FreeSWITCH recordings, and the SIP agents' helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.pbx import base
from engine.pbx.freeswitch import esl_codec as codec
from engine.pbx.freeswitch.normalize import Normalizer
from tests.fakes.esl_transcripts import TRANSCRIPTS
from tests.fakes.fake_esl import ACD_LEGS
from tests.sip_agents import AgentSpec, SippAgent, parse_log

MOH = "tone_stream://%(400,200,440,480);loops=-1"


def normalized(name: str, moh_on: str) -> list[tuple[str, str, str]]:
    """(type, leg, detail) of every normalized event of C and A in a recording, with hold
    music registered on ``moh_on`` as the driver's moh_start does."""
    c, a = ACD_LEGS[name]
    legs = {c: "C", a: "A"}
    norm = Normalizer(switch="fs")
    norm.moh[moh_on] = ("default", MOH)
    out: list[tuple[str, str, str]] = []
    for msg in codec.EslParser().feed((TRANSCRIPTS / name).read_bytes()):
        if not isinstance(msg, codec.EslEvent):
            continue
        for ev in norm(msg, 0.0):
            if ev.call_id not in legs:
                continue
            detail = ""
            if isinstance(ev, base.Bridged):
                detail = legs.get(ev.other_call_id, "?")
            elif isinstance(ev, base.MohStarted):
                detail = ev.moh_class
            elif isinstance(ev, base.HungUp):
                detail = str(ev.cause)
            out.append((ev.type, legs[ev.call_id], detail))
    return out


def test_agent_hangs_up_without_park_after_bridge() -> None:
    name = "acd-moh-bridge-agent-hangs-up.esl"
    got = [e for e in normalized(name, ACD_LEGS[name][0]) if e[0] not in ("Ringing",)]
    assert got == [
        ("ChannelCreated", "C", ""),
        ("Answered", "C", ""),
        ("MohStarted", "C", "default"),
        ("ChannelCreated", "A", ""),
        ("Answered", "A", ""),
        # The bridge breaks the music; ONE CHANNEL_BRIDGE (on C) gives both legs a Bridged.
        ("MohStopped", "C", ""),
        ("Bridged", "C", "A"),
        ("Bridged", "A", "C"),
        ("Unbridged", "C", ""),
        ("HungUp", "C", "16"),
        ("HungUp", "A", "16"),
    ]


def test_park_after_bridge_keeps_the_caller_and_its_music_can_start_again() -> None:
    name = "acd-moh-bridge-agent-hangs-up-park-after-bridge.esl"
    got = [e for e in normalized(name, ACD_LEGS[name][0]) if e[0] != "Ringing"]
    after_agent = got[got.index(("HungUp", "A", "16")) - 1 :]
    assert after_agent == [
        ("Unbridged", "C", ""),
        ("HungUp", "A", "16"),
        ("MohStarted", "C", "default"),
        # Our uuid_kill: the music stops (PLAYBACK_STOP) before HANGUP_COMPLETE.
        ("MohStopped", "C", ""),
        ("HungUp", "C", "16"),
    ]


def test_caller_hangs_up_while_bridged_ends_the_agent_first() -> None:
    name = "acd-moh-bridge-caller-hangs-up.esl"
    got = normalized(name, ACD_LEGS[name][0])
    assert got[-3:] == [("HungUp", "A", "16"), ("Unbridged", "C", ""), ("HungUp", "C", "16")]


def test_agent_no_answer_leaves_the_caller_alone() -> None:
    name = "acd-moh-agent-no-answer.esl"
    got = normalized(name, ACD_LEGS[name][0])
    agent = [e for e in got if e[1] == "A"]
    assert agent == [("ChannelCreated", "A", ""), ("Ringing", "A", ""), ("HungUp", "A", "19")]
    no_answer = got.index(("HungUp", "A", "19"))
    # Until we hang the caller up ourselves, nothing happens to it.
    assert got[no_answer + 1 :] == [("MohStopped", "C", ""), ("HungUp", "C", "16")]


def test_a_prompt_playback_is_not_hold_music() -> None:
    """Only the registered stream of a leg is hold music (play() uses uuid_broadcast too)."""
    name = "acd-moh-bridge-agent-hangs-up.esl"
    got = normalized(name, ACD_LEGS[name][1])  # music registered on the agent, not C
    assert not [e for e in got if e[0] in ("MohStarted", "MohStopped")]


def test_agent_log_lines_parse() -> None:
    text = (
        "abc-1 INVITE\n"
        "SIPp banner line\n"
        "abc-1 ANSWERED\n"
        "abc-1 BYE-RECEIVED\n"
        "def-2 INVITE\n"
        "def-2 CANCELLED\n"
    )
    steps = parse_log(text)
    assert [(s.sip_call_id, s.step) for s in steps] == [
        ("abc-1", "INVITE"),
        ("abc-1", "ANSWERED"),
        ("abc-1", "BYE-RECEIVED"),
        ("def-2", "INVITE"),
        ("def-2", "CANCELLED"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "agent9"}, "agent1..agent8"),
        ({"name": "bob"}, "agent1..agent8"),
        ({"name": "agent1", "mode": "busy"}, "mode"),
        ({"name": "agent1", "mode": "answer-hangup"}, "hold_s"),
    ],
)
def test_agent_spec_refuses_what_pjsip_conf_does_not_have(
    kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        AgentSpec(**kwargs)  # type: ignore[arg-type]


def test_agent_ports_and_hangup_scenario(tmp_path: Path) -> None:
    spec = AgentSpec("agent3", "answer-hangup", 2.5)
    assert spec.port == 5203
    cmd = SippAgent(spec, tmp_path).command()
    assert cmd[cmd.index("-p") + 1] == "5203"
    scenario = Path(cmd[cmd.index("-sf") + 1]).read_text()
    assert 'timeout="2500"' in scenario and "HOLD_MS" not in scenario
