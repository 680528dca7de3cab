"""PocketSphinx (the PyPI wheel's en-US model): free speech with its n-gram LM, menus with a
JSGF grammar made from the keywords.

The model is 16 kHz; telephone audio is 8 kHz. The model's feat.params fix the filterbank at
130-6800 Hz and override the constructor's arguments, so audio is upsampled 2x here: the bands
above 4 kHz are then empty, which costs accuracy on free speech but not on a small grammar.
A telephone-band filterbank or an 8 kHz menu decoder can be set after feat.params
(``ENGINE_PS_MENU_FRONT_END``); round 8 measured both much worse with this model (227/260
right on the seen splits with its own filterbank, 54-112 band-limited), so neither is the
default.

Menus: the grammar is ``[yes] [prefix] <keyword> [please] [thank you]`` over the keywords and
a few caller phrasings, so "sales please" and "yes I want sales" still land on "sales"; the
keywords get a non-rhotic pronunciation variant (round 4). Confidence is the mean lattice
posterior of the spoken words; a keyword that the grammar without it explains as well (a near
tie, round 6) gets confidence 0, the retry branch. Menu decodes depend on their audio only
(own per-utterance dither, no carried-over noise estimate; round 6).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from engine.speech.asr.base import Alternative, Hypothesis, match_keyword

MODEL_RATE = 16000
#: Phrases a caller puts before and after a menu choice (as VoiceXML menu grammars do). They
#: are whole phrases, not a loop of free words: a loop of fillers absorbs the keyword itself
#: (measured on the tuning half: "sales" came out as "i to would", no keyword).
#: "can i have": round 5, from fresh3's misses once fresh3 was seen (seen menus 165 -> 167 / 180).
PREFIXES = (
    "i want",
    "i would like",
    "give me",
    "i need",
    "connect me to",
    "i want to talk to",
    "can i have",
)
SUFFIXES = ("please",)
#: Round 4 (docs/speech.md): an optional "yes" before and "thank you" / "thanks" after, as
#: callers answer a menu. Chosen on the seen splits (menu choice 118/140 -> 125/140 with the
#: suffixes; "okay" and "yeah" were dropped: "okay" took the first syllable of "operator").
ACKS = ("yes",)
THANKS = ("thank you", "thanks")
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
#: Off-menu rejection by the grammar path's timing (round 3, docs/speech.md). A grammar maps
#: any speech onto its paths, and an off-menu sentence fits them only by leaving long stretches
#: of speech to silence/noise segments between the words or by squeezing a keyword into a
#: fraction of the sentence. Longest non-word stretch between the first and last word (frames
#: of 10 ms): the endpointer ends an utterance after 300 ms of silence, so a real answer has no
#: inner pause much longer than that. Chosen on the tuning + held-out halves: right answers at
#: most 30 frames, off-menu sentences 19-131 (14 of 16 above 35).
MAX_INNER_GAP_FRAMES = 35
#: Shortest plausible keyword, frames per phone: right answers 7.0-11.8 there, the keyword of
#: off-menu sentences 3.2-12.2 (most below 6). Round 3 chose 6.0; round 6, on all seen splits
#: (220 answers), found right answers from fast voices at 5.4 ("repair" at 54 ms per phone):
#: 5.0 gives menus 199 -> 203 / 220 and off-menu accepted 24 -> 28 / 68 (4.5: 203 and 31).
MIN_KEYWORD_FRAMES_PER_PHONE = 5.0
#: Near-tie rejection (round 6, docs/speech.md): after a menu decode, the same audio is decoded
#: again with the grammar minus the heard keyword (the "rival"). When the rival's best path
#: scores at least as well as the heard one (log-score difference below this), the choice is a
#: near tie and the answer goes to the retry branch instead of a coin toss between branches.
#: 0 is the principled point (not fitted): seen splits, menus right 203 -> 199, wrong branch
#: 8 -> 5, off-menu accepted 39 -> 24 of 68.
MIN_KEYWORD_MARGIN = 0.0
#: Own dither instead of the decoder's (round 6): PocketSphinx draws its dither from one
#: generator for the life of the decoder, so the same audio decoded differently depending on
#: what the worker decoded before. The same dither (+1 on a random quarter of the samples,
#: fe_sigproc.c), drawn from a generator seeded per utterance, keeps the log(0) protection
#: for digital silence and makes a decode depend on its audio only.
DITHER_SEED = 20261204
#: The model's feat.params turn on noise removal (``-remove_noise yes``), whose noise estimate
#: carries from one utterance to the next in the same decoder: another source of history.
#: Off for menus (round 6: seen menus 201 -> 203 / 220 with the own dither, and repeatable).
MENU_FRONT_END: dict[str, object] = {"remove_noise": False}
#: Further front-end settings for the menu decoder (round 8), ``key=value`` pairs separated
#: by commas in ``ENGINE_PS_MENU_FRONT_END``, e.g. ``upperf=3800,lowerf=200`` (a filterbank
#: limited to the telephone band) or ``samprate=8000,nfft=256,upperf=3800`` (decode 8 kHz
#: audio as it is, no upsampling). Applied like ``MENU_FRONT_END``: after the model's
#: feat.params, which override the constructor's arguments. Unset: the model's own front end.
MENU_FRONT_END_ENV = "ENGINE_PS_MENU_FRONT_END"


def front_end_overrides(spec: str | None) -> dict[str, str]:
    """``"upperf=3800, lowerf=200 cmninit=40,3,-1"`` -> ``{"upperf": "3800", "lowerf": "200",
    "cmninit": "40,3,-1"}``: pairs split at commas or spaces that start another ``key=``."""
    out: dict[str, str] = {}
    for part in _PAIR_SPLIT.split((spec or "").strip(" ,")):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(
                f"pocketsphinx: front-end setting {part.strip()!r}; expected key=value"
            )
        out[key.strip().lstrip("-")] = value.strip()
    return out


_PAIR_SPLIT = re.compile(r"[,\s]+(?=-?[a-z_]+\s*=)")


def _typed(current: object, value: object) -> object:
    """``value`` in the type the decoder's config holds for the key."""
    if isinstance(value, str):
        if isinstance(current, bool):
            return value.lower() in ("1", "yes", "true")
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    return value


