"""Spoken test audio for the speech-input tests: espeak-ng + sox, like scripts/asr_corpus.py
(the same render: a lead-in, the words, then played silence), cached per text and voice."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from engine.speech.wav import Pcm, decode_wav, encode_wav

HAVE_TOOLS = shutil.which("espeak-ng") is not None and shutil.which("sox") is not None
_CACHE: dict[tuple[str, str, int], bytes] = {}


def spoken_wav(text: str, voice: str = "en-us", rate: int = 8000, lead_ms: int = 700) -> bytes:
    key = (text, voice, rate)
    if key not in _CACHE:
        with tempfile.TemporaryDirectory() as tmp:
            raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, timeout=30)
            subprocess.run(
                ["sox", "-D", "-G", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)],
                check=True,
                timeout=30,
            )
            speech = decode_wav(out.read_bytes()).samples
        noise = np.random.default_rng(7).normal(0, 30, rate * (lead_ms + 2500) // 1000)
        audio = noise.copy()
        start = rate * lead_ms // 1000
        audio[start : start + len(speech)] += speech
        pcm = np.asarray(np.clip(np.round(audio), -32768, 32767), dtype=np.int16)
        _CACHE[key] = encode_wav(Pcm(rate, pcm))
    return _CACHE[key]
