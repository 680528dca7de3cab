"""Synthetic call-centre history for reports: tests, the A/B demo and bench/reports.py.

``seed(conn, start, days, calls)`` COPYs into the raw tables (``cdr``, ``queue_entries``,
``agent_state_history``, ``campaign_attempts``, ``campaigns``) a deterministic history:

- 80 % inbound calls: a CDR on an inbound trunk carrying the IVR split ``greeting``
  (``short``/``long``, half each by call), then a queue entry routed by one of two
  alternating strategies (``longest_idle``/``best_match``, half each); the long greeting
  loses more callers (abandons 14 % against 10 %), best-match talks shorter (225 s mean
  against 250 s);
- 20 % campaign calls: an attempt and its outbound CDR; answered people reach an agent
  through the campaign's queue, and best-match sells more (22 % against 18 % of connects);
- per answered call, the agent's states: reserved, on call, wrap-up, available.

The differences are planted so an A/B report has something to find:

    scripts/ab-demo                   # a scratch database, 20,000 calls over 7 days, both reports

Run as ``python scripts/reports_seed.py [--calls N] [--days D] [--keep]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make `engine` importable
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

SERVER_DSN = os.environ.get("ENGINE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
VARIANTS = ("long", "short")
STRATEGIES = ("best_match", "longest_idle")


def _half(call_id: str, salt: str) -> int:
    return hashlib.sha256(f"{salt}:{call_id}".encode()).digest()[0] & 1


def rows(
    start: datetime,
    days: float,
    calls: int,
    *,
    queues: int = 20,
    agents: int = 200,
    trunks: int = 8,
    campaigns: int = 10,
    seed: int = 1,
) -> dict[str, list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    span = days * 86400.0
    out: dict[str, list[tuple[Any, ...]]] = {
        "cdr": [],
        "queue_entries": [],
        "agent_state_history": [],
        "campaign_attempts": [],
    }
    sec = timedelta(seconds=1)
    for i in range(calls):
        call_id = f"seed{seed}-{i:08d}"
        t0 = start + rng.random() * span * sec
        inbound = rng.random() < 0.8
        variant = VARIANTS[_half(call_id, "greeting")]
        strategy = STRATEGIES[_half(call_id, "strategy")]
        trunk = f"trunk{rng.randrange(trunks)}"
        queue = f"queue{rng.randrange(queues):02d}"
        agent = f"agent{rng.randrange(agents):03d}"
        ring = t0 + rng.uniform(0.5, 4.0) * sec
        answered_leg = True
        human = True
        campaign = f"seed-camp{rng.randrange(campaigns)}"
        if not inbound:
            answered_leg = rng.random() < 0.6
            human = answered_leg and rng.random() < 0.7
        leg_answer = ring + rng.uniform(2, 20) * sec if answered_leg else None
        # The queue part (inbound, or a campaign's person).
        entry = None
        if inbound or human:
            entered = (leg_answer or t0) + (rng.uniform(5, 40) if inbound else 1.0) * sec
            abandon_p = (0.14 if variant == "long" else 0.10) if inbound else 0.03
            wait = rng.expovariate(1 / 25.0)
            if rng.random() < abandon_p:
                outcome, talk, wrap = "abandoned", None, None
                ended = entered + wait * sec
                answered = None
            else:
                outcome = "answered"
                mean = 225.0 if strategy == "best_match" else 250.0
                talk = rng.lognormvariate(0, 0.5) * mean / 1.133
                wrap = rng.uniform(10, 40)
                answered = entered + wait * sec
                ended = answered + talk * sec
            entry = (entered, answered, ended, outcome, wait, talk, wrap)
            out["queue_entries"].append(
                (
                    uuid.uuid5(uuid.NAMESPACE_URL, call_id).hex,
                    call_id,
                    queue if inbound else f"{campaign}-q",
                    1,
                    "[]",
                    entered,
                    answered,
                    ended,
                    outcome,
                    agent if answered else None,
                    wait,
                    talk,
                    wrap,
                    strategy,
                )
            )
            if answered is not None and talk is not None and wrap is not None:
                at = answered - 3 * sec
                for n, (when, st, prev, d) in enumerate(
                    (
                        (at, "reserved", "available", rng.uniform(5, 120)),
                        (answered, "on_call", "reserved", 3.0),
                        (ended, "wrap_up", "on_call", talk),
                        (ended + wrap * sec, "available", "wrap_up", wrap),
                    )
                ):
                    out["agent_state_history"].append(
                        (f"{call_id}-{n}", agent, when, st, prev, call_id, d)
                    )
        last = leg_answer or ring
        call_end = entry[2] if entry is not None else last + rng.uniform(1, 30) * sec
        variables = f'{{"ivr_split.greeting": "{variant}"}}' if inbound else "{}"
        out["cdr"].append(
            (
                call_id,
                1,
                "asterisk-1",
                "inbound" if inbound else "outbound",
                f"PJSIP/{trunk}-{i:08x}",
                "+15550100",
                trunk,
                t0,
                leg_answer,
                call_end,
                ring,
                "ended",
                variables,
            )
        )
        if not inbound:
            connected = entry is not None and entry[3] == "answered"
            abandoned = human and not connected
            sale_p = 0.22 if strategy == "best_match" else 0.18
            r = rng.random()
            disposition = None
            if connected:
                disposition = (
                    "sale" if r < sale_p else "callback" if r < sale_p + 0.1 else "not_interested"
                )
            out["campaign_attempts"].append(
                (
                    f"att-{call_id}",
                    campaign,
                    i,
                    call_id,
                    1,
                    1,
                    "done",
                    "+15550100",
                    trunk,
                    t0,
                    leg_answer,
                    entry[1] if connected and entry is not None else None,
                    call_end,
                    _outcome(abandoned, human, answered_leg),
                    abandoned,
                    agent if connected else None,
                    disposition,
                )
            )
    return out


def _outcome(abandoned: bool, human: bool, answered: bool) -> str:
    if abandoned:
        return "abandoned"
    if human:
        return "human"
    return "machine" if answered else "no_answer"


_COLUMNS = {
    "cdr": (
        "call_id",
        "attempt",
        "switch",
        "direction",
        "channel",
        "destination",
        "trunk",
        "started_at",
        "answered_at",
        "ended_at",
        "ringing_at",
        "final_state",
        "variables",
    ),
    "queue_entries": (
        "entry_id",
        "call_id",
        "queue",
        "priority",
        "tags",
        "entered_at",
        "answered_at",
        "ended_at",
        "outcome",
        "agent_id",
        "wait_s",
        "talk_s",
        "wrap_up_s",
        "strategy",
    ),
    "agent_state_history": (
        "change_id",
        "agent_id",
        "at",
        "state",
        "previous",
        "call_id",
        "time_in_previous_s",
    ),
    "campaign_attempts": (
        "attempt_id",
        "campaign_id",
        "contact_id",
        "call_id",
        "fence",
        "seq",
        "state",
        "phone",
        "trunk",
        "created_at",
        "answered_at",
        "agent_at",
        "ended_at",
        "outcome",
        "abandoned",
        "agent_id",
        "disposition",
    ),
}


def _spec(campaign: str) -> dict[str, Any]:
    """A valid CampaignSpec (engine/campaigns/model.py): an engine that loads the campaigns of
    this database must accept it. Left in draft: no engine dials it."""
    return {
        "trunk_group": "seed-group",
        "queue": f"{campaign}-q",
        "abandon_period": "fcc_30d",
        "abandon_limit": 0.03,
    }


async def unseed(conn: asyncpg.Connection) -> None:
    """Remove what :func:`seed` wrote (tests sharing a database)."""
    for table in ("cdr", "queue_entries", "agent_state_history"):
        await conn.execute(f"DELETE FROM {table} WHERE call_id LIKE 'seed%'")
    await conn.execute("DELETE FROM campaigns WHERE campaign_id LIKE 'seed-camp%'")


async def seed(
    conn: asyncpg.Connection, start: datetime, days: float, calls: int, **kw: Any
) -> dict[str, int]:
    """COPY the history into the raw tables (the triggers mark the buckets, once per COPY).

    ``conn`` is a plain asyncpg connection (``asyncpg.connect``): binary COPY needs asyncpg's
    own jsonb codec (JSON text), not the engine pool's text-format one."""
    data = rows(start, days, calls, **kw)
    campaign_ids = sorted({r[1] for r in data["campaign_attempts"]})
    await conn.executemany(
        "INSERT INTO campaigns (campaign_id, spec) VALUES ($1, $2::jsonb) ON CONFLICT DO NOTHING",
        [(c, json.dumps(_spec(c))) for c in campaign_ids],
    )
    for table, cols in _COLUMNS.items():
        await conn.copy_records_to_table(table, records=data[table], columns=list(cols))
    return {table: len(v) for table, v in data.items()}


