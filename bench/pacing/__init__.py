"""Pacing benchmark: ``python -m bench.pacing`` (``make bench-pacing``).

``run()`` is what ``make bench`` calls: the full table is printed and written
to reports/pacing.json and reports/pacing.png; the figures of the predictive
policy per scenario come back for reports/bench.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run() -> dict[str, Any]:
    from bench.pacing.__main__ import main

    out = ROOT / "reports"
    main(["--out", str(out)])
    summary = json.loads((out / "pacing.json").read_text(encoding="utf-8"))["summary"]
    return {
        scenario: {
            key: policies["predictive"][key]
            for key in (
                "busy_pct",
                "abandon_pct_mean",
                "abandon_pct_worst_seed",
                "abandon_pct_worst_hour",
                "gates_hold",
            )
        }
        for scenario, policies in summary.items()
        if "predictive" in policies
    }
