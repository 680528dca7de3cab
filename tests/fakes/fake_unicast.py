"""The fake FreeSWITCH's media tap: ESL ``sendmsg <uuid>`` ``call-command: unicast``.

As recorded (tests/fixtures/freeswitch-1.10/transcripts/unicast-*.esl, .udp.raw, .udp.log):
the sendmsg gets ``+OK`` (command/reply) and no event; FreeSWITCH binds ``local-ip:local-port``
and sends one datagram every 20 ms to ``remote-ip:remote-port``, with no RTP header:
16-bit signed linear LITTLE-endian at the call's codec rate (320 bytes at 8 kHz PCMU, 640 at
16 kHz G722) or, with ``flags: native`` on a PCMU call, 160 bytes of µ-law. There is no stop
command: the datagrams stop when the channel leaves park (transfer, bridge, hangup).

The audio is what the test assigns to the channel (``FakeFreeSwitch.tap_audio``, by call uuid
or by dialled number: a WAV file or its bytes), else the 69XXX far end's recorded sound: a
440 Hz tone (peak 10364) for 25 s, then 5 s of silence. When the audio ends, datagrams stop,
as they would for a far end that sends no more RTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.speech.wav import Pcm, decode_wav, resample

log = logging.getLogger(__name__)

FRAME_S = 0.020
#: The 69XXX far end (README "Third batch"): peak and pitch measured on the .udp.raw files.
TONE_PEAK = 10364
TONE_HZ = 440


def tone(rate: int, seconds: float = 25.0, silence_s: float = 5.0) -> npt.NDArray[np.int16]:
    t = np.arange(int(rate * seconds)) / rate
    sound = np.round(TONE_PEAK * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)
    return np.concatenate([sound, np.zeros(int(rate * silence_s), dtype=np.int16)])


def linear_to_ulaw(samples: npt.NDArray[np.int16]) -> bytes:
    """G.711 µ-law encoder (the switch's side of a native PCMU tap)."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    codes: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes.tobytes()


@functools.lru_cache(maxsize=64)
def audio_for(source: Path | bytes | None, rate: int) -> npt.NDArray[np.int16]:
    """The samples a tap sends (read-only, cached: resampling a long file takes about a
    second, which would stall the fake's event loop at every tap start)."""
    if source is None:
        samples = tone(rate)
    else:
        pcm = decode_wav(source if isinstance(source, bytes) else source.read_bytes())
        if pcm.rate != rate:
            pcm = resample(pcm, rate)
        samples = np.asarray(Pcm(rate, pcm.samples).samples, dtype=np.int16)
    samples.setflags(write=False)
    return samples


class UnicastTap:
    """One channel's stream; ``stop()`` when it leaves park."""

    def __init__(
        self,
        headers: dict[str, str],
        samples: npt.NDArray[np.int16],
        rate: int,
    ) -> None:
        self.local = (headers.get("local-ip", "127.0.0.1"), int(headers.get("local-port", "8025")))
        self.remote = (
            headers.get("remote-ip", "127.0.0.1"),
            int(headers.get("remote-port", "8026")),
        )
        self.native = headers.get("flags", "") == "native"
        self.samples = samples
        self.rate = rate
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _payload(self, frame: npt.NDArray[np.int16]) -> bytes:
        if self.native:
            return linear_to_ulaw(frame)
        return frame.astype("<i2").tobytes()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=self.local, remote_addr=self.remote
            )
        except OSError as err:
            # switch_ivr_activate_unicast fails and logs; the sendmsg already said +OK.
            log.warning("fake unicast: cannot bind %s: %s", self.local, err)
            return
        size = int(self.rate * FRAME_S)
        start = loop.time()
        try:
            for k, at in enumerate(range(0, len(self.samples) - size + 1, size)):
                # A fixed 20 ms grid (the park loop's read pace), not sleep(0.02) per frame,
                # which would drift late.
                delay = start + k * FRAME_S - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                transport.sendto(self._payload(self.samples[at : at + size]))
                self.sent += 1
        finally:
            transport.close()