async def demo(calls: int, days: float, keep: bool) -> int:
    from engine.reports import ab, experiments
    from engine.reports.fill import FillSettings, rebuild
    from engine.store.pg.admin import create_database, drop_database
    from engine.store.pg.pool import PgStore

    name = f"engine_abdemo_{uuid.uuid4().hex[:8]}"
    dsn = await create_database(SERVER_DSN, name)
    try:
        async with PgStore(dsn, Path("."), min_size=1, max_size=2) as store:
            start = datetime(2026, 11, 2, tzinfo=UTC)
            conn = await asyncpg.connect(dsn)
            try:
                counts = await seed(conn, start, days, calls)
            finally:
                await conn.close()
            await rebuild(store.pool, start, start + timedelta(days=days + 1), FillSettings())
            print(f"seeded {counts} into {name}\n")
            end = start + timedelta(days=days + 1)
            q = {"from": start.isoformat(), "to": end.isoformat()}
            for kind, exp_name, extra in (
                ("splits", "greeting", {}),
                ("queues", "queue00", {}),
                ("queues", "seed-camp0-q", {"goal": "disposition", "dispositions": "sale"}),
            ):
                exp = experiments.parse_experiment(kind, exp_name, {**q, **extra})
                result = ab.analyse(await experiments.samples(store.pool, exp), exp.control)
                print(experiments.render_text(exp, result) + "\n")
    finally:
        if keep:
            print(f"kept database {name} ({dsn})")
        else:
            await drop_database(SERVER_DSN, name)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    return asyncio.run(demo(args.calls, args.days, args.keep))


if __name__ == "__main__":
    sys.exit(main())
