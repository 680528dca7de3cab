"""The IVR's baseline intent classifier and emotion scorer on a held-out set.

bench/data/ivr_nlu_heldout.jsonl was written after the keyword lists and the
lexicon of engine/ivr/nlu.py, and nothing in them was tuned on it: the figures
are what an untuned keyword baseline does on new phrasings (English and Chinese).
Writes ``reports/ivr_nlu.json``. Figures only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.ivr.nlu import KeywordIntentClassifier, LexiconEmotionScorer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "ivr_nlu_heldout.jsonl"
ANGER_THRESHOLD = 0.8  # the escalation rule of the shipped flows


def run() -> dict[str, Any]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]
    intents = KeywordIntentClassifier()
    emotions = LexiconEmotionScorer()
    by_lang: dict[str, list[bool]] = {"en": [], "zh": []}
    misses: list[str] = []
    tp = fp = fn = tn = 0
    started = time.perf_counter()
    for row in rows:
        lang = "en" if row["text"].isascii() else "zh"
        if "intent" in row:
            got = intents.classify(row["text"]).name
            by_lang[lang].append(got == row["intent"])
            if got != row["intent"]:
                misses.append(f"{row['text']!r}: {got or 'none'} (expected {row['intent']})")
        if "angry" in row:
            angry = emotions.score(row["text"]).get("anger", 0.0) > ANGER_THRESHOLD
            tp += angry and row["angry"]
            fp += angry and not row["angry"]
            fn += (not angry) and row["angry"]
            tn += (not angry) and not row["angry"]
    elapsed = time.perf_counter() - started
    n_intent = sum(len(v) for v in by_lang.values())
    result = {
        "intent_utterances": n_intent,
        "intent_accuracy": round(sum(sum(v) for v in by_lang.values()) / n_intent, 3),
        "intent_accuracy_en": round(sum(by_lang["en"]) / len(by_lang["en"]), 3),
        "intent_accuracy_zh": round(sum(by_lang["zh"]) / len(by_lang["zh"]), 3),
        "anger_utterances": tp + fp + fn + tn,
        "anger_precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "anger_recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "anger_confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "us_per_utterance": round(elapsed / len(rows) * 1e6, 1),
        "intent_misses": misses,
    }
    out = ROOT / "reports" / "ivr_nlu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


def main() -> int:
    print(json.dumps(run(), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
