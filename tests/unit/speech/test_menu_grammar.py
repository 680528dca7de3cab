"""Round 4 of docs/speech.md: the pocketsphinx menu grammar's caller phrasings and the
keywords' non-rhotic pronunciation variants."""

from __future__ import annotations

import pytest

from engine.speech.asr.pocketsphinx_plugin import (
    ACKS,
    FILLER_WORDS,
    THANKS,
    PocketSphinxEngine,
    accent_variants,
    word_confidence,
)


@pytest.mark.parametrize(
    ("pron", "variant"),
    [
        ("R IH P EH R", "R IH P EH AH"),  # final R after a vowel: a schwa
        ("AA P ER EY T ER", "AA P AH EY T AH"),  # ER: AH
        ("K AA R D", "K AA AH D"),  # R before a consonant
    ],
)
def test_a_post_vocalic_r_gets_a_non_rhotic_variant(pron: str, variant: str) -> None:
    assert accent_variants(pron) == [variant]


@pytest.mark.parametrize("pron", ["B IH L IH NG", "R EH D", "P R AY S", "EH R IY AH"])
def test_words_without_a_post_vocalic_r_get_no_variant(pron: str) -> None:
    # R starting a word or syllable (before a vowel) is said in every accent.
    assert accent_variants(pron) == []


def test_yes_and_thank_you_do_not_count_towards_the_confidence() -> None:
    assert {"yes", "thank", "you", "thanks"} <= FILLER_WORDS
    assert "yes" in ACKS and "thank you" in THANKS
    segs = [("yes", 0.1), ("billing", 0.9), ("thank", 0.2), ("you", 0.3)]
    assert word_confidence(segs) == 0.9


def test_a_menu_adds_the_variants_to_the_dictionary_once() -> None:
    engine = PocketSphinxEngine()
    engine.recognizer(8000, ["repair", "billing"])
    engine.recognizer(8000, ["repair", "cancel"])  # a second menu: no duplicate variant
    d = engine._decoder
    assert d.lookup_word("repair(2)") == "R IH P EH AH"
    assert d.lookup_word("repair(3)") is None
    assert d.lookup_word("billing(2)") is None
