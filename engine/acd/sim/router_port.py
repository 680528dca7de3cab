"""The routing port the inbound simulator drives.

The simulator owns time, randomness and the call/agent life cycle; a router only chooses who takes
what. It is fed four kinds of events and asked, after each batch of events at one instant, for the
assignments it makes *now*. Everything it is given is an immutable snapshot, so a router cannot
change the simulation behind its back, and the simulator checks every assignment it returns
(:class:`RouterContractError`).

This port is deliberately small. The routers the simulator runs are the engine's own ACD router
(``engine/acd/routing.py``) behind the adapter in :mod:`engine.acd.sim.engine_router`, one per
strategy (:mod:`engine.acd.sim.routers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SimCall:
    """A caller waiting in a queue."""

    id: str
    queue: str
    priority: int
    """Higher is served first (the issue's default map: VIP 3 > high_value 2 > normal 1)."""
    required_skills: Mapping[str, int]
    """Skill name -> minimum level (1-10) an agent needs to take the call."""
    features: tuple[float, ...] | None
    """The customer's feature vector sent with the call (best-match input), if any."""
    segment: str | None
    """Customer segment; only the simulator's conversion model reads it."""
    arrived_at: float


@dataclass(frozen=True, slots=True)
class SimAgent:
    """An agent as the router sees it when the agent becomes available."""

    id: str
    skills: Mapping[str, int]
    capability: tuple[float, ...] | None
    idle_since: float
    calls_taken: int
    talk_time_s: float
    busy_s: float
    """Handle + wrap-up seconds so far, over all of the agent's shifts."""
    logged_in_s: float
    """Logged-in seconds so far (including the shift in progress), over all shifts."""

    @property
    def occupancy(self) -> float:
        """Busy seconds / logged-in seconds so far, 0 before any time has passed."""
        return self.busy_s / self.logged_in_s if self.logged_in_s > 0 else 0.0


class RouterPort(Protocol):
    """What the inbound simulator needs from a router.

    Contract (checked by the simulator): ``decide`` only pairs a call that is waiting with an agent
    that is available and has every required skill at its minimum level; no call or agent appears
    twice. After returning a pair the router forgets both: the call is served, and the agent comes
    back through :meth:`on_agent_free` when its wrap-up ends.
    """

    name: str

    def on_call_arrived(self, call: SimCall, now: float) -> None:
        """A caller entered a queue."""

    def on_call_left(self, call_id: str, now: float) -> None:
        """A waiting caller hung up (abandoned) before being assigned."""

    def on_agent_free(self, agent: SimAgent, now: float) -> None:
        """An agent became available: logged in, or wrap-up ended."""

    def on_agent_away(self, agent_id: str, now: float) -> None:
        """An available agent logged out (end of shift)."""

    def decide(self, now: float) -> list[tuple[str, str]]:
        """Assignments to make now, as ``(call_id, agent_id)`` pairs, in the order made."""
        ...