#: Menu methods (round 7, docs/speech.md), chosen per worker by ``ENGINE_PS_MENU_METHOD``:
#: ``grammar`` (the default: the JSGF grammar above), ``kws`` (keyword spotting alone), and
#: ``grammar+kws`` (the grammar; when it gives the retry branch, keyword spotting may still
#: find the keyword in words the grammar does not list). Keyword spotting was measured on the
#: seen splits and is not better than the grammar (round 7), so it is not the default.
MENU_METHODS = ("grammar", "kws", "grammar+kws")
#: Keyword spotting: each keyword is searched against PocketSphinx's phone loop, and the
#: words around it are left to the loop. ``kws_plp`` is the phone loop's penalty: the
#: default 1e-1 let the loop win over most keywords (seen splits, best detection per frame:
#: 207/260 right at 1e-3, 227 at 1e-20, 216 at 1e-30).
KWS_PLP = 1e-20
#: The keyphrase file's own per-phrase threshold is on the path's total score, which favours
#: short keywords (seen splits: best detection by total score 151/260 right, by score per
#: frame 189/260, default penalty); it is set low enough to report every candidate, and the
#: per-keyword floors below apply to the score per frame instead.
KWS_REPORT_THRESHOLD = "1e-60"
#: Per-keyword floors on a detection's score per frame (log base 1.0001, the decoder's own
#: unit: 0 is the phone loop's equal), and the least margin per frame over the next keyword.
#: Fitted on the seen splits (260 English menu answers, 80 off-menu sentences) by coordinate
#: search maximising right - 2 x wrong branch - 0.5 x off-menu accepted; keywords of other
#: menus get ``KWS_DEFAULT_FLOOR``.
KWS_FLOORS = {
    "billing": -8.0,
    "operator": -17.0,
    "cancel": -24.0,
    "repair": -60.0,
    "payment": -19.0,
}
KWS_DEFAULT_FLOOR = -20.0
KWS_MIN_MARGIN = 0.0
#: ``grammar+kws``: the floors and margin for the fallback (the same fit, on the answers the
#: grammar sends to the retry branch only).
FALLBACK_FLOORS = {
    "billing": -6.0,
    "operator": -60.0,
    "cancel": -4.0,
    "repair": -50.0,
    "payment": -28.0,
}
FALLBACK_DEFAULT_FLOOR = -6.0
FALLBACK_MIN_MARGIN = 10.0
#: A spotted keyword's confidence: 0.5 at its floor, 1.0 this far (per frame) above it.
KWS_FULL_CONFIDENCE_ABOVE = 20.0
#: The grammar's answers below this confidence (the retry branch at the default
#: ``min_confidence``) go to the keyword spotter in ``grammar+kws``.
FALLBACK_BELOW = 0.5


