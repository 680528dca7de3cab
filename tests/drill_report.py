"""Figures of the issue-8 fault drills, written where `make test` prints them.

Every drill in `make test` (docs/durability.md, "Drills") records what it measured (calls
placed, CDRs written, lost and duplicated, duplicate dials, seconds to recover) in
``reports/drill-<slug>.json``; ``scripts/run-tests`` prints the ones written during the run
after the test summary, so a CI log carries the figures a closing note quotes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

REPORTS = Path(__file__).resolve().parents[1] / "reports"

Figure = str | int | float | bool | None


def report_drill(slug: str, title: str, figures: Mapping[str, Figure]) -> Path:
    """Write ``reports/drill-<slug>.json`` ({"drill": title, **figures}) and print one line."""
    path = REPORTS / f"drill-{slug}.json"
    REPORTS.mkdir(exist_ok=True)
    body = {"drill": title, **figures}
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    print(f"\ndrill {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return path
