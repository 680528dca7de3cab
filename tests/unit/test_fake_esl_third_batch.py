"""The fake FreeSWITCH against the third batch's other recordings (uuid_hold, uuid_record
mask/pause, eavesdrop, unicast): tests/fixtures/freeswitch-1.10 README "Third batch".

As in test_fake_esl_acd.py, the recorded client commands (``.esl.sent``) are replayed, each
when the transcript shows its reply is next, and what comes back is compared with the
transcript for the caller (C), agent (A) and supervisor (S) legs and every BACKGROUND_JOB
(the carrier's far-end legs are the fake's own calls, recorded elsewhere). Compared: each
reply (kind, Reply-Text, body), the events of the engine's subscription plus MEDIA_BUG_* and
CHANNEL_HOLD/UNHOLD, and each event's header names (channel variables aside). Not compared:
CHANNEL_EXECUTE and CHANNEL_UNPARK, which the engine never subscribes to and the fake does
not model.

Order: each leg's own events must come in the recorded order, and between two replies the
same events must come. Across legs the recordings disagree with each other (threads race):
after ``uuid_bridge C A`` without hold music the two EXECUTE_COMPLETE(park) come C first in
eavesdrop-listen/-barge and acd-bridge-uuid-hold but A first in eavesdrop-whisper-agent*,
-dtmf-mode-switch; after ``uuid_kill C`` of a bridged caller A's HANGUP_COMPLETE comes before
C's UNBRIDGE in three of them, between C's UNBRIDGE and HANGUP_COMPLETE in two, last in one.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from engine.pbx.freeswitch import esl_codec as codec
from engine.pbx.freeswitch.esl_client import DEFAULT_EVENTS
from tests.fakes.esl_transcripts import TRANSCRIPTS, Frame, split_frames
from tests.fakes.fake_esl import TEMPLATE_A, FakeFreeSwitch

#: recording -> (leg role by the last two digits of its uuid).
LEGS: dict[str, dict[str, str]] = {
    "acd-bridge-uuid-hold.esl": {"71": "C", "72": "A"},
    "record-mask-unmask.esl": {"49": "C"},
    "record-stereo-pause-resume.esl": {"50": "C"},
    "eavesdrop-listen.esl": {"51": "C", "52": "A", "53": "S"},
    "eavesdrop-whisper-agent-caller-silent.esl": {"54": "C", "55": "A", "56": "S"},
    "eavesdrop-whisper-agent.esl": {"57": "C", "58": "A", "59": "S"},
    "eavesdrop-barge.esl": {"63": "C", "64": "A", "65": "S"},
    "eavesdrop-dtmf-mode-switch.esl": {"60": "C", "61": "A", "62": "S"},
    "unicast-native-pcmu.esl": {"65": "C"},
    "unicast-l16-pcmu.esl": {"66": "C"},
    "unicast-l16-g722.esl": {"67": "C"},
}
EVENTS = {*DEFAULT_EVENTS, "MEDIA_BUG_START", "MEDIA_BUG_STOP", "CHANNEL_HOLD", "CHANNEL_UNHOLD"}
EVENTS -= {"HEARTBEAT", "CUSTOM"}

#: (kind, what, leg, header names); kind "reply" or "event".
Shape = tuple[str, str, str, tuple[str, ...]]


def _legs(name: str) -> dict[str, str]:
    return {TEMPLATE_A + k: v for k, v in LEGS[name].items()}


def _shape(frame: Frame, legs: dict[str, str]) -> Shape | None:
    ctype = frame.headers.get("Content-Type", "")
    ev = frame.event
    if ev is None:
        if ctype == "command/reply" and frame.headers.get("Reply-Text", "").startswith("+OK "):
            text = frame.headers["Reply-Text"]
            # sendevent: "+OK <the new event's uuid>", a fresh uuid each time
            if len(text) == 40 and text.count("-") == 4:
                return ("reply", f"{ctype} +OK <event uuid>", "", ())
        body = frame.body.decode() if ctype == "api/response" else ""
        return ("reply", f"{ctype} {frame.headers.get('Reply-Text', '')} {body!r}", "", ())
    if ev.name not in EVENTS:
        return None
    if ev.name == "BACKGROUND_JOB":
        leg = "job"
    elif ev.uid in legs:
        leg = legs[ev.uid]
    else:
        return None  # a far-end leg
    what = ev.name
    for header in ("Application", "Application-Response", "Media-Bug-Function"):
        if ev.get(header):
            what += f" {ev.get(header)}"
    names = tuple(dict.fromkeys(k for k, _ in ev.pairs if not k.startswith("variable_")))
    return ("event", what, leg, names)


def recorded(name: str) -> list[Shape]:
    legs = _legs(name)
    frames = split_frames((TRANSCRIPTS / name).read_bytes())
    return [s for f in frames if (s := _shape(f, legs)) is not None]


async def replay(name: str, fs: FakeFreeSwitch) -> list[Shape]:
    legs = _legs(name)
    want = recorded(name)
    data = (TRANSCRIPTS / f"{name}.sent").read_bytes()
    commands = [c + b"\n\n" for c in data.split(b"\n\n") if c]
    got: list[Shape] = []
    reader, writer = await asyncio.open_connection(fs.host, fs.port)
    buf = b""
    sent_at = -1
    try:
        while len(got) < len(want):
            if want[len(got)][0] == "reply" and sent_at != len(got):
                if not want[len(got)][1].startswith("auth/request"):
                    writer.write(commands.pop(0))
                sent_at = len(got)
            while True:
                probe = codec.EslParser()
                if buf and probe.feed(buf) and probe.buffered == 0:
                    frames = split_frames(buf)
                    break
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), 10)
                except TimeoutError:
                    raise AssertionError(
                        f"fake went quiet after {len(got)} messages; next {want[len(got)][:3]}"
                    ) from None
                assert chunk, f"fake closed the connection after {len(got)} messages"
                buf += chunk
            buf = b""
            got.extend(s for f in frames if (s := _shape(f, legs)) is not None)
    finally:
        writer.close()
    return got


def _segments(shapes: list[Shape]) -> list[list[Shape]]:
    """The events between two replies, each list starting with its reply."""
    out: list[list[Shape]] = []
    for s in shapes:
        if s[0] == "reply" or not out:
            out.append([])
        out[-1].append(s)
    return out


def assert_same(got: list[Shape], want: list[Shape]) -> None:
    assert [s[1] for s in got if s[0] == "reply"] == [s[1] for s in want if s[0] == "reply"]
    for g, w in zip(_segments(got), _segments(want), strict=True):
        assert Counter(s[:3] for s in g) == Counter(s[:3] for s in w), f"after {w[0][1]}"
    for leg in {s[2] for s in want if s[0] == "event"}:
        g_leg = [s for s in got if s[0] == "event" and s[2] == leg]
        w_leg = [s for s in want if s[0] == "event" and s[2] == leg]
        assert [s[1] for s in g_leg] == [s[1] for s in w_leg], f"order of {leg}'s events"
        for index, (g, w) in enumerate(zip(g_leg, w_leg, strict=True)):
            assert g[3] == w[3], f"header names of {leg}'s event {index} ({w[1]}) drifted"


@pytest.mark.parametrize("name", list(LEGS))
async def test_fake_matches_the_third_batch_recording(name: str) -> None:
    async with FakeFreeSwitch(time_scale=0.1, heartbeat_interval=3600, long_call_s=600) as fs:
        got = await replay(name, fs)
        if name == "eavesdrop-dtmf-mode-switch.esl":
            # README: after 2 the agent hears S, after the sendevent's 1 the caller, after
            # 3 both, after 0 nobody; then * ends it.
            spy = fs.spies[TEMPLATE_A + "62"]
            assert spy.modes == ["listen", "whisper", "caller", "barge", "listen"]
            assert spy.digits == ["2", "1", "3", "0", "*"]
    assert_same(got, recorded(name))


def test_the_recordings_show_the_races_the_comparison_allows() -> None:
    """The cross-leg order the comparison leaves free does differ between recordings."""

    def parks(name: str) -> list[str]:
        return [
            s[2]
            for s in recorded(name)
            if s[1].startswith("CHANNEL_EXECUTE_COMPLETE park") and s[2] in "CA"
        ][:2]

    assert parks("eavesdrop-listen.esl") == ["C", "A"]
    assert parks("eavesdrop-whisper-agent.esl") == ["A", "C"]
