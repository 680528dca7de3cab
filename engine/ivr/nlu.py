"""Baseline intent classifier and emotion scorer, English and Chinese, no model files.

Both are plugins behind ``IntentClassifier`` / ``EmotionScorer`` (engine/ivr/ports.py);
a statistical or embedding classifier replaces them without a flow changing.

Matching rule shared by both: a pattern of ASCII letters matches whole words
(``\\bno\\b`` does not fire inside "know"); a pattern in Chinese matches as a
substring, since Chinese is written without spaces between words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from engine.ivr.ports import Intent

DEFAULT_INTENTS: Mapping[str, Sequence[str]] = {
    "pre_sale": (
        "buy",
        "purchase",
        "price",
        "pricing",
        "how much",
        "sales",
        "quote",
        "order",
        "购买",
        "买",
        "价格",
        "多少钱",
        "报价",
        "销售",
        "下单",
    ),
    "tech_support": (
        "broken",
        "not working",
        "doesn't work",
        "error",
        "crash",
        "support",
        "technical",
        "fix",
        "故障",
        "坏了",
        "不能用",
        "用不了",
        "技术支持",
        "报错",
        "维修",
    ),
    "billing": (
        "bill",
        "billing",
        "invoice",
        "refund",
        "charge",
        "charged",
        "payment",
        "账单",
        "退款",
        "发票",
        "扣费",
        "付款",
        "收费",
    ),
    "cancel": (
        "cancel",
        "unsubscribe",
        "close my account",
        "terminate",
        "取消",
        "退订",
        "销户",
        "注销",
    ),
    "refuse": (
        "no",
        "not interested",
        "no thanks",
        "don't call",
        "stop calling",
        "拒绝",
        "不需要",
        "不要",
        "没兴趣",
        "不感兴趣",
    ),
    "agent": (
        "agent",
        "human",
        "operator",
        "representative",
        "real person",
        "人工",
        "客服",
        "转人工",
        "真人",
    ),
}

DEFAULT_EMOTIONS: Mapping[str, Sequence[str]] = {
    "anger": (
        "angry",
        "furious",
        "ridiculous",
        "terrible",
        "worst",
        "hate",
        "unacceptable",
        "outrageous",
        "annoyed",
        "fed up",
        "stupid",
        "useless",
        "scam",
        "complaint",
        "生气",
        "愤怒",
        "气死",
        "太差",
        "垃圾",
        "投诉",
        "受够",
        "离谱",
        "骗子",
    ),
    "joy": (
        "great",
        "thanks",
        "thank you",
        "happy",
        "excellent",
        "wonderful",
        "perfect",
        "love",
        "glad",
        "谢谢",
        "太好了",
        "满意",
        "开心",
        "高兴",
        "不错",
        "很好",
    ),
    "sadness": (
        "sad",
        "unfortunately",
        "disappointed",
        "upset",
        "lost",
        "sorry",
        "难过",
        "失望",
        "伤心",
        "遗憾",
    ),
    "fear": (
        "worried",
        "afraid",
        "scared",
        "urgent",
        "emergency",
        "fraud",
        "stolen",
        "担心",
        "害怕",
        "紧急",
        "着急",
        "被盗",
    ),
}
INTENSIFIERS = ("very", "really", "so", "extremely", "totally", "非常", "太", "真", "特别", "极其")
NEGATIONS = ("not", "never", "no", "don't", "isn't", "不", "没", "没有")
# One plain hit scores 1 - e^-1.0 = 0.63; two hits, or one with an intensifier
# or "!", pass 0.8: "so angry" is escalated, a lone "terrible" is not.
_RATE = 1.0


def _compile(words: Sequence[str]) -> re.Pattern[str]:
    parts = []
    for w in sorted(words, key=len, reverse=True):
        esc = re.escape(w.lower())
        parts.append(rf"(?<![a-z']){esc}(?![a-z'])" if w.isascii() else esc)
    return re.compile("|".join(parts))


class KeywordIntentClassifier:
    """The intent with the most keyword hits; score 0.6 for one hit, +0.15 per
    further hit, minus 0.2 when another intent scored as many (ambiguous)."""

    def __init__(self, rules: Mapping[str, Sequence[str]] = DEFAULT_INTENTS) -> None:
        self._rules = {name: _compile(words) for name, words in rules.items() if words}

    def classify(self, text: str) -> Intent:
        low = text.lower()
        hits = {name: len(p.findall(low)) for name, p in self._rules.items()}
        best = max(hits.items(), key=lambda kv: kv[1], default=("", 0))
        if best[1] == 0:
            return Intent("", 0.0)
        score = min(1.0, 0.6 + 0.15 * (best[1] - 1))
        if sum(1 for n in hits.values() if n == best[1]) > 1:
            score -= 0.2
        return Intent(best[0], round(score, 3))


class LexiconEmotionScorer:
    """Counts lexicon words per emotion, weighting intensifiers and ``!`` up and
    skipping a word just after a negation ("not happy" is not joy)."""

    def __init__(self, lexicon: Mapping[str, Sequence[str]] = DEFAULT_EMOTIONS) -> None:
        self._lex = {name: _compile(words) for name, words in lexicon.items()}
        self._intense = _compile(INTENSIFIERS)
        self._negation = _compile(NEGATIONS)

    def score(self, text: str) -> Mapping[str, float]:
        low = text.lower()
        out: dict[str, float] = {}
        for name, pattern in self._lex.items():
            weight = 0.0
            for m in pattern.finditer(low):
                before = low[max(0, m.start() - 12) : m.start()]
                if self._negation.search(before[-6:] if not m.group(0).isascii() else before):
                    continue
                weight += 1.0
                if self._intense.search(before):
                    weight += 0.7
            if weight:
                weight += 0.4 * min(low.count("!") + low.count("！"), 3)
            out[name] = round(1 - math.exp(-_RATE * weight), 3)
        neg = max(out.get("anger", 0.0), out.get("sadness", 0.0), out.get("fear", 0.0))
        out["sentiment"] = round(max(-1.0, min(1.0, out.get("joy", 0.0) - neg)), 3)
        return out
