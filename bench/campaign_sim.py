"""Live pacing against the simulator: the live campaign test's list, dry-run with the same code.

``tests/integration/test_campaign_live.py`` runs a 40-contact predictive campaign on the real
Asterisk sandbox with two SIPp agents and writes reports/campaign-live.json. This bench takes the
36 dialable contacts of that run (what each number does is the carrier's number plan), the same
campaign settings and the sandbox's timings (bench/campaign_scenarios/live-campaign.json), runs
the dry run (engine/campaigns/dryrun.py: the same pacing policy, hopper order, limits and retry
rules) over several seeds, and prints dials per agent-hour and abandon % beside the live run's.

    .venv/bin/python -m bench campaign_sim      (after the live test has written its report)
"""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.campaigns.dryrun import SimContact, dry_run
from engine.campaigns.model import CampaignSpec
from engine.dialer.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "bench" / "campaign_scenarios" / "live-campaign.json"
LIVE = ROOT / "reports" / "campaign-live.json"
FATE = {
    "human": "live",
    "machine": "machine",
    "busy": "fast_fail",
    "no_answer": "no_answer",
    "congestion": "congestion",
    "declined": "declined",
}
# The live test's campaign (tests/integration/test_campaign_live.py campaign_body).
SPEC = CampaignSpec.model_validate(
    {
        "mode": "predictive",
        "trunk_group": "campaign-out",
        "queue": "campq",
        "safe_harbour_s": 2.0,
        "max_attempts": 3,
        "max_attempts_per_day": 3,
        "max_uncounted_attempts": 2,
        "window": {
            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "00:00",
            "end": "00:00",
        },
        "retries": {
            k: {"after_s": 3.0}
            for k in ("busy", "no_answer", "machine", "abandoned", "carrier_failure")
        },
    }
)
AGENTS = 2


def _figures(contacts: list[SimContact]) -> dict[str, float]:
    tries = [t for c in contacts for t in c.history]
    last = max(end for _, end, _ in tries)
    live = sum(1 for *_, o in tries if o in ("human", "abandoned"))
    dropped = sum(1 for *_, o in tries if o == "abandoned")
    return {
        "dials": len(tries),
        "dials_per_agent_hour": round(len(tries) / (AGENTS * last / 3600), 1),
        "abandon_pct": round(100 * dropped / live, 2) if live else 0.0,
        "wall_s": round(last, 1),
    }


def run() -> dict[str, Any]:
    if not LIVE.exists():
        return {"skipped": f"{LIVE.relative_to(ROOT)} missing: run the live campaign test first"}
    live = json.loads(LIVE.read_text())
    rows = live["table"]
    scenario = load_scenario(SCENARIO)
    runs = []
    for seed in scenario.seeds:
        contacts = [
            SimContact(i + 1, r["contact"], "UTC", fate=FATE[r["kind"]]) for i, r in enumerate(rows)
        ]
        dry_run(SPEC, contacts, scenario, start=datetime(2026, 12, 2, 12, tzinfo=UTC), seed=seed)
        runs.append(_figures(contacts))
    sim = {
        key: round(statistics.mean(r[key] for r in runs), 2)
        for key in ("dials", "dials_per_agent_hour", "abandon_pct", "wall_s")
    }
    summary = live["summary"]
    result = {
        "live": {k: summary[k] for k in ("dials", "dials_per_agent_hour", "abandon_pct", "wall_s")},
        "simulated_mean": sim,
        "simulated_runs": runs,
        "seeds": list(scenario.seeds),
    }
    out = ROOT / "reports" / "campaign-sim.json"
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