def dither(pcm: bytes, rng: np.random.Generator) -> bytes:
    """PocketSphinx's dither (+1 on a random quarter of the samples), drawn from ``rng``:
    digital silence then gives no log(0) energies."""
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.int32)
    x = x + (rng.random(len(x)) < 0.25)
    return np.asarray(np.clip(x, -32768, 32767), dtype="<i2").tobytes()


def keyword_margin(heard_score: float, rival_score: float) -> float:
    """How much better (natural log of the decoder's path scores, as the Python binding gives
    them: ``Hypothesis.best_score``) the heard path scores than the rival's; +inf when the
    rival found no path."""
    if rival_score <= 0:
        return math.inf
    if heard_score <= 0:
        return -math.inf
    return math.log(heard_score) - math.log(rival_score)


FILLER_WORDS = frozenset(
    w for phrase in (*PREFIXES, *SUFFIXES, *ACKS, *THANKS) for w in phrase.split()
)
_WORD = re.compile(r"^[a-z']+$")


def _downsample2(pcm: bytes) -> bytes:
    """16 kHz to 8 kHz for a decoder run at 8 kHz: the mean of each pair (a crude low-pass)."""
    x = np.frombuffer(pcm[: len(pcm) - len(pcm) % 4], dtype="<i2").astype(np.float32)
    y = (x[0::2] + x[1::2]) / 2
    return np.asarray(np.clip(np.round(y), -32768, 32767), dtype="<i2").tobytes()


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


def kws_decision(
    detections: Sequence[tuple[str, int, int, float]],
    floors: dict[str, float],
    default_floor: float,
    min_margin: float,
) -> Hypothesis | None:
    """A keyword spotter's detections to a menu hypothesis. ``detections``: ``(keyword,
    start_frame, end_frame, log_score)``, the score in the decoder's log units (above the
    phone loop when positive). Each keyword's best score per frame counts; the best keyword
    is the answer when it clears its floor and leads the next keyword by ``min_margin`` per
    frame, with a confidence from 0.5 at the floor to 1.0 ``KWS_FULL_CONFIDENCE_ABOVE``
    above it; otherwise it is kept with confidence 0 (the retry branch). None when nothing
    was detected."""
    best: dict[str, float] = {}
    for word, start, end, score in detections:
        kw = " ".join(_clean(word).split())
        if not kw:
            continue
        per_frame = score / max(1, end - start + 1)
        best[kw] = max(best.get(kw, -math.inf), per_frame)
    if not best:
        return None
    ranked = sorted(best, key=lambda k: best[k], reverse=True)
    top = ranked[0]
    margin = best[top] - best[ranked[1]] if len(ranked) > 1 else math.inf
    floor = floors.get(top, default_floor)
    others = tuple(Alternative(k, 0.0) for k in ranked[1:])
    if best[top] < floor or margin < min_margin:
        return Hypothesis(top, 0.0, (Alternative(top, 0.0), *others))
    conf = round(min(1.0, 0.5 + 0.5 * (best[top] - floor) / KWS_FULL_CONFIDENCE_ABOVE), 4)
    return Hypothesis(top, conf, (Alternative(top, conf), *others))


