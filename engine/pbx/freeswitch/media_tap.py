"""Receive the audio FreeSWITCH streams with ESL ``unicast`` (the engine's AMD input).

FreeSWITCH 1.10 has no answering-machine detection, so the driver asks it to copy a parked
leg's incoming audio to the engine: ``sendmsg <uuid>`` with ``call-command: unicast``
(recorded: unicast-*.esl in tests/fixtures/freeswitch-1.10). What the recordings show, and
what this module relies on:

- FreeSWITCH binds ``local-ip:local-port`` itself and sends from there to
  ``remote-ip:remote-port``, one datagram per 20 ms frame, with no RTP header;
- without ``flags`` the payload is 16-bit signed linear, LITTLE-endian (host order, not
  network order), mono, at the call's codec rate: 320 bytes at 8 kHz (PCMU), 640 bytes at
  16 kHz (G722); with ``flags: native`` it is the codec's own payload (160 bytes of µ-law);
- success fires no event, and there is no stop command: the datagrams stop when the leg
  leaves park (transfer, bridge, hangup).

One socket for all calls, not one per call: every stream arrives at the same
``remote-port`` and is told apart by its source port, which is the ``local-port`` the engine
chose for that call (FreeSWITCH binds exactly that port). So the engine needs one open UDP
port, whatever the number of calls (one firewall rule, no per-call bind that can fail with
EADDRINUSE under load), and the per-call ports live on FreeSWITCH's side. The price: two
legs must never be given the same local-port at once, and a port is not handed out again
while FreeSWITCH may still stream from it (``release`` is called when the leg leaves park).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from engine.core.errors import ActionFailed
from engine.core.lifecycle import AsyncResource
from engine.speech.amd.g711 import ulaw_to_linear

log = logging.getLogger(__name__)

#: 10 s of 20 ms frames: more than any analysis needs; older frames are dropped first.
STREAM_BUFFER_FRAMES = 500


def decode_l16(payload: bytes) -> npt.NDArray[np.int16]:
    """A tap datagram without ``flags``: int16 little-endian (an odd trailing byte is cut)."""
    return np.frombuffer(payload[: len(payload) - len(payload) % 2], dtype="<i2").astype(np.int16)


def decode_native_pcmu(payload: bytes) -> npt.NDArray[np.int16]:
    """A tap datagram with ``flags: native`` on a PCMU call: µ-law bytes."""
    return ulaw_to_linear(payload)


@dataclass
class TapStream:
    """One leg's incoming datagrams."""

    call_id: str
    local_port: int
    #: Samples per second of the decoded frames: the leg's codec rate (the tap has no flags).
    rate: int = 8000
    frames: deque[bytes] = field(default_factory=lambda: deque(maxlen=STREAM_BUFFER_FRAMES))
    closed: bool = False
    received: int = 0
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, payload: bytes) -> None:
        if self.closed:
            return
        self.frames.append(payload)
        self.received += 1
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    def drain(self) -> None:
        """Drop the frames buffered so far (a new listening turn starts from now)."""
        self.frames.clear()

    async def get(self, timeout_s: float) -> bytes | None:
        """The next datagram, or None when the stream is closed or nothing came in time."""
        while not self.frames:
            if self.closed or timeout_s <= 0:
                return None
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout_s)
            except TimeoutError:
                return None
        return self.frames.popleft()

    async def read(self, timeout_s: float) -> npt.NDArray[np.int16] | None:
        """The next frame decoded (L16 little-endian): the :class:`engine.speech.source.
        AudioSource` that AMD and speech input share."""
        payload = await self.get(timeout_s)
        return None if payload is None else decode_l16(payload)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, tap: MediaTap) -> None:
        self.tap = tap

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.tap.deliver(data, str(addr[0]), int(addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on a UDP socket (a port FreeSWITCH closed): nothing to do.
        log.debug("media tap socket error: %s", exc)


class MediaTap(AsyncResource):
    """The engine's UDP endpoint for every ``unicast`` stream of one FreeSWITCH.

    ``listen_host``/``listen_port``: where the engine receives (``remote-ip`` /
    ``remote-port`` in the sendmsg; ``advertise_ip`` when FreeSWITCH must use another
    address to reach it). ``switch_ip``: the FreeSWITCH address the streams come from (its
    ``local-ip``). ``ports``: the local-ports handed out, one per leg being analysed.
    """

    def __init__(
        self,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        advertise_ip: str = "",
        switch_ip: str = "127.0.0.1",
        ports: range = range(31000, 32000),
    ) -> None:
        if not ports:
            raise ValueError("media tap: the local-port range is empty")
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.advertise_ip = advertise_ip or listen_host
        self.switch_ip = switch_ip
        self._free: deque[int] = deque(ports)
        # Each process starts handing out ports at a random point of the range: after a
        # restart, the taps of the previous process still hold the ports it handed out
        # first (FreeSWITCH has no unicast stop command; they end when their leg leaves
        # park), and a unicast whose local-port is taken sends nothing (its bind fails, the
        # sendmsg still says +OK). amd.py also moves to another port when no frame comes.
        self._free.rotate(-random.randrange(len(self._free)))
        self._by_port: dict[int, TapStream] = {}
        self._by_call: dict[str, TapStream] = {}
        self._transport: asyncio.DatagramTransport | None = None
        #: Datagrams from a source no open stream owns (late frames of a released leg...).
        self.stray = 0

    async def start(self) -> None:
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.listen_host, self.listen_port)
        )
        self._transport = transport
        self.listen_port = int(transport.get_extra_info("sockname")[1])

    async def stop(self) -> None:
        for stream in list(self._by_call.values()):
            stream.close()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def running(self) -> bool:
        return self._transport is not None

    def open(self, call_id: str, rate: int = 8000) -> TapStream:
        """Reserve a local-port for ``call_id`` and start collecting its datagrams (``rate``:
        the leg's codec rate, which is what an L16 tap carries)."""
        if self._transport is None:
            raise ActionFailed("media tap is not running: no UDP socket to receive the audio on")
        if call_id in self._by_call:
            return self._by_call[call_id]
        if not self._free:
            raise ActionFailed(
                f"media tap: all {len(self._by_port)} local-ports are in use; no tap for {call_id}"
            )
        port = self._free.popleft()
        stream = TapStream(call_id, port, rate)
        self._by_port[port] = stream
        self._by_call[call_id] = stream
        return stream

    def open_calls(self) -> list[str]:
        return list(self._by_call)

    def stream_of(self, call_id: str) -> TapStream | None:
        return self._by_call.get(call_id)

    def release(self, call_id: str) -> None:
        """The leg left park (its stream has stopped): end the stream, free its port. The port
        goes to the back of the queue, so it is the last to be handed out again."""
        stream = self._by_call.pop(call_id, None)
        if stream is None:
            return
        stream.close()
        self._by_port.pop(stream.local_port, None)
        self._free.append(stream.local_port)

    def deliver(self, payload: bytes, host: str, port: int) -> None:
        stream = self._by_port.get(port)
        if stream is None or host != self.switch_ip:
            self.stray += 1
            return
        stream.push(payload)

    def sendmsg_headers(self, stream: TapStream) -> list[tuple[str, str]]:
        """The unicast headers for ``stream`` (no ``flags``: L16 little-endian)."""
        return [
            ("local-ip", self.switch_ip),
            ("local-port", str(stream.local_port)),
            ("remote-ip", self.advertise_ip),
            ("remote-port", str(self.listen_port)),
            ("transport", "udp"),
        ]
