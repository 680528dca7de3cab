"""The sans-IO WAV codec and the 22050 -> 8000 Hz resampler."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from engine.speech.wav import Pcm, WavError, decode_wav, encode_wav, resample


def tone(freq: float, rate: int, seconds: float, amplitude: float = 10000) -> Pcm:
    t = np.arange(int(rate * seconds)) / rate
    return Pcm(rate, np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def test_encode_then_decode_round_trips() -> None:
    pcm = tone(440, 8000, 0.25)
    data = encode_wav(pcm)
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    assert struct.unpack_from("<HHIIHH", data, 20) == (1, 1, 8000, 16000, 2, 16)
    assert struct.unpack_from("<I", data, 40)[0] == len(pcm.samples) * 2
    back = decode_wav(data)
    assert back.rate == 8000
    assert np.array_equal(back.samples, pcm.samples)


def test_streaming_placeholder_sizes_read_to_the_end() -> None:
    # espeak-ng --stdout cannot seek back, so it leaves 0x7ffff024 / 0x7ffff000 in the
    # RIFF and data sizes (bytes copied from a real `espeak-ng --stdout` header).
    header = bytes.fromhex(
        "52494646 24f0ff7f 57415645 666d7420 10000000 01000100 22560000 44ac0000"
        " 02001000 64617461 00f0ff7f".replace(" ", "")
    )
    body = np.arange(100, dtype="<i2").tobytes()
    pcm = decode_wav(header + body)
    assert pcm.rate == 22050
    assert list(pcm.samples[:3]) == [0, 1, 2] and len(pcm.samples) == 100


def test_stereo_is_downmixed() -> None:
    frames = np.array([[100, 300], [-200, -400]], dtype="<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16)
    data = (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + 16 + 8 + len(frames))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"LIST"
        + struct.pack("<I", 3)
        + b"abc\x00"  # odd-sized chunk + pad byte must be skipped
        + b"data"
        + struct.pack("<I", len(frames))
        + frames
    )
    assert list(decode_wav(data).samples) == [200, -300]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not a RIFF/WAVE file"),
        (b"RIFF\x00\x00\x00\x00WAVX", "not a RIFF/WAVE file"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
        (
            b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00"
            + struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
            + b"data\x00\x00\x00\x00",
            "expected PCM 16-bit",
        ),
        (b"RIFF\x00\x00\x00\x00WAVEdata\x02\x00\x00\x00\x01\x00", "data chunk before the fmt"),
    ],
)
def test_bad_wav_says_what_is_wrong(data: bytes, fragment: str) -> None:
    with pytest.raises(WavError, match=fragment):
        decode_wav(data)


def test_resample_keeps_duration_and_pitch() -> None:
    src = tone(1000, 22050, 1.0)
    out = resample(src, 8000)
    assert out.rate == 8000
    assert abs(out.duration_s - 1.0) < 0.01
    # A 1 kHz tone crosses zero 2000 times a second at any rate: 1950 in the 0.975 s kept.
    crossings = np.count_nonzero(np.diff(np.signbit(out.samples[100:-100])))
    assert 1940 <= crossings <= 1960
    assert abs(rms(out.samples[100:-100]) - rms(src.samples)) / rms(src.samples) < 0.05


def test_resample_removes_what_8khz_cannot_carry() -> None:
    # 6 kHz is above the 4 kHz Nyquist of the telephone rate; naive decimation would
    # fold it down to an audible 2 kHz whistle at almost full level.
    src = tone(6000, 22050, 0.5)
    out = resample(src, 8000)
    assert rms(out.samples[50:-50]) < 0.05 * rms(src.samples)


def test_resample_silence_and_empty() -> None:
    silent = resample(Pcm(22050, np.zeros(2205, dtype=np.int16)), 8000)
    assert len(silent.samples) == 800 and not silent.samples.any()
    assert len(resample(Pcm(22050, np.zeros(0, dtype=np.int16)), 8000).samples) == 0
    with pytest.raises(ValueError):
        resample(tone(100, 8000, 0.1), 0)
