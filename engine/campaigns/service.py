"""The campaigns facade: what the API and the app call (docs/campaigns.md).

Campaign rows live in PostgreSQL; each *running* campaign has one runner task here, which
dials only while it holds the campaign's Redis lease (another engine may hold it). State
changes are checked against the row's current state, so two API calls cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from engine.calls.model import Call
from engine.campaigns import events as ev
from engine.campaigns.abandon import AbandonFigures
from engine.campaigns.errors import (
    CampaignExists,
    CampaignNotFound,
    CampaignNotRunnable,
    CampaignStateConflict,
    InvalidCampaign,
    NotACampaignCall,
    PreviewNotFound,
)
from engine.campaigns.flights import Flight
from engine.campaigns.model import CampaignConfig, CampaignSpec, CampaignState, Disposition, Outcome
from engine.campaigns.retry import ContactCounters, next_step
from engine.campaigns.runner import CampaignRunner, RunnerDeps
from engine.campaigns.stats import figures_of, period_counts
from engine.campaigns.store import CampaignRow
from engine.core.errors import EngineError
from engine.store.errors import StoreError
from engine.store.retry import until_answered
from engine.telemetry.logging import get_logger

log = get_logger("engine.campaigns")

SWEEP_S = 2.0
# A runner stopped by a storage fault is started again this long after, if its campaign is
# still running: a PostgreSQL blip must not stop a campaign until the next restart.
RUNNER_RETRY_S = 5.0
# The names a campaign's spec gives that this engine's configuration must know.
_NAMES = frozenset({"queue", "trunk_group"})

# Which state each command may leave.
_FROM: dict[CampaignState, tuple[CampaignState, ...]] = {
    CampaignState.RUNNING: (CampaignState.DRAFT, CampaignState.PAUSED, CampaignState.STOPPED),
    CampaignState.PAUSED: (CampaignState.RUNNING,),
    CampaignState.STOPPED: (CampaignState.DRAFT, CampaignState.RUNNING, CampaignState.PAUSED),
}


class CampaignService:
    def __init__(self, deps: RunnerDeps, *, standby: Callable[[], bool] = lambda: False) -> None:
        self._d = deps
        # Several engines: every running campaign gets a runner here too, which waits for the
        # campaign's lease (taken over when its owner dies, docs/architecture.md).
        self._standby = standby
        self.runners: dict[str, CampaignRunner] = {}
        # Outcomes of runners that ended, so the attempts counter never goes back.
        self.ended_outcomes: dict[tuple[str, str], int] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._by_call: dict[str, str] = {}  # call id -> campaign id, while a runner follows it
        self._closed = False
        # engine.toml's campaigns whose creation at start met a storage fault (``seed_later``).
        self._unseeded: list[CampaignConfig] = []
        deps.calls.watch(self._on_call)

    # ------------------------------------------------------------------ CRUD

    async def seed(self, configs: list[CampaignConfig]) -> int:
        """``[[campaigns]]`` of engine.toml: created as drafts when missing; a campaign that
        exists keeps its stored settings (the API owns it from then on)."""
        made = 0
        for config in configs:
            if await self._d.store.create(config.name, config.spec) is not None:
                made += 1
        return made

    def seed_later(self, configs: list[CampaignConfig]) -> None:
        """:meth:`seed` failed at start (storage away): :meth:`run` seeds them once storage
        answers. Before, they were missing until the next restart."""
        self._unseeded = list(configs)

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            # Strict JSON types, as the OpenAPI document declares them ("3" is not 3).
            config = CampaignConfig.model_validate_json(json.dumps(body), strict=True)
        except ValidationError as err:
            raise InvalidCampaign.from_validation(err) from err
        self._check_refs(config.spec, only=_NAMES | {"machine_flow"})
        row = await self._d.store.create(config.name, config.spec)
        if row is None:
            raise CampaignExists(
                f"a campaign named {config.name!r} exists", details={"id": config.name}
            )
        return row.to_dict()

    def _check_refs(
        self,
        spec: CampaignSpec,
        *,
        stored: bool = False,
        only: frozenset[str] = _NAMES,
    ) -> None:
        # {"field", "problem"} like every other details.problems (they were bare strings here,
        # so a client reading problems[].field failed on exactly these two mistakes).
        problems: list[dict[str, str]] = []
        if "queue" in only and spec.queue not in self._d.acd.queues:
            problems.append(
                {
                    "field": "queue",
                    "problem": f"no queue named {spec.queue!r} "
                    f"(known: {sorted(self._d.acd.queues)})",
                }
            )
        groups = self._d.trunk_groups
        if "trunk_group" in only and groups is not None and spec.trunk_group not in groups:
            problems.append(
                {
                    "field": "trunk_group",
                    "problem": f"no trunk group named {spec.trunk_group!r} "
                    f"(known: {sorted(groups)})",
                }
            )
        flows = self._d.ivr_flows() if self._d.ivr_flows is not None else None
        flow = spec.amd.machine_flow
        if "machine_flow" in only and flow and flows is not None and flow not in flows:
            # Checked when a request names it, never for a stored campaign (at resume this
            # engine's flows may not be loaded yet): a machine would be sent to no flow and
            # hung up on, with no message left.
            problems.append(
                {
                    "field": "amd.machine_flow",
                    "problem": f"no IVR flow named {flow!r} (known: {sorted(flows)})",
                }
            )
        message = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        if problems and stored:
            # The request is fine; the stored campaign and this engine's config disagree.
            raise CampaignNotRunnable(
                message + " (in this engine's configuration)", details={"problems": problems}
            )
        if problems:
            raise InvalidCampaign(message, details={"problems": problems})

    async def row(self, campaign_id: str) -> CampaignRow:
        row = await self._d.store.get(campaign_id)
        if row is None:
            raise CampaignNotFound(
                f"no campaign named {campaign_id!r}", details={"id": campaign_id}
            )
        return row

    async def get(self, campaign_id: str) -> dict[str, Any]:
        return (await self.row(campaign_id)).to_dict()

    async def all(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in await self._d.store.all()]

    async def patch(self, campaign_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        row = await self.row(campaign_id)
        if row.state is CampaignState.FINISHED:
            raise CampaignStateConflict(
                f"campaign {campaign_id} is finished; its settings no longer change",
                details={"id": campaign_id, "state": row.state.value},
            )
        merged = _merge(row.spec.model_dump(mode="json"), dict(changes))
        try:
            spec = CampaignSpec.model_validate_json(json.dumps(merged), strict=True)
        except ValidationError as err:
            raise InvalidCampaign.from_validation(err, prefix="spec") from err
        named = frozenset(_NAMES & set(changes))
        amd = changes.get("amd")
        if isinstance(amd, Mapping) and "machine_flow" in amd:
            named |= {"machine_flow"}
        if named:
            # Only the names this request gives are judged against this engine's config (a
            # trunk group given alone does not make the stored queue judged): a campaign
            # stored by another engine may be edited here, not started (409).
            self._check_refs(spec, only=named)
        updated = await self._d.store.update(campaign_id, spec=spec, version=row.version)
        if updated is None:
            raise CampaignStateConflict(
                f"campaign {campaign_id} changed meanwhile; read it again",
                details={"id": campaign_id},
            )
        runner = self.runners.get(campaign_id)
        if runner is not None:
            runner.spec = spec  # the next dial turn uses it
        return updated.to_dict()

    # ------------------------------------------------------------------ state

    async def start(self, campaign_id: str) -> dict[str, Any]:
        return await self._move(campaign_id, CampaignState.RUNNING)

    async def pause(self, campaign_id: str) -> dict[str, Any]:
        return await self._move(campaign_id, CampaignState.PAUSED)

    async def stop(self, campaign_id: str) -> dict[str, Any]:
        return await self._move(campaign_id, CampaignState.STOPPED)

    async def _move(self, campaign_id: str, to: CampaignState) -> dict[str, Any]:
        row = await self.row(campaign_id)
        if row.state is to:
            return row.to_dict()
        allowed = _FROM[to]
        if row.state not in allowed:
            raise CampaignStateConflict(
                f"campaign {campaign_id} is {row.state.value}; it can become {to.value} only "
                f"from {', '.join(s.value for s in allowed)}",
                details={"id": campaign_id, "state": row.state.value, "to": to.value},
            )
        if to is CampaignState.RUNNING:
            self._check_refs(row.spec, stored=True)
        updated = await self._d.store.update(campaign_id, state=to, from_states=allowed)
        if updated is None:
            raise CampaignStateConflict(
                f"campaign {campaign_id} changed meanwhile; read it again",
                details={"id": campaign_id},
            )
        self._d.events.put(
            ev.campaign_state(campaign_id, to.value, row.state.value, self._d.clock())
        )
        self._apply(updated)
        return updated.to_dict()

    def _apply(self, row: CampaignRow) -> None:
        runner = self.runners.get(row.campaign_id)
        if row.state is CampaignState.RUNNING:
            if runner is None or runner.stopping:
                self._launch(row)
            else:
                runner.dialing = True
                runner.spec = row.spec
        elif runner is not None:
            runner.dialing = False
            if row.state in (CampaignState.STOPPED, CampaignState.FINISHED):
                runner.stopping = True
            runner.wake()

    def _launch(self, row: CampaignRow) -> None:
        if self._closed:
            return
        runner = CampaignRunner(row.campaign_id, row.spec, self._d, baseline=None)
        self.runners[row.campaign_id] = runner
        task = asyncio.get_running_loop().create_task(
            self._run(runner, row), name=f"campaign-{row.campaign_id}"
        )
        self._tasks[row.campaign_id] = task

    async def _run(self, runner: CampaignRunner, row: CampaignRow) -> None:
        failed = False
        try:
            runner._baseline = await self._baseline(row)
            await runner.run()
        except asyncio.CancelledError:
            raise
        except (StoreError, EngineError, TimeoutError) as err:
            # An expected fault (storage or switch away): one line, no traceback, and retry.
            failed = True
            log.warning(
                "campaign runner stopped; will retry",
                campaign=row.campaign_id,
                error=f"{type(err).__name__}: {err}",
                retry_in_s=RUNNER_RETRY_S,
            )
        except Exception:
            failed = True
            log.exception("campaign runner failed", campaign=row.campaign_id)
        finally:
            if self.runners.get(row.campaign_id) is runner:
                del self.runners[row.campaign_id]
            for outcome, n in runner.outcomes.items():
                key = (row.campaign_id, outcome)
                self.ended_outcomes[key] = self.ended_outcomes.get(key, 0) + n
            runner.outcomes = {}
        if failed and not runner.stopping:
            await self._relaunch_later(row.campaign_id)

    async def _relaunch_later(self, campaign_id: str) -> None:
        """Start the campaign's runner again once its row can be read and still says
        running (an API pause or stop meanwhile wins: the row is read again, never reused)."""
        while not self._closed:
            await asyncio.sleep(RUNNER_RETRY_S)
            if self._closed or campaign_id in self.runners:
                return
            try:
                row = await self._d.store.get(campaign_id)
            except (StoreError, EngineError, TimeoutError):
                continue
            if row is not None and row.state is CampaignState.RUNNING and self._resumable(row):
                self._launch(row)
            return

    def _resumable(self, row: CampaignRow) -> bool:
        """A stored running campaign whose queue or trunk group this engine lacks belongs to
        another engine's configuration: it is left alone, not dialled with the wrong setup."""
        try:
            self._check_refs(row.spec, stored=True)
        except CampaignNotRunnable as err:
            log.warning("campaign not resumed here", campaign=row.campaign_id, reason=str(err))
            return False
        return True

    async def _baseline(self, row: CampaignRow) -> AbandonFigures:
        """The period's abandon figures so far, counted as ``GET .../stats`` counts them (one
        query, engine/campaigns/stats.py ``period_counts``: at the answer, as the simulator)."""
        since = datetime.now(UTC) - timedelta(seconds=row.spec.abandon_period.seconds)
        return figures_of(await period_counts(self._d.store, row.campaign_id, since))

    # ------------------------------------------------------------------ background

    async def run(self) -> None:
        """Resume running campaigns, then keep sweeping: held contacts whose quarantine is
        over go back to ready, and a campaign with nothing left to dial finishes."""
        await self._resume_running()
        while not self._closed:
            await asyncio.sleep(SWEEP_S)
            if self._unseeded:
                await self._seed_again()
            with contextlib.suppress(Exception):
                await self.sweep_once()
            if self._standby():
                with contextlib.suppress(Exception):
                    await self._stand_by()

    async def _seed_again(self) -> None:
        """engine.toml's campaigns not created at start (storage away), tried again each
        sweep (``create`` leaves a campaign that exists as it is: trying again is safe)."""
        try:
            await self.seed(self._unseeded)
        except Exception as err:
            log.warning(
                "configured campaigns not created yet; will retry",
                error=f"{type(err).__name__}: {err}",
                retry_in_s=SWEEP_S,
            )
            return
        log.info("configured campaigns created", campaigns=[c.name for c in self._unseeded])
        self._unseeded = []

    async def _resume_running(self) -> None:
        """Launch the running campaigns this engine can run. The read is retried while
        storage is away: this task lives in the engine's task group, so a PostgreSQL blip
        at start (seen under load: the read's timeout) must not end the engine."""
        rows = await until_answered(
            self._d.store.all,
            retry_s=RUNNER_RETRY_S,
            closed=lambda: self._closed,
            log=log,
            message="running campaigns not resumed yet: storage unavailable; will retry",
        )
        for row in rows or ():
            if row.state is CampaignState.RUNNING and self._resumable(row):
                self._launch(row)

    async def _stand_by(self) -> None:
        """Runners for running campaigns started on another engine: each waits for the lease."""
        for row in await self._d.store.all():
            if self._closed:
                return
            if (
                row.state is CampaignState.RUNNING
                and row.campaign_id not in self.runners
                # (a task not done yet may be waiting to relaunch its runner)
                and (row.campaign_id not in self._tasks or self._tasks[row.campaign_id].done())
                and self._resumable(row)
            ):
                self._launch(row)

    async def sweep_once(self) -> None:
        for campaign_id, runner in list(self.runners.items()):
            await self._d.store.fetch(
                "releasing held contacts",
                "WITH a AS (UPDATE campaign_attempts SET state = 'interrupted', "
                "outcome = 'interrupted' WHERE campaign_id = $1 AND state = 'held' "
                "AND next_at <= now() RETURNING 1) "
                "UPDATE contacts SET state = 'ready' WHERE campaign_id = $1 AND state = 'held' "
                "AND next_at <= now() RETURNING 1",
                campaign_id,
            )
            if runner.exhausted and not runner.flights and runner.dialing:
                left = await self._d.store.fetch(
                    "counting contacts left",
                    # Numbers on a DNC list can never be dialled: they do not hold it open.
                    "SELECT count(*) AS n FROM contacts c WHERE c.campaign_id = $1 "
                    "AND c.state <> 'done' AND NOT (c.state = 'ready' AND EXISTS "
                    "(SELECT 1 FROM dnc d WHERE d.phone = c.phone AND d.campaign_id IN ('', $1)))",
                    campaign_id,
                )
                if int(left[0]["n"]) == 0:
                    updated = await self._d.store.update(
                        campaign_id,
                        state=CampaignState.FINISHED,
                        from_states=(CampaignState.RUNNING,),
                    )
                    if updated is not None:
                        self._d.events.put(
                            ev.campaign_state(campaign_id, "finished", "running", self._d.clock())
                        )
                        self._apply(updated)

    def close(self) -> None:
        self._closed = True
        for runner in self.runners.values():
            runner.stopping = True
            runner.dialing = False
            runner.wake()
        for task in self._tasks.values():
            task.cancel()

    # ------------------------------------------------------------------ preview mode

    async def previews(self, campaign_id: str, agent_id: str | None = None) -> dict[str, Any]:
        await self.row(campaign_id)
        runner = self.runners.get(campaign_id)
        items = [] if runner is None else list(runner.previews.values())
        return {
            "previews": [p.to_dict() for p in items if agent_id is None or p.agent_id == agent_id]
        }

    async def decide_preview(
        self, campaign_id: str, attempt_id: str, accept: bool
    ) -> dict[str, Any]:
        await self.row(campaign_id)
        runner = self.runners.get(campaign_id)
        if runner is None or attempt_id not in runner.previews:
            raise PreviewNotFound(
                f"no preview {attempt_id!r} is waiting in campaign {campaign_id!r}",
                details={"id": campaign_id, "attempt_id": attempt_id},
            )
        preview = runner.previews[attempt_id]
        # Put on a DNC list while the agent looked at it: never dialled, a skip (the hopper
        # does not pick the number again).
        dnc = accept and await self._on_dnc(campaign_id, preview.flight.phone)
        if attempt_id not in runner.previews:  # timed out or decided meanwhile
            raise PreviewNotFound(
                f"no preview {attempt_id!r} is waiting in campaign {campaign_id!r}",
                details={"id": campaign_id, "attempt_id": attempt_id},
            )
        accept = accept and not dnc
        if accept:
            flight = runner.accept(attempt_id)
        else:
            flight = runner.skip(attempt_id, reason="dnc" if dnc else "skipped")
        return {
            "attempt_id": attempt_id,
            "agent_id": preview.agent_id,
            "decision": "accepted" if accept else "skipped",
            "call_id": flight.call_id if accept else None,
        }

    async def _on_dnc(self, campaign_id: str, phone: str) -> bool:
        rows = await self._d.store.fetch(
            "checking the DNC lists",
            "SELECT 1 FROM dnc WHERE phone = $1 AND campaign_id IN ('', $2) LIMIT 1",
            phone,
            campaign_id,
        )
        return bool(rows)

    # ------------------------------------------------------------------ calls

    def _on_call(self, before: Call, after: Call) -> None:
        for runner in self.runners.values():
            if after.call_id in runner.flights:
                runner.on_call(before, after)
                return

    def runner_of_call(self, call_id: str) -> CampaignRunner | None:
        for runner in self.runners.values():
            if call_id in runner.flights:
                return runner
        return None

    def flight_of_call(self, call_id: str) -> tuple[str, Flight] | None:
        """The campaign and flight (its contact) of one of this engine's campaign calls."""
        runner = self.runner_of_call(call_id)
        if runner is None:
            return None
        flight = runner.flights.get(call_id)
        return (runner.campaign_id, flight) if flight is not None else None

    async def disposition(self, call_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """An agent's disposition of a campaign call (during the call or in wrap-up)."""
        from engine.campaigns.schemas import DispositionBody

        try:
            parsed = DispositionBody.model_validate_json(json.dumps(body), strict=True)
        except ValidationError as err:
            raise InvalidCampaign.from_validation(err) from err
        rows = await self._d.store.fetch(
            "reading the attempt of a call",
            "SELECT a.attempt_id, a.campaign_id, a.contact_id, a.agent_id, a.outcome, "
            "c.phone, c.tz, c.attempts, c.attempts_today FROM campaign_attempts a "
            "JOIN contacts c USING (contact_id) WHERE a.call_id = $1",
            call_id,
        )
        if not rows:
            raise NotACampaignCall(
                f"call {call_id} is not a campaign call", details={"call_id": call_id}
            )
        r = rows[0]
        campaign = await self.row(str(r["campaign_id"]))
        agent = r["agent_id"] if parsed.callback_agent == "same" else None
        runner = self.runner_of_call(call_id)
        if runner is not None:
            # Still up: the end of the call applies it (one contact update, in order).
            flight = runner.flights[call_id]
            flight.extra["disposition"] = parsed
            agent = flight.agent_id if parsed.callback_agent == "same" else None
            flight.extra["callback_agent"] = agent
            self._d.events.put(
                ev.call_dispositioned(
                    campaign.campaign_id,
                    call_id,
                    parsed.disposition.value,
                    "at_end",
                    self._d.clock(),
                )
            )
            return {
                "call_id": call_id,
                "disposition": parsed.disposition.value,
                "applied": "at_end",
            }
        outcome = Outcome(r["outcome"]) if r["outcome"] else Outcome.HUMAN
        step = next_step(
            campaign.spec,
            outcome,
            ContactCounters(int(r["attempts"]), int(r["attempts_today"]), str(r["tz"])),
            datetime.now(UTC),
            disposition=parsed.disposition,
            callback_at=parsed.callback_at,
            callback_agent=agent,
        )
        self._d.records.put(
            {
                "kind": "disposition",
                "campaign_id": campaign.campaign_id,
                "attempt_id": r["attempt_id"],
                "contact_id": int(r["contact_id"]),
                "disposition": parsed.disposition.value,
                "dnc_phone": r["phone"] if parsed.disposition is Disposition.DO_NOT_CALL else None,
                "next": {
                    "state": step.state,
                    "rank": step.rank,
                    "next_at": step.next_at.timestamp() if step.next_at else None,
                    "final_outcome": step.final_outcome,
                    "callback_agent": step.callback_agent,
                },
            }
        )
        self._d.events.put(
            ev.call_dispositioned(
                campaign.campaign_id, call_id, parsed.disposition.value, "now", self._d.clock()
            )
        )
        return {
            "call_id": call_id,
            "disposition": parsed.disposition.value,
            "applied": "now",
            "next": {
                "state": step.state,
                "next_at": step.next_at.isoformat() if step.next_at else None,
            },
        }


def _merge(base: dict[str, Any], changes: dict[str, Any], *, top: bool = True) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) of the settings: objects merge key by key, a field given
    replaces. ``null`` puts a top-level field back to its default; inside an object it is kept,
    so validation refuses it (what null would mean for one retry rule or window field is not
    clear enough to guess). ``base`` holds every field (a dump of the settings), so a null for
    a name it lacks is kept too: validation refuses the unknown field, which a silent no-op
    would hide (``{"powr_ratio": null}`` answered 200 and reset nothing)."""
    out = dict(base)
    for key, value in changes.items():
        if value is None and top and key in out:
            out.pop(key)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, top=False)
        else:
            out[key] = value
    return out
