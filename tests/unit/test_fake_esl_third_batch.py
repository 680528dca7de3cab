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
import itertools
import wave
from collections import Counter

import pytest

from engine.pbx.freeswitch import esl_codec as codec
from engine.pbx.freeswitch.esl_client import DEFAULT_EVENTS
from tests.fakes.esl_transcripts import TRANSCRIPTS, Frame, events_of, split_frames
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
    # Replayed in strict order by test_fake_esl_acd.py; here for the header values.
    "acd-moh-bridge-agent-hangs-up.esl": {"41": "C", "42": "A"},
    "acd-moh-bridge-agent-hangs-up-park-after-bridge.esl": {"47": "C", "48": "A"},
    "acd-moh-bridge-caller-hangs-up.esl": {"43": "C", "44": "A"},
    "acd-moh-agent-no-answer.esl": {"45": "C", "46": "A"},
    "moh-local-stream-missing.esl": {"40": "C"},
}
#: Header values compared (uuids as leg roles): what the driver reads (normalize.py:
#: Channel-Name on every event, the bridge's legs and Channel-Call-UUID, the hangup's cause,
#: q850 and SIP status, paths, digits), and the ones these recordings are about.
VALUES = (
    "Channel-Name",
    "Caller-Destination-Number",
    "Caller-Caller-ID-Number",
    "Other-Leg-Unique-ID",
    "Bridge-A-Unique-ID",
    "Bridge-B-Unique-ID",
    "Channel-Call-UUID",
    "Hangup-Cause",
    "variable_hangup_cause_q850",
    "variable_sip_term_status",
    "variable_sip_hangup_disposition",
    "Application-Data",
    "Playback-File-Path",
    "Playback-Status",
    "Record-File-Path",
    "Media-Bug-Target",
    "DTMF-Digit",
    # What the recorder set with uuid_setvar: every later event of the leg lists it.
    "variable_park_after_bridge",
    "variable_RECORD_STEREO",
    "variable_bridge_generate_comfort_noise",
)
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
    for header in VALUES:
        if header == "Channel-Call-UUID" and ev.name == "CHANNEL_HANGUP_COMPLETE":
            # A bridged agent's HANGUP_COMPLETE says its own uuid in six recordings and the
            # caller's in two (eavesdrop-whisper-agent-caller-silent.esl,
            # acd-moh-bridge-caller-hangs-up.esl): another race; the driver does not read it.
            continue
        value = ev.get(header)
        if value:
            what += f" {header}={legs.get(value, value)}"
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
    for g_seg, w_seg in zip(_segments(got), _segments(want), strict=True):
        assert Counter(s[:3] for s in g_seg) == Counter(s[:3] for s in w_seg), w_seg[0][1]
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


# --------------------------------------------------------------------------------------
# The unicast tap's datagrams (unicast-*.udp.log / .udp.raw) against the fake's.
# --------------------------------------------------------------------------------------

TAPS = [
    # (recording, originate variables, flags)
    ("unicast-native-pcmu", ",absolute_codec_string=PCMU", "native"),
    ("unicast-l16-pcmu", ",absolute_codec_string=PCMU", ""),
    ("unicast-l16-g722", "", ""),
]


def _udp_log(name: str) -> list[tuple[float, str, int]]:
    rows = (TRANSCRIPTS / f"{name}.udp.log").read_text().split("\n")
    return [(float(t), src, int(n)) for t, src, n in (r.split() for r in rows if r)]


def _peak_and_pitch(grams: list[bytes], native: bool, rate: int) -> tuple[int, float]:
    import numpy as np

    from engine.pbx.freeswitch.media_tap import decode_l16, decode_native_pcmu

    audio = np.concatenate([decode_native_pcmu(g) if native else decode_l16(g) for g in grams])
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    pitch = float(np.fft.rfftfreq(len(audio), 1 / rate)[int(np.argmax(spectrum))])
    return int(np.abs(audio.astype(np.int32)).max()), pitch


