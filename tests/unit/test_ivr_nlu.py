"""The baseline intent classifier and emotion scorer (engine/ivr/nlu.py)."""

from __future__ import annotations

import pytest

from engine.ivr.nlu import KeywordIntentClassifier, LexiconEmotionScorer

INTENTS = KeywordIntentClassifier()
EMOTIONS = LexiconEmotionScorer()


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("I want to buy a phone, how much is it", "pre_sale"),
        ("我的电脑坏了", "tech_support"),
        ("拒绝", "refuse"),
        ("转人工", "agent"),
        ("I know the way", ""),  # "no" inside "know" is not a refusal: whole words only
        ("", ""),
    ],
)
def test_intents(text: str, intent: str) -> None:
    assert INTENTS.classify(text).name == intent


def test_more_hits_score_higher_and_a_tie_scores_lower() -> None:
    one = INTENTS.classify("what is the price")
    two = INTENTS.classify("what is the price, I want to buy")
    tie = INTENTS.classify("refund the price")  # billing and pre_sale, one hit each
    assert two.score > one.score > tie.score > 0


def test_custom_rules_replace_the_defaults() -> None:
    classifier = KeywordIntentClassifier({"retention": ["leave", "离开"]})
    assert classifier.classify("I want to leave").name == "retention"
    assert classifier.classify("我想离开").name == "retention"
    assert classifier.classify("buy").name == ""


def test_anger_needs_two_hits_or_an_intensifier_to_pass_the_escalation_rule() -> None:
    assert EMOTIONS.score("this is terrible")["anger"] < 0.8
    assert EMOTIONS.score("this is so terrible")["anger"] > 0.8
    assert EMOTIONS.score("terrible, I am angry")["anger"] > 0.8
    assert EMOTIONS.score("气死我了，我要投诉")["anger"] > 0.8


def test_negation_and_sentiment() -> None:
    assert EMOTIONS.score("I am not happy")["joy"] == 0.0
    assert EMOTIONS.score("我不满意")["joy"] == 0.0
    happy = EMOTIONS.score("谢谢，太好了")
    assert happy["joy"] > 0.8 and happy["sentiment"] > 0.8
    assert EMOTIONS.score("this is ridiculous!")["sentiment"] < 0
