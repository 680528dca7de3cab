"""``python -m engine simulate SCENARIO.json [--policy NAME] [--seeds 1,2] [--json OUT]``.

The main CLI calls :func:`add_simulate_parser` with its sub-parsers; the sub-command runs
:func:`run_simulate`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.dialer.pacing import POLICY_NAMES, make_policy
from engine.dialer.sim import ScenarioError, gates_hold, load_scenario, simulate

# What --help says (the module docstring is for developers). The inbound and --campaign
# extensions (engine/acd/sim/cli.py, engine/campaigns/simulate_cli.py) add their lines.
DESCRIPTION = """Simulate a campaign or a queue with no switch (virtual time, seeded).

  engine simulate SCENARIO.json [--policy NAME] [--seeds 1,2] [--json OUT]
      an outbound scenario under a pacing policy (docs/pacing.md)"""


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="simulate one outbound campaign scenario under a pacing policy",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "scenario",
        nargs="?",
        default=None,
        help="scenario JSON (format: bench/pacing_scenarios/README.md); optional with --campaign",
    )
    parser.add_argument(
        "--policy",
        default="predictive",
        help=f"pacing policy: {', '.join(POLICY_NAMES)}, power-K or ratio-LEVEL",
    )
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the file's)")
    parser.add_argument("--json", dest="json_out", default="", help="write per-seed figures here")
    parser.set_defaults(func=run_simulate)
    return parser


def _parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            seeds.append(int(part))
        except ValueError:
            raise ValueError(f"--seeds: expected comma-separated integers, got {part!r}") from None
    return seeds


def run_simulate(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
        seeds = _parse_seeds(args.seeds) or list(scenario.seeds) or [1]
        make_policy(args.policy)  # validate the name before any work
    except (ScenarioError, ValueError) as err:
        print(f"simulate: {err}", file=sys.stderr)
        return 2
    results = []
    for seed in seeds:
        res = simulate(scenario, make_policy(args.policy, shift_s=scenario.shift_s), seed)
        results.append(res)
        f = res.figures
        print(
            f"{scenario.name} {args.policy} seed={seed}: busy {f.busy_pct:.1f}%, "
            f"talk {f.talk_min_per_agent_hour:.1f} min/agent-h, abandon {f.abandon_pct:.2f}% "
            f"(worst hour {f.worst_hour_abandon_pct:.2f}%), "
            f"{f.connections_per_agent_hour:.1f} connections and "
            f"{f.dials_per_agent_hour:.1f} dials per agent-hour"
        )
    figs = [r.figures for r in results]
    held = gates_hold(figs)
    mean_busy = sum(f.busy_pct for f in figs) / len(figs)
    print(
        f"mean busy {mean_busy:.1f}% over {len(figs)} seed(s); compliance gates "
        f"{'hold' if held else 'BROKEN'} (shift <= 3.0%, every hour <= 5.0%)"
    )
    if args.json_out:
        payload = {
            "scenario": scenario.name,
            "policy": args.policy,
            "gates_hold": held,
            "runs": [r.as_dict() for r in results],
        }
        Path(args.json_out).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0
