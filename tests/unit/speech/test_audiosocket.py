"""The AudioSocket codec and server, with a client that speaks like app_audiosocket: UUID
first, then 320-byte slin frames every 20 ms; the engine's prompt frames come back on the
same socket and stop at barge-in."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from engine.pbx.asterisk.audiosocket import (
    KIND_HANGUP,
    KIND_SLIN,
    KIND_UUID,
    AudioSocketError,
    AudioSocketServer,
    Decoder,
    encode,
    parse_uuid,
)
from engine.speech.vad import Endpointer, VadEvent, VadParams


def test_codec_splits_and_joins_messages() -> None:
    u = uuid.uuid4()
    wire = encode(KIND_UUID, u.bytes) + encode(KIND_SLIN, b"\x01\x00" * 160) + encode(0x00)
    dec = Decoder()
    got = []
    for i in range(0, len(wire), 7):  # any chunking
        got += dec.feed(wire[i : i + 7])
    assert [m.kind for m in got] == [KIND_UUID, KIND_SLIN, KIND_HANGUP]
    assert parse_uuid(got[0].payload) == str(u)
    assert len(got[1].payload) == 320
    assert wire[:3] == bytes([0x01, 0x00, 0x10])  # kind, big-endian length 16


def test_bad_uuid_and_oversize_are_named() -> None:
    with pytest.raises(AudioSocketError, match="16 bytes"):
        parse_uuid(b"short")
    with pytest.raises(AudioSocketError, match="65535"):
        encode(KIND_SLIN, b"\x00" * 70000)


async def _asterisk(port: int, call: str, audio: np.ndarray, got_back: list[bytes]) -> None:
    """A far end as app_audiosocket: UUID, then paced slin frames; collects what it gets."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode(KIND_UUID, uuid.UUID(call).bytes))
    dec = Decoder()

    async def collect() -> None:
        while data := await reader.read(4096):
            got_back.extend(m.payload for m in dec.feed(data) if m.kind == KIND_SLIN)

    task = asyncio.ensure_future(collect())
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k, at in enumerate(range(0, len(audio), 160)):
        delay = start + k * 0.005 - loop.time()  # 4x real time: the test need not wait
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(encode(KIND_SLIN, audio[at : at + 160].astype("<i2").tobytes()))
    await writer.drain()
    writer.write(encode(KIND_HANGUP))
    await writer.drain()
    await asyncio.wait_for(task, 5)
    writer.close()


async def test_caller_audio_arrives_and_speech_stops_the_prompt() -> None:
    async with AudioSocketServer() as server:
        stream = server.expect()
        silence = np.zeros(8000, dtype=np.int16)  # 1 s
        t = np.arange(4000) / 8000
        voice = np.asarray(8000 * np.sin(2 * np.pi * 300 * t), dtype=np.int16)  # 0.5 s
        back: list[bytes] = []
        far = asyncio.ensure_future(
            _asterisk(
                server.port, stream.call_uuid, np.concatenate([silence, voice, silence]), back
            )
        )
        await stream.wait_connected(5)
        # A 10 s prompt: it must be cut at the caller's first words, not play out.
        prompt = stream.play(np.full(80000, 1000, dtype=np.int16))
        ep = Endpointer(VadParams(), stream.rate)
        events = []
        while (frame := await stream.read(5)) is not None:
            ev = ep.feed(frame)
            if ev is VadEvent.SPEECH_START:
                await prompt.stop()
            if ev is not VadEvent.NONE:
                events.append(ev)
        await far
        assert events == [VadEvent.SPEECH_START, VadEvent.SPEECH_END]
        assert stream.received == 125  # 2.5 s of 20 ms frames
        assert not prompt.playing
        # Barge-in came ~1.06 s of caller audio in, at 4x pace: far fewer than 500 frames.
        assert 0 < len(back) < 200
        assert stream.closed


async def test_an_unexpected_uuid_is_hung_up() -> None:
    async with AudioSocketServer() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(encode(KIND_UUID, uuid.uuid4().bytes))
        data = await asyncio.wait_for(reader.read(100), 5)
        assert data[:1] == bytes([KIND_HANGUP])
        assert server.rejected == 1
        writer.close()
