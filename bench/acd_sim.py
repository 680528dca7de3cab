"""``python -m bench acd_sim``: best-match vs longest-idle on the shipped inbound scenario, both
run by the engine's ACD router (engine/acd/routing.py) through the simulator.

Prints the side-by-side table and writes reports/acd-best-match.json. The Erlang C check takes
about three minutes and is its own command (docs/acd-simulator.md):
``python -m engine.acd.sim.erlang_check --jobs 2 --json reports/acd-erlang-c.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.acd.sim.report import pooled, render
from engine.acd.sim.routers import make_router
from engine.acd.sim.scenario import load_scenario
from engine.acd.sim.simulator import simulate

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "engine" / "acd" / "sim" / "scenarios" / "best-match-sales.json"


def run() -> dict[str, Any]:
    scenario = load_scenario(SCENARIO)
    summary = {
        name: pooled(
            [simulate(scenario, make_router(name, scenario, s), s) for s in scenario.seeds]
        )
        for name in scenario.routers
    }
    print(render(summary, conversions=True), flush=True)
    out = ROOT / "reports" / "acd-best-match.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"scenario": scenario.name, "routers": summary}, indent=2) + "\n")
    keep = ("offered", "sl_pct", "asa_s", "abandon_pct", "occupancy_pct", "conversion_pct")
    return {name: {k: s[k] for k in keep} for name, s in summary.items()}


if __name__ == "__main__":
    run()
