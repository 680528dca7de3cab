"""The fake's outbound-session ``record`` against the voicemail recordings.

tests/fixtures/freeswitch-1.10/README.md, third batch, ``outbound-socket-record-silence*``:
the recorded client (``.esl.sent`` on the inbound connection, the ``>>>SENT>>>`` blocks of
``.esl.outbound`` on the outbound socket) is replayed against the fake, and what the fake
sends back must be what FreeSWITCH sent: on the outbound socket CHANNEL_EXECUTE(record) then
CHANNEL_EXECUTE_COMPLETE(record) with the recorded ``record_*`` values and nothing between
(no RECORD_*, no PLAYBACK_*); on the inbound connection RECORD_START and RECORD_STOP for
that leg with the recorded headers; the stop no sooner than the recording's (scaled) delay.
"""

from __future__ import annotations

import asyncio
import wave
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.pbx.freeswitch import esl_codec as codec
from tests.fakes.esl_transcripts import TRANSCRIPTS, TEvent, events_of, outbound_session
from tests.fakes.fake_esl import FakeFreeSwitch
from tests.fakes.fake_voicemail import G722_FILE, NO_RTP_FILE, PCMU_FILE, CallerSpeech, take

SCALE = 0.05
RECORD_VALUES = (
    "Application-Response",
    "variable_silence_hits_exhausted",
    "variable_record_ms",
    "variable_record_samples",
    "variable_record_seconds",
    "variable_record_file_size",
    "variable_record_record_file_size",
)


@dataclass
class Replay:
    outbound: list[codec.EslEvent] = field(default_factory=list)
    inbound: list[codec.EslEvent] = field(default_factory=list)
    #: loop time the record command was sent, and of the inbound RECORD_STOP
    sent_at: float = 0.0
    stopped_at: float = 0.0


def _client_blocks(name: str) -> list[bytes]:
    data = (TRANSCRIPTS / f"{name}.outbound").read_bytes()
    return [p.partition(b"<<<\n")[0] for p in data.split(b"\n>>>SENT>>>\n")[1:]]


def _inbound_commands(name: str) -> list[bytes]:
    data = (TRANSCRIPTS / f"{name}.sent").read_bytes()
    # auth, the subscription, the originate; the recorder's uuid_broadcast (the caller's
    # "speech") is what fs.voicemail_callers models.
    return [c + b"\n\n" for c in data.split(b"\n\n") if c][:3]


