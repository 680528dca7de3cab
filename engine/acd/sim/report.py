"""Pooling runs over seeds, the comparison table and its JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.acd.sim.metrics import QueueTally
from engine.acd.sim.simulator import RunResult


def pooled(runs: Sequence[RunResult]) -> dict[str, Any]:
    """KPIs over all seeds together: counts and seconds are summed before the ratios are taken, so
    every call weighs the same whatever seed it came from."""
    total = QueueTally()
    queues: dict[str, QueueTally] = {}
    busy = logged = 0.0
    for run in runs:
        for name, tally in run.queues.items():
            queues.setdefault(name, QueueTally()).add(tally)
            total.add(tally)
        busy += run.busy_s
        logged += run.logged_s
    return {
        "seeds": [r.seed for r in runs],
        **total.kpis(),
        "occupancy_pct": 100.0 * busy / logged if logged > 0 else None,
        "queues": {name: t.kpis() for name, t in queues.items()},
    }


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(summary: dict[str, dict[str, Any]], *, conversions: bool) -> str:
    """One row per router (all queues), then one per queue when there are several."""
    w = max([14, *map(len, summary)])  # strategy names run up to 19 characters
    head = (
        f"{'router':<{w}} {'queue':<10} {'offered':>8} {'SL %':>6} {'ASA s':>7} {'aband %':>7} "
        f"{'occ %':>6} {'AHT s':>6}"
    )
    if conversions:
        head += f" {'conv':>6} {'conv %':>6}"
    lines = [head, "-" * len(head)]

    def row(router: str, queue: str, k: dict[str, Any], occ: Any) -> str:
        line = (
            f"{router:<{w}} {queue:<10} {k['offered']:>8} {_fmt(k['sl_pct']):>6} "
            f"{_fmt(k['asa_s']):>7} {_fmt(k['abandon_pct'], 2):>7} {_fmt(occ):>6} "
            f"{_fmt(k['aht_s']):>6}"
        )
        if conversions:
            line += f" {k['conversions']:>6} {_fmt(k['conversion_pct'], 2):>6}"
        return line

    for router, s in summary.items():
        lines.append(row(router, "(all)", s, s["occupancy_pct"]))
        if len(s["queues"]) > 1:
            for name, k in s["queues"].items():
                lines.append(row("", name, k, None))
    return "\n".join(lines)
