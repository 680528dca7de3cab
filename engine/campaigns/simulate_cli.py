"""``python -m engine simulate [SCENARIO] --campaign NAME``: a dry run of a configured campaign.

The campaign's settings and its contacts (those still to dial, with their attempt counts and
due times) and DNC numbers are read from the configured PostgreSQL; the scenario file gives the
far ends and the agents (without one, ``DEFAULT_SCENARIO``: the sandbox's measured far ends and
2 agents). Nothing is dialled and nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.campaigns.dryrun import SimContact, dry_run
from engine.campaigns.store import CampaignStore
from engine.core.errors import ConfigError
from engine.dialer.sim.scenario import ScenarioError, load_scenario, parse_scenario
from engine.store.errors import StoreError
from engine.store.pg.pool import PgStore

Handler = Callable[[argparse.Namespace], int]
StoreFactory = Callable[[str], PgStore]

_CONTACTS = """
SELECT contact_id, phone, tz, priority, rank, next_at, attempts, attempts_day, attempts_today
FROM contacts WHERE campaign_id = $1 AND state = 'ready' ORDER BY contact_id
"""
_DNC = """
SELECT c.phone FROM contacts c JOIN dnc d ON d.phone = c.phone
WHERE c.campaign_id = $1 AND d.campaign_id IN ('', $1)
"""


#: The far ends and agents of a dry run given no scenario file: those of
#: bench/campaign_scenarios/live-campaign.json (the sandbox carrier's measured timings, 2 agents,
#: one hour; a test keeps the two equal). Give a scenario for a real carrier and team.
DEFAULT_SCENARIO: dict[str, Any] = {
    "name": "live-campaign",
    "description": "engine default for a campaign dry run: the sandbox carrier's far ends",
    "agents": 2,
    "shift_hours": 1,
    "seeds": [1, 2, 3, 4, 5],
    "dial_outcomes": {"live": 0.222, "fast_fail": 0.417, "machine": 0.222},
    "fast_fail_s": {"uniform": [0.05, 0.3]},
    "post_dial_delay_s": {"uniform": [0.05, 0.2]},
    "ring_to_answer_s": {"uniform": [0.05, 0.2]},
    "ring_timeout_s": 5.0,
    "talk_s": 3.3,
    "wrap_s": 0.0,
    "abandon_window_s": 2.0,
    "amd": {
        "machine_detect": 1.0,
        "human_false_positive": 0.0,
        "human_decision_s": 2.3,
        "greeting_s": 2.3,
        "machine_decision_s": 2.6,
        "undetected_machine_agent_s": 3.3,
    },
}


def extend_simulate_parser(
    parser: argparse.ArgumentParser, other: Handler, open_store: StoreFactory
) -> None:
    parser.description = (parser.description or "") + (
        "\n  engine simulate --campaign NAME [SCENARIO.json] [--start ISO-TIME]"
        "\n      a dry run of a configured campaign's list (docs/campaigns.md)"
    )
    parser.add_argument(
        "--campaign",
        default=None,
        help="dry-run this configured campaign's list under the scenario's far ends and agents",
    )
    parser.add_argument(
        "--config",
        default="telephony-config/engine.toml",
        help="with --campaign: the engine.toml (default: telephony-config/engine.toml)",
    )
    parser.add_argument(
        "--start", default="", help="virtual start time, ISO 8601 with a zone (default: now)"
    )

    def dispatch(args: argparse.Namespace) -> int:
        if args.campaign is None:
            if args.scenario is None:
                parser.error("a scenario file is required (optional only with --campaign NAME)")
            return other(args)
        return run_campaign_simulate(args, open_store)

    parser.set_defaults(func=dispatch)


async def _load(store: PgStore, campaign: str) -> tuple[Any, list[SimContact], set[str]]:
    async with store:
        row = await CampaignStore(store.pool).get(campaign)
        if row is None:
            raise LookupError(f"no campaign named {campaign!r}")
        rows = await store.pool.fetch(_CONTACTS, campaign, timeout=30)
        dnc = {r["phone"] for r in await store.pool.fetch(_DNC, campaign, timeout=30)}
    contacts = [
        SimContact(
            contact_id=int(r["contact_id"]),
            phone=r["phone"],
            tz=r["tz"],
            priority=int(r["priority"]),
            rank=int(r["rank"]),
            # Fresh contacts are due since -infinity (asyncpg: a year-1 datetime).
            next_at=r["next_at"] if r["next_at"] is not None and r["next_at"].year > 1 else None,
            attempts=int(r["attempts"]),
            attempts_day=r["attempts_day"],
            attempts_today=int(r["attempts_today"]),
        )
        for r in rows
    ]
    return row.spec, contacts, dnc


def run_campaign_simulate(args: argparse.Namespace, open_store: StoreFactory) -> int:
    try:
        scenario = (
            load_scenario(args.scenario)
            if args.scenario is not None
            else parse_scenario(DEFAULT_SCENARIO, "the default dry-run scenario")
        )
        start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("--start: expected a time with a zone, e.g. 2026-12-07T09:00+00:00")
        spec, contacts, dnc = asyncio.run(_load(open_store(args.config), args.campaign))
    except (ScenarioError, ValueError, LookupError, ConfigError, StoreError, OSError) as err:
        print(f"simulate: {err}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else [1]
    runs = []
    for seed in seeds:
        fresh = [SimContact(**{k: getattr(c, k) for k in SimContact.__slots__}) for c in contacts]
        result, feed = dry_run(spec, fresh, scenario, start=start, seed=seed, dnc=dnc)
        f = result.figures
        summary = feed.summary()
        order = sorted(
            ((t[0], c.phone) for c in feed.contacts for t in c.history), key=lambda x: x[0]
        )
        print(
            f"{args.campaign} ({spec.mode.value}) seed={seed}: {summary['attempts']} dials of "
            f"{summary['contacts']} contacts, abandon {f.abandon_pct:.2f}%, "
            f"{f.dials_per_agent_hour:.1f} dials per agent-hour; contacts by state "
            f"{summary['by_state']}, finished {summary['finished_by_outcome']}"
        )
        runs.append(
            {
                "seed": seed,
                **summary,
                "abandon_pct": f.abandon_pct,
                "dials_per_agent_hour": f.dials_per_agent_hour,
                "first_dials": [{"at_s": at, "phone": p} for at, p in order[:20]],
            }
        )
    if args.json_out:
        payload = {"campaign": args.campaign, "scenario": scenario.name, "runs": runs}
        Path(args.json_out).write_text(json.dumps(payload, indent=2, default=str))
    return 0