async def _replay(name: str) -> Replay:
    got = Replay()
    loop = asyncio.get_running_loop()
    record_done = asyncio.Event()
    finished = asyncio.Event()
    stopped = asyncio.Event()

    async def on_socket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = codec.EslParser()
        blocks = _client_blocks(name)
        assert [b.split(b"\n")[0] for b in blocks] == [b"connect", b"myevents", b"linger"] + [
            b"sendmsg"
        ] * 3

        async def read_until(done: asyncio.Event | None) -> None:
            replies = 0
            while (done is None and replies == 0) or (done is not None and not done.is_set()):
                data = await asyncio.wait_for(reader.read(65536), 10)
                assert data, "the fake closed the outbound socket"
                for msg in parser.feed(data):
                    if isinstance(msg, codec.EslEvent):
                        got.outbound.append(msg)
                        if (
                            msg.name == "CHANNEL_EXECUTE_COMPLETE"
                            and msg.get("Application") == "record"
                        ):
                            record_done.set()
                    else:
                        replies += 1

        for block in blocks[:5]:  # connect .. execute record (each answered by a reply)
            got.sent_at = loop.time()
            writer.write(block)
            await read_until(None)
        await read_until(record_done)
        writer.write(blocks[5])  # the recorded hangup, then its events until the close
        while data := await asyncio.wait_for(reader.read(65536), 10):
            got.outbound.extend(m for m in parser.feed(data) if isinstance(m, codec.EslEvent))
        finished.set()
        writer.close()

    server = await asyncio.start_server(on_socket, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with FakeFreeSwitch(
        time_scale=SCALE, heartbeat_interval=3600, carrier_socket=("127.0.0.1", port)
    ) as fs:
        if name == NO_RTP_FILE:
            number = next(e for e in events_of(name) if e.name == "CHANNEL_CREATE")
            fs.voicemail_callers[number.get("Caller-Destination-Number")] = CallerSpeech(
                rtp_after=False
            )
        reader, writer = await asyncio.open_connection(fs.host, fs.port)
        parser = codec.EslParser()
        for command in _inbound_commands(name):
            writer.write(command)

        async def pump() -> None:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for msg in parser.feed(data):
                    if isinstance(msg, codec.EslEvent):
                        got.inbound.append(msg)
                        if msg.name == "RECORD_STOP":
                            got.stopped_at = loop.time()
                            stopped.set()

        task = asyncio.create_task(pump())
        await asyncio.wait_for(finished.wait(), 20)
        await asyncio.wait_for(stopped.wait(), 10)  # the inbound copy may trail the socket's
        task.cancel()
        writer.close()
    server.close()
    return got


def _recorded_done(name: str) -> TEvent:
    return next(
        e
        for e in outbound_session(f"{name}.outbound")
        if e.name == "CHANNEL_EXECUTE_COMPLETE" and e.get("Application") == "record"
    )


@pytest.mark.parametrize("name", [PCMU_FILE, G722_FILE, NO_RTP_FILE])
async def test_outbound_record_replays_the_recording(name: str) -> None:
    got = await _replay(name)

    # The outbound session: no RECORD_* or PLAYBACK_* at all (myevents does not carry
    # them), and nothing between the record's EXECUTE and EXECUTE_COMPLETE.
    def labels(names: list[tuple[str, str]]) -> list[str]:
        return [f"{n}({a})" if a else n for n, a in names]

    want_all = [(e.name, e.get("Application")) for e in outbound_session(f"{name}.outbound")]
    got_all = [(e.name, e.get("Application")) for e in got.outbound]
    assert not [n for n, _ in got_all if n.startswith(("RECORD_", "PLAYBACK_"))]
    first = want_all.index(("CHANNEL_EXECUTE", "record"))
    g_first = got_all.index(("CHANNEL_EXECUTE", "record"))
    assert labels(got_all[g_first : g_first + 2]) == labels(want_all[first : first + 2])

    # Its EXECUTE_COMPLETE(record): the recorded values and the recorded header names.
    done = next(
        e
        for e in got.outbound
        if e.name == "CHANNEL_EXECUTE_COMPLETE" and e.get("Application") == "record"
    )
    want = _recorded_done(name)
    assert {k: done.get(k) for k in RECORD_VALUES} == {k: want.get(k) for k in RECORD_VALUES}
    assert list(done.headers) == list(dict.fromkeys(k for k, _ in want.pairs))
    assert done.get("Channel-Read-Codec-Name") == want.get("Channel-Read-Codec-Name")

    # Then the hangup as recorded: CHANNEL_UNPARK, the socket app's EXECUTE_COMPLETE with
    # the record's Application-Response (_none_; the fake said FILE PLAYED, from the IVR
    # recording), CHANNEL_STATE CS_HANGUP and CS_REPORTING, HANGUP_COMPLETE; each event
    # with what the record left on the channel and no read_result (no gather ran; the fake
    # said failure).
    keys = ("Application-Response", "Channel-State", *RECORD_VALUES, "variable_read_result")

    def tail(events: list[Any], start: int) -> list[tuple[str, ...]]:
        return [
            (e.name, e.get("Application") or "", *(e.get(k) or "" for k in keys))
            for e in events[start:]
        ]

    recorded_session = list(outbound_session(f"{name}.outbound"))
    after = next(k for k, e in enumerate(got.outbound) if e is done) + 1
    recorded_after = next(k for k, e in enumerate(recorded_session) if e is want) + 1
    assert tail(got.outbound, after) == tail(recorded_session, recorded_after)

    # The inbound connection (subscribed to RECORD_START/STOP) got both, for the socket leg.
    leg = done.unique_id
    recorded = {e.name: e for e in events_of(name) if e.name.startswith("RECORD_")}
    mine = [e for e in got.inbound if e.name.startswith("RECORD_") and e.unique_id == leg]
    assert [e.name for e in mine] == ["RECORD_START", "RECORD_STOP"]
    for ev in mine:
        assert list(ev.headers) == list(dict.fromkeys(k for k, _ in recorded[ev.name].pairs))
        assert ev.get("Record-File-Path") == "/tmp/vm-x.wav"
    assert mine[1].get("variable_record_ms") == want.get("variable_record_ms")

    # Not before the recorded delay (the silence wait: 2 s on PCMU, 4 s on G722), scaled;
    # measured from the send of the record command, which precedes the fake's start.
    assert got.stopped_at - got.sent_at >= take(name).stop_at_s * SCALE


def test_the_recorded_wav_is_what_the_record_variables_say() -> None:
    """outbound-socket-record-silence-pcmu.wav is /tmp/vm-x.wav of the PCMU take: its size,
    samples and length are the EXECUTE_COMPLETE's record_file_size / _samples / _ms."""
    done = _recorded_done(PCMU_FILE)
    path = TRANSCRIPTS / "outbound-socket-record-silence-pcmu.wav"
    with wave.open(str(path), "rb") as w:
        frames, rate = w.getnframes(), w.getframerate()
    assert path.stat().st_size == int(done.get("variable_record_file_size"))
    assert frames == int(done.get("variable_record_samples"))
    assert (rate, frames * 1000 // rate) == (8000, int(done.get("variable_record_ms")))


async def test_caller_hangup_during_the_take_completes_the_record_app() -> None:
    """INFERRED, not recorded (fake_voicemail.run_record): the caller hangs up 1.5 s into
    the silence. The outbound socket gets CHANNEL_HANGUP, then the record app's
    CHANNEL_EXECUTE_COMPLETE with the take so far (``silence_hits_exhausted: false``), then
    the socket app's and CHANNEL_HANGUP_COMPLETE (the order recorded for other apps a
    hang-up interrupted); the inbound connection gets RECORD_STOP with the same values."""
    name = G722_FILE
    outbound: list[codec.EslEvent] = []
    inbound: list[codec.EslEvent] = []
    closed = asyncio.Event()
    stopped = asyncio.Event()

    async def on_socket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = codec.EslParser()
        for block in _client_blocks(name)[:5]:  # connect .. execute record; no hangup
            writer.write(block)
        while data := await asyncio.wait_for(reader.read(65536), 10):
            outbound.extend(m for m in parser.feed(data) if isinstance(m, codec.EslEvent))
        closed.set()
        writer.close()

    server = await asyncio.start_server(on_socket, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with FakeFreeSwitch(
        time_scale=SCALE, heartbeat_interval=3600, carrier_socket=("127.0.0.1", port)
    ) as fs:
        number = next(e for e in events_of(name) if e.name == "CHANNEL_CREATE")
        fs.voicemail_callers[number.get("Caller-Destination-Number")] = CallerSpeech(
            hangup_at_s=4.5
        )
        reader, writer = await asyncio.open_connection(fs.host, fs.port)
        parser = codec.EslParser()
        for command in _inbound_commands(name):
            writer.write(command)

        async def pump() -> None:
            while data := await reader.read(65536):
                for msg in parser.feed(data):
                    if isinstance(msg, codec.EslEvent):
                        inbound.append(msg)
                        if msg.name == "RECORD_STOP":
                            stopped.set()

        task = asyncio.create_task(pump())
        await asyncio.wait_for(closed.wait(), 20)
        await asyncio.wait_for(stopped.wait(), 10)
        task.cancel()
        writer.close()
    server.close()

    labels = [
        f"{e.name}({e.get('Application')})" if e.get("Application") else e.name
        for e in outbound
        if e.name in ("CHANNEL_HANGUP", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP_COMPLETE")
    ]
    assert labels[-4:] == [
        "CHANNEL_HANGUP",
        "CHANNEL_EXECUTE_COMPLETE(record)",
        "CHANNEL_EXECUTE_COMPLETE(socket)",
        "CHANNEL_HANGUP_COMPLETE",
    ]
    done = next(
        e
        for e in outbound
        if e.name == "CHANNEL_EXECUTE_COMPLETE" and e.get("Application") == "record"
    )
    ms = round(take(name).written_offset_ms + 3500)  # 2 s of speech, 1.5 s of silence
    assert {k: done.get(k) for k in RECORD_VALUES} == {
        "Application-Response": "_none_",
        "variable_silence_hits_exhausted": "false",
        "variable_record_ms": str(ms),
        "variable_record_samples": str(ms * 16),
        "variable_record_seconds": str(ms // 1000),
        "variable_record_file_size": str(44 + 32 * ms),
        "variable_record_record_file_size": str(44 + 32 * ms),
    }
    assert list(done.headers) == list(dict.fromkeys(k for k, _ in _recorded_done(name).pairs))
    (stop,) = [e for e in inbound if e.name == "RECORD_STOP" and e.unique_id == done.unique_id]
    assert stop.get("variable_record_ms") == str(ms)
