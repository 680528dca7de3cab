"""``GET /v1/campaigns/{id}/stats`` and ``/attempts``: what a supervisor reads of a campaign.

Counts come from PostgreSQL (the attempts of today, UTC, and of the legal period); the live part
(agents by state, calls in progress, the dial level, the policy's last decision and whether the
abandon guard holds the campaign to progressive) from the runner, when this engine runs it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.campaigns import period
from engine.campaigns.abandon import AbandonFigures
from engine.core.errors import InvalidRequest

if TYPE_CHECKING:
    from engine.campaigns.service import CampaignService

_ATTEMPT_ID = re.compile(r"[0-9a-f]{0,64}")

# A period's counts: the attempts of campaign $1 counted at their moments from $2 on
# (engine/campaigns/period.py: a dial when placed, all that follows an answer at the answer, as
# the simulator books each live answer and abandon). The runner's abandon baseline reads the
# same query (``period_counts``), and the reports' campaign intervals are filled by the same
# definition (engine/reports/fill.py): a report bucket holds what this counts over it.
_COUNTS = period.counts_sql(keys="a.campaign_id = $1", lo="$2", hi=None, by_bucket=False)


async def period_counts(store: Any, campaign_id: str, since: datetime) -> dict[str, int]:
    """A campaign's counts from ``since`` on (``store``: the CampaignStore). ``human`` is the
    live answers and ``abandoned`` the drops the abandon rate counts (``figures_of``)."""
    rows = await store.fetch("campaign counts", _COUNTS, campaign_id, since)
    return {k: int(rows[0][k]) for k in period.KEYS}


def figures_of(counts: Mapping[str, int]) -> AbandonFigures:
    """The abandon rate of a period's counts: abandoned / live answers."""
    live, abandoned = float(counts["human"]), float(counts["abandoned"])
    return AbandonFigures(live, abandoned, abandoned / live if live else 0.0)


def _period(counts: Mapping[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = dict(counts)
    out["abandon_pct"] = round(figures_of(counts).pct, 3)
    return out


async def campaign_stats(service: CampaignService, campaign_id: str) -> dict[str, Any]:
    row = await service.row(campaign_id)
    store = service._d.store
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    period_start = now - timedelta(seconds=row.spec.abandon_period.seconds)
    today = await period_counts(store, campaign_id, midnight)
    period = await period_counts(store, campaign_id, period_start)
    states = await store.fetch(
        "campaign contacts by state",
        "SELECT state, COALESCE(final_outcome, '') AS final, count(*) AS n FROM contacts "
        "WHERE campaign_id = $1 GROUP BY state, final_outcome",
        campaign_id,
    )
    contacts: dict[str, Any] = {"by_state": {}, "finished_by_outcome": {}}
    for r in states:
        contacts["by_state"][r["state"]] = contacts["by_state"].get(r["state"], 0) + int(r["n"])
        if r["state"] == "done":
            contacts["finished_by_outcome"][r["final"]] = int(r["n"])
    out: dict[str, Any] = {
        "id": campaign_id,
        "state": row.state.value,
        "mode": row.spec.mode.value,
        "abandon_limit_pct": round(100 * row.spec.abandon_limit, 3),
        "abandon_period": row.spec.abandon_period.value,
        "today": _period(today),
        "period": _period(period),
        "contacts": contacts,
        "live": None,
    }
    runner = service.runners.get(campaign_id)
    if runner is not None:
        out["live"] = live_part(runner)
    return out


def live_part(runner: Any) -> dict[str, Any]:
    """What this engine's runner knows of a campaign now, from memory alone (no PostgreSQL):
    the ``live`` part of the stats, also published as ``CampaignStats`` (engine/api/live_feed)."""
    view = runner.view_now()
    agents = Counter(status.state.value for _c, status in runner.pacing.agents())
    figures = runner.period_figures()
    lines = view.lines_in_use
    return {
        "dialing": runner.dialing,
        "holds_lease": runner.token is not None,
        "calls_in_progress": len(runner.flights),
        "ringing": len(view.ringing_since),
        "waiting_for_agent": len(view.waiting_since),
        "agents": dict(agents),
        "dial_level": round(lines / view.agents, 3) if view.agents else 0.0,
        "guard_tripped": runner.guard,
        "effective_policy": "progressive" if runner.guard else runner.policy.name,
        "abandon_estimate_pct": round(figures.pct, 3),
        "last_decision": runner.last_decision,
        "forecast": _forecast(runner.policy),
        "since_start": dict(runner.counters),
    }


def _forecast(policy: Any) -> dict[str, Any] | None:
    sd = getattr(policy, "_forecast_sd", None)
    return {"sd": round(float(sd), 3)} if sd is not None else None


async def attempts_page(
    service: CampaignService, campaign_id: str, query: Mapping[str, str]
) -> dict[str, Any]:
    raw = query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest(f"limit: expected an integer from 1 to 1000 (got {raw!r})")
    limit = int(raw)
    after = query.get("after", "")
    if not _ATTEMPT_ID.fullmatch(after):
        raise InvalidRequest(
            f"after: expected the last attempt id of the previous page (hex), got {after[:80]!r}"
        )
    rows = await service._d.store.fetch(
        "listing attempts",
        "SELECT attempt_id, contact_id, call_id, seq, state, phone, dialed_number, trunk, "
        "created_at, answered_at, amd_status, amd_cause, agent_id, agent_at, seconds_to_agent, "
        "ended_at, cause, sip_code, outcome, counts, abandoned, disposition, next_at "
        "FROM campaign_attempts WHERE campaign_id = $1 AND attempt_id > $2 "
        "ORDER BY attempt_id LIMIT $3",
        campaign_id,
        after,
        limit,
    )
    items = []
    for r in rows:
        items.append({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()})
    return {"attempts": items, "next": items[-1]["attempt_id"] if len(items) == limit else None}
