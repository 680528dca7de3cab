"""Preview mode of a campaign runner: each available agent of the queue gets one contact to
accept or skip (event ``ContactPreview``, ``GET /v1/campaigns/{id}/previews``); nothing is
dialled until the agent accepts, and the answered call goes to that agent alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.agents.model import AgentState
from engine.campaigns import events as ev
from engine.campaigns.attempt_end import AttemptEnds
from engine.campaigns.dialer import Dialer
from engine.campaigns.flights import Flight, Preview
from engine.campaigns.model import Outcome
from engine.campaigns.outcomes import DialResult
from engine.campaigns.pacing_book import PacingBook
from engine.campaigns.retry import ContactCounters, next_step
from engine.core.clock import to_datetime
from engine.telemetry.logging import get_logger

if TYPE_CHECKING:
    from engine.campaigns.runner import CampaignRunner, RunnerDeps

log = get_logger("engine.campaigns")


class PreviewDesk:
    def __init__(
        self,
        runner: CampaignRunner,
        deps: RunnerDeps,
        *,
        pacing: PacingBook,
        dialer: Dialer,
        ends: AttemptEnds,
    ) -> None:
        self._r = runner
        self._d = deps
        self._pacing = pacing
        self._dialer = dialer
        self._ends = ends

    async def turn(self) -> None:
        """One preview turn: expired offers are skipped, and each free agent is offered a
        contact."""
        r = self._r
        now = self._d.clock()
        for preview in list(r.previews.values()):
            if now >= preview.expires_at:
                self.skip(preview.flight.attempt_id, reason="timeout")
        if self._dialer.blocked(now):
            return  # no contact offered while nothing could be dialled on acceptance
        taken = {p.agent_id for p in r.previews.values()}
        taken |= {str(f.extra.get("agent")) for f in r.flights.values()}
        free = [
            config.id
            for config, status in self._pacing.agents()
            if status.state is AgentState.AVAILABLE and config.id not in taken
        ]
        if not free:
            return
        flights = await self._dialer.claim(len(free), to_datetime(now))
        # A callback owned by an agent goes to that agent (the claim took it only while they
        # are free); the other contacts to the other free agents, in order.
        owners = {str(f.extra["agent"]) for f in flights if f.extra.get("agent")}
        others = iter([a for a in free if a not in owners])
        for flight in flights:
            owner = flight.extra.pop("agent", None)
            agent_id = str(owner) if owner else next(others)
            r.previews[flight.attempt_id] = Preview(
                flight, agent_id, now, now + r.spec.preview_timeout_s
            )
            self._d.events.put(ev.contact_preview(r.campaign_id, flight, agent_id, now))

    def accept(self, attempt_id: str) -> Flight:
        preview = self._r.previews.pop(attempt_id)
        preview.flight.extra["agent"] = preview.agent_id
        self._dialer.launch(preview.flight)
        return preview.flight

    def skip(self, attempt_id: str, *, reason: str = "skipped") -> Flight:
        r = self._r
        preview = r.previews.pop(attempt_id)
        flight, now = preview.flight, self._d.clock()
        step = next_step(
            r.spec,
            Outcome.SKIPPED,
            ContactCounters(flight.attempts, flight.attempts_today, flight.tz),
            to_datetime(now),
        )
        log.info("preview skipped", campaign=r.campaign_id, agent=preview.agent_id, why=reason)
        self._ends.put(flight, Outcome.SKIPPED, step, DialResult(answered=False), now)
        r.wake()
        return flight
