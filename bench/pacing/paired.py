"""``python -m bench.pacing.paired``: paired comparison of predictive-policy variants (run 9).

Each variant is a JSON object of :class:`PredictiveConfig` fields (``base`` = the defaults).
Every variant runs the same scenarios and seeds (common random numbers), and the summary gives
each variant's mean busy %, its paired difference to the first variant (mean +- standard
error over seeds), its abandons (mean, worst seed, worst hour) and CPU per shift. Meant for
tuning on seeds the bench never reports (S0's are 1-10; run 9 used 101-120), so that what is
reported is not what was tuned on::

    python -m bench.pacing.paired --scenarios bench/pacing_scenarios/S0.json --seeds 101-120 \\
        --variants base '{"margin_se_factor": 0.75}' --out reports/run9/s0.jsonl

Run 9's guard-off, supply-shrink and value-weight variants are config fields added by
``bench/pacing/run9_variants.patch`` (``git apply`` it first; not part of the policy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from engine.dialer.pacing.predictive import PredictiveConfig, PredictivePolicy
from engine.dialer.sim import load_scenario, simulate


def _run(job: tuple[str, str, int]) -> dict[str, Any]:
    path, variant, seed = job
    scenario = load_scenario(path)
    fields = {} if variant == "base" else json.loads(variant)
    policy = PredictivePolicy(PredictiveConfig(**fields))
    start = time.process_time()
    figs = simulate(scenario, policy, seed).figures
    return {
        "scenario": scenario.name,
        "variant": variant,
        "seed": seed,
        "busy": figs.busy_pct,
        "abandon": figs.abandon_pct,
        "worst_hour": figs.worst_hour_abandon_pct,
        "hours": list(figs.hourly_abandon_pct),
        "cpu_s": time.process_time() - start,
    }


def parse_seeds(text: str) -> list[int]:
    """``1,2,5`` or an inclusive range ``101-120``."""
    if "-" in text and "," not in text:
        first, last = (int(x) for x in text.split("-"))
        return list(range(first, last + 1))
    return [int(x) for x in text.split(",") if x]


def summary(rows: list[dict[str, Any]], variants: Sequence[str]) -> list[str]:
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for row in rows:
        by.setdefault((row["scenario"], row["variant"]), {})[row["seed"]] = row
    lines = []
    for scen in dict.fromkeys(row["scenario"] for row in rows):
        base = by[(scen, variants[0])]
        for variant in variants:
            got = by[(scen, variant)]
            seeds = sorted(set(got) & set(base))
            diff = [got[s]["busy"] - base[s]["busy"] for s in seeds]
            se = statistics.stdev(diff) / len(diff) ** 0.5 if len(diff) > 1 else 0.0
            lines.append(
                f"{scen:<24} {variant[:64]:<64} n={len(seeds):<3} "
                f"busy {statistics.mean(got[s]['busy'] for s in seeds):6.2f} "
                f"d {statistics.mean(diff):+.3f} +- {se:.3f}  "
                f"ab {statistics.mean(got[s]['abandon'] for s in seeds):.2f} "
                f"(seed {max(got[s]['abandon'] for s in seeds):.2f}, "
                f"hour {max(got[s]['worst_hour'] for s in seeds):.2f})  "
                f"cpu {statistics.mean(got[s]['cpu_s'] for s in seeds):.1f}s"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pacing.paired", description=__doc__)
    ap.add_argument("--scenarios", required=True, help="comma-separated scenario JSON paths")
    ap.add_argument("--seeds", required=True, help="e.g. 101-120 or 101,102")
    ap.add_argument("--variants", nargs="+", default=["base"], help="base or JSON config fields")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="", help="append one JSON line per run to this file")
    args = ap.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    jobs = [(p, v, s) for p in args.scenarios.split(",") for v in args.variants for s in seeds]
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(_run, jobs))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    print("\n".join(summary(rows, args.variants)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