class PocketSphinxRecognizer:
    """``batch``: keep the utterance and decode it whole at the end. PocketSphinx's live
    cepstral mean normalisation starts from a fixed guess and needs seconds of audio to
    settle, so a two-word menu answer decoded live loses its first word (measured on the
    tuning half: "sales" and "support" came out empty); decoding the whole utterance uses
    the batch mean. A small grammar decodes 2 s of audio in ~40 ms, so menus are batch;
    free speech with the n-gram LM is too slow for that (~0.4x real time) and streams."""

    def __init__(
        self,
        decoder: object,
        rate: int,
        batch: bool,
        keywords: Sequence[str] = (),
        rival_search: Callable[[str], str | None] | None = None,
        kws_search: str | None = None,
        method: str = "grammar",
        decoder_rate: int = MODEL_RATE,
    ) -> None:
        self._d = decoder
        self._convert: Callable[[bytes], bytes] | None = None
        if rate == 8000 and decoder_rate == MODEL_RATE:
            self._convert = _upsample2
        elif rate == MODEL_RATE and decoder_rate == 8000:
            self._convert = _downsample2
        self._kws_search = kws_search
        self._method = method
        self._keywords = tuple(" ".join(kw.lower().split()) for kw in keywords)
        self._rival_search = rival_search
        self._keyword_words = frozenset(w for kw in keywords for w in kw.lower().split())
        self._rate = rate
        self._batch = batch
        self._held: list[bytes] = []
        # One seeded generator per utterance: the same audio gets the same dither whatever
        # the worker decoded before (round 6).
        self._rng = np.random.default_rng(DITHER_SEED)
        self._d.start_utt()  # type: ignore[attr-defined]

    def accept(self, pcm: bytes) -> None:
        data = self._convert(pcm) if self._convert is not None else pcm
        if self._batch:
            self._held.append(data)
        else:
            self._d.process_raw(dither(data, self._rng), False, False)  # type: ignore[attr-defined]

    def finish(self) -> Hypothesis:
        if self._batch and self._kws_search is not None and self._method == "kws":
            self._held = [dither(b"".join(self._held), self._rng)]
            return self._spot(KWS_FLOORS, KWS_DEFAULT_FLOOR, KWS_MIN_MARGIN) or Hypothesis("", 0.0)
        hyp = self._finish_grammar()
        if self._kws_search is not None and self._method == "grammar+kws":
            heard = match_keyword(hyp.text, self._keywords) if hyp.text else None
            if heard is None or hyp.confidence < FALLBACK_BELOW:
                spotted = self._spot(FALLBACK_FLOORS, FALLBACK_DEFAULT_FLOOR, FALLBACK_MIN_MARGIN)
                if spotted is not None and spotted.confidence >= FALLBACK_BELOW:
                    return spotted
        return hyp

    def _spot(
        self, floors: dict[str, float], default_floor: float, min_margin: float
    ) -> Hypothesis | None:
        """Keyword spotting over the held (already dithered) utterance."""
        d = self._d
        with contextlib.suppress(RuntimeError):
            d.end_utt()  # type: ignore[attr-defined]  # kws mode: the grammar's, still open
        d.activate_search(self._kws_search)  # type: ignore[attr-defined]
        d.start_utt()  # type: ignore[attr-defined]
        d.process_raw(self._held[0], False, True)  # type: ignore[attr-defined]
        d.end_utt()  # type: ignore[attr-defined]
        base = math.log(float(d.config["logbase"]))  # type: ignore[attr-defined]
        detections = [
            (s.word, s.start_frame, s.end_frame, math.log(s.prob) / base if s.prob > 0 else -1e9)
            for s in (d.seg() or [])  # type: ignore[attr-defined]
        ]
        return kws_decision(detections, floors, default_floor, min_margin)

    def _finish_grammar(self) -> Hypothesis:
        d = self._d
        if self._batch:
            self._held = [dither(b"".join(self._held), self._rng)]
            d.process_raw(self._held[0], False, True)  # type: ignore[attr-defined]
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
        if self._batch and self._keyword_words:
            segs = [(s.word, s.start_frame, s.end_frame) for s in (d.seg() or [])]  # type: ignore[attr-defined]
            why = implausible_timing(segs, self._keyword_words, self._phones)
            if why:
                # Heard, not trusted: confidence 0 takes the flow's retry branch
                # (low-confidence), as a caller who said something else should.
                return Hypothesis(text, 0.0, (Alternative(text, 0.0),))
            rival = self._rival(text, hyp.best_score)
            if rival is not None:
                rival_text, margin = rival
                if margin < MIN_KEYWORD_MARGIN:
                    # A near tie with another keyword: the retry branch (confidence 0), not
                    # a coin toss between two branches. The rival stays in the n-best.
                    both = (Alternative(text, 0.0), Alternative(rival_text, 0.0))
                    return Hypothesis(text, 0.0, both)
                if rival_text:
                    others = [a for a in alts if a.text != rival_text]
                    alts = [Alternative(rival_text, 0.0), *others]
        return Hypothesis(text, conf, (Alternative(text, conf), *alts))

    def _rival(self, text: str, best_score: int) -> tuple[str, float] | None:
        """The best path of the grammar without the heard keyword on the same (dithered) audio,
        and the heard path's margin over it (:func:`keyword_margin`)."""
        if self._rival_search is None or len(self._keywords) < 2:
            return None
        heard = match_keyword(text, self._keywords)
        search = self._rival_search(heard) if heard else None
        if search is None:
            return None
        d = self._d
        d.activate_search(search)  # type: ignore[attr-defined]
        d.start_utt()  # type: ignore[attr-defined]
        d.process_raw(b"".join(self._held), False, True)  # type: ignore[attr-defined]
        d.end_utt()  # type: ignore[attr-defined]
        other = d.hyp()  # type: ignore[attr-defined]
        if other is None or not _clean(other.hypstr):
            # No path through the rival grammar (the FSG search can end short of its final
            # state): nothing to compare with, the heard keyword stands.
            return ("", math.inf)
        return (_clean(other.hypstr), keyword_margin(best_score, other.best_score))

    def _phones(self, word: str) -> int:
        pron = self._d.lookup_word(word)  # type: ignore[attr-defined]
        return len(str(pron).split()) if pron else 1


