"""Agents as configured, and an agent's live status.

Both are frozen values. :class:`AgentConfig` comes from ``[[agents]]`` in
engine.toml (or the API); :class:`AgentStatus` is what the pure state machine
(:mod:`engine.agents.fsm`) returns after every input, including the session
counters the routing strategies and the KPIs read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

NO_ANSWER = "no-answer"
"""The pause reason the engine itself sets after ``max_no_answer`` missed offers in a row."""
UNREACHABLE = "unreachable"
"""The same, when the last of those offers failed because the agent's phone could not be
reached at all (no registered contact, unknown endpoint): it never rang."""


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RESERVED = "reserved"  # a call is offered: the agent's phone is ringing
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


BUSY_STATES = frozenset({AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP})


def _frozen_map(value: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class AgentConfig:
    id: str
    name: str
    # Switch name -> endpoint on that switch (e.g. "PJSIP/1001", "user/1001").
    endpoints: Mapping[str, str] = field(default_factory=dict)
    # Skill name -> level 1..10.
    skills: Mapping[str, int] = field(default_factory=dict)
    # Optional numbers describing the agent (e.g. conversion rate per product),
    # compared with a call's feature vector by best-match routing.
    capability: tuple[float, ...] | None = None
    team: str | None = None
    max_no_answer: int = 3
    # The queues the agent is rostered on (a supervisor's move, docs/supervisor.md); None:
    # every queue its skills fit. A rostered agent still needs the queue's skills.
    queues: frozenset[str] | None = None

    def __post_init__(self) -> None:
        # Read-only views: a frozen dataclass holding a plain dict is not frozen.
        object.__setattr__(self, "endpoints", _frozen_map(self.endpoints))
        object.__setattr__(self, "skills", _frozen_map(self.skills))
        for skill, level in self.skills.items():
            if not 1 <= level <= 10:
                raise ValueError(f"agent {self.id!r}: skill {skill!r} level must be 1..10")
        if self.max_no_answer < 1:
            raise ValueError(f"agent {self.id!r}: max_no_answer must be at least 1")


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """One agent's live state. Times are the caller's clock (``now`` of each input)."""

    agent_id: str
    state: AgentState = AgentState.LOGGED_OUT
    since: float = 0.0  # when the current state was entered
    pause_reason: str | None = None
    # The call the agent is reserved for, talking on, or wrapping up.
    call_id: str | None = None
    queue: str | None = None
    wrap_up_s: float = 0.0  # the wrap-up of that call's queue, carried from the offer
    offer_expires_at: float | None = None
    wrap_up_until: float | None = None
    missed_in_row: int = 0
    # Session counters (reset at login): what the strategies and KPIs read.
    logged_in_at: float | None = None
    idle_since: float | None = None  # when the agent last became available
    calls_handled: int = 0
    answered_at: float | None = None
    talk_s: float = 0.0  # on-call time of finished calls
    available_s: float = 0.0  # time spent available, states already left
    busy_s: float = 0.0  # reserved + on call + wrap-up, states already left
    paused_s: float = 0.0

    @property
    def is_available(self) -> bool:
        return self.state is AgentState.AVAILABLE

    def time_in_state(self, now: float) -> float:
        return max(0.0, now - self.since)

    def occupancy(self, now: float) -> float:
        """Busy time over staffed time (busy + available), pauses excluded; 0 before any."""
        busy, idle = self.busy_s, self.available_s
        if self.state in BUSY_STATES:
            busy += self.time_in_state(now)
        elif self.state is AgentState.AVAILABLE:
            idle += self.time_in_state(now)
        total = busy + idle
        return busy / total if total > 0 else 0.0
