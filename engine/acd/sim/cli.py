"""Inbound scenarios for ``python -m engine simulate``.

``python -m engine simulate SCENARIO.json [--router NAME[,NAME...]] [--seeds 1,2] [--json OUT]``:
a file with ``"kind": "inbound"`` runs the routing simulator once per router and seed and prints
the routers side by side; any other file goes to the outbound pacing simulator unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.acd.sim.report import pooled, render
from engine.acd.sim.routers import check_router_name, make_router, router_names
from engine.acd.sim.scenario import InboundScenarioError, is_inbound, load_scenario
from engine.acd.sim.simulator import RouterContractError, RunResult, simulate

Handler = Callable[[argparse.Namespace], int]


def _looks_inbound(path: str) -> bool:
    """Peek at the file; anything unreadable is left to the outbound path, which reports it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return is_inbound(data)


def extend_simulate_parser(parser: argparse.ArgumentParser, outbound: Handler) -> None:
    """Teach the outbound ``simulate`` sub-command inbound scenarios (``"kind": "inbound"``)."""
    parser.description = (parser.description or "") + (
        "\n  engine simulate INBOUND.json [--router NAME[,NAME...]] [--seeds 1,2] [--json OUT]"
        '\n      a file with "kind": "inbound": the ACD routers side by side'
        " (docs/acd-simulator.md)"
    )
    parser.add_argument(
        "--router",
        default=None,
        help="inbound scenarios only: comma-separated strategies of the engine's ACD router "
        f"({', '.join(router_names())}; default: the file's 'routers')",
    )

    def dispatch(args: argparse.Namespace) -> int:
        if _looks_inbound(args.scenario):
            return run_inbound(args)
        if args.router is not None:
            print("simulate: --router applies to inbound scenarios only", file=sys.stderr)
            return 2
        return outbound(args)

    parser.set_defaults(func=dispatch)


def _split(text: str, what: str, convert: Callable[[str], Any]) -> list[Any]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(convert(part))
        except ValueError:
            raise ValueError(f"{what}: cannot use {part!r}") from None
    return out


def run_inbound(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
        seeds = _split(args.seeds or "", "--seeds (comma-separated integers)", int)
        seeds = seeds or list(scenario.seeds)
        names = _split(args.router or "", "--router", str) or list(scenario.routers)
        for name in names:
            check_router_name(name)  # an unknown name fails before any work
    except (InboundScenarioError, ValueError) as err:
        print(f"simulate: {err}", file=sys.stderr)
        return 2
    runs: dict[str, list[RunResult]] = {}
    try:
        for name in names:
            runs[name] = [
                simulate(scenario, make_router(name, scenario, seed), seed) for seed in seeds
            ]
    except RouterContractError as err:
        print(f"simulate: {err}", file=sys.stderr)
        return 1
    summary = {name: pooled(rs) for name, rs in runs.items()}
    print(f"{scenario.name}: {len(seeds)} seed(s) {', '.join(map(str, seeds))}")
    print(render(summary, conversions=scenario.has_conversions))
    if args.json_out:
        payload = {
            "scenario": scenario.name,
            "source": str(args.scenario),
            "seeds": seeds,
            "routers": summary,
            "runs": [r.as_dict() for rs in runs.values() for r in rs],
        }
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0
