"""What a switch wrote, as one 16-bit PCM WAV stream (the plaintext that gets encrypted).

- FreeSWITCH ``uuid_record`` writes a WAV (16-bit, the call's rate, 1 or 2 channels with
  ``RECORD_STEREO``); pause leaves a gap and mask leaves silence inside that one file.
- Asterisk ``MixMonitor`` writes ``.raw`` here: signed 16-bit little-endian at 8 kHz, mono, or
  with option ``D`` two interleaved channels. Raw has no header to fix up, so a resume after a
  "gap" pause appends to the same file (option ``a``) and the engine adds the WAV header.

Files are streamed in chunks, never read whole: a long call's audio is never all in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

CHUNK = 256 * 1024


class AudioFileError(ValueError):
    """The switch's file is not what it should be (names the file and the problem)."""


@dataclass(frozen=True, slots=True)
class SwitchFile:
    """How to read one file a switch writes."""

    path: Path
    container: Literal["wav", "raw"]
    rate: int = 8000  # raw only; a WAV says its own
    channels: int = 1  # raw only


@dataclass(frozen=True, slots=True)
class PcmLayout:
    rate: int
    channels: int
    data_offset: int
    data_size: int

    @property
    def duration_s(self) -> float:
        return self.data_size / (self.rate * self.channels * 2)


def wav_header(rate: int, channels: int, data_size: int) -> bytes:
    block = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


def read_layout(f: SwitchFile) -> PcmLayout:
    try:
        size = f.path.stat().st_size
        if f.container == "raw":
            usable = size - size % (2 * f.channels)  # a frame cut by the close is dropped
            return PcmLayout(f.rate, f.channels, 0, usable)
        with f.path.open("rb") as fh:
            return _wav_layout(fh, size, f.path)
    except OSError as err:
        raise AudioFileError(f"{f.path}: cannot read the recording ({err.strerror})") from err


def _wav_layout(fh: BinaryIO, size: int, path: Path) -> PcmLayout:
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioFileError(f"{path}: not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        cid, clen = struct.unpack("<4sI", fh.read(8))
        if cid == b"fmt ":
            tag, channels, rate, _br, _ba, bits = struct.unpack("<HHIIHH", fh.read(16))
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise AudioFileError(f"{path}: data chunk before the fmt chunk")
            tag, channels, rate, bits = fmt
            if tag != 1 or bits != 16 or channels not in (1, 2):
                raise AudioFileError(
                    f"{path}: expected 16-bit PCM, 1 or 2 channels; got format {tag}, "
                    f"{bits} bits, {channels} channels"
                )
            # A header written before the switch's last flush may understate the data:
            # what is in the file counts, not the header's number.
            data = size - (pos + 8)
            data -= data % (2 * channels)
            return PcmLayout(rate, channels, pos + 8, data)
        pos += 8 + clen + (clen & 1)
    raise AudioFileError(f"{path}: no data chunk")


def layouts(files: Sequence[SwitchFile]) -> tuple[int, int, int]:
    """(rate, channels, total data bytes) of segments that must share a format."""
    if not files:
        raise AudioFileError("no recording file")
    found = [read_layout(f) for f in files]
    first = found[0]
    for f, lay in zip(files, found, strict=True):
        if (lay.rate, lay.channels) != (first.rate, first.channels):
            raise AudioFileError(
                f"{f.path}: {lay.rate} Hz x{lay.channels}, the first segment is "
                f"{first.rate} Hz x{first.channels}"
            )
    return first.rate, first.channels, sum(lay.data_size for lay in found)


def wav_stream(files: Sequence[SwitchFile]) -> Iterator[bytes]:
    """One WAV: a header, then each file's PCM in order."""
    rate, channels, total = layouts(files)
    yield wav_header(rate, channels, total)
    for f in files:
        lay = read_layout(f)
        with f.path.open("rb") as fh:
            fh.seek(lay.data_offset)
            left = lay.data_size
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    raise AudioFileError(f"{f.path}: shrank while it was read")
                left -= len(chunk)
                yield chunk