_VOWELS = frozenset(
    ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
)


def accent_variants(pron: str) -> list[str]:
    """A non-rhotic variant of a keyword's pronunciation (British, Caribbean speakers; also
    espeak-ng's en-gb and en-029 voices): a post-vocalic R becomes a schwa, ER becomes AH
    ("repair" R IH P EH R -> R IH P EH AH). Round 4, on the seen splits: menu choice 125/140
    -> 131/140 (dropping the R instead of a schwa: 126/140)."""
    phones = pron.split()
    out: list[str] = []
    for i, ph in enumerate(phones):
        nxt = phones[i + 1] if i + 1 < len(phones) else None
        post_vocalic_r = ph == "R" and i > 0 and phones[i - 1] in _VOWELS and nxt not in _VOWELS
        if post_vocalic_r or ph == "ER":
            out.append("AH")
        else:
            out.append(ph)
    variant = " ".join(out)
    return [variant] if variant != pron else []


def implausible_timing(
    segments: Sequence[tuple[str, int, int]],
    keyword_words: frozenset[str],
    phones: Callable[[str], int],
) -> str:
    """Why a grammar result's timing says the caller said something else ("" if it looks like
    a menu answer). ``segments``: the decoder's ``(word, start_frame, end_frame)``, fillers
    and silences included; ``phones``: a word's phone count."""
    words = [(i, _clean(w), a, b) for i, (w, a, b) in enumerate(segments) if _clean(w)]
    if not words:
        return ""
    first, last = words[0][0], words[-1][0]
    gap = longest = 0
    for w, a, b in segments[first : last + 1]:
        if _clean(w):
            gap = 0
        else:
            gap += b - a + 1
            longest = max(longest, gap)
    if longest > MAX_INNER_GAP_FRAMES:
        return f"{longest * 10} ms of non-speech between the words"
    for _, w, a, b in words:
        if w in keyword_words:
            per_phone = (b - a + 1) / max(1, phones(w))
            if per_phone < MIN_KEYWORD_FRAMES_PER_PHONE:
                return f"keyword {w!r} at {per_phone * 10:.0f} ms per phone"
    return ""


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


