"""CPU per pocketsphinx menu recognition on the seen English splits (round 7 of
docs/speech.md): each answer and sentence trimmed as the endpointer would (200 ms before the
speech, 300 ms after), then recogniser, accept, finish, timed with ``time.process_time``.

    python -m bench.asr_cpu [grammar|kws|grammar+kws]
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

from bench.asr import CORPUS
from bench.asr_dev import SEEN
from engine.speech.asr.pocketsphinx_plugin import PocketSphinxEngine
from engine.speech.wav import decode_wav

KEYWORDS = ["billing", "operator", "cancel", "repair", "payment"]


def main(method: str) -> str:
    labels = [
        x
        for x in json.loads((CORPUS / "labels.json").read_text())
        if x["lang"] == "en" and x["split"] in SEEN
    ]
    engine = PocketSphinxEngine(menu_method=method)
    engine.recognizer(8000, KEYWORDS)  # the menu's searches are built before any audio
    cpu: list[float] = []
    per_s: list[float] = []
    for x in labels:
        samples = decode_wav((CORPUS / f"{x['id']}.wav").read_bytes()).samples
        a = max(0, (x["lead_ms"] - 200) * 8)
        b = (x["lead_ms"] + x["speech_ms"] + 300) * 8
        pcm = np.asarray(samples[a:b], dtype="<i2").tobytes()
        t = time.process_time()
        r = engine.recognizer(8000, KEYWORDS)
        r.accept(pcm)
        r.finish()
        c = time.process_time() - t
        cpu.append(c)
        per_s.append(c / ((b - a) / 8000))
    q = sorted(cpu)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    return (
        f"{method}: CPU per recognition mean {statistics.mean(cpu):.3f} s, "
        f"p95 {q[int(0.95 * len(q))]:.3f} s, max {q[-1]:.3f} s; "
        f"{statistics.mean(per_s):.3f} s per s of audio; n={len(cpu)}; load {load}"
    )


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "grammar"))
