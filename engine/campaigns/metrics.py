"""Per-campaign metrics (docs/metrics.md).

Live figures come from the campaign runners this engine holds (dial level, the period's
abandon rate the guard steers on, calls in progress, attempts by outcome), read at scrape
time. What only PostgreSQL knows (each campaign's state, contacts left to dial) is read by a
background loop with a timeout (:class:`engine.telemetry.live.StorageGauges`), never by
the scrape. Campaign ids come from the campaigns table (created by config or the API) and
go through a :class:`LabelBudget`; the outcome label is :class:`Outcome` (fixed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from engine.campaigns.model import CampaignState, Outcome
from engine.telemetry.cardinality import LabelBudget
from engine.telemetry.live import StorageGauges

if TYPE_CHECKING:
    from engine.campaigns.service import CampaignService

_STATES = """
SELECT c.campaign_id, c.state,
       (SELECT count(*) FROM contacts k
         WHERE k.campaign_id = c.campaign_id AND k.state <> 'done') AS left
FROM campaigns c ORDER BY c.campaign_id LIMIT $1
"""


@dataclass(slots=True)
class _Live:
    dialing: int = 0
    lines: int = 0
    agents: int = 0
    in_progress: int = 0
    live: float = 0.0  # the period's live answers (estimate)
    abandoned: float = 0.0
    limit: float = 0.0
    outcomes: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})


class CampaignMetrics:
    def __init__(
        self, service: CampaignService, cap: int, *, storage_timeout_s: float = 5.0
    ) -> None:
        self._service = service
        self.budget = LabelBudget("campaign", cap)
        # Rows read per refresh: every campaign up to 10 x the cap (the rest are not counted).
        self._max_rows = 10 * cap
        #: The background loop that reads state and contacts left (run by engine/wiring/metrics.py).
        self.storage = StorageGauges("campaigns", self.read_storage, timeout_s=storage_timeout_s)
        self._snapshot: dict[str, _Live] | None = None

    async def read_storage(self) -> dict[str, dict[tuple[str, ...], float]]:
        """The background refresh (timeouts: the store's own, plus StorageGauges')."""
        rows = await self._service._d.store.fetch("campaign metrics", _STATES, self._max_rows)
        state: dict[tuple[str, ...], float] = {}
        left: dict[tuple[str, ...], float] = {}
        for r in rows:
            label = self.budget.label(r["campaign_id"])
            for s in CampaignState:
                key = (label, s.value)
                state[key] = state.get(key, 0.0) + (1.0 if r["state"] == s.value else 0.0)
            left[(label,)] = left.get((label,), 0.0) + float(r["left"])
        return {"state": state, "left": left}

    def _live(self, campaign_id: str, runner: Any) -> _Live:
        view = runner.view_now()
        fig = runner.period_figures()
        return _Live(
            dialing=1 if runner.dialing and not runner.stopping else 0,
            lines=view.lines_in_use,
            agents=view.agents,
            in_progress=len(runner.flights),
            live=fig.live,
            abandoned=fig.abandoned,
            limit=runner.spec.abandon_limit,
        )

    async def prepare(self) -> None:
        out: dict[str, _Live] = {}
        for cid, runner in list(self._service.runners.items()):
            self._merge(out, cid, self._live(cid, runner))
            await asyncio.sleep(0)  # one campaign per loop turn (agents x skills each)
        self._snapshot = out

    def _merge(self, out: dict[str, _Live], cid: str, x: _Live) -> None:
        label = self.budget.label(cid)
        cur = out.get(label)
        if cur is None:
            out[label] = x
            return
        cur.dialing += x.dialing
        cur.lines += x.lines
        cur.agents += x.agents
        cur.in_progress += x.in_progress
        cur.live += x.live
        cur.abandoned += x.abandoned
        cur.limit = min(cur.limit, x.limit) if cur.limit else x.limit

    def families(self) -> Iterable[Metric]:
        svc = self._service
        snap, self._snapshot = self._snapshot, None
        if snap is None:
            snap = {}
            for cid, runner in list(svc.runners.items()):
                self._merge(snap, cid, self._live(cid, runner))
        # Outcomes since start: runners that ended, plus the live ones.
        outcomes: dict[str, dict[str, int]] = {}
        pairs = list(svc.ended_outcomes.items()) + [
            ((cid, o), n) for cid, r in svc.runners.items() for o, n in r.outcomes.items()
        ]
        for (cid, o), n in pairs:
            row = outcomes.setdefault(self.budget.label(cid), {x.value: 0 for x in Outcome})
            row[o] = row.get(o, 0) + n
        c = ["campaign"]
        dialing = GaugeMetricFamily(
            "engine_campaign_dialing",
            "1 while this engine runs the campaign and it is dialling (not paused or stopping)",
            labels=c,
        )
        level = GaugeMetricFamily(
            "engine_campaign_dial_level",
            "Lines in use per logged-in agent serving the campaign (0 with no agents)",
            labels=c,
        )
        progress = GaugeMetricFamily(
            "engine_campaign_calls_in_progress", "Attempts in flight", labels=c
        )
        abandon = GaugeMetricFamily(
            "engine_campaign_abandon_ratio",
            "Abandoned / live answers over the campaign's legal period (the guard's estimate)",
            labels=c,
        )
        limit = GaugeMetricFamily(
            "engine_campaign_abandon_limit_ratio", "The campaign's abandon limit", labels=c
        )
        attempts = CounterMetricFamily(
            "engine_campaign_attempts",
            "Ended dial attempts by outcome, since start",
            labels=["campaign", "outcome"],
        )
        for label, x in sorted(snap.items()):
            dialing.add_metric([label], x.dialing)
            level.add_metric([label], x.lines / x.agents if x.agents else 0.0)
            progress.add_metric([label], x.in_progress)
            abandon.add_metric([label], x.abandoned / x.live if x.live > 0 else 0.0)
            limit.add_metric([label], x.limit)
        for label, row in sorted(outcomes.items()):
            for o, n in row.items():
                attempts.add_metric([label, o], n)
        state = GaugeMetricFamily(
            "engine_campaign_state",
            "1 for the campaign's state (draft|running|paused|stopped|finished), from storage",
            labels=["campaign", "state"],
        )
        left = GaugeMetricFamily(
            "engine_campaign_contacts_left",
            "Contacts not done yet (ready, dialing or held), from storage",
            labels=c,
        )
        values = self.storage.values
        for key, v in sorted(values.get("state", {}).items()):
            state.add_metric(list(key), v)
        for key, v in sorted(values.get("left", {}).items()):
            left.add_metric(list(key), v)
        return [dialing, level, progress, abandon, limit, attempts, state, left]
