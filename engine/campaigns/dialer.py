"""A campaign runner's dialling: each turn builds the pacing view (the campaign queue's agents
from the ACD, this runner's calls in progress, the running statistics), asks the policy how
many to dial, picks that many contacts (hopper: windows, DNC and attempt limits are in its
query), claims them with the fencing token (the attempt rows are written ``pending`` before
any originate), and originates through the campaign's trunk group."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.agents.model import AgentState
from engine.calls.commands import OriginateCommand
from engine.campaigns import events as ev
from engine.campaigns.flight_tracker import FlightTracker
from engine.campaigns.flights import Flight
from engine.campaigns.outcomes import DialResult
from engine.campaigns.pacing_book import PacingBook
from engine.campaigns.ports import Picked
from engine.campaigns.runner_tasks import RunnerTasks
from engine.campaigns.store import Pick
from engine.campaigns.windows import open_timezones, zone
from engine.core.clock import to_datetime
from engine.core.errors import EngineError
from engine.pbx.base import Park, Then
from engine.telemetry.logging import get_logger

if TYPE_CHECKING:
    from engine.campaigns.runner import CampaignRunner, RunnerDeps

log = get_logger("engine.campaigns")

MAX_BATCH = 50
#: The most contacts one claim reads from the hopper when callbacks owned by agents who are
#: not available now are passed over (so they never starve the contacts behind them).
MAX_PICK = 200
#: The channel variable carrying a preview call's agent (docs/campaigns.md "Crash safety").
PREVIEW_AGENT_VAR = "ENGINE_PREVIEW_AGENT"
#: Originates refused because no switch link could take them (down or still syncing, owned
#: by another engine, or the engine draining): never placed, not the carrier's doing nor the
#: contact's (issue 8's classification: ``_LinkDown`` in engine/calls/group_dialing.py, the
#: planner's "switch-unavailable"; ``TrunksUnavailable`` carries that error id then).
LINK_DOWN_ERRORS = frozenset({"switch-unavailable", "switch-not-owned", "draining"})


class Dialer:
    def __init__(
        self,
        runner: CampaignRunner,
        deps: RunnerDeps,
        *,
        pacing: PacingBook,
        tracker: FlightTracker,
        tasks: RunnerTasks,
    ) -> None:
        self._r = runner
        self._d = deps
        self._pacing = pacing
        self._tracker = tracker
        self._tasks = tasks
        self._blocked: str | None = None  # why the last turn could not dial, if it could not

    def blocked(self, now: float) -> bool:
        """Whether no call of the campaign could be placed now: its trunk group's switch links
        are not up (connecting, or syncing after a restart), not ours, or it has no usable
        trunk (``RunnerDeps.blocked``). Then nothing is claimed: the contacts wait, untouched,
        and the loop asks again at its next turn (every ``TICK_S``; a call change wakes it)."""
        check = self._d.blocked
        why = check(self._r.spec.trunk_group) if check is not None else None
        if why != self._blocked:
            if why is not None:
                log.warning("campaign waits for its switch", campaign=self._r.campaign_id, why=why)
            else:
                log.info("campaign switch ready; dialling", campaign=self._r.campaign_id)
            self._blocked = why
        if why is not None:
            self._r.last_decision = {"at": now, "dial": 0, "blocked": why}
        return why is not None

    async def turn(self) -> None:
        r = self._r
        now = self._d.clock()
        if self.blocked(now):
            return
        view = r.view_now()
        # The guard is read on the runner (its ``guard`` property), where tests hold it off.
        fallback = self._pacing.fallback
        policy = fallback if r.guard else self._pacing.policy
        n = max(0, min(policy.decide(view, now), MAX_BATCH))
        r.last_decision = {
            "at": now,
            "policy": getattr(policy, "name", "?"),
            "guard_tripped": policy is fallback and self._pacing.policy is not fallback,
            "dial": n,
            "agents": view.agents,
            "idle": len(view.idle_since),
            "ringing": len(view.ringing_since),
            "waiting": len(view.waiting_since),
            "line_cap": view.line_cap,
        }
        if n <= 0:
            return
        await self.dial(n, to_datetime(now))

    async def dial(self, n: int, at: datetime) -> int:
        """Pick, claim and originate up to ``n`` contacts; returns how many were claimed."""
        claimed = await self.claim(n, at)
        for flight in claimed:
            self.launch(flight)
        return len(claimed)

    def launch(self, flight: Flight) -> None:
        self._r.flights[flight.call_id] = flight
        if flight.extra.get("untranslatable"):
            self._tracker.end(flight, DialResult(answered=False, cause=28), None)
            return
        flight.dialed_at = self._d.clock()
        self._pacing.count(dials=1)
        self._r.counters["dials"] += 1
        self._tasks.spawn(self._originate(flight))

    async def claim(self, n: int, at: datetime) -> list[Flight]:
        """Pick and claim up to ``n`` contacts: their attempts are ``pending`` in PostgreSQL."""
        r = self._r
        token = r.token
        if token is None:
            return []
        spec = r.spec
        tzs = await self._d.hopper.distinct_timezones(r.campaign_id)
        open_tzs = open_timezones(spec.window, tzs, at)
        if not open_tzs:
            return []
        limit = n
        while True:
            picked = await self._d.hopper.pick(
                r.campaign_id,
                limit=limit,
                now=at,
                open_tzs=open_tzs,
                max_attempts=spec.max_attempts,
                max_per_day=spec.max_attempts_per_day,
            )
            dialable = self._owned_callbacks_filtered(picked)
            passed = len(picked) - len(dialable)
            if len(dialable) >= n or len(picked) < limit or limit >= MAX_PICK:
                break
            limit = min(MAX_PICK, n + passed)
        r.exhausted = not picked and not r.flights and not r.previews
        picked = dialable[:n]
        if not picked:
            return []
        picks = []
        untranslatable: set[int] = set()
        for row in picked:
            contact_id, phone = row.contact_id, row.phone
            try:
                dialed = self._d.translate(spec.trunk_group, phone)
            except ValueError as err:
                # A translation rule that makes an unsafe dial string: this number is never
                # dialled; its attempt ends at once as an invalid number (cause 28).
                log.error("number not translated", campaign=r.campaign_id, error=str(err))
                dialed = phone
                untranslatable.add(contact_id)
            picks.append(
                Pick(
                    contact_id=contact_id,
                    attempt_id=uuid.uuid4().hex,
                    call_id=str(uuid.uuid4()),
                    dialed_number=dialed,
                )
            )
        claimed = await self._d.store.claim(r.campaign_id, token, picks)
        dialed_numbers = {p.attempt_id: p.dialed_number for p in picks}
        now = self._d.clock()
        out = []
        for c in claimed:
            flight = Flight(
                attempt_id=c.attempt_id,
                contact_id=c.contact_id,
                call_id=c.call_id,
                phone=c.phone,
                dialed_number=dialed_numbers[c.attempt_id],
                tz=c.tz,
                fields=c.fields,
                attempts=c.attempts,
                attempts_today=_today_count(c.attempts_today, c.attempts_day, c.tz, now),
                dialed_at=now,
                seq=c.seq,
            )
            if c.contact_id in untranslatable:
                flight.extra["untranslatable"] = True
            if c.callback_agent:
                # A callback for one agent is queued for that agent alone (as an accepted
                # preview: the channel variable keeps it across a restart).
                flight.extra["agent"] = c.callback_agent
            out.append(flight)
        return out

    def _owned_callbacks_filtered(self, picked: Sequence[Picked]) -> list[Picked]:
        """``picked`` without the callbacks owned by an agent who cannot take one now: not
        available in the campaign's queue, or already given a call or preview of this runner
        (or an earlier callback of this batch). Those stay ready for a later turn."""
        if not any(row.callback_agent for row in picked):
            return list(picked)
        r = self._r
        free = {
            config.id
            for config, status in self._pacing.agents()
            if status.state is AgentState.AVAILABLE
        }
        free -= {str(f.extra.get("agent")) for f in r.flights.values()}
        free -= {p.agent_id for p in r.previews.values()}
        out = []
        for row in picked:
            if row.callback_agent:
                if row.callback_agent not in free:
                    continue
                free.discard(row.callback_agent)
            out.append(row)
        return out

    async def _originate(self, flight: Flight) -> None:
        r = self._r
        spec = r.spec
        # AMD with the campaign's parameters (amd.profile / amd.params; None: the switch's).
        then: Then = self._d.amd_then(spec.amd.overrides()) if spec.amd.enabled else Park()
        variables = {
            "ENGINE_CAMPAIGN": r.campaign_id,
            # The safe-harbour context plays this (dialplans/); a validated file name.
            "ENGINE_SAFE_HARBOUR_PROMPT": spec.safe_harbour_prompt,
        }
        if "agent" in flight.extra:
            # Preview mode: the agent who accepted it, kept with the call (the live-call
            # registry) so that after a restart it is still queued for that agent alone.
            variables[PREVIEW_AGENT_VAR] = str(flight.extra["agent"])
        cmd = OriginateCommand(
            to=flight.dialed_number,
            then=then,
            trunk_group=spec.trunk_group,
            caller_id_num=spec.caller_id_num,
            caller_id_name=spec.caller_id_name,
            timeout_s=spec.ring_timeout_s,
            call_id=flight.call_id,
            variables=variables,
        )
        if not self._d.leases.valid(f"campaign:{r.campaign_id}"):
            # Checked here, just before the write, from local state: a runner frozen past its
            # lease (SIGSTOP, a stalled loop) does not dial when it wakes. The claimed attempt
            # stays open for the new owner's recovery to decide; the loop stops at its turn.
            log.error(
                "campaign lease past its deadline; not dialling",
                campaign=r.campaign_id,
                contact=flight.contact_id,
            )
            return
        try:
            call, _created = await self._d.calls.originate(cmd)
        except EngineError as err:
            if flight.call_id not in r.flights:
                return
            if err.error_id in LINK_DOWN_ERRORS:
                # The switch link went down (or to another engine) since the turn's check:
                # nothing left the engine, so no attempt (FlightTracker.unplace).
                self._tracker.unplace(flight, f"{err.error_id}: {err}")
                return
            # Nothing was placed (no trunk free, the switch refused it): a carrier failure,
            # not counted against the contact, retried by its rule.
            log.info("contact not dialled", campaign=r.campaign_id, error=str(err))
            self._tracker.end(flight, DialResult(answered=False, cause=38), None)
            return
        if flight.extra.get("unplaced"):
            return  # its leg never reached the switch (link down): handed back already
        flight.trunk = call.trunk
        flight.switch = call.switch
        self._d.records.put(
            {
                "kind": "attempt_dialing",
                "attempt_id": flight.attempt_id,
                "switch": call.switch,
                "trunk": call.trunk,
            }
        )
        self._d.events.put(ev.contact_dialed(r.campaign_id, flight, call.switch, self._d.clock()))
        if call.is_ended and flight.call_id in r.flights:
            self._tracker.on_call(call, call)


def _today_count(attempts_today: int, attempts_day: Any, tz: str, now: float) -> int:
    if attempts_day is None:
        return 0
    today = to_datetime(now).astimezone(zone(tz)).date()
    return attempts_today if attempts_day == today else 0
