"""After a crash: every attempt left ``pending`` or ``dialing`` is reconciled with the switch.

- The call is still tracked by the calls service (adopted from the registry at start): the
  runner follows it again; if it has ended meanwhile, its end is recorded as usual.
- The calls service knows it ended (the resync found its channel gone): recorded from that.
- Otherwise the switches are asked directly (the registry may have missed a call placed just
  before the crash; the attempt row was written before its originate):
  - the channel is alive: the call is adopted and followed;
  - the channel is gone: the attempt ends as ``interrupted`` (not counted; retried by its rule);
  - a switch cannot answer: the contact is *held*, not redialled, for ``quarantine_s``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from engine.campaigns.dialer import PREVIEW_AGENT_VAR
from engine.campaigns.flights import Flight, FlightPhase
from engine.campaigns.model import Outcome
from engine.campaigns.outcomes import DialResult
from engine.campaigns.retry import RANK_RETRY, NextStep
from engine.campaigns.store import OpenAttempt
from engine.core.clock import to_datetime
from engine.core.errors import EngineError
from engine.telemetry.logging import get_logger

if TYPE_CHECKING:
    from engine.campaigns.runner import CampaignRunner, RunnerDeps

log = get_logger("engine.campaigns")


async def recover(runner: CampaignRunner, deps: RunnerDeps) -> int:
    open_attempts = await deps.store.open_attempts(runner.campaign_id)
    if not open_attempts:
        return 0
    tracked = {c.call_id: c for c in deps.calls.tracked()}
    channels: set[str] | None = None
    asked = False
    counts = {"followed": 0, "ended": 0, "interrupted": 0, "held": 0}
    for attempt in open_attempts:
        flight = await _flight(deps, attempt)
        if flight is None:
            continue
        call = tracked.get(attempt.call_id)
        if call is None:
            try:
                call = await deps.calls.get(attempt.call_id)
            except EngineError:
                call = None
        if call is None:
            if not asked:
                channels, asked = await deps.switches.live_channels(), True
            if channels is None:
                _hold(runner, flight)
                counts["held"] += 1
                continue
            if attempt.call_id in channels:
                call = await deps.calls.adopt_inbound(attempt.call_id)
            if call is None:
                runner.flights[flight.call_id] = flight
                runner.tracker.end(flight, DialResult(answered=False, interrupted=True), None)
                counts["interrupted"] += 1
                continue
        runner.flights[flight.call_id] = flight
        flight.switch = call.switch
        # Preview mode: the agent who accepted it (kept with the call, dialer.Dialer._originate).
        agent = call.variables.get(PREVIEW_AGENT_VAR)
        if agent:
            flight.extra["agent"] = agent
        if call.is_ended:
            runner.on_call(call, call)
            counts["ended"] += 1
            continue
        counts["followed"] += 1
        if call.answered_at is not None:
            flight.answered_at = call.answered_at
            flight.phase = FlightPhase.ANSWERED
            flight.resolved = True
            entry = deps.acd.entry_of(call.call_id)
            if entry is not None:
                flight.phase = FlightPhase.QUEUED
                flight.handed_at = entry.entered_at
            elif call.amd_status:
                # The verdict came (maybe just before the crash) but was not acted on: act
                # now, so a machine still gets the machine action and never an agent.
                runner.tracker.amd(flight, call, deps.clock())
            elif runner.spec.amd.enabled:
                # Answered mid-analysis: the verdict is resumed (engine/calls/recovery.py);
                # it hands the call over or ends it as a machine, within a bound.
                runner.await_verdict(flight)
            else:
                # Answered, in nobody's hands: an agent now, or safe harbour.
                runner.tracker.hand_over(flight, deps.clock())
    log.info("campaign attempts reconciled", campaign=runner.campaign_id, **counts)
    return len(open_attempts)


async def _flight(deps: RunnerDeps, attempt: OpenAttempt) -> Flight | None:
    contact = await deps.store.contact_for(attempt.contact_id)
    if contact is None:
        return None
    return Flight(
        attempt_id=attempt.attempt_id,
        contact_id=attempt.contact_id,
        call_id=attempt.call_id,
        phone=contact.phone,
        dialed_number="",
        tz=contact.tz,
        fields=contact.fields,
        attempts=contact.attempts,
        attempts_today=contact.attempts_today,
        dialed_at=attempt.created_at.timestamp(),
        adopted=True,
        resolved=True,  # the policy never saw this dial: no resolution to report either
    )


def _hold(runner: CampaignRunner, flight: Flight) -> None:
    now = runner._d.clock()
    until = to_datetime(now) + timedelta(seconds=runner.spec.quarantine_s)
    step = NextStep("held", RANK_RETRY, until, None, False)
    runner.ends.put(
        flight, Outcome.INTERRUPTED, step, DialResult(answered=False), now, state="held"
    )
    log.warning(
        "attempt outcome unknown; contact held",
        campaign=runner.campaign_id,
        attempt_id=flight.attempt_id,
        until=until.isoformat(),
    )
