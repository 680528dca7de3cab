"""Agent assignment: which ready agent takes an answered outbound call.

The dialer hands an answered call to an :class:`AgentAssigner`; the ACD will plug in behind the
same interface later (skills, priorities). The simulator drives this exact code.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class AgentAssigner(Protocol):
    def agent_ready(self, agent_id: int, now: float) -> None:
        """The agent is free for a call from ``now`` on."""
        ...

    def agent_unready(self, agent_id: int) -> None:
        """The agent left the ready pool (took a call, logged off). Unknown ids are ignored."""
        ...

    def pick(self, now: float) -> int | None:
        """Take the agent that should get the next answered call, or None if nobody is ready.

        The returned agent is removed from the ready pool.
        """
        ...


class LongestIdleAssigner:
    """Longest-idle-agent-first: fair to agents and the usual outbound default.

    Insertion-ordered dict: agents become ready in time order, so the first key is always the one
    idle longest and ``pick`` is O(1).
    """

    def __init__(self) -> None:
        self._ready: dict[int, float] = {}

    def agent_ready(self, agent_id: int, now: float) -> None:
        if agent_id in self._ready:
            return
        if self._ready and now < next(reversed(self._ready.values())):
            raise ValueError(
                f"agent {agent_id} ready at {now} is earlier than the last ready agent; "
                "ready events must arrive in time order"
            )
        self._ready[agent_id] = now

    def agent_unready(self, agent_id: int) -> None:
        self._ready.pop(agent_id, None)

    def pick(self, now: float) -> int | None:
        if not self._ready:
            return None
        agent_id = next(iter(self._ready))
        del self._ready[agent_id]
        return agent_id
