"""The campaign events on the event stream (docs/events.md): plain dicts, built here only.

``AmdResult`` itself is the switch's normalized event, published by the calls service for
every call it tracks; ``ContactDialed`` ties that call id to the campaign and contact.
"""

from __future__ import annotations

from typing import Any

from engine.campaigns.flights import Flight
from engine.campaigns.model import Outcome
from engine.campaigns.retry import NextStep


def _base(kind: str, campaign_id: str, flight: Flight, ts: float) -> dict[str, Any]:
    return {
        "type": kind,
        "ts": ts,
        "campaign_id": campaign_id,
        "contact_id": flight.contact_id,
        "attempt_id": flight.attempt_id,
        "call_id": flight.call_id,
    }


def campaign_state(campaign_id: str, state: str, previous: str | None, ts: float) -> dict[str, Any]:
    return {
        "type": "CampaignStateChanged",
        "ts": ts,
        "campaign_id": campaign_id,
        "state": state,
        "previous": previous,
    }


def call_dispositioned(
    campaign_id: str, call_id: str, disposition: str, applied: str, ts: float
) -> dict[str, Any]:
    """An agent's disposition was accepted (``applied``: "now", or "at_end" of the call)."""
    return {
        "type": "CallDispositioned",
        "ts": ts,
        "campaign_id": campaign_id,
        "call_id": call_id,
        "disposition": disposition,
        "applied": applied,
    }


def contact_dialed(campaign_id: str, flight: Flight, switch: str, ts: float) -> dict[str, Any]:
    # The number as dialled after translation; the contact's E.164 stays in PostgreSQL.
    return {**_base("ContactDialed", campaign_id, flight, ts), "switch": switch}


def amd_result(campaign_id: str, flight: Flight, ts: float) -> dict[str, Any]:
    return {
        **_base("CampaignAmdResult", campaign_id, flight, ts),
        "status": flight.amd_status,
        "cause": flight.amd_cause,
        "after_answer_s": round(flight.amd_at - flight.answered_at, 3)
        if flight.amd_at is not None and flight.answered_at is not None
        else None,
    }


def call_abandoned(campaign_id: str, flight: Flight, ts: float) -> dict[str, Any]:
    return {
        **_base("CallAbandoned", campaign_id, flight, ts),
        "waited_s": round(ts - flight.handed_at, 3) if flight.handed_at is not None else None,
    }


def attempt_ended(
    campaign_id: str, flight: Flight, outcome: Outcome, step: NextStep, ts: float
) -> dict[str, Any]:
    return {
        **_base("AttemptEnded", campaign_id, flight, ts),
        "outcome": outcome.value,
        "next_at": step.next_at.timestamp() if step.next_at else None,
        "counts": step.counts,
    }


def contact_finished(campaign_id: str, flight: Flight, step: NextStep, ts: float) -> dict[str, Any]:
    return {**_base("ContactFinished", campaign_id, flight, ts), "outcome": step.final_outcome}


def contact_preview(campaign_id: str, flight: Flight, agent_id: str, ts: float) -> dict[str, Any]:
    # The agent's screen pop: the contact's own fields, before anything is dialled.
    return {
        **_base("ContactPreview", campaign_id, flight, ts),
        "agent_id": agent_id,
        "phone": flight.phone,
        "fields": flight.fields,
    }
