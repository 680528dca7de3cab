"""Synthetic speech for the test corpora (scripts/amd_corpus.py, scripts/asr_corpus.py).

espeak-ng speaks the text (Korean ``mb-hn1*`` voices: espeak-ng's phonemes through MBROLA hn1,
scripts/mbrola_ko.py); sox resamples it to the carrier's rate with a proper anti-alias
filter (espeak-ng writes 22050 Hz). ``-D``: no dither, which is random noise and would make
every run's files differ, so the same inputs always give the same files.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.speech.wav import decode_wav
from scripts import mbrola_ko


def speak_text(
    stem: str,
    text: str,
    *,
    voice: str,
    speed: int,
    tmp: Path,
    rate: int,
    peak: float,
    sox_options: Sequence[str] = (),
) -> np.ndarray:
    """The spoken ``text`` at ``rate``, float samples normalised to ``peak``, with espeak's
    leading and trailing silence cut (each corpus adds its own)."""
    raw, out = tmp / f"{stem}-raw.wav", tmp / f"{stem}-8k.wav"
    if mbrola_ko.is_voice(voice):  # Korean through MBROLA hn1 (scripts/mbrola_ko.py)
        mbrola_ko.speak(voice, text, raw, speed=speed)
    else:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text],
            check=True,
            timeout=60,
        )
    subprocess.run(
        ["sox", "-D", *sox_options, str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)],
        check=True,
        timeout=60,
    )
    samples = decode_wav(out.read_bytes()).samples.astype(np.float64)
    loud = np.flatnonzero(np.abs(samples) > 200)
    if len(loud):
        samples = samples[loud[0] : loud[-1] + 1]
    top = float(np.abs(samples).max()) or 1.0
    return samples * (peak / top)


def mix(parts: Sequence[np.ndarray], noise_rms: float, rng: np.random.Generator) -> np.ndarray:
    """The parts one after the other, plus Gaussian noise, as int16."""
    audio = np.concatenate(parts)
    if noise_rms:
        audio = audio + rng.normal(0.0, noise_rms, len(audio))
    return np.asarray(np.clip(np.round(audio), -32768, 32767), dtype=np.int16)
