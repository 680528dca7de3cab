"""PocketSphinx (the PyPI wheel's en-US model): free speech with its n-gram LM, menus with a
JSGF grammar made from the keywords.

The model is 16 kHz; telephone audio is 8 kHz. The decoder cannot run at 8 kHz with this
model (its feat.params fix the filterbank at 133-6800 Hz: "Upper frequency 6800.0 is higher
than samprate/2"), so audio is upsampled 2x here: the bands above 4 kHz are then empty, which
costs accuracy on free speech but not on a small grammar.

Menus: the grammar is ``[filler] <keyword> [filler]`` over the keywords and a few polite
fillers, so "sales please" and "I want sales" still land on "sales". Confidence is the
decoder's posterior for the hypothesis (``hyp().prob``, 0..1).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence

import numpy as np

from engine.speech.asr.base import Alternative, Hypothesis

MODEL_RATE = 16000
#: Phrases a caller puts before and after a menu choice (as VoiceXML menu grammars do). They
#: are whole phrases, not a loop of free words: a loop of fillers absorbs the keyword itself
#: (measured on the tuning half: "sales" came out as "i to would", no keyword).
PREFIXES = ("i want", "i would like", "give me", "i need", "connect me to", "i want to talk to")
SUFFIXES = ("please",)
#: The free-speech decoder's search limits: without them the n-gram search runs slower than
#: real time on a shared 2-core machine, and the result of a 3 s sentence came 5-10 s after
#: the caller stopped (tuning half). Narrower beams and an HMM cap trade some accuracy for it.
FREE_SPEED: dict[str, object] = {
    "fwdflat": False,
    "beam": 1e-40,
    "wbeam": 1e-30,
    "pbeam": 1e-40,
    "maxhmmpf": 3000,
}
#: The menu (grammar) decoder's settings. ``bestpath`` off: the lattice best-path pass that
#: follows the FSG search dropped the grammar's final state on short answers, so the result
#: came back empty or as a bare prefix ("i would"). Measured on the tuning half: menu choice
#: 24/30 with it, 29/30 without; confidences (lattice posteriors) are still computed.
MENU_SEARCH: dict[str, object] = {"bestpath": False}
FILLER_WORDS = frozenset(w for phrase in (*PREFIXES, *SUFFIXES) for w in phrase.split())
_WORD = re.compile(r"^[a-z']+$")


def _upsample2(pcm: bytes) -> bytes:
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32)
    if len(x) == 0:
        return b""
    # Linear interpolation: cheap, and the image above 4 kHz it leaves is small at 8 kHz
    # telephone levels compared with the model's mismatch there anyway.
    y = np.empty(2 * len(x), dtype=np.float32)
    y[0::2] = x
    y[1::2] = np.concatenate([(x[:-1] + x[1:]) / 2, x[-1:]])
    return np.asarray(np.clip(y, -32768, 32767), dtype="<i2").tobytes()


class PocketSphinxRecognizer:
    """``batch``: keep the utterance and decode it whole at the end. PocketSphinx's live
    cepstral mean normalisation starts from a fixed guess and needs seconds of audio to
    settle, so a two-word menu answer decoded live loses its first word (measured on the
    tuning half: "sales" and "support" came out empty); decoding the whole utterance uses
    the batch mean. A small grammar decodes 2 s of audio in ~40 ms, so menus are batch;
    free speech with the n-gram LM is too slow for that (~0.4x real time) and streams."""

    def __init__(self, decoder: object, rate: int, batch: bool) -> None:
        self._d = decoder
        self._rate = rate
        self._batch = batch
        self._held: list[bytes] = []
        self._d.start_utt()  # type: ignore[attr-defined]

    def accept(self, pcm: bytes) -> None:
        data = _upsample2(pcm) if self._rate == 8000 else pcm
        if self._batch:
            self._held.append(data)
        else:
            self._d.process_raw(data, False, False)  # type: ignore[attr-defined]

    def finish(self) -> Hypothesis:
        d = self._d
        if self._batch:
            d.process_raw(b"".join(self._held), False, True)  # type: ignore[attr-defined]
        d.end_utt()  # type: ignore[attr-defined]
        hyp = d.hyp()  # type: ignore[attr-defined]
        if hyp is None:
            return Hypothesis("", 0.0)
        text = _clean(hyp.hypstr)
        conf = word_confidence([(seg.word, seg.prob) for seg in (d.seg() or [])])  # type: ignore[attr-defined]
        alts: list[Alternative] = []
        try:
            for n, (best, _) in enumerate(zip(d.nbest(), range(5), strict=False)):  # type: ignore[attr-defined]
                if best is None:  # a grammar search's n-best can hold empty entries
                    continue
                alt = _clean(best.hypstr)
                if n and alt and alt not in (a.text for a in alts) and alt != text:
                    alts.append(Alternative(alt, 0.0))
        except RuntimeError:
            pass  # no lattice (grammar search with no path): the best is all there is
        return Hypothesis(text, conf, (Alternative(text, conf), *alts))


def word_confidence(segments: Sequence[tuple[str, float]]) -> float:
    """Mean lattice posterior of the spoken words (fillers, silences and the grammar's
    politeness phrases do not count). ``hyp().prob`` is not used: in a grammar search it is
    about 1/number-of-paths whatever was said (measured: 0.02-0.08 for right and wrong
    answers alike), and for a sentence it is the product over all words."""
    probs = [
        p for w, p in segments if _WORD.match(_clean(w) or "-") and _clean(w) not in FILLER_WORDS
    ]
    if not probs:
        return 0.0
    return round(float(min(1.0, max(0.0, sum(probs) / len(probs)))), 4)


def _clean(text: str) -> str:
    # "on(2)" is a pronunciation variant; <sil>, [NOISE] are fillers.
    words = [re.sub(r"\(\d+\)$", "", w) for w in text.split()]
    return " ".join(w for w in words if _WORD.match(w))


class PocketSphinxEngine:
    name = "pocketsphinx"

    def __init__(self, model_dir: str | None = None) -> None:
        from pocketsphinx import Decoder  # the wheel's en-US model unless model_dir

        # dither: digital silence (all-zero samples, which Asterisk passes through) gives
        # log(0) energies that wreck the cepstral mean: measured, every utterance with a
        # noiseless lead-in failed on the tuning half. A fixed seed keeps runs repeatable.
        kwargs: dict[str, object] = {
            "samprate": MODEL_RATE,
            "loglevel": "FATAL",
            "dither": True,
            "seed": 20261204,
        }
        if model_dir:
            kwargs.update(
                hmm=f"{model_dir}/en-us",
                lm=f"{model_dir}/en-us.lm.bin",
                dict=f"{model_dir}/cmudict-en-us.dict",
            )
        self._decoder = Decoder(**kwargs, **MENU_SEARCH)
        # Free speech streams through a second decoder without the end-of-utterance passes
        # (fwdflat): it re-decodes the whole utterance at the end, which is what
        # made the result come seconds after the caller stopped (tuning half: p95 4.5 s).
        self._free = Decoder(**kwargs, **FREE_SPEED)
        self._grammars: dict[tuple[str, ...], str] = {}

    def recognizer(self, rate: int, keywords: Sequence[str] | None) -> PocketSphinxRecognizer:
        if rate not in (8000, MODEL_RATE):
            raise ValueError(f"pocketsphinx: audio at {rate} Hz; expected 8000 or 16000")
        d = self._decoder if keywords else self._free
        with contextlib.suppress(RuntimeError):
            # An utterance the engine abandoned (hangup before the end): close it first,
            # start_utt() refuses to start inside one.
            d.end_utt()
        if keywords:
            d.activate_search(self._grammar(tuple(keywords)))
        return PocketSphinxRecognizer(d, rate, batch=bool(keywords))

    def _grammar(self, keywords: tuple[str, ...]) -> str:
        name = self._grammars.get(keywords)
        if name is not None:
            return name
        d = self._decoder
        unknown = [w for kw in keywords for w in kw.lower().split() if d.lookup_word(w) is None]
        if unknown:
            raise ValueError(f"pocketsphinx: keywords not in the dictionary: {unknown}")
        choices = " | ".join(" ".join(kw.lower().split()) for kw in keywords)
        name = f"menu{len(self._grammars)}"
        d.add_jsgf_string(
            name,
            "#JSGF V1.0; grammar menu; "
            f"public <m> = [{' | '.join(PREFIXES)}] ({choices}) [{' | '.join(SUFFIXES)}];",
        )
        self._grammars[keywords] = name
        return name
