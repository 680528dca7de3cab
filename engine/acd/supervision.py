"""Supervisor controls: the decisions, pure (docs/supervisor.md). No I/O, no clock.

- :func:`spy_plan`: who is rung and which leg is spied on, from the engine's own records of
  the agent (its leg and switch), and whether the supervisor's endpoint may be rung;
- :func:`after_call`: a supervisor's pause or logout asked while the agent is busy waits
  for the call (and wrap-up) to end: which input to apply, and when;
- :func:`move_plan`: an agent's queue membership after a move, or why the move is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from engine.acd.eligibility import fits
from engine.acd.endpoints import endpoint_name
from engine.acd.errors import (
    AgentNotOnCall,
    InvalidQueueMove,
    UnknownSupervisorEndpoint,
)
from engine.agents.model import AgentState, AgentStatus
from engine.pbx.base import SpyMode

#: States in which the FSM refuses a pause or a logout (docs/acd.md): the supervisor's
#: action is kept and applied when the agent next leaves them.
BUSY_FOR_SUPERVISOR = frozenset({AgentState.RESERVED, AgentState.ON_CALL})


@dataclass(frozen=True, slots=True)
class SpyPlan:
    switch: str
    spied_leg: str  # the agent's own leg: what ChanSpy / eavesdrop attach to
    caller_call_id: str | None  # the caller the agent talks to (for the events)
    endpoint: str  # the supervisor's endpoint name, as the driver dials it
    mode: SpyMode


def allowed_endpoints(
    switch: str,
    switch_kind: str,
    supervisor_endpoints: Mapping[str, Sequence[str]],
    agent_endpoints: Iterable[Mapping[str, str]],
) -> set[str]:
    """Endpoint names that may be rung as a supervisor on ``switch``: the configured
    supervisor endpoints of that switch, and every agent's phone there (a team lead at an
    agent's desk)."""
    out: set[str] = set()
    candidates = list(supervisor_endpoints.get(switch, ()))
    candidates += [eps[switch] for eps in agent_endpoints if switch in eps]
    for value in candidates:
        name = endpoint_name(value, switch_kind)
        if name is not None:
            out.add(name)
    return out


def spy_plan(
    *,
    status: AgentStatus,
    leg: str,
    switch: str,
    switch_kind: str,
    endpoint: str,
    mode: SpyMode,
    allowed: set[str],
) -> SpyPlan:
    """What to ring and spy on; raises when the agent is not on a call or the endpoint may
    not be rung. ``leg`` and ``switch`` are the ACD's own record of the agent's leg (set when
    the engine placed it), never taken from the request."""
    if status.state is not AgentState.ON_CALL or not leg or not switch:
        raise AgentNotOnCall(
            f"agent {status.agent_id} is {status.state.value}, not on a call",
            details={"agent_id": status.agent_id, "state": status.state.value},
        )
    name = endpoint_name(endpoint, switch_kind)
    if name is None or name not in allowed:
        raise UnknownSupervisorEndpoint(
            f"endpoint {endpoint!r} is not a supervisor endpoint or agent phone on switch "
            f"{switch} (configured: [acd] supervisor_endpoints, [[agents]] endpoints)",
            details={"endpoint": endpoint, "switch": switch, "allowed": sorted(allowed)[:50]},
        )
    return SpyPlan(switch, leg, status.call_id, name, mode)


def applies_now(state: AgentState) -> bool:
    """A supervisor's pause or logout is applied at once unless the agent is ringing or
    talking (then it waits for the call, and its wrap-up, to end)."""
    return state not in BUSY_FOR_SUPERVISOR


def pending_outcome(state: AgentState) -> str:
    """What becomes of a waiting pause or logout once the agent is in ``state``: ``apply``
    (available again, or paused meanwhile: the supervisor's action wins), ``drop`` (logged
    out meanwhile: nothing left to do) or ``wait`` (still ringing, talking or wrapping up)."""
    if state in (AgentState.AVAILABLE, AgentState.PAUSED):
        return "apply"
    if state is AgentState.LOGGED_OUT:
        return "drop"
    return "wait"


def serving(
    queues: Iterable[str],
    base_minimums: Mapping[str, Mapping[str, int]],
    skills: Mapping[str, int],
    member_of: frozenset[str] | None,
) -> frozenset[str]:
    """The queues whose calls the agent takes at their first stage: rostered on (or no
    roster) and fitting the queue's own skill minimums."""
    return frozenset(
        q
        for q in queues
        if (member_of is None or q in member_of) and fits(skills, base_minimums[q])
    )


def move_plan(
    *,
    agent_id: str,
    source: str,
    target: str,
    current: frozenset[str],
    fits_target: bool,
) -> frozenset[str]:
    """The agent's queues after moving from ``source`` to ``target``. ``current``: the queues
    it serves now; ``fits_target``: whether its skills meet ``target``'s own minimums."""
    problems: list[str] = []
    if source == target:
        problems.append(f"from and to are both {source!r}")
    if source not in current:
        problems.append(
            f"agent {agent_id} does not serve queue {source!r} (serves: "
            f"{', '.join(sorted(current)) or 'none'})"
        )
    if not fits_target:
        problems.append(f"agent {agent_id} lacks the skills queue {target!r} requires")
    if problems:
        raise InvalidQueueMove(
            "; ".join(problems),
            details={
                "agent_id": agent_id,
                "from": source,
                "to": target,
                "serves": sorted(current),
                "problems": problems,
            },
        )
    return (current - {source}) | {target}
