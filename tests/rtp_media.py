"""The audio side of a SIPp phone in mode ``media`` (tests/sip_agents.py): one UDP socket that
receives what the switch sends the phone (what its user hears) and sends what its user says.

    media = await RtpMedia.open()
    spec = AgentSpec("supervisor1", mode="media", rtp_port=media.port)
    ... the phone answers; its log gives the switch's RTP address (step MEDIA <ip> <port>) ...
    media.talk((ip, port), freq_hz=1700)       # PCMU, 20 ms packets, paced by the loop
    heard = media.heard(since)                  # int16 samples received after ``since``
    tone_ratio(heard, 1700)                     # share of the signal's energy at 1700 Hz

RTP is parsed as RFC 3550 (12-byte header + CSRCs, payload type 0 = PCMU); nothing is assumed
about the sender beyond that. Arrival times are the loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from engine.speech.amd.g711 import ulaw_to_linear
from tests.fakes.fake_unicast import linear_to_ulaw

RATE = 8000
FRAME = 160  # 20 ms of PCMU


@dataclass
class _Packet:
    at: float
    source: tuple[str, int]
    payload_type: int
    payload: bytes


@dataclass
class RtpMedia(asyncio.DatagramProtocol):
    packets: list[_Packet] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    _talking: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> RtpMedia:
        loop = asyncio.get_running_loop()
        media = cls()
        transport, _ = await loop.create_datagram_endpoint(lambda: media, local_addr=(host, 0))
        media.transport = transport
        return media

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return  # not RTP version 2
        csrc = data[0] & 0x0F
        start = 12 + 4 * csrc
        if data[0] & 0x10:  # header extension
            if len(data) < start + 4:
                return
            start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
        self.packets.append(_Packet(time.monotonic(), addr, data[1] & 0x7F, data[start:]))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def heard(self, since: float = 0.0, until: float = float("inf")) -> npt.NDArray[np.int16]:
        """The PCMU audio received in [since, until), decoded, in arrival order."""
        chunks = [
            ulaw_to_linear(p.payload)
            for p in self.packets
            if since <= p.at < until and p.payload_type == 0
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def count(self, since: float = 0.0) -> int:
        return sum(1 for p in self.packets if p.at >= since)

    def talk(self, dest: tuple[str, int], freq_hz: float, amplitude: int = 8000) -> None:
        """Send a continuous tone to ``dest`` (PCMU, one packet per 20 ms) until :meth:`close`."""
        self._talking = asyncio.get_running_loop().create_task(self._talk(dest, freq_hz, amplitude))

    async def _talk(self, dest: tuple[str, int], freq_hz: float, amplitude: int) -> None:
        assert self.transport is not None
        ssrc, seq, ts = 0x5EC0DE, 0, 0
        start = time.monotonic()
        n = 0
        while True:
            t = (np.arange(FRAME) + ts) / RATE
            pcm = (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            self.transport.sendto(header + linear_to_ulaw(pcm), dest)
            seq, ts, n = seq + 1, ts + FRAME, n + 1
            # Paced against the start, not packet to packet, so the rate does not drift.
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))

    async def stop_talking(self) -> None:
        if self._talking is not None:
            self._talking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._talking
            self._talking = None

    async def close(self) -> None:
        await self.stop_talking()
        if self.transport is not None:
            self.transport.close()


def tone_ratio(samples: npt.NDArray[np.int16], freq_hz: float, width_hz: float = 40.0) -> float:
    """The share of the signal's energy within ``width_hz`` of ``freq_hz`` (0 for silence)."""
    if samples.size < FRAME:
        return 0.0
    x = samples.astype(np.float64)
    x -= x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    total = float(spectrum.sum())
    if total <= 0.0:
        return 0.0
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)
    band = np.abs(freqs - freq_hz) <= width_hz
    return float(spectrum[band].sum()) / total


def rms(samples: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0