@pytest.mark.parametrize(("name", "variables", "flags"), TAPS)
async def test_fake_unicast_datagrams_match_the_recorded_ones(
    name: str, variables: str, flags: str
) -> None:
    import socket

    from tests.fakes import fake_unicast

    log = _udp_log(name)
    raw = (TRANSCRIPTS / f"{name}.udp.raw").read_bytes()
    sizes = {n for _, _, n in log}
    assert len(sizes) == 1 and sum(n for _, _, n in log) == len(raw)
    size = sizes.pop()
    recorded_src = {src for _, src, _ in log}
    assert recorded_src == {"127.0.0.1:8025"}  # FreeSWITCH sends FROM the local-port
    gaps = sorted(b[0] - a[0] for a, b in itertools.pairwise(log))
    assert round(gaps[len(gaps) // 2], 3) == fake_unicast.FRAME_S  # one frame every 20 ms
    native = flags == "native"
    rate = 16000 if "g722" in name else 8000
    recorded_grams = [raw[k : k + size] for k in range(0, len(raw), size)]
    want_peak, want_pitch = _peak_and_pitch(recorded_grams, native, rate)

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    local_port = probe.getsockname()[1]
    probe.close()
    uid = TEMPLATE_A + "90"
    async with FakeFreeSwitch(time_scale=0.05, heartbeat_interval=3600) as fs:
        reader, writer = await asyncio.open_connection(fs.host, fs.port)
        parser = codec.EslParser()
        messages: list[codec.EslMessage] = []

        async def next_message() -> codec.EslMessage:
            while not messages:
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                assert chunk
                messages.extend(parser.feed(chunk))
            return messages.pop(0)

        async def command(text: str) -> codec.CommandReply | codec.ApiResponse:
            writer.write(text.encode() + b"\n\n")
            while True:
                msg = await next_message()
                if isinstance(msg, codec.CommandReply | codec.ApiResponse):
                    return msg

        await next_message()  # auth/request
        await command("auth ClueCon")
        await command("event plain CHANNEL_PARK")
        await command(
            f"bgapi originate {{origination_uuid={uid},origination_caller_id_number=5550001"
            f"{variables}}}sofia/gateway/carrier/69090 &park()"
        )
        while not (
            isinstance(msg := await next_message(), codec.EslEvent)
            and msg.name == "CHANNEL_PARK"
            and msg.get("Unique-ID") == uid
        ):
            pass
        headers = [
            "call-command: unicast",
            "local-ip: 127.0.0.1",
            f"local-port: {local_port}",
            "remote-ip: 127.0.0.1",
            f"remote-port: {sink.getsockname()[1]}",
            "transport: udp",
        ] + ([f"flags: {flags}"] if flags else [])
        reply = await command(f"sendmsg {uid}\n" + "\n".join(headers))
        assert isinstance(reply, codec.CommandReply) and reply.reply_text == "+OK"
        loop = asyncio.get_running_loop()
        grams: list[tuple[bytes, tuple[str, int]]] = []
        while len(grams) < 50:
            grams.append(await asyncio.wait_for(loop.sock_recvfrom(sink, 4096), 5))
        tap = next(t for u, t in fs.taps if u == uid)
        await command(f"api uuid_transfer {uid} engine_park XML default")
        await asyncio.wait_for(tap.wait(), 5)  # the transfer ends the park: the tap stops
        while True:  # what it sent before it stopped is already in the socket's buffer
            try:
                grams.append(sink.recvfrom(4096))
            except BlockingIOError:
                break
        assert tap.sent == len(grams)
        assert tap.sent < len(tap.samples) // (rate // 50)  # stopped before the audio ended
        writer.close()
    sink.close()
    assert {src for _, src in grams} == {("127.0.0.1", local_port)}
    assert {len(g) for g, _ in grams} == {size}
    peak, pitch = _peak_and_pitch([g for g, _ in grams], native, rate)
    assert abs(peak - want_peak) <= 40 and abs(pitch - want_pitch) < 5


# --------------------------------------------------------------------------------------
# uuid_record of a bridged caller and agent (eavesdrop-whisper-agent.esl) vs a parked leg.
# --------------------------------------------------------------------------------------


def _record_stops(name: str) -> dict[str, dict[str, int]]:
    """Per leg role: the recorded RECORD_STOP's numbers and the RECORD_START..STOP span."""
    legs = _legs(name)
    starts: dict[str, int] = {}
    out: dict[str, dict[str, int]] = {}
    for ev in events_of(name):
        if ev.name == "RECORD_START":
            starts[ev.uid] = ev.ts
        elif ev.name == "RECORD_STOP" and ev.uid in legs:
            out[legs[ev.uid]] = {
                "span_ms": (ev.ts - starts[ev.uid]) // 1000,
                "rate": int(ev.get("Channel-Read-Codec-Rate")),
                **{k: int(ev.get(f"variable_record_{k}")) for k in ("ms", "samples", "file_size")},
            }
    return out


async def test_recording_a_bridged_pcmu_agent_and_a_parked_leg_as_recorded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bridged = _record_stops("eavesdrop-whisper-agent.esl")
    parked = _record_stops("record-mask-unmask.esl")["C"]
    # What the recordings say: a bridged leg loses nothing, at its own codec's rate
    # (the agent's PCMU leg: 8 kHz); a parked leg loses 0.5 s.
    assert (bridged["A"]["rate"], bridged["C"]["rate"]) == (8000, 16000)
    for leg in bridged.values():
        assert abs(leg["ms"] - leg["span_ms"]) <= 60
        assert leg["samples"] == leg["ms"] * leg["rate"] // 1000
        assert leg["samples"] % (leg["rate"] // 50) == 0  # whole 20 ms frames
        assert leg["file_size"] == 44 + leg["samples"] * 2 * 2  # stereo, 16-bit
    assert abs(parked["span_ms"] - parked["ms"] - 500) <= 20

    c, a, p = TEMPLATE_A + "91", TEMPLATE_A + "92", TEMPLATE_A + "93"
    async with FakeFreeSwitch(time_scale=0.05, heartbeat_interval=3600) as fs:
        esl = await _Esl.open(fs)
        await esl.command("event plain CHANNEL_PARK RECORD_START RECORD_STOP")
        for uid, dial in (
            (c, "sofia/gateway/carrier/69091"),
            (a, "sofia/external/agent1@127.0.0.1:5095"),
            (p, "sofia/gateway/carrier/69093"),
        ):
            await esl.command(
                f"bgapi originate {{origination_uuid={uid},origination_caller_id_number="
                f"5550001}}{dial} &park()"
            )
            await esl.event("CHANNEL_PARK", uid)
        await esl.command(f"api uuid_bridge {c} {a}")
        assert fs.channels[c].bridged_to == a
        # The recorder pretends the files began this long ago: no waiting for audio.
        fs.record_extra_s = bridged["A"]["span_ms"] / 1000
        stops: dict[str, codec.EslEvent] = {}
        for uid in (c, a, p):
            await esl.command(f"api uuid_setvar {uid} RECORD_STEREO true")
            await esl.command(f"api uuid_record {uid} start {tmp_path}/{uid[-2:]}.wav")
            await esl.event("RECORD_START", uid)
            await esl.command(f"api uuid_record {uid} stop all")
            stops[uid] = await esl.event("RECORD_STOP", uid)
        await esl.close()
    span_ms = bridged["A"]["span_ms"]
    for uid, want_rate, loss_ms in ((c, 16000, 0), (a, 8000, 0), (p, 16000, 500)):
        ev = stops[uid]
        with wave.open(f"{tmp_path}/{uid[-2:]}.wav", "rb") as w:
            assert (w.getframerate(), w.getnchannels()) == (want_rate, 2)
        ms = int(ev.get("variable_record_ms"))
        assert abs(ms - (span_ms - loss_ms)) <= 60, (uid[-2:], ms)
        samples = int(ev.get("variable_record_samples"))
        assert samples == ms * want_rate // 1000 and samples % (want_rate // 50) == 0
        assert int(ev.get("variable_record_file_size")) == 44 + samples * 2 * 2


class _Esl:
    """A bare inbound ESL client for the fake (replies and events in arrival order)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = codec.EslParser()
        self.pending: list[codec.EslMessage] = []

    @classmethod
    async def open(cls, fs: FakeFreeSwitch) -> _Esl:
        esl = cls(*await asyncio.open_connection(fs.host, fs.port))
        await esl.next()  # auth/request
        await esl.command("auth ClueCon")
        return esl

    async def next(self) -> codec.EslMessage:
        while not self.pending:
            chunk = await asyncio.wait_for(self.reader.read(65536), 10)
            assert chunk, "the fake closed the connection"
            self.pending.extend(self.parser.feed(chunk))
        return self.pending.pop(0)

    async def command(self, text: str) -> codec.CommandReply | codec.ApiResponse:
        self.writer.write(text.encode() + b"\n\n")
        seen: list[codec.EslMessage] = []
        while True:
            msg = await self.next()
            if isinstance(msg, codec.CommandReply | codec.ApiResponse):
                self.pending[:0] = seen  # events that came first stay for event()
                return msg
            seen.append(msg)

    async def event(self, name: str, uid: str) -> codec.EslEvent:
        while True:
            msg = await self.next()
            if isinstance(msg, codec.EslEvent) and msg.name == name and msg.unique_id == uid:
                return msg

    async def close(self) -> None:
        self.writer.close()
