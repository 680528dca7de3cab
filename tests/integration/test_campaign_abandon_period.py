"""A campaign's abandon rate over its legal period is one figure: ``GET .../stats`` and the
runner's baseline (what the abandon guard starts from) count the same attempts, the way the
simulator counts them: each live answer, and each abandon, at the moment the call was answered
(``ShiftTally.live_answer(call.answer_at, ...)``). They used to differ for attempts crossing the
period's start: stats counted by ``created_at``, the baseline by ``ended_at``.

Real PostgreSQL; the attempt rows are written as the runner's lane writes them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from engine.campaigns.model import CampaignSpec
from engine.campaigns.service import CampaignService
from engine.campaigns.stats import campaign_stats
from engine.dialer.sim.metrics import ShiftTally
from engine.store.pg.pool import PgStore
from tests.campaign_fakes import make_rig

NY = "America/New_York"


@pytest.fixture
def pool(pg_store: PgStore) -> asyncpg.Pool:
    return pg_store.pool


async def test_stats_and_the_runner_baseline_count_the_period_as_the_simulator(
    pool: asyncpg.Pool,
) -> None:
    cid = f"c-{uuid.uuid4().hex[:10]}"
    spec = CampaignSpec.model_validate(
        {"trunk_group": "g", "queue": "sales", "abandon_period": "ofcom_24h"}
    )
    period_s = spec.abandon_period.seconds
    phones = [f"+1212555{n:04d}" for n in range(4)]
    rig = await make_rig(pool, cid, spec, [(p, NY) for p in phones], now=datetime.now(UTC))
    contacts = [
        r["contact_id"]
        for r in await pool.fetch(
            "SELECT contact_id FROM contacts WHERE campaign_id = $1 ORDER BY contact_id", cid
        )
    ]
    start = datetime.now(UTC) - timedelta(seconds=period_s)  # the period's start, give or take

    def at(offset_s: float | None) -> datetime | None:
        return None if offset_s is None else start + timedelta(seconds=offset_s)

    # (created, answered, ended) in seconds from the period's start, outcome, abandoned
    attempts = [
        # answered before the start, dropped after it: before the period (the simulator books
        # it at its answer); the old baseline counted it (by its end)
        (-600, -300, 600, "abandoned", True),
        # created before the start, answered after it: in the period; the old stats left it
        # out (by its creation)
        (-300, 600, 900, "human", False),
        # wholly inside
        (1200, 1210, 1300, "abandoned", True),
        (1400, None, 1430, "no_answer", False),
    ]
    for k, (created, answered, ended, outcome, dropped) in enumerate(attempts):
        await pool.execute(
            "INSERT INTO campaign_attempts (attempt_id, campaign_id, contact_id, call_id, fence,"
            " seq, state, phone, created_at, answered_at, ended_at, outcome, abandoned)"
            " VALUES ($1, $2, $3, $4, 1, 1, 'done', $5, $6, $7, $8, $9, $10)",
            uuid.uuid4().hex,
            cid,
            contacts[k],
            f"call-{k}",
            phones[k],
            at(created),
            at(answered),
            at(ended),
            outcome,
            dropped,
        )

    # The simulator's figure over the same period (a "shift" that starts at the period's).
    tally = ShiftTally(shift_s=period_s)
    for _created, answered, _ended, outcome, dropped in attempts:
        if answered is not None and outcome in ("human", "abandoned"):
            tally.live_answer(answered, abandoned=dropped)
    sim = tally.figures()
    assert (sim.live_answers, sim.abandons) == (2, 1)

    service = CampaignService(rig.deps)
    baseline = await service._baseline(await service.row(cid))
    period = (await campaign_stats(service, cid))["period"]
    assert (baseline.live, baseline.abandoned) == (sim.live_answers, sim.abandons)
    assert (period["human"], period["abandoned"]) == (sim.live_answers, sim.abandons)
    assert period["abandon_pct"] == round(baseline.pct, 3) == round(sim.abandon_pct, 3) == 50.0
    # A dial counts when placed: the two created within the period.
    assert (period["dials"], period["answers"]) == (2, 2)
