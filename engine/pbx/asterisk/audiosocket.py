"""Asterisk's media tap: the AudioSocket protocol (app_audiosocket / res_audiosocket).

Why AudioSocket on Asterisk (and not ExternalMedia over ARI, or EAGI): the engine already
drives calls over AMI + FastAGI, and AudioSocket is one dialplan application, ``AudioSocket(
<uuid>,<host>:<port>)``, that the AGI session (``EXEC``) or an AMI Originate can start. It is
a plain TCP stream, so there is no RTP/jitter handling to write, and it is two-way: what the
engine sends is played to the caller, so the prompt of a speech menu is played over the same
socket and barge-in is just "stop sending". EAGI gives audio only on fd 3 of a local
process (not FastAGI), and ExternalMedia needs ARI, which the engine does not use. The
sandbox's Debian build loads app_audiosocket, chan_audiosocket and res_audiosocket.

Wire format (res_audiosocket.c, Asterisk 22): each message is one kind byte, a 2-byte
big-endian length, then the payload:

- ``0x01`` the call's UUID (16 bytes), sent first by Asterisk: how the engine knows which
  call a connection is (the AMI/AGI side chose that UUID);
- ``0x10`` audio: signed linear 16-bit, 8 kHz, mono, LITTLE-endian (20 ms = 320 bytes from
  a PJSIP leg), both ways;
- ``0x03`` a DTMF digit (one ASCII byte);
- ``0x00`` hang up (either side; Asterisk ends the application when the engine sends it or
  closes the socket);
- ``0xff`` an error code byte from Asterisk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import uuid
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.core.lifecycle import AsyncResource

log = logging.getLogger(__name__)

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_SLIN = 0x10
KIND_ERROR = 0xFF
RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
#: 10 s of frames: a reader that fell behind loses the oldest audio, not memory.
BUFFER_FRAMES = 500
_HEADER = struct.Struct(">BH")


class AudioSocketError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Message:
    kind: int
    payload: bytes


class Decoder:
    """Sans-IO: bytes in, messages out."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(self._buf)
            if len(self._buf) < _HEADER.size + size:
                break
            payload = bytes(self._buf[_HEADER.size : _HEADER.size + size])
            del self._buf[: _HEADER.size + size]
            out.append(Message(kind, payload))
        return out


