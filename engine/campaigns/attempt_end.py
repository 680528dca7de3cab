"""How a campaign attempt's end is written: the ``attempt_end`` record (the ``campaigns``
outbox lane: the attempt row, the contact's next step, the DNC entry of a "do not call"
disposition) and the events (``AttemptEnded``, and ``ContactFinished`` when the contact is done),
and the runner's tally of ended attempts by outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.campaigns import events as ev
from engine.campaigns.flights import Flight
from engine.campaigns.model import Outcome
from engine.campaigns.outcomes import DialResult
from engine.campaigns.retry import NextStep
from engine.campaigns.windows import zone
from engine.core.clock import to_datetime

if TYPE_CHECKING:
    from engine.campaigns.runner import CampaignRunner, RunnerDeps


def seconds_to_agent(flight: Flight) -> float | None:
    if flight.agent_at is None or flight.answered_at is None:
        return None
    return round(max(0.0, flight.agent_at - flight.answered_at), 3)


class AttemptEnds:
    def __init__(self, runner: CampaignRunner, deps: RunnerDeps) -> None:
        self._r = runner
        self._d = deps

    def put(
        self,
        flight: Flight,
        outcome: Outcome,
        step: NextStep,
        result: DialResult,
        now: float,
        *,
        state: str = "done",
        dropped: bool | None = None,
    ) -> None:
        """``dropped``: whether the dialer abandoned the call (the row's ``abandoned``, what
        the abandon rate counts); None: whether the outcome is ABANDONED. A person who hung up
        waiting before the safe-harbour time ran out is ABANDONED but not dropped."""
        outcomes = self._r.outcomes
        outcomes[outcome.value] = outcomes.get(outcome.value, 0) + 1
        day = to_datetime(now).astimezone(zone(flight.tz)).date().isoformat()
        disposition = flight.extra.get("disposition")
        campaign_id = self._r.campaign_id
        self._d.records.put(
            {
                "kind": "attempt_end",
                "campaign_id": campaign_id,
                "attempt_id": flight.attempt_id,
                "contact_id": flight.contact_id,
                "state": state,
                "ended_at": now,
                "cause": result.cause,
                "sip_code": result.sip_code,
                "outcome": outcome.value,
                "abandoned": outcome is Outcome.ABANDONED if dropped is None else dropped,
                "answered_at": flight.answered_at,
                "amd_status": flight.amd_status,
                "amd_cause": flight.amd_cause or None,
                "agent_id": flight.agent_id,
                "agent_at": flight.agent_at,
                "seconds_to_agent": seconds_to_agent(flight),
                "trunk": flight.trunk,
                "day": day,
                "disposition": disposition.disposition.value if disposition else None,
                "dnc_phone": flight.phone
                if disposition is not None and disposition.disposition.value == "do_not_call"
                else None,
                "next": {
                    "state": step.state,
                    "rank": step.rank,
                    "next_at": step.next_at.timestamp() if step.next_at else None,
                    "final_outcome": step.final_outcome,
                    "counts": step.counts,
                    "callback_agent": step.callback_agent,
                },
            }
        )
        self._d.events.put(ev.attempt_ended(campaign_id, flight, outcome, step, now))
        if step.state == "done":
            self._d.events.put(ev.contact_finished(campaign_id, flight, step, now))
