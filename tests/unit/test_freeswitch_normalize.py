"""Normalization straight from the real transcripts (no fake involved)."""

from __future__ import annotations

import pytest

from engine.pbx import base
from engine.pbx.freeswitch.esl_codec import EslEvent, EslParser
from engine.pbx.freeswitch.normalize import Normalizer
from tests.fakes.esl_transcripts import TRANSCRIPTS

A = "11111111-aaaa-4bbb-8ccc-0000000000"


def normalized(name: str, call_id: str, job: str) -> list[base.PbxEvent]:
    norm = Normalizer(switch="fs1")
    norm.jobs[job] = call_id
    out: list[base.PbxEvent] = []
    for msg in EslParser().feed((TRANSCRIPTS / name).read_bytes()):
        if isinstance(msg, EslEvent):
            out += norm(msg, now=1.0)
    return out


def of_call(events: list[base.PbxEvent], call_id: str) -> list[base.PbxEvent]:
    return [e for e in events if e.call_id == call_id]


@pytest.mark.parametrize(
    ("name", "suffix", "cause", "sip", "text", "types"),
    [
        (
            "originate-answered.esl",
            "02",
            16,
            200,
            "NORMAL_CLEARING",
            ["ChannelCreated", "Ringing", "Answered", "HungUp"],
        ),
        ("originate-busy.esl", "04", 17, 486, "USER_BUSY", ["ChannelCreated", "HungUp"]),
        (
            "originate-congestion.esl",
            "05",
            34,
            503,
            "NORMAL_TEMPORARY_FAILURE",
            ["ChannelCreated", "HungUp"],
        ),
        (
            "originate-noanswer.esl",
            "06",
            19,
            None,
            "NO_ANSWER",
            ["ChannelCreated", "Ringing", "HungUp"],
        ),
        (
            "originate-failover.esl",
            "08",
            34,
            503,
            "NORMAL_TEMPORARY_FAILURE",
            ["ChannelCreated", "HungUp"],
        ),
    ],
)
def test_originate_outcomes_from_real_bytes(
    name: str, suffix: str, cause: int, sip: int | None, text: str, types: list[str]
) -> None:
    call = A + suffix
    events = of_call(normalized(name, call, f"job-00{suffix}"), call)
    assert [e.type for e in events] == types
    hung = events[-1]
    assert isinstance(hung, base.HungUp)
    assert (hung.cause, hung.sip_code, hung.cause_text) == (cause, sip, text)
    assert not any(isinstance(e, base.OriginateFailed) for e in events)


def test_gateway_down_is_originate_failed() -> None:
    call = A + "07"
    events = normalized("originate-gateway-down.esl", call, "job-0007")
    assert len(events) == 1
    failed = events[0]
    assert isinstance(failed, base.OriginateFailed)
    assert (failed.call_id, failed.cause, failed.cause_text) == (call, 27, "GATEWAY_DOWN")


def test_dtmf_record_and_gateway_state() -> None:
    dtmf = normalized("dtmf-from-far-end.esl", A + "09", "job-0009")
    assert "".join(e.digit for e in dtmf if isinstance(e, base.Dtmf)) == "1234"
    rec = normalized("record.esl", A + "10", "job-0010")
    started = [e for e in rec if isinstance(e, base.RecordingStarted | base.RecordingStopped)]
    assert [(e.type, e.path) for e in started] == [
        ("RecordingStarted", "/srv/rec01/rec-0010.wav"),
        ("RecordingStopped", "/srv/rec01/rec-0010.wav"),
    ]
    trunks = [e for e in rec if isinstance(e, base.TrunkStatus)]
    assert [(t.trunk, t.status) for t in trunks] == [("rig_down_reg", "unreachable")] * 3


def test_json_events_normalize_like_plain() -> None:
    call = A + "03"
    events = of_call(normalized("originate-answered-json.esl", call, "job-0003"), call)
    assert [e.type for e in events] == ["ChannelCreated", "Ringing", "Answered", "HungUp"]
    hung = events[-1]
    assert isinstance(hung, base.HungUp) and (hung.cause, hung.sip_code) == (16, 200)
