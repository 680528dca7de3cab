"""Sans-IO WAV codec and resampler: bytes in, frozen :class:`Pcm` out, bytes back.

Only what telephony prompts need: PCM 16-bit little-endian, mono or interleaved
channels (downmixed). Asterisk plays ``.wav`` natively when it is 8 kHz mono
16-bit signed linear (``format_wav``); anything else is rejected at play time
or needs a transcoder, so every rendered prompt is converted to exactly that.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["TELEPHONY_RATE", "Pcm", "WavError", "decode_wav", "encode_wav", "resample"]

TELEPHONY_RATE = 8000
_PCM = 1
# A streaming writer that cannot seek back (espeak-ng --stdout) leaves these
# near-2 GiB placeholders in the RIFF and data size fields. We read such a
# chunk to the end of the buffer instead of rejecting the file.
_STREAMING_SIZES = (0x7FFFF000, 0x7FFFFFFF, 0xFFFFFFFF)


class WavError(ValueError):
    """The bytes are not a WAV file we can use; the message says what was found."""


@dataclass(frozen=True, slots=True)
class Pcm:
    """Mono 16-bit samples at ``rate`` Hz."""

    rate: int
    samples: npt.NDArray[np.int16]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate if self.rate else 0.0


def decode_wav(data: bytes) -> Pcm:
    """Parse a RIFF/WAVE PCM16 file; several channels are averaged to mono."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError(f"not a RIFF/WAVE file (starts with {data[:12]!r})")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body_start = pos + 8
        if chunk_id == b"data" and (size in _STREAMING_SIZES or body_start + size > len(data)):
            # Placeholder (see _STREAMING_SIZES) or a truncated final chunk:
            # the samples are whatever follows.
            size = len(data) - body_start
        body = data[body_start : body_start + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavError(f"fmt chunk is {len(body)} bytes; expected at least 16")
            audio_format, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            fmt = (audio_format, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("data chunk before the fmt chunk")
            return _samples(fmt, body)
        # Chunks are word-aligned: an odd size is followed by one pad byte.
        pos = body_start + size + (size & 1)
    raise WavError("no data chunk" if fmt is not None else "no fmt chunk")


def _samples(fmt: tuple[int, int, int, int], body: bytes) -> Pcm:
    audio_format, channels, rate, bits = fmt
    if audio_format != _PCM or bits != 16:
        raise WavError(f"expected PCM 16-bit, got format {audio_format} with {bits} bits")
    if channels < 1 or rate < 1:
        raise WavError(f"bad fmt: {channels} channels at {rate} Hz")
    usable = len(body) - len(body) % (2 * channels)
    frames = np.frombuffer(body[:usable], dtype="<i2").reshape(-1, channels)
    if channels == 1:
        mono = frames[:, 0].astype(np.int16)
    else:
        mono = frames.mean(axis=1).round().astype(np.int16)
    return Pcm(rate=rate, samples=mono)


def encode_wav(pcm: Pcm) -> bytes:
    """A canonical 44-byte-header mono PCM16 WAV."""
    raw = pcm.samples.astype("<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(raw),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        1,
        pcm.rate,
        pcm.rate * 2,
        2,
        16,
        b"data",
        len(raw),
    )
    return header + raw


def resample(pcm: Pcm, rate: int, *, half_taps: int = 16) -> Pcm:
    """Band-limited resampling (windowed-sinc interpolation).

    Going down from espeak-ng's 22050 Hz to 8000 Hz, plain decimation would fold
    everything between 4 and 11 kHz back into the voice band as hiss, so the
    sinc kernel's cutoff is set just under the lower of the two Nyquist
    frequencies. ``half_taps`` input samples either side of each output sample
    are used (a Hann-windowed kernel).
    """
    if rate < 1:
        raise ValueError(f"resample: rate must be positive, got {rate}")
    if rate == pcm.rate or len(pcm.samples) == 0:
        return Pcm(rate=rate, samples=pcm.samples.copy())
    x = pcm.samples.astype(np.float64)
    step = pcm.rate / rate
    n_out = int(len(x) * rate // pcm.rate)
    positions = np.arange(n_out, dtype=np.float64) * step
    # Cutoff as a fraction of the input Nyquist; 0.95 leaves room for the
    # window's transition band.
    cutoff = min(1.0, rate / pcm.rate) * 0.95
    base = np.floor(positions).astype(np.int64)
    out = np.zeros(n_out, dtype=np.float64)
    norm = np.zeros(n_out, dtype=np.float64)
    for k in range(-half_taps + 1, half_taps + 1):
        idx = base + k
        dist = positions - idx
        window = 0.5 + 0.5 * np.cos(np.pi * dist / half_taps)
        weight = cutoff * np.sinc(cutoff * dist) * window
        valid = (idx >= 0) & (idx < len(x))
        out += np.where(valid, x[np.clip(idx, 0, len(x) - 1)] * weight, 0.0)
        norm += np.where(valid, weight, 0.0)
    # Dividing by the summed weights keeps DC gain at exactly 1 whatever the
    # fractional phase, so a silent or constant signal stays flat.
    out /= np.where(norm == 0, 1.0, norm)
    clipped = np.clip(np.round(out), -32768, 32767).astype(np.int16)
    return Pcm(rate=rate, samples=clipped)
