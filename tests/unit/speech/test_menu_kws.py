"""Round 7 of docs/speech.md: keyword spotting for pocketsphinx menus (``kws`` alone, and
``grammar+kws``: the grammar, with the spotter when the grammar gives the retry branch)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from engine.speech.asr.pocketsphinx_plugin import (
    KWS_FULL_CONFIDENCE_ABOVE,
    PocketSphinxEngine,
    PocketSphinxRecognizer,
    kws_decision,
)
from engine.speech.wav import decode_wav
from tests.speech_audio import HAVE_TOOLS, spoken_wav
from tests.unit.speech.ps_records import Hyp, Seg

LOGBASE = 1.0001


def test_no_detection_is_none() -> None:
    assert kws_decision([], {}, -20.0, 0.0) is None
    assert kws_decision([("<sil>", 0, 10, -5.0)], {}, -20.0, 0.0) is None


def test_the_best_score_per_frame_wins_not_the_best_total() -> None:
    # "operator" scores worse in total (longer) but better per frame than "billing".
    hyp = kws_decision([("billing", 10, 29, -400.0), ("operator ", 10, 59, -500.0)], {}, -30.0, 0.0)
    assert hyp is not None
    assert hyp.text == "operator"
    assert [a.text for a in hyp.alternatives] == ["operator", "billing"]


def test_a_keyword_detected_twice_counts_its_best_detection() -> None:
    hyp = kws_decision(
        [("billing", 0, 9, -300.0), ("payment", 0, 9, -100.0), ("billing", 20, 29, -50.0)],
        {},
        -30.0,
        0.0,
    )
    assert hyp is not None and hyp.text == "billing"


def test_confidence_runs_from_half_at_the_floor_to_one_above_it() -> None:
    floor = -10.0
    at = kws_decision([("cancel", 0, 9, floor * 10)], {"cancel": floor}, -99.0, 0.0)
    assert at is not None and at.confidence == 0.5
    top = kws_decision(
        [("cancel", 0, 9, (floor + KWS_FULL_CONFIDENCE_ABOVE) * 10)], {"cancel": floor}, -99.0, 0.0
    )
    assert top is not None and top.confidence == 1.0


def test_below_its_floor_the_keyword_is_kept_for_the_retry_branch() -> None:
    hyp = kws_decision([("repair", 0, 9, -200.0)], {"repair": -10.0}, 0.0, 0.0)
    assert hyp is not None
    assert (hyp.text, hyp.confidence) == ("repair", 0.0)
    # keywords without a floor of their own take the default
    assert kws_decision([("sales", 0, 9, -200.0)], {}, -10.0, 0.0).confidence == 0.0  # type: ignore[union-attr]
    assert kws_decision([("sales", 0, 9, -50.0)], {}, -10.0, 0.0).confidence > 0.5  # type: ignore[union-attr]


def test_too_small_a_lead_over_the_next_keyword_is_a_retry() -> None:
    dets = [("billing", 0, 9, -50.0), ("payment", 0, 9, -80.0)]  # 3 per frame apart
    assert kws_decision(dets, {}, -20.0, 5.0).confidence == 0.0  # type: ignore[union-attr]
    assert kws_decision(dets, {}, -20.0, 2.0).confidence > 0  # type: ignore[union-attr]


@dataclass
class _FakeDecoder:
    """A grammar search "menu" with a fixed path and confidence, and a spotter "kws" with
    fixed detections (scores per frame in the decoder's log units)."""

    menu: tuple[str, float]
    detections: list[tuple[str, float]]
    search: str = "menu"
    decoded: list[tuple[str, bytes]] = field(default_factory=list)
    open_utt: bool = False
    config: dict[str, object] = field(default_factory=lambda: {"logbase": LOGBASE})

    def start_utt(self) -> None:
        self.open_utt = True

    def end_utt(self) -> None:
        self.open_utt = False

    def process_raw(self, data: bytes, no_search: bool, full_utt: bool) -> None:
        self.decoded.append((self.search, data))

    def activate_search(self, name: str) -> None:
        if self.open_utt:
            raise KeyError(f"Unable to set search {name}")  # as the real decoder does
        self.search = name

    def hyp(self) -> Hyp | None:
        if self.search == "kws":
            return Hyp(" ".join(w for w, _ in self.detections), 1.0)
        return Hyp(self.menu[0], 0.5)

    def seg(self) -> list[Seg]:
        if self.search == "kws":
            return [
                Seg(w, 10, 19, math.exp(per_frame * 10 * math.log(LOGBASE)))
                for w, per_frame in self.detections
            ]
        return [Seg(self.menu[0], 10, 70, self.menu[1])]

    def nbest(self) -> list[None]:
        return []

    def lookup_word(self, word: str) -> str:
        return "B IH L IH NG"


def _finish(d: _FakeDecoder, method: str) -> object:
    r = PocketSphinxRecognizer(
        d, 8000, batch=True, keywords=["billing", "payment"], kws_search="kws", method=method
    )
    r.accept(np.full(800, 300, dtype="<i2").tobytes())
    return r.finish()


def test_kws_alone_answers_from_the_spotter() -> None:
    d = _FakeDecoder(menu=("billing", 0.9), detections=[("payment", -1.0)])
    hyp = _finish(d, "kws")
    assert hyp.text == "payment" and hyp.confidence > 0.5  # type: ignore[attr-defined]
    assert [s for s, _ in d.decoded] == ["kws"]


def test_grammar_plus_kws_keeps_a_confident_grammar_answer() -> None:
    d = _FakeDecoder(menu=("billing", 0.9), detections=[("payment", -1.0)])
    hyp = _finish(d, "grammar+kws")
    assert (hyp.text, hyp.confidence) == ("billing", 0.9)  # type: ignore[attr-defined]
    assert [s for s, _ in d.decoded] == ["menu"]  # the spotter did not run


def test_grammar_plus_kws_falls_back_to_a_clear_spotted_keyword() -> None:
    d = _FakeDecoder(menu=("billing", 0.2), detections=[("payment", -1.0), ("billing", -40.0)])
    hyp = _finish(d, "grammar+kws")
    assert hyp.text == "payment" and hyp.confidence > 0.5  # type: ignore[attr-defined]
    # the spotter decoded the very same (dithered) audio
    assert [s for s, _ in d.decoded] == ["menu", "kws"]
    assert d.decoded[0][1] == d.decoded[1][1]


def test_grammar_plus_kws_keeps_the_retry_when_the_spotter_is_unsure() -> None:
    # payment leads billing by 2 per frame: under the fallback's margin
    d = _FakeDecoder(menu=("billing", 0.2), detections=[("payment", -1.0), ("billing", -3.0)])
    hyp = _finish(d, "grammar+kws")
    assert (hyp.text, hyp.confidence) == ("billing", 0.2)  # type: ignore[attr-defined]


def test_an_unknown_menu_method_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_PS_MENU_METHOD", "garbage-loop")
    with pytest.raises(ValueError, match="menu method"):
        PocketSphinxEngine()


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")
def test_real_keyword_spotting_ranks_the_spoken_keyword_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENGINE_PS_MENU_METHOD", "kws")
    engine = PocketSphinxEngine()
    assert engine.menu_method == "kws"
    menu = ["billing", "operator", "cancel", "repair", "payment"]
    pcm = decode_wav(spoken_wav("payment", "en-us"))
    r = engine.recognizer(pcm.rate, menu)
    r.accept(pcm.samples.astype("<i2").tobytes())
    hyp = r.finish()
    # the spotter's best keyword (its confidence may sit under the floor: round 7 found the
    # floors strict; the retry branch then, not a wrong branch)
    assert hyp.text == "payment"
    assert {a.text for a in hyp.alternatives} <= set(menu)
    # an unknown keyword fails the step with its name, as with the grammar
    with pytest.raises(ValueError, match="qwzx"):
        engine.recognizer(8000, ["billing", "qwzx"])
