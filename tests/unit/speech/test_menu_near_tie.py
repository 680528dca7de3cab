"""Round 6 of docs/speech.md: pocketsphinx menus send a near tie between two keywords to the
retry branch, and decode the same audio the same way whatever the worker decoded before."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.speech.asr.pocketsphinx_plugin import (
    DITHER_SEED,
    PocketSphinxEngine,
    PocketSphinxRecognizer,
    dither,
    keyword_margin,
    leave_one_out,
)
from engine.speech.wav import decode_wav
from tests.speech_audio import HAVE_TOOLS, spoken_wav
from tests.unit.speech.ps_records import Hyp, Seg


def test_dither_is_the_same_for_the_same_audio_and_lifts_digital_silence() -> None:
    silence = bytes(16000)  # 8000 zero samples
    a = dither(silence, np.random.default_rng(DITHER_SEED))
    b = dither(silence, np.random.default_rng(DITHER_SEED))
    assert a == b
    x = np.frombuffer(a, dtype="<i2")
    assert set(np.unique(x)) == {0, 1}
    assert 0.2 < float(np.mean(x)) < 0.3  # +1 on about a quarter of the samples
    loud = np.array([32767, -32768, 5], dtype="<i2").tobytes()
    assert np.frombuffer(dither(loud, np.random.default_rng(1)), dtype="<i2")[0] == 32767


def test_keyword_margin() -> None:
    assert keyword_margin(0.8, 0.4) == pytest.approx(math.log(2))
    assert keyword_margin(0.4, 0.8) < 0
    assert keyword_margin(0.5, 0.0) == math.inf  # the rival found no path
    assert keyword_margin(0.0, 0.5) == -math.inf


def test_leave_one_out_normalises_and_needs_two_keywords() -> None:
    assert leave_one_out(["Billing", "operator", "billing"]) == [
        ("billing", ("operator",)),
        ("operator", ("billing", "billing")),
    ]
    assert leave_one_out(["sales"]) == []
    assert leave_one_out(["sales", " Sales "]) == []


class _FakeDecoder:
    """The decoder calls a menu recogniser makes, with a fixed best path per search."""

    def __init__(self, paths: dict[str, tuple[str, float]]) -> None:
        self.paths = paths
        self.search = "menu"
        self.decoded: list[tuple[str, bytes]] = []

    def start_utt(self) -> None:
        pass

    def end_utt(self) -> None:
        pass

    def process_raw(self, data: bytes, no_search: bool, full_utt: bool) -> None:
        self.decoded.append((self.search, data))

    def activate_search(self, name: str) -> None:
        self.search = name

    def hyp(self) -> Hyp:
        return Hyp(*self.paths[self.search])

    def seg(self) -> list[Seg]:
        word = self.paths[self.search][0]
        return [Seg("<sil>", 0, 9, 1.0), Seg(word, 10, 70, 0.9), Seg("<sil>", 71, 80, 1.0)]

    def nbest(self) -> list[None]:
        return []

    def lookup_word(self, word: str) -> str:
        return "B IH L IH NG"


def _finish(paths: dict[str, tuple[str, float]]) -> tuple[object, _FakeDecoder]:
    d = _FakeDecoder(paths)
    r = PocketSphinxRecognizer(
        d, 8000, batch=True, keywords=["billing", "payment"], rival_search={"billing": "rival"}.get
    )
    r.accept(np.full(800, 300, dtype="<i2").tobytes())
    return r.finish(), d


def test_a_near_tie_with_another_keyword_takes_the_retry_branch() -> None:
    hyp, d = _finish({"menu": ("billing", 0.50), "rival": ("payment", 0.55)})
    assert hyp.confidence == 0.0  # type: ignore[attr-defined]
    assert [a.text for a in hyp.alternatives] == ["billing", "payment"]  # type: ignore[attr-defined]
    # the rival decoded the very same (dithered) audio
    assert [s for s, _ in d.decoded] == ["menu", "rival"]
    assert d.decoded[0][1] == d.decoded[1][1]


def test_a_clear_winner_keeps_its_confidence_and_lists_the_rival() -> None:
    hyp, _ = _finish({"menu": ("billing", 0.60), "rival": ("payment", 0.30)})
    assert hyp.confidence == 0.9  # type: ignore[attr-defined]
    assert [a.text for a in hyp.alternatives] == ["billing", "payment"]  # type: ignore[attr-defined]


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng/sox missing (scripts/host-deps)")
def test_pocketsphinx_decodes_the_same_audio_the_same_way() -> None:
    # The decoder's own dither generator and its noise estimate (remove_noise) carried over
    # from one utterance to the next, so the same audio scored differently (round 6).
    engine = PocketSphinxEngine()
    menu = ["billing", "operator", "cancel", "repair", "payment"]

    def decode(text: str, voice: str) -> tuple[str, float, tuple[object, ...]]:
        pcm = decode_wav(spoken_wav(text, voice))
        r = engine.recognizer(pcm.rate, menu)
        r.accept(pcm.samples.astype("<i2").tobytes())
        h = r.finish()
        return h.text, h.confidence, h.alternatives

    first = decode("repair please", "en-gb")
    decode("i would like billing", "en-us+f3")
    decode("the phone bill is too high", "en-us")
    assert decode("repair please", "en-gb") == first
    assert first[1] > 0
