"""Plugin result mapping: vosk's JSON and pocketsphinx's segments to a hypothesis, and a
hypothesis to the flow's SpeechResult (keyword, confidence policy, statuses)."""

from __future__ import annotations

import pytest

from engine.speech.asr.base import Alternative, SpeechStatus, match_keyword
from engine.speech.asr.pocketsphinx_plugin import _clean, _upsample2, word_confidence
from engine.speech.asr.vosk_plugin import map_vosk_result
from engine.speech.listen import map_result

# The shape of vosk 0.3.45's FinalResult() with SetMaxAlternatives(3), as printed by the
# Korean model on a grammar (scores are lattice log-scores, words carry no conf).
VOSK_ALTS = {
    "alternatives": [
        {"confidence": 66.0, "result": [{"word": "영업"}], "text": "영업 주세요"},
        {"confidence": 65.0, "result": [{"word": "영업"}], "text": "영업"},
        {"confidence": 60.0, "result": [{"word": "결제"}], "text": "결제 [unk]"},
    ]
}


def test_vosk_alternatives_share_the_nbest_mass() -> None:
    hyp = map_vosk_result(VOSK_ALTS)
    assert hyp.text == "영업 주세요"
    # exp(0) / (exp(0) + exp(-1) + exp(-6))
    assert hyp.confidence == pytest.approx(0.7299, abs=1e-3)
    assert [a.text for a in hyp.alternatives] == ["영업 주세요", "영업", "결제"]
    assert sum(a.confidence for a in hyp.alternatives) == pytest.approx(1.0, abs=1e-3)


def test_vosk_without_alternatives_uses_word_confidence() -> None:
    hyp = map_vosk_result(
        {
            "result": [{"word": "배송", "conf": 0.9}, {"word": "주세요", "conf": 0.5}],
            "text": "배송 주세요",
        }
    )
    assert (hyp.text, hyp.confidence) == ("배송 주세요", 0.7)


def test_vosk_only_unk_is_empty() -> None:
    hyp = map_vosk_result({"alternatives": [{"confidence": 5.0, "text": "[unk]"}]})
    assert hyp.text == ""


def test_pocketsphinx_confidence_ignores_silences_fillers_and_grammar_phrases() -> None:
    segs = [("<s>", 1.0), ("<sil>", 0.2), ("i", 0.1), ("want(2)", 0.1), ("billing", 0.9)]
    segs += [("[NOISE]", 0.0), ("please", 0.05), ("</s>", 1.0)]
    assert word_confidence(segs) == 0.9
    assert word_confidence([("<s>", 1.0), ("<sil>", 0.3)]) == 0.0
    assert _clean("<s> i want(2) billing [NOISE] </s>") == "i want billing"


def test_upsampling_doubles_and_interpolates() -> None:
    import numpy as np

    x = np.array([0, 100, -100], dtype="<i2").tobytes()
    y = np.frombuffer(_upsample2(x), dtype="<i2")
    assert y.tolist() == [0, 50, 100, 0, -100, -100]


def test_keyword_match_is_whole_words_and_first_said() -> None:
    kws = ["billing", "operator", "customer service"]
    assert match_keyword("i want billing please", kws) == "billing"
    assert match_keyword("operator no billing", kws) == "operator"
    assert match_keyword("customer service", kws) == "customer service"
    assert match_keyword("billings", kws) is None


def test_a_keyword_above_the_threshold_is_ok() -> None:
    r = map_result(
        "vosk", "영업 주세요", 0.6, [Alternative("영업 주세요", 0.6)], ["영업", "결제"], 0.5
    )
    assert (r.status, r.keyword, r.confidence) == (SpeechStatus.OK, "영업", 0.6)


def test_agreeing_alternatives_add_up_for_the_keyword() -> None:
    alts = [Alternative("영업 주세요", 0.4), Alternative("영업", 0.35), Alternative("결제", 0.25)]
    r = map_result("vosk", "영업 주세요", 0.4, alts, ["영업", "결제"], 0.5)
    assert r.status is SpeechStatus.OK
    assert r.confidence == pytest.approx(0.75)


def test_low_confidence_takes_the_retry_branch() -> None:
    r = map_result("pocketsphinx", "billing", 0.2, [Alternative("billing", 0.2)], ["billing"], 0.5)
    assert r.status is SpeechStatus.LOW_CONFIDENCE
    assert r.keyword == "billing"
    assert not r.ok


def test_speech_off_the_menu_is_no_match_and_empty_is_no_match() -> None:
    r = map_result("pocketsphinx", "i would", 0.9, [], ["billing"], 0.5)
    assert (r.status, r.text, r.keyword) == (SpeechStatus.NO_MATCH, "i would", None)
    assert map_result("vosk", "", 0.0, [], None, 0.5).status is SpeechStatus.NO_MATCH


def test_free_speech_keeps_text_and_normalises_case_and_spaces() -> None:
    r = map_result("pocketsphinx", "  Call ME  back ", 0.8, [], None, 0.5, latency_s=0.2)
    assert (r.status, r.text, r.keyword, r.latency_s) == (
        SpeechStatus.OK,
        "call me back",
        None,
        0.2,
    )


def test_vosk_menu_grammar_adds_korean_carrier_words_only_to_korean_menus() -> None:
    from engine.speech.asr.vosk_plugin import grammar_for

    assert grammar_for(["보험", "문의"]) == ["보험", "문의", "네", "주세요", "[unk]"]
    assert grammar_for(["네", "아니요"]) == ["네", "아니요", "주세요", "[unk]"]
    assert grammar_for(["sales", "support"]) == ["sales", "support", "[unk]"]
