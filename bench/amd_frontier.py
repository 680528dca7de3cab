"""AMD: how fast people can be decided against how many machines then pass for people.

    .venv/bin/python -m bench.amd_frontier      # reports/amd-frontier.json

Offline, on the TUNING set only (never the held-out one): the engine's detector (the same
rules and cause strings as app_amd, docs/amd.md) is run on the corpus WAVs for each
``after_greeting_silence`` in a range, with the other parameters searched over a small grid;
for each value it keeps the parameters with no person taken for a machine and the fewest
machines taken for people, and prints that error count and the people's decision p50/p95 (in
audio time, which is what both switches measure to within a few ms: bench.amd
``switches_agree``). This is the evidence for the parameters in amd.conf.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import asdict, replace
from typing import Any

from bench.amd import CORPUS, ROOT, _labels, _pct
from engine.speech.amd import AmdDetector, AmdParams
from engine.speech.wav import Pcm, decode_wav

AFTER_GREETING_SILENCE = [200, 250, 300, 350, 400, 450, 500, 600, 800]
GRID: dict[str, list[int]] = {
    "greeting": [1000, 1250, 1500, 2000],
    "maximum_number_of_words": [2, 3, 4, 5],
    "silence_threshold": [256, 512],
    "between_words_silence": [50, 100],
    "min_word_length": [100, 150],
}


def _score(params: AmdParams, items: list[tuple[dict[str, Any], Pcm]]) -> dict[str, Any]:
    human_ms: list[float] = []
    h2m = m2h = 0
    for item, pcm in items:
        det = AmdDetector(params)
        verdict = det.feed(pcm.samples, pcm.rate) or det.expire()
        if item["label"] == "human":
            if verdict.status == "HUMAN":
                human_ms.append(verdict.audio_ms)
            else:
                h2m += 1
        elif verdict.status == "HUMAN":
            m2h += 1
    return {
        "humans_taken_for_machines": h2m,
        "machines_taken_for_humans": m2h,
        "human_decision_p50_s": _s(_pct(human_ms, 0.50)),
        "human_decision_p95_s": _s(_pct(human_ms, 0.95)),
    }


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def run() -> dict[str, Any]:
    if os.environ.get("AMD_SPLIT", "tuning") != "tuning":
        raise SystemExit("bench.amd_frontier runs on the tuning set only")
    labels = _labels("tuning")
    items = [(x, decode_wav((CORPUS / f"{x['id']}.wav").read_bytes())) for x in labels]
    rows = []
    for ags in AFTER_GREETING_SILENCE:
        best: tuple[tuple[int, float], AmdParams, dict[str, Any]] | None = None
        for values in itertools.product(*GRID.values()):
            params = replace(
                AmdParams(), after_greeting_silence=ags, **dict(zip(GRID, values, strict=True))
            )
            score = _score(params, items)
            if score["humans_taken_for_machines"]:
                continue
            key = (score["machines_taken_for_humans"], score["human_decision_p95_s"] or 0.0)
            if best is None or key < best[0]:
                best = (key, params, score)
        rows.append(
            {
                "after_greeting_silence": ags,
                "best": None if best is None else {**best[2], "params": asdict(best[1])},
            }
        )
    result = {
        "split": "tuning",
        "greetings": len(items),
        "humans": sum(1 for x, _ in items if x["label"] == "human"),
        "current": _score(AmdParams(), items),
        "frontier": rows,
    }
    out = ROOT / "reports" / "amd-frontier.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    res = run()
    print("current amd.conf", json.dumps(res["current"]))
    for row in res["frontier"]:
        b = row["best"]
        print(
            f"after_greeting_silence={row['after_greeting_silence']}: "
            + (
                "no setting keeps every person"
                if b is None
                else f"machines->people {b['machines_taken_for_humans']}/"
                f"{res['greetings'] - res['humans']}, people p50/p95 "
                f"{b['human_decision_p50_s']}/{b['human_decision_p95_s']} s"
            )
        )
