"""AMD: a shorter after-greeting silence once a short hello has ended (engine-only idea).

    .venv/bin/python -m bench.amd_short_hello      # reports/amd-short-hello.json (~2 min)

Offline, on the TUNING set only, scored as bench.amd_frontier scores (NOTSURE goes to a
person). The rule, which app_amd cannot do (so Asterisk could not follow, and the two switches
would no longer decide alike): while the greeting's voice so far is at most ``short_voice_ms``,
``short_silence_ms`` of silence already says HUMAN; a longer greeting still needs
``after_greeting_silence``. For each bound on the people's p95: the best setting with no
person taken for a machine, to compare with bench.amd_frontier's ``budgets``.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import replace
from functools import partial
from typing import Any

from bench.amd import CORPUS, ROOT, _labels
from bench.amd_frontier import _line, _score, best_per_budget
from engine.speech.amd import AmdDetector, AmdParams, AmdVerdict
from engine.speech.wav import decode_wav

GRID: dict[str, list[int]] = {
    "after_greeting_silence": [300, 400, 500],
    "greeting": [1000, 1250, 1500],
    "maximum_number_of_words": [3, 4],
    "silence_threshold": [256, 512],
}
SHORT_VOICE_MS = [400, 600, 800, 1000]
SHORT_SILENCE_MS = [150, 200, 250, 300]


class ShortHelloDetector(AmdDetector):
    """app_amd's rules, with the shorter silence while the greeting's voice is short."""

    def __init__(self, params: AmdParams, short_voice_ms: int, short_silence_ms: int) -> None:
        super().__init__(params)
        self._full = params
        self._short = replace(
            params, after_greeting_silence=min(short_silence_ms, params.after_greeting_silence)
        )
        self._short_voice_ms = short_voice_ms

    def _frame(self, frame: Any, rate: int) -> AmdVerdict | None:
        # The state machine reads self.params on every frame: swap in the short silence
        # while the voice heard so far is a short hello.
        self.params = self._short if self._voice_ms <= self._short_voice_ms else self._full
        try:
            return super()._frame(frame, rate)
        finally:
            self.params = self._full


def run() -> dict[str, Any]:
    if os.environ.get("AMD_SPLIT", "tuning") != "tuning":
        raise SystemExit("bench.amd_short_hello runs on the tuning set only")
    labels = _labels("tuning")
    items = [(x, decode_wav((CORPUS / f"{x['id']}.wav").read_bytes())) for x in labels]
    scored = []
    for values in itertools.product(*GRID.values(), SHORT_VOICE_MS, SHORT_SILENCE_MS):
        *keys, voice, silence = values
        params = replace(AmdParams(), **dict(zip(GRID, keys, strict=True)))
        detector = partial(ShortHelloDetector, short_voice_ms=voice, short_silence_ms=silence)
        score = _score(params, items, detector)
        scored.append((params, {**score, "short_voice_ms": voice, "short_silence_ms": silence}))
    budgets = best_per_budget(scored)
    result = {
        "split": "tuning",
        "greetings": len(items),
        "humans": sum(1 for x, _ in items if x["label"] == "human"),
        "budgets": budgets,
    }
    out = ROOT / "reports" / "amd-short-hello.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    res = run()
    machines = res["greetings"] - res["humans"]
    for row in res["budgets"]:
        best = row["best"]
        extra = (
            {}
            if best is None
            else {k: best[k] for k in ("short_voice_ms", "short_silence_ms")} | best["params"]
        )
        print(f"people p95 <= {row['people_p95_at_most_ms']} ms: ", end="")
        print(_line(best, machines), json.dumps(extra))
