"""The fake FreeSWITCH's ACD behaviour must say what the real one said (third batch).

Each recording of tests/fixtures/freeswitch-1.10 README "Third batch" is replayed against the
fake: its recorded client commands (``.esl.sent``) are sent, each when the transcript shows
its reply is next, and what comes back is compared with the transcript, restricted to what
the engine subscribes to (DEFAULT_EVENTS: the recordings also subscribed CHANNEL_EXECUTE and
friends, which the engine never reads) and to the caller and agent legs (the carrier's
far-end legs are the fake's 66XXX call, recorded in another file). Compared: every reply
(kind and body), and every event of C, of A and every BACKGROUND_JOB, in order, with its
header names (channel variables aside, see _shape).
"""

from __future__ import annotations

import asyncio

import pytest

from engine.pbx.freeswitch import esl_codec as codec
from engine.pbx.freeswitch.esl_client import DEFAULT_EVENTS
from tests.fakes.esl_transcripts import TRANSCRIPTS, Frame, split_frames
from tests.fakes.fake_esl import ACD_LEGS, FakeFreeSwitch

Shape = tuple[str, str, str, tuple[str, ...]]

ACD_SCENARIOS = [
    "acd-moh-bridge-agent-hangs-up.esl",
    "acd-moh-bridge-agent-hangs-up-park-after-bridge.esl",
    "acd-moh-bridge-caller-hangs-up.esl",
    "acd-moh-agent-no-answer.esl",
    "moh-local-stream-missing.esl",
]


def _shape(frame: Frame, legs: dict[str, str]) -> Shape | None:
    """What is compared of one frame, or None when it is not compared."""
    ctype = frame.headers.get("Content-Type", "")
    ev = frame.event
    if ev is None:
        body = frame.body.decode() if ctype == "api/response" else ""
        reply = frame.headers.get("Reply-Text", "")
        return (ctype, reply, body, ())
    if ev.name not in DEFAULT_EVENTS or ev.name in ("HEARTBEAT", "CUSTOM"):
        return None
    if ev.name == "BACKGROUND_JOB":
        role = "job"
    elif ev.uid in legs:
        role = legs[ev.uid]
    else:
        return None  # a far-end leg
    # variable_* headers are the channel's variables at that moment: they follow the
    # leg's history (what the carrier dialplan set, park_after_bridge, the last app...),
    # which the fake's caller takes from a second-batch call. The event's own headers
    # must match, in order.
    names = tuple(dict.fromkeys(k for k, _ in ev.pairs if not k.startswith("variable_")))
    return (ctype, ev.name, role, names)


def recorded(name: str) -> list[Shape]:
    c, a = ACD_LEGS[name]
    legs = {c: "C", a: "A"} if a else {c: "C"}
    frames = split_frames((TRANSCRIPTS / name).read_bytes())
    return [s for f in frames if (s := _shape(f, legs)) is not None]


def sent_commands(name: str) -> list[bytes]:
    data = (TRANSCRIPTS / f"{name}.sent").read_bytes()
    return [c + b"\n\n" for c in data.split(b"\n\n") if c]


async def replay(name: str, fs: FakeFreeSwitch) -> list[Shape]:
    c, a = ACD_LEGS[name]
    legs = {c: "C", a: "A"} if a else {c: "C"}
    want = recorded(name)
    commands = sent_commands(name)
    got: list[Shape] = []
    reader, writer = await asyncio.open_connection(fs.host, fs.port)
    buf = b""
    sent_at = -1
    try:
        while len(got) < len(want):
            is_reply = want[len(got)][0] in ("command/reply", "api/response", "auth/request")
            if is_reply and want[len(got)][0] != "auth/request" and sent_at != len(got):
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
                    last = [g[:3] for g in got[-4:]]
                    nxt = [w[:3] for w in want[len(got) : len(got) + 3]]
                    raise AssertionError(
                        f"fake went quiet after {len(got)} frames; last {last}, next {nxt}"
                    ) from None
                assert chunk, f"fake closed the connection after {len(got)} frames"
                buf += chunk
            buf = b""
            got.extend(s for f in frames if (s := _shape(f, legs)) is not None)
    finally:
        writer.close()
    return got


@pytest.mark.parametrize("name", ACD_SCENARIOS)
async def test_fake_matches_the_acd_recording(name: str) -> None:
    want = recorded(name)
    async with FakeFreeSwitch(time_scale=0.1, heartbeat_interval=3600) as fs:
        got = await replay(name, fs)
    assert [s[:3] for s in got] == [s[:3] for s in want], "reply/event order drifted"
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g[3] == w[3], f"header names of message {index} ({w[1]} {w[2]}) drifted"


def events(name: str) -> list[tuple[str, str]]:
    """(event name, leg) of the compared events of a recording."""
    return [(s[1], s[2]) for s in recorded(name) if s[0] == "text/event-plain"]


def test_the_recordings_show_what_the_fake_is_built_on() -> None:
    """The facts the fake's ACD code relies on, read from the recordings themselves."""
    agent_hangs_up = events("acd-moh-bridge-agent-hangs-up.esl")
    bridges = [s for s in agent_hangs_up if s[0] == "CHANNEL_BRIDGE"]
    assert bridges == [("CHANNEL_BRIDGE", "C")]  # ONE CHANNEL_BRIDGE, on the caller
    tail = agent_hangs_up[agent_hangs_up.index(("CHANNEL_HANGUP", "A")) :]
    assert tail == [
        ("CHANNEL_HANGUP", "A"),
        ("CHANNEL_UNBRIDGE", "C"),
        ("CHANNEL_HANGUP", "C"),
        ("CHANNEL_HANGUP_COMPLETE", "C"),
        ("CHANNEL_HANGUP_COMPLETE", "A"),
    ]
    parked = events("acd-moh-bridge-agent-hangs-up-park-after-bridge.esl")
    after = parked[parked.index(("CHANNEL_HANGUP", "A")) :][:4]
    assert after == [
        ("CHANNEL_HANGUP", "A"),
        ("CHANNEL_UNBRIDGE", "C"),
        ("CHANNEL_PARK", "C"),
        ("CHANNEL_HANGUP_COMPLETE", "A"),
    ]
    caller = [e for e in events("acd-moh-bridge-caller-hangs-up.esl") if e[1] != "job"]
    end = caller[caller.index(("CHANNEL_HANGUP", "C")) :]
    assert end == [
        ("CHANNEL_HANGUP", "C"),
        ("CHANNEL_HANGUP", "A"),
        ("CHANNEL_HANGUP_COMPLETE", "A"),
        ("CHANNEL_UNBRIDGE", "C"),
        ("CHANNEL_HANGUP_COMPLETE", "C"),
    ]
