"""How a campaign runner's flights follow their calls: each committed call change (the
``CallService.watch`` watcher, synchronous, on the event path) updates the flight and schedules
what must happen: the AMD verdict's action, the hand-over to the ACD, the safe-harbour timer,
the agent's connect, and the attempt's end. A state change never waits on storage: outcomes
go to the ``campaigns`` outbox lane. Safe harbour is a timer per hand-over: a person no agent
has taken when it fires is withdrawn from the queue, hears the prompt and counts as abandoned."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from engine.calls.model import Call
from engine.campaigns import events as ev
from engine.campaigns.attempt_end import AttemptEnds, seconds_to_agent
from engine.campaigns.flights import Flight, FlightPhase, connected
from engine.campaigns.model import Outcome
from engine.campaigns.outcomes import AMD_HANGUP, DialResult, classify
from engine.campaigns.pacing_book import PacingBook
from engine.campaigns.retry import ContactCounters, next_step
from engine.campaigns.runner_tasks import RunnerTasks
from engine.core.clock import to_datetime
from engine.core.errors import EngineError
from engine.dialer.pacing.view import DialResolved
from engine.pbx.base import IvrTarget
from engine.telemetry.logging import get_logger

if TYPE_CHECKING:
    from engine.campaigns.runner import CampaignRunner, RunnerDeps

log = get_logger("engine.campaigns")

#: How long an adopted, answered AMD call waits for its resumed verdict: the analysis'
#: own bound (total_analysis_time, 5 s in amd.conf) plus the commands that restart it.
AMD_RESUME_BOUND_S = 8.0


class FlightTracker:
    def __init__(
        self,
        runner: CampaignRunner,
        deps: RunnerDeps,
        *,
        pacing: PacingBook,
        ends: AttemptEnds,
        tasks: RunnerTasks,
        safe_harbour_due: Callable[[str], None],
        verdict_overdue: Callable[[str], None],
    ) -> None:
        self._r = runner
        self._d = deps
        self._pacing = pacing
        self._ends = ends
        self._tasks = tasks
        # The timers call back into the runner itself (CampaignRunner._safe_harbour_due,
        # _verdict_overdue, which come back here): the runner is where call changes and
        # timers enter, and tests/unit/test_pacing_noleak.py fires the runner's own timers
        # on its scripted clock by recognising them as the runner's.
        self._safe_harbour_timer = safe_harbour_due
        self._verdict_timer = verdict_overdue

    def on_call(self, before: Call, after: Call) -> None:
        """CallService watcher: one committed change of one of this runner's calls."""
        flight = self._r.flights.get(after.call_id)
        if flight is None:
            return
        now = self._d.clock()
        # This runner saw the answer as a change of its own, and no hand-over since.
        waited_answered = flight.phase is FlightPhase.ANSWERED and not flight.adopted
        if after.trunk:
            flight.trunk = after.trunk
        flight.switch = after.switch
        if after.answered_at is not None and flight.answered_at is None:
            flight.answered_at = after.answered_at
            flight.phase = FlightPhase.ANSWERED
            self._r.counters["answers"] += 1
            self._progress(flight, answered_at=after.answered_at)
            if not self._r.spec.amd.enabled and not after.is_ended:
                self.hand_over(flight, now)
            elif flight.adopted and not after.is_ended and not after.amd_status:
                self.await_verdict(flight)
        if after.amd_status and flight.amd_status is None:
            if after.is_ended:
                # The verdict and the end in one change (a HANGUP flushed with the hang-up):
                # nothing to act on, but the attempt records what the detector said.
                # (An adopted call's verdict may have been published by the previous process.)
                self._note_amd(flight, after, now, publish=not flight.adopted)
            else:
                self.amd(flight, after, now)
        if after.is_ended and never_placed(after):
            self.unplace(flight, after.trunk_failure)
        elif after.is_ended:
            result = DialResult(
                answered=after.answered_at is not None,
                cause=after.cause,
                sip_code=after.sip_code,
                amd_status=after.amd_status,
                interrupted=after.interrupted,
            )
            self.end(
                flight,
                result,
                after,
                gone_unhanded=waited_answered and flight.phase is FlightPhase.ANSWERED,
            )
        self._r.wake()

    def _note_amd(self, flight: Flight, call: Call, now: float, *, publish: bool = True) -> None:
        flight.amd_status = (call.amd_status or "").upper()
        flight.amd_cause = call.amd_cause
        flight.amd_at = call.amd_at or now
        self._progress(
            flight, amd_at=flight.amd_at, amd_status=flight.amd_status, amd_cause=flight.amd_cause
        )
        if publish:
            self._d.events.put(ev.amd_result(self._r.campaign_id, flight, now))

    def amd(self, flight: Flight, call: Call, now: float) -> None:
        self._note_amd(flight, call, now)
        if flight.amd_status == AMD_HANGUP:
            # The callee hung up while the detector listened (app_amd's HANGUP; the
            # FreeSWITCH detector's on the leg's hang-up): not a "human" verdict, no hand-over,
            # so no live answer and no abandon. To the pacing policy it is a released dial, as
            # the simulator resolves every dial that reaches no agent pool. The end follows.
            flight.phase = FlightPhase.GONE
            self._resolve(flight, now, needs_agent=False)
            return
        if flight.amd_status == "MACHINE":
            flight.phase = FlightPhase.MACHINE
            self._r.counters["machine"] += 1
            self._resolve(flight, now, needs_agent=False)
            amd = self._r.spec.amd
            if amd.machine_flow:
                redirect = self._d.calls.redirect(flight.call_id, IvrTarget(amd.machine_flow))
                self._tasks.spawn(_quietly(redirect, self._r.campaign_id, flight.call_id))
            else:
                hangup = self._d.calls.hangup(flight.call_id)
                self._tasks.spawn(_quietly(hangup, self._r.campaign_id, flight.call_id))
            return
        self._pacing.count(amd_human=1)
        self.hand_over(flight, now)

    def await_verdict(self, flight: Flight) -> None:
        """An adopted call answered with AMD on and no verdict yet: the driver resumes its
        analysis (engine/calls/recovery.py, base.ResumesAmd), which ends within the
        analysis time. Should none come by AMD_RESUME_BOUND_S, the person (or machine) is
        handed to the ACD without one, as app_amd's NOTSURE would be."""
        flight.phase = FlightPhase.ANSWERED
        asyncio.get_running_loop().call_later(
            AMD_RESUME_BOUND_S, self._verdict_timer, flight.call_id
        )

    def verdict_overdue(self, call_id: str) -> None:
        flight = self._r.flights.get(call_id)
        if flight is None or flight.phase is not FlightPhase.ANSWERED or flight.amd_status:
            return
        log.warning("no AMD verdict for an adopted call; handed over", call_id=call_id)
        self.hand_over(flight, self._d.clock())

    def hand_over(self, flight: Flight, now: float) -> None:
        if flight.phase in (FlightPhase.QUEUED, FlightPhase.CONNECTED):
            return
        flight.phase = FlightPhase.QUEUED
        flight.handed_at = now
        self._r.counters["human"] += 1
        self._pacing.count(handed_over=1)
        self._resolve(flight, now, needs_agent=True)
        loop = asyncio.get_running_loop()
        loop.call_later(self._r.spec.safe_harbour_s, self._safe_harbour_timer, flight.call_id)
        self._tasks.spawn(self._enter_queue(flight))

    def _resolve(self, flight: Flight, now: float, *, needs_agent: bool) -> None:
        if flight.resolved:
            return
        flight.resolved = True
        self._pacing.observe(
            DialResolved(
                dialed_at=flight.dialed_at,
                resolved_at=now,
                needs_agent=needs_agent,
                patience=self._r.spec.safe_harbour_s if needs_agent else None,
            )
        )

    async def _enter_queue(self, flight: Flight) -> None:
        customer = {str(k): str(v) for k, v in flight.fields.items()}
        customer.update(
            {
                "campaign": self._r.campaign_id,
                "contact_id": str(flight.contact_id),
                "phone": flight.phone,
            }
        )
        try:
            await self._d.acd.enter(
                flight.call_id,
                queue=self._r.spec.queue,
                customer=customer,
                only_agent=flight.extra.get("agent"),
            )
        except EngineError as err:
            # The person hung up meanwhile (the end event settles it), or the queue refused:
            # nobody will take the call, so it is released like a safe-harbour drop.
            log.warning("answered contact not queued", campaign=self._r.campaign_id, error=str(err))
            if flight.call_id in self._r.flights and flight.phase is FlightPhase.QUEUED:
                self._release(flight, self._d.clock())

    def safe_harbour_due(self, call_id: str) -> None:
        flight = self._r.flights.get(call_id)
        if flight is None or flight.phase is not FlightPhase.QUEUED:
            return
        entry = self._d.acd.entry_of(call_id)
        if connected(entry) and entry is not None:
            self._connected(flight, entry.answered_at or self._d.clock(), entry.agent_id)
            return
        self._d.acd.withdraw(call_id)
        self._release(flight, self._d.clock())

    def _release(self, flight: Flight, now: float) -> None:
        flight.phase = FlightPhase.ABANDONED
        self._r.counters["abandoned"] += 1
        self._pacing.count(dropped=1)
        self._d.events.put(ev.call_abandoned(self._r.campaign_id, flight, now))
        self._tasks.spawn(self._safe_harbour(flight))

    async def _safe_harbour(self, flight: Flight) -> None:
        # Plays ENGINE_SAFE_HARBOUR_PROMPT and hangs up (dialplans/asterisk/engine.conf
        # [engine-safe-harbour], dialplans/freeswitch/engine.xml engine_safe_harbour).
        try:
            target = self._d.safe_harbour(flight.switch)
            await self._d.calls.redirect(flight.call_id, target)
        except EngineError as err:
            log.warning(
                "safe-harbour prompt not played",
                campaign=self._r.campaign_id,
                call_id=flight.call_id,
                error=str(err),
            )
            await _quietly(
                self._d.calls.hangup(flight.call_id), self._r.campaign_id, flight.call_id
            )

    def follow_connects(self, now: float) -> None:
        """Hand-overs an agent has taken."""
        for flight in list(self._r.flights.values()):
            if flight.phase is FlightPhase.QUEUED:
                entry = self._d.acd.entry_of(flight.call_id)
                if connected(entry) and entry is not None:
                    self._connected(flight, entry.answered_at or now, entry.agent_id)

    def _connected(self, flight: Flight, at: float, agent_id: str | None) -> None:
        flight.phase = FlightPhase.CONNECTED
        flight.agent_at = at
        flight.agent_id = agent_id
        self._r.counters["connected"] += 1
        # PacingStats.connects: hand-overs an agent took, as the simulator counts them (it
        # counted answers here before, machines the AMD hung up on among them).
        self._pacing.count(connects=1)
        self._progress(
            flight,
            agent_at=at,
            agent_id=agent_id,
            seconds_to_agent=seconds_to_agent(flight),
        )

    def _progress(self, flight: Flight, **fields: Any) -> None:
        self._d.records.put({"kind": "attempt_progress", "attempt_id": flight.attempt_id, **fields})

    def unplace(self, flight: Flight, why: str) -> None:
        """The originate never reached a switch because no link could take it (down, still
        syncing, another engine's, or this engine draining): no attempt. Not a carrier failure
        nor anything of the contact's: the contact is ready again as it was before the claim
        (its rank, due time and counters), and the pending row, which only said an originate
        was about to be written, goes (the ``attempt_unplaced`` record, engine/campaigns/
        history.py). The dial is taken back from the pacing figures."""
        if self._r.flights.pop(flight.call_id, None) is None:
            return
        flight.extra["unplaced"] = True
        flight.resolved = True  # the policy is told nothing: no call happened
        flight.phase = FlightPhase.ENDED
        self._pacing.count(dials=-1)
        self._r.counters["dials"] -= 1
        log.info(
            "contact not dialled: no switch link; handed back",
            campaign=self._r.campaign_id,
            contact=flight.contact_id,
            why=why,
        )
        self._d.records.put(
            {
                "kind": "attempt_unplaced",
                "campaign_id": self._r.campaign_id,
                "attempt_id": flight.attempt_id,
                "contact_id": flight.contact_id,
            }
        )
        self._r.wake()

    def end(
        self,
        flight: Flight,
        result: DialResult,
        call: Call | None,
        *,
        gone_unhanded: bool = False,
    ) -> None:
        """The attempt's end. ``gone_unhanded``: this runner followed the answer and the call
        ended before any hand-over (the AMD still listening)."""
        now = self._d.clock()
        if flight.phase is FlightPhase.QUEUED:
            entry = self._d.acd.entry_of(flight.call_id)
            if connected(entry) and entry is not None:
                self._connected(flight, entry.answered_at or now, entry.agent_id)
        outcome = classify(result)
        dropped: bool | None = None  # what the abandon rate counts: the outcome's, by default
        if flight.phase is FlightPhase.ABANDONED:
            outcome = Outcome.ABANDONED
        elif outcome is Outcome.HUMAN and gone_unhanded:
            # Answered, then gone before any verdict and any hand-over: nobody reached an agent
            # nor was left waiting for one. Not a live answer, not an abandon (as app_amd's
            # HANGUP verdict, classify); retried as no answer. An end seen only afterwards (an
            # adopted call, another engine's switch) leaves a past unknown: classify decides.
            outcome = Outcome.NO_ANSWER
        elif outcome is Outcome.HUMAN and flight.phase is FlightPhase.QUEUED:
            # The person hung up before any agent took the call: the contact's fate is an
            # abandon's (retried as one). Whether the dialer abandoned them is the deadline's
            # question (47 CFR 64.1200(a)(7)): one who hung up while the safe-harbour time still
            # ran (the dialer's own drop timer, from the hand-over) was not left past it, so the
            # call stays a live answer and is no drop; one gone after it, before the timer's
            # release came, was.
            outcome = Outcome.ABANDONED
            gone_at = call.ended_at if call is not None and call.ended_at is not None else now
            deadline = (flight.handed_at or now) + self._r.spec.safe_harbour_s
            dropped = gone_at >= deadline
            if dropped:
                self._r.counters["abandoned"] += 1
                self._pacing.count(dropped=1)
        if outcome is Outcome.CARRIER_FAILURE:
            self._r.counters["carrier_failures"] += 1
        self._resolve(flight, now, needs_agent=False)
        flight.phase = FlightPhase.ENDED
        del self._r.flights[flight.call_id]
        disposition = flight.extra.get("disposition")
        step = next_step(
            self._r.spec,
            outcome,
            ContactCounters(
                flight.attempts,
                flight.attempts_today,
                flight.tz,
                uncounted=max(0, flight.seq - 1 - flight.attempts),
            ),
            to_datetime(now),
            disposition=disposition.disposition if disposition is not None else None,
            callback_at=disposition.callback_at if disposition is not None else None,
            callback_agent=flight.extra.get("callback_agent"),
        )
        self._ends.put(flight, outcome, step, result, now, dropped=dropped)
        self._r.wake()


def never_placed(call: Call) -> bool:
    """A trunk-group call that ended because no attempt could reach a switch whose link was
    up (the planner's "switch-unavailable" after each leg failed as ``_LinkDown``,
    engine/calls/group_dialing.py): nothing reached a carrier."""
    return (
        call.answered_at is None
        and call.trunk_failure.startswith("switch-unavailable")
        and bool(call.attempts)
        and all(a.get("verdict") == "not-placed" for a in call.attempts)
    )


async def _quietly(awaitable: Coroutine[Any, Any, Any], campaign: str, call_id: str) -> None:
    """Run a hang-up or redirect of a campaign call whose failure only needs a log line,
    which names the campaign and the call (an operator greps for either)."""
    try:
        await awaitable
    except EngineError as err:
        log.info(
            "campaign call action not done",
            campaign=campaign,
            call_id=call_id,
            error_id=err.error_id,
            error=str(err),
        )
