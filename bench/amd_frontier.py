"""AMD: how fast people can be decided against how many machines then pass for people.

    .venv/bin/python -m bench.amd_frontier      # reports/amd-frontier.json (a few minutes)

Offline, on the TUNING set only (never the held-out one): the engine's detector (the same
rules and cause strings as app_amd, docs/amd.md) is run on the corpus WAVs over a grid of
amd.conf values. A verdict is scored as the campaign runner routes it (engine/campaigns/
outcomes.py): MACHINE gets the machine action, anything else (HUMAN, or NOTSURE when
``total_analysis_time`` runs out) goes to a person. Times are in audio time, which is what
both switches measure to within a few ms (bench.amd ``switches_agree``).

Two tables:

- ``frontier``: for each ``after_greeting_silence``, the setting (other keys over GRID, the
  full 5 s analysis) with no person taken for a machine and the fewest machines passed to a
  person, and the people's time to that verdict (p50/p95).
- ``budgets``: for each bound on the people's p95, the setting (GRID x BUDGET_SILENCE x
  ANALYSIS_TIME: cutting the analysis short hands an undecided call to a person at that
  time) with no person taken for a machine and the fewest machines passed to a person.
  ``fast`` is the row for ``FAST_P95_MS``: the point that meets the 2 s target on the tuning
  set with 0.1 s to spare for the live path.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
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
#: The budgets table also searches these after_greeting_silence values and analysis times.
BUDGET_SILENCE = [200, 300, 400, 500]
ANALYSIS_TIME = [1800, 1900]
P95_BUDGETS_MS = [1900, 2000, 2100, 2200, 2300, 2400, 2500, 2600]
FAST_P95_MS = 1900

Key = tuple[int, int, int, int, int, int, int]


def _score(
    params: AmdParams,
    items: list[tuple[dict[str, Any], Pcm]],
    detector: Callable[[AmdParams], AmdDetector] = AmdDetector,
) -> dict[str, Any]:
    to_person_ms: list[float] = []
    h2m = m2p = notsure = 0
    for item, pcm in items:
        det = detector(params)
        verdict = det.feed(pcm.samples, pcm.rate) or det.expire()
        notsure += verdict.status == "NOTSURE"
        if item["label"] == "human":
            if verdict.status == "MACHINE":
                h2m += 1
            else:
                to_person_ms.append(verdict.audio_ms)
        elif verdict.status != "MACHINE":
            m2p += 1
    return {
        "humans_taken_for_machines": h2m,
        "machines_passed_to_a_person": m2p,
        "notsure": notsure,
        "human_decision_p50_s": _s(_pct(to_person_ms, 0.50)),
        "human_decision_p95_s": _s(_pct(to_person_ms, 0.95)),
    }


def _s(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def _best(scored: list[tuple[AmdParams, dict[str, Any]]]) -> dict[str, Any] | None:
    """No person taken for a machine; then the fewest machines passed, then the lowest p95."""
    ok = [(p, s) for p, s in scored if not s["humans_taken_for_machines"]]
    if not ok:
        return None
    p, s = min(
        ok, key=lambda ps: (ps[1]["machines_passed_to_a_person"], ps[1]["human_decision_p95_s"])
    )
    return {**s, "params": asdict(p)}


def best_per_budget(scored: list[tuple[AmdParams, dict[str, Any]]]) -> list[dict[str, Any]]:
    """For each bound on the people's p95 decision time, the best setting within it."""
    budgets = []
    for budget in P95_BUDGETS_MS:
        within = [
            (p, s)
            for p, s in scored
            if s["human_decision_p95_s"] is not None and s["human_decision_p95_s"] * 1000 <= budget
        ]
        budgets.append({"people_p95_at_most_ms": budget, "best": _best(within)})
    return budgets


def run() -> dict[str, Any]:
    if os.environ.get("AMD_SPLIT", "tuning") != "tuning":
        raise SystemExit("bench.amd_frontier runs on the tuning set only")
    labels = _labels("tuning")
    items = [(x, decode_wav((CORPUS / f"{x['id']}.wav").read_bytes())) for x in labels]
    cache: dict[AmdParams, dict[str, Any]] = {}

    def score(params: AmdParams) -> tuple[AmdParams, dict[str, Any]]:
        if params not in cache:
            cache[params] = _score(params, items)
        return params, cache[params]

    def grid(**fixed: int) -> list[AmdParams]:
        return [
            replace(AmdParams(), **fixed, **dict(zip(GRID, values, strict=True)))
            for values in itertools.product(*GRID.values())
        ]

    rows = [
        {
            "after_greeting_silence": ags,
            "best": _best([score(p) for p in grid(after_greeting_silence=ags)]),
        }
        for ags in AFTER_GREETING_SILENCE
    ]
    candidates = [
        score(p)
        for ags in BUDGET_SILENCE
        for t in [*ANALYSIS_TIME, AmdParams().total_analysis_time]
        for p in grid(after_greeting_silence=ags, total_analysis_time=t)
    ]
    budgets = best_per_budget(candidates)
    result = {
        "split": "tuning",
        "greetings": len(items),
        "humans": sum(1 for x, _ in items if x["label"] == "human"),
        "current": score(AmdParams())[1],
        "frontier": rows,
        "budgets": budgets,
        "fast": next(b["best"] for b in budgets if b["people_p95_at_most_ms"] == FAST_P95_MS),
    }
    out = ROOT / "reports" / "amd-frontier.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _line(best: dict[str, Any] | None, machines: int) -> str:
    if best is None:
        return "no setting keeps every person"
    return (
        f"machines->person {best['machines_passed_to_a_person']}/{machines}, people p50/p95 "
        f"{best['human_decision_p50_s']}/{best['human_decision_p95_s']} s"
    )


if __name__ == "__main__":
    res = run()
    machines = res["greetings"] - res["humans"]
    print("current amd.conf", json.dumps(res["current"]))
    for row in res["frontier"]:
        print(f"after_greeting_silence={row['after_greeting_silence']}: ", end="")
        print(_line(row["best"], machines))
    for row in res["budgets"]:
        print(f"people p95 <= {row['people_p95_at_most_ms']} ms: ", end="")
        print(_line(row["best"], machines), json.dumps((row["best"] or {}).get("params")))
