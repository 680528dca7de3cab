"""The SEEN Korean corpus items spoken twice, by their own espeak-ng voices and by MBROLA hn1,
for a paired offline comparison through the engine's grammar path (round 9 of docs/speech.md).

    .venv/bin/python -m bench.asr_ko_hn1            # writes var/asr-ko-seen-{espeak,hn1}/
    ASR_CORPUS_DIR=var/asr-ko-seen-hn1 ASR_LANGS=ko .venv/bin/python -m bench.asr_dev

Seen splits only (``bench.asr_dev.SEEN``); texts, speeds, lead-ins and noise levels are the
items' own, the noise drawn the same for both versions of an item, so the only difference is
the voice: hn1 voices are drawn per item (seeded) from ``HN1_VOICES``. Seen data: a check
that the new voice does not break the menu path, not a figure on unseen speech.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from bench.asr_dev import SEEN
from engine.speech.wav import Pcm, encode_wav
from scripts import asr_corpus as corpus

ROOT = Path(__file__).resolve().parent.parent
#: hn1 at espeak-ng pitches 35, 50, 65 and 80 (chosen before any figure on them).
HN1_VOICES = ("mb-hn1-p35", "mb-hn1", "mb-hn1-p65", "mb-hn1-p80")


def seen_items() -> list[corpus.Item]:
    items = [
        *corpus.plan("ko", 60),
        *corpus.plan_fresh("ko"),
        *corpus.plan_fresh2("ko"),
        *corpus.plan_fresh3("ko"),
        *corpus.plan_fresh4("ko"),
        *corpus.plan_fresh5("ko"),
    ]
    return [x for x in items if x.split in SEEN]


def main() -> int:
    items = seen_items()
    picks = np.random.default_rng(20261221).integers(0, len(HN1_VOICES), len(items))
    versions = {
        "espeak": items,
        "hn1": [replace(x, voice=HN1_VOICES[int(v)]) for x, v in zip(items, picks, strict=True)],
    }
    for name, todo in versions.items():
        out = ROOT / "var" / f"asr-ko-seen-{name}"
        out.mkdir(parents=True, exist_ok=True)
        labels = []
        with tempfile.TemporaryDirectory() as tmp:
            for n, item in enumerate(todo):
                speech = corpus.speak(item, Path(tmp))
                rng = np.random.default_rng(20261222 + n)  # the same noise for both versions
                audio = corpus.render(item, speech, rng)
                (out / f"{item.id}.wav").write_bytes(encode_wav(Pcm(corpus.RATE, audio)))
                labels.append({**asdict(item), "speech_ms": len(speech) * 1000 // corpus.RATE})
        (out / "labels.json").write_text(json.dumps(labels, indent=1, ensure_ascii=False) + "\n")
        print(f"asr-ko-hn1: {len(labels)} seen Korean items ({name}) in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
