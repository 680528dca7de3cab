"""Calls of a running campaign, from dial to end (in memory, owned by one runner).

A *flight* is one attempt's call: it is created when the contact is claimed (the attempt row
already exists as ``pending``) and leaves when the call ended and its outcome record went into
the outbox. Its phase only moves forward:

    dialing -> answered -> (amd) -> queued -> connected
                      \\-> machine           \\-> abandoned (safe harbour)
                      \\-> gone (hung up while the AMD listened: AMD HANGUP)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.acd.entries import Entry, Phase
from engine.agents.model import AgentConfig, AgentState, AgentStatus
from engine.dialer.pacing.view import PacingStats, PacingView


class FlightPhase(StrEnum):
    DIALING = "dialing"  # originated, not answered
    ANSWERED = "answered"  # answered, AMD listening
    QUEUED = "queued"  # handed to the ACD, no agent yet
    CONNECTED = "connected"  # an agent took it
    MACHINE = "machine"  # AMD said machine: the machine action
    GONE = "gone"  # the call ended while the AMD listened (HANGUP): nobody to hand over
    ABANDONED = "abandoned"  # safe-harbour release
    ENDED = "ended"


@dataclass(slots=True)
class Flight:
    attempt_id: str
    contact_id: int
    call_id: str
    phone: str
    dialed_number: str
    tz: str
    fields: dict[str, Any]
    attempts: int  # counted attempts before this one
    attempts_today: int
    dialed_at: float
    seq: int = 1  # this attempt's number for the contact (counted or not)
    phase: FlightPhase = FlightPhase.DIALING
    answered_at: float | None = None
    amd_status: str | None = None
    amd_cause: str = ""
    amd_at: float | None = None
    handed_at: float | None = None
    agent_at: float | None = None
    agent_id: str | None = None
    resolved: bool = False  # the pacing policy has had its DialResolved
    trunk: str | None = None
    switch: str = ""
    adopted: bool = False  # taken over after a restart
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        return self.phase is FlightPhase.QUEUED

    @property
    def ringing(self) -> bool:
        # Unresolved for the dialer: ringing, or answered while the detector listens.
        return self.phase in (FlightPhase.DIALING, FlightPhase.ANSWERED)


@dataclass(slots=True)
class Preview:
    """A contact offered to one agent in preview mode, claimed but not dialled."""

    flight: Flight
    agent_id: str
    offered_at: float
    expires_at: float

    def to_dict(self) -> dict[str, Any]:
        f = self.flight
        return {
            "attempt_id": f.attempt_id,
            "contact_id": f.contact_id,
            "phone": f.phone,
            "fields": f.fields,
            "agent_id": self.agent_id,
            "offered_at": self.offered_at,
            "expires_at": self.expires_at,
        }


def serves(agent: AgentConfig, required: dict[str, int]) -> bool:
    """Whether an agent has every skill ``required`` at the level asked."""
    return all(agent.skills.get(skill, 0) >= level for skill, level in required.items())


def build_view(
    agents: list[tuple[AgentConfig, AgentStatus]],
    flights: list[Flight],
    *,
    line_cap: int,
    stats: PacingStats,
) -> PacingView:
    """The pacing view of one campaign: its agents by state and its calls in progress."""
    idle: list[float] = []
    talking: list[float] = []
    wrap: list[float] = []
    for _config, status in agents:
        if status.state is AgentState.AVAILABLE:
            idle.append(status.since)
        elif status.state in (AgentState.RESERVED, AgentState.ON_CALL):
            talking.append(status.since)
        elif status.state is AgentState.WRAP_UP:
            wrap.append(status.since)
    ringing = [f.dialed_at for f in flights if f.ringing]
    waiting = [f.handed_at for f in flights if f.waiting and f.handed_at is not None]
    return PacingView(
        idle_since=tuple(idle),
        talking_since=tuple(talking),
        wrap_since=tuple(wrap),
        ringing_since=tuple(ringing),
        waiting_since=tuple(waiting),
        line_cap=line_cap,
        stats=stats,
    )


def connected(entry: Entry | None) -> bool:
    return entry is not None and entry.phase in (Phase.CONNECTED, Phase.AGENT_LEFT)