def encode(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise AudioSocketError(f"AudioSocket message of {len(payload)} bytes exceeds 65535")
    return _HEADER.pack(kind, len(payload)) + payload


def parse_uuid(payload: bytes) -> str:
    if len(payload) != 16:
        raise AudioSocketError(f"AudioSocket UUID message: expected 16 bytes, got {len(payload)}")
    return str(uuid.UUID(bytes=payload))


class AudioSocketStream:
    """One call's AudioSocket connection: an :class:`engine.speech.source.AudioSource`, and
    a player for prompts on the same socket."""

    rate = RATE

    def __init__(self, call_uuid: str) -> None:
        self.call_uuid = call_uuid
        self.frames: deque[npt.NDArray[np.int16]] = deque(maxlen=BUFFER_FRAMES)
        self.dtmf: deque[str] = deque()
        self._closed = False
        self._wakeup = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._play_task: asyncio.Task[None] | None = None
        self._dtmf_arrived = asyncio.Event()
        self.received = 0
        #: True when Asterisk ended the stream (hangup/error message or EOF), not the engine.
        self.closed_by_far_end = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_connected(self, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()

    def _attach(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._connected.set()

    def push(self, message: Message) -> None:
        if message.kind == KIND_SLIN:
            data = message.payload[: len(message.payload) - len(message.payload) % 2]
            self.frames.append(np.frombuffer(data, dtype="<i2").astype(np.int16))
            self.received += 1
        elif message.kind == KIND_DTMF and message.payload:
            self.dtmf.append(message.payload[:1].decode("ascii", "replace"))
            self._dtmf_arrived.set()
        elif message.kind in (KIND_HANGUP, KIND_ERROR):
            self.closed_by_far_end = True
            self.close()
            return
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._connected.set()
        self._wakeup.set()
        self._dtmf_arrived.set()
        if self._play_task is not None:
            self._play_task.cancel()

    async def read(self, timeout_s: float) -> npt.NDArray[np.int16] | None:
        while not self.frames:
            if self._closed or timeout_s <= 0:
                return None
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout_s)
            except TimeoutError:
                return None
        return self.frames.popleft()

    async def next_dtmf(self) -> str:
        """The caller's next DTMF key (app_audiosocket forwards them as 0x03 messages);
        waits for one, forever once the stream is closed."""
        while not self.dtmf:
            if self._closed:
                await asyncio.Event().wait()
            self._dtmf_arrived.clear()
            await self._dtmf_arrived.wait()
        return self.dtmf.popleft()

    def play(self, samples: npt.NDArray[np.int16]) -> AudioSocketPrompt:
        """Send ``samples`` (8 kHz) to the caller at the real-time pace; returns the handle
        whose ``stop()`` is barge-in."""
        if self._play_task is not None:
            self._play_task.cancel()
        self._play_task = asyncio.ensure_future(self._send_paced(samples))
        return AudioSocketPrompt(self._play_task)

    async def _send_paced(self, samples: npt.NDArray[np.int16]) -> None:
        writer = self._writer
        if writer is None:
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Asterisk plays what it gets as it gets it (no jitter buffer on this path), so the
        # engine paces at 20 ms on a fixed grid rather than sending the prompt in one burst.
        for k, at in enumerate(range(0, len(samples), FRAME_SAMPLES)):
            if self._closed:
                return
            delay = start + k * 0.020 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = samples[at : at + FRAME_SAMPLES].astype("<i2").tobytes()
            writer.write(encode(KIND_SLIN, frame))

    async def hangup(self) -> None:
        """End the AudioSocket application (the dialplan goes on after it)."""
        if self._writer is not None and not self._closed:
            with contextlib.suppress(OSError):
                self._writer.write(encode(KIND_HANGUP))
                await asyncio.wait_for(self._writer.drain(), 2)
        self.close()


class AudioSocketPrompt:
    def __init__(self, task: asyncio.Task[None]) -> None:
        self._task = task

    @property
    def playing(self) -> bool:
        return not self._task.done()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def wait(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class AudioSocketServer(AsyncResource):
    """The engine's TCP endpoint for every AudioSocket of one Asterisk.

    ``expect(uuid)`` before starting ``AudioSocket(<uuid>,host:port)`` on the call; a
    connection whose UUID was not expected is hung up (it is nobody's call)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._expected: dict[str, AudioSocketStream] = {}
        self.rejected = 0

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for stream in list(self._expected.values()):
            stream.close()
        self._expected.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def expect(self, call_uuid: str | None = None) -> AudioSocketStream:
        key = str(uuid.UUID(call_uuid)) if call_uuid else str(uuid.uuid4())
        stream = AudioSocketStream(key)
        self._expected[key] = stream
        return stream

    def forget(self, call_uuid: str) -> None:
        stream = self._expected.pop(call_uuid, None)
        if stream is not None:
            stream.close()

    def application_data(self, stream: AudioSocketStream, advertise_host: str = "") -> str:
        """The ``AudioSocket`` application's argument for ``stream``."""
        return f"{stream.call_uuid},{advertise_host or self.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder()
        stream: AudioSocketStream | None = None
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                for msg in decoder.feed(data):
                    if stream is None:
                        if msg.kind != KIND_UUID:
                            raise AudioSocketError(
                                f"AudioSocket: first message kind 0x{msg.kind:02x}, expected UUID"
                            )
                        key = parse_uuid(msg.payload)
                        stream = self._expected.get(key)
                        if stream is None:
                            self.rejected += 1
                            writer.write(encode(KIND_HANGUP))
                            return
                        stream._attach(writer)
                        continue
                    stream.push(msg)
                    if stream.closed:
                        return  # a hangup or error message: the call's audio is over
        except (AudioSocketError, ConnectionError) as err:
            log.warning("AudioSocket connection dropped: %s", err)
        finally:
            if stream is not None:
                if not stream.closed:
                    stream.closed_by_far_end = True  # EOF: Asterisk closed the socket
                stream.close()
                self._expected.pop(stream.call_uuid, None)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)