def leave_one_out(keywords: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(keyword, the other keywords) for each keyword of a menu of two or more, keywords
    normalised as the grammar writes them (lower case, single spaces)."""
    kws = [" ".join(kw.lower().split()) for kw in keywords]
    if len(set(kws)) < 2:
        return []
    return [(kw, tuple(k for k in kws if k != kw)) for kw in dict.fromkeys(kws)]


class PocketSphinxEngine:
    name = "pocketsphinx"

    def __init__(
        self,
        model_dir: str | None = None,
        menu_method: str | None = None,
        front_end: str | None = None,
    ) -> None:
        from pocketsphinx import Decoder  # the wheel's en-US model unless model_dir

        method = menu_method or os.environ.get("ENGINE_PS_MENU_METHOD") or "grammar"
        if method not in MENU_METHODS:
            raise ValueError(
                f"pocketsphinx: menu method {method!r}; expected one of {', '.join(MENU_METHODS)}"
            )
        self.menu_method = method

        # dither: digital silence (all-zero samples, which Asterisk passes through) gives
        # log(0) energies that wreck the cepstral mean: measured, every utterance with a
        # noiseless lead-in failed on the tuning half. A fixed seed keeps runs repeatable.
        kwargs: dict[str, object] = {
            "samprate": MODEL_RATE,
            "loglevel": "FATAL",
            "dither": False,  # our own, per utterance: ``dither``
        }
        if model_dir:
            kwargs.update(
                hmm=f"{model_dir}/en-us",
                lm=f"{model_dir}/en-us.lm.bin",
                dict=f"{model_dir}/cmudict-en-us.dict",
            )
        self._decoder = Decoder(**kwargs, **MENU_SEARCH)
        # The model's feat.params win over constructor arguments: set, then rebuild the
        # front end from this config (reinit_feat() without it reads feat.params again).
        overrides = front_end_overrides(
            os.environ.get(MENU_FRONT_END_ENV) if front_end is None else front_end
        )
        if int(overrides.get("samprate", MODEL_RATE)) not in (8000, MODEL_RATE):
            raise ValueError(
                f"pocketsphinx: menu decoder at {overrides['samprate']} Hz; expected 8000 or 16000"
            )
        self.menu_front_end = {**MENU_FRONT_END, **overrides}
        for key, value in self.menu_front_end.items():
            self._decoder.config[key] = _typed(self._decoder.config[key], value)
        self._decoder.reinit_feat(self._decoder.config)
        self.menu_rate = int(self._decoder.config["samprate"])
        # Free speech streams through a second decoder without the end-of-utterance passes
        # (fwdflat): it re-decodes the whole utterance at the end, which is what
        # made the result come seconds after the caller stopped (tuning half: p95 4.5 s).
        self._free = Decoder(**kwargs, **FREE_SPEED)
        self._grammars: dict[tuple[str, ...], str] = {}
        self._kws: dict[tuple[str, ...], str] = {}

    def recognizer(self, rate: int, keywords: Sequence[str] | None) -> PocketSphinxRecognizer:
        if rate not in (8000, MODEL_RATE):
            raise ValueError(f"pocketsphinx: audio at {rate} Hz; expected 8000 or 16000")
        d = self._decoder if keywords else self._free
        with contextlib.suppress(RuntimeError):
            # An utterance the engine abandoned (hangup before the end): close it first,
            # start_utt() refuses to start inside one.
            d.end_utt()
        rival = None
        kws = None
        if keywords:
            # Rival grammars (each keyword left out) are built with the menu's (once per
            # menu, cached), before the audio, not after the end of speech.
            rivals = {heard: self._grammar(others) for heard, others in leave_one_out(keywords)}
            rival = rivals.get
            if self.menu_method != "grammar":
                kws = self._keyword_search(tuple(keywords))
            d.activate_search(self._grammar(tuple(keywords)))
        return PocketSphinxRecognizer(
            d,
            rate,
            batch=bool(keywords),
            keywords=keywords or (),
            rival_search=rival,
            kws_search=kws,
            method=self.menu_method,
            decoder_rate=self.menu_rate if keywords else MODEL_RATE,
        )

    def _check_known(self, keywords: tuple[str, ...]) -> None:
        """A menu's keywords must all be in the dictionary: neither search can spot a word it
        has no pronunciation for, and a silent miss would send every caller to the retry."""
        d = self._decoder
        unknown = [w for kw in keywords for w in kw.lower().split() if d.lookup_word(w) is None]
        if unknown:
            raise ValueError(f"pocketsphinx: keywords not in the dictionary: {unknown}")

    def _keyword_search(self, keywords: tuple[str, ...]) -> str:
        """A keyword-spotting search over the menu's keywords (cached per menu)."""
        name = self._kws.get(keywords)
        if name is not None:
            return name
        d = self._decoder
        self._check_known(keywords)
        d.config["kws_plp"] = KWS_PLP
        lines = "".join(
            f"{' '.join(kw.lower().split())} /{KWS_REPORT_THRESHOLD}/\n"
            for kw in dict.fromkeys(keywords)
        )
        name = f"kws{len(self._kws)}"
        with tempfile.NamedTemporaryFile("w", suffix=".kws", delete=False) as f:
            f.write(lines)
        try:
            d.add_kws(name, f.name)
        finally:
            os.unlink(f.name)
        self._kws[keywords] = name
        return name

    def _add_variants(self, word: str) -> None:
        """Add a keyword's accent variants as alternate pronunciations ("word(2)"): the FSG
        search tries every pronunciation of a grammar word."""
        d = self._decoder
        have: list[str] = []
        n = 1
        while True:
            pron = d.lookup_word(word if n == 1 else f"{word}({n})")
            if pron is None:
                break
            have.append(str(pron))
            n += 1
        for variant in accent_variants(have[0]):
            if variant not in have:
                d.add_word(f"{word}({n})", variant, True)
                have.append(variant)
                n += 1

    def _grammar(self, keywords: tuple[str, ...]) -> str:
        name = self._grammars.get(keywords)
        if name is not None:
            return name
        d = self._decoder
        self._check_known(keywords)
        for w in sorted({w for kw in keywords for w in kw.lower().split()}):
            self._add_variants(w)
        choices = " | ".join(" ".join(kw.lower().split()) for kw in keywords)
        name = f"menu{len(self._grammars)}"
        d.add_jsgf_string(
            name,
            "#JSGF V1.0; grammar menu; "
            f"public <m> = [{' | '.join(ACKS)}] [{' | '.join(PREFIXES)}] ({choices}) "
            f"[{' | '.join(SUFFIXES)}] [{' | '.join(THANKS)}];",
        )
        self._grammars[keywords] = name
        return name
