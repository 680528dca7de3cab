"""A caller's stay in a queue, as the ACD service tracks it (mutable, service-owned).

The pure router knows the waiting call (:class:`engine.acd.model.WaitingCall`,
keyed by ``entry_id``); this record adds what the service needs to carry the
call through the switch: the caller's leg, the offers' agent legs, the
phase, and the timings stored in ``queue_entries``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    WAITING = "waiting"  # on hold music, no agent rung
    RINGING = "ringing"  # one agent (or several, ring-all) rung
    CONNECTED = "connected"  # bridged (or being bridged) to an agent
    AGENT_LEFT = "agent_left"  # the agent hung up; the caller is re-queued unless it leaves too
    ENDED = "ended"


@dataclass(slots=True)
class OfferLeg:
    agent_id: str
    at: float
    leg: str | None = None  # the agent leg's call id, once the originate returned
    open: bool = True  # False once answered, missed, cancelled or expired


@dataclass(slots=True)
class Entry:
    entry_id: str
    call_id: str  # the caller's call (CallService)
    leg: str  # the caller's channel id on its switch
    switch: str
    queue: str
    priority: int
    entered_at: float
    tags: tuple[str, ...] = ()
    intent: str | None = None
    features: tuple[float, ...] | None = None
    customer: dict[str, str] = field(default_factory=dict)
    phase: Phase = Phase.WAITING
    offers: dict[str, OfferLeg] = field(default_factory=dict)
    agent_id: str | None = None
    agent_leg: str | None = None
    first_offer_at: float | None = None
    answered_at: float | None = None
    agent_left_at: float | None = None
    ended_at: float | None = None
    outcome: str = "waiting"
    offers_made: int = 0
    missed: int = 0
    stage: int = 0
    exit_flow: str | None = None
    requeued_from: str | None = None
    # Agents never offered this call (a preview dialler's call goes to the agent who took it).
    excluded: frozenset[str] = frozenset()
    talk_s: float | None = None
    wrap_up_s: float | None = None
    # The routing strategy of the queue when the call entered it (A/B results, docs/reports.md).
    strategy: str | None = None
    version: int = 0
    confirmed: bool = True  # False after a restart until the switch's channel list is seen

    @property
    def wait_s(self) -> float | None:
        end = self.answered_at if self.answered_at is not None else self.ended_at
        return end - self.entered_at if end is not None else None

    def open_offers(self) -> list[OfferLeg]:
        return [o for o in self.offers.values() if o.open]

    def to_row(self) -> dict[str, Any]:
        """The ``queue_entries`` row (and the Redis copy, with the live fields)."""
        self.version += 1
        return {
            "entry_id": self.entry_id,
            "call_id": self.call_id,
            "queue": self.queue,
            "priority": self.priority,
            "tags": list(self.tags),
            "intent": self.intent,
            "entered_at": self.entered_at,
            "first_offer_at": self.first_offer_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "agent_id": self.agent_id,
            "offers": self.offers_made,
            "missed": self.missed,
            "overflow_stage": self.stage,
            "exit_flow": self.exit_flow,
            "wait_s": self.wait_s,
            "talk_s": self.talk_s,
            "requeued_from": self.requeued_from,
            "wrap_up_s": self.wrap_up_s,
            "strategy": self.strategy,
            "version": self.version,
        }

    def to_live(self) -> dict[str, Any]:
        """What Redis keeps to rebuild the entry after a restart."""
        return {
            **self.to_row(),
            "leg": self.leg,
            "switch": self.switch,
            "features": list(self.features) if self.features is not None else None,
            "customer": dict(self.customer),
            "phase": self.phase.value,
            "agent_leg": self.agent_leg,
            "agent_left_at": self.agent_left_at,
            "offers_live": [
                {"agent_id": o.agent_id, "at": o.at, "leg": o.leg} for o in self.open_offers()
            ],
            # A preview call's "only this agent": lost, a restart would offer it to anyone.
            "excluded": sorted(self.excluded),
        }

    @classmethod
    def from_live(cls, d: dict[str, Any]) -> Entry:
        entry = cls(
            entry_id=str(d["entry_id"]),
            call_id=str(d["call_id"]),
            leg=str(d["leg"]),
            switch=str(d["switch"]),
            queue=str(d["queue"]),
            priority=int(d["priority"]),
            entered_at=float(d["entered_at"]),
            tags=tuple(d.get("tags") or ()),
            intent=d.get("intent"),
            features=tuple(d["features"]) if d.get("features") is not None else None,
            customer=dict(d.get("customer") or {}),
            phase=Phase(d.get("phase", "waiting")),
            agent_id=d.get("agent_id"),
            agent_leg=d.get("agent_leg"),
            first_offer_at=d.get("first_offer_at"),
            answered_at=d.get("answered_at"),
            agent_left_at=d.get("agent_left_at"),
            # Set on an entry an agent's record keeps for its wrap-up (restore.py); a live
            # entry's wrap-up may be over before its caller leaves: its handle time.
            ended_at=d.get("ended_at"),
            exit_flow=d.get("exit_flow"),
            wrap_up_s=d.get("wrap_up_s"),
            outcome=str(d.get("outcome", "waiting")),
            offers_made=int(d.get("offers", 0)),
            missed=int(d.get("missed", 0)),
            stage=int(d.get("overflow_stage", 0)),
            requeued_from=d.get("requeued_from"),
            talk_s=d.get("talk_s"),
            strategy=d.get("strategy"),
            version=int(d.get("version", 0)),
            excluded=frozenset(str(a) for a in d.get("excluded") or ()),
            confirmed=False,
        )
        for o in d.get("offers_live") or ():
            entry.offers[o["agent_id"]] = OfferLeg(o["agent_id"], float(o["at"]), o.get("leg"))
        return entry
