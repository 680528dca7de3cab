"""What a pacing policy sees and learns from: a frozen view of now plus outcome observations.

Times in the view are *timestamps* (seconds on the same monotonic clock as ``now``), not elapsed
times: building a view is then a plain ``tuple(...)`` copy per state, which keeps a 100-agent
campaign cheap to drive. ``PacingView.elapsed(...)`` turns them into elapsed seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PacingStats:
    """Running campaign counters since the shift started (all monotonically non-decreasing).

    ``live_answers`` counts humans who answered (AMD false positives included);
    ``abandons`` counts live answers not connected to an agent in time (false positives included),
    the FCC/Ofcom definition the compliance gate is measured on.
    """

    shift_start: float = 0.0
    dials: int = 0
    live_answers: int = 0
    abandons: int = 0
    connects: int = 0


@dataclass(frozen=True, slots=True)
class PacingView:
    """A snapshot of one campaign at one instant.

    Agents are split by state, each tuple holding the instant the agent entered that state.
    ``talking_since`` includes agents handling an undetected answering machine: to the dialer
    that is an agent on a call. ``ringing_since`` holds the dial instants of calls still in
    progress (dialled, not yet resolved into a waiting answer, a connection or a release).
    ``waiting_since`` holds the instants live answers started waiting for an agent.
    ``line_cap`` is the most simultaneous outbound lines (ringing + waiting + connected) allowed.
    """

    idle_since: tuple[float, ...] = ()
    talking_since: tuple[float, ...] = ()
    wrap_since: tuple[float, ...] = ()
    ringing_since: tuple[float, ...] = ()
    waiting_since: tuple[float, ...] = ()
    line_cap: int = 0
    stats: PacingStats = field(default_factory=PacingStats)

    @property
    def agents(self) -> int:
        return len(self.idle_since) + len(self.talking_since) + len(self.wrap_since)

    @property
    def lines_in_use(self) -> int:
        # A connected call holds a line while the agent talks; wrap-up does not.
        return len(self.ringing_since) + len(self.waiting_since) + len(self.talking_since)

    @property
    def free_lines(self) -> int:
        return max(0, self.line_cap - self.lines_in_use)

    @staticmethod
    def elapsed(since: tuple[float, ...], now: float) -> FloatArray:
        """Elapsed seconds for each timestamp (never negative)."""
        if not since:
            return np.zeros(0, dtype=np.float64)
        return np.maximum(now - np.asarray(since, dtype=np.float64), 0.0)


@dataclass(frozen=True, slots=True)
class DialResolved:
    """A dialled call stopped ringing: it needs an agent now, or it was released.

    ``needs_agent`` is True when the call was handed to the agent pool (a human, or a machine the
    AMD did not recognise); ``human`` tells which. Released calls (busy, no answer, recognised
    machine, AMD false positive) have ``needs_agent`` False. ``patience`` is how long a handed-over
    call may wait for an agent from ``resolved_at`` before it is abandoned (the 2 s window, less
    whatever part of it the AMD decision already used).
    """

    dialed_at: float
    resolved_at: float
    needs_agent: bool
    human: bool
    patience: float | None = None


@dataclass(frozen=True, slots=True)
class AgentTaskDone:
    """An agent finished a talk (or machine) segment, or a wrap-up."""

    kind: Literal["talk", "wrap"]
    duration: float


Observation = DialResolved | AgentTaskDone


@runtime_checkable
class PacingPolicy(Protocol):
    """One pacing decision rule. Pure: it sees a view and ``now`` and returns a dial count."""

    name: str

    def decide(self, view: PacingView, now: float) -> int:
        """How many new calls to dial right now (>= 0, within ``view.free_lines``)."""
        ...

    def observe(self, obs: Observation) -> None:
        """Learn from an outcome. Policies that do not learn ignore it."""
        ...


def clamp_dials(n: int, view: PacingView) -> int:
    """The last word on every decision: never negative, never past the line cap, none without
    agents (a dialer with nobody logged in must not place calls that can only be abandoned)."""
    if view.agents == 0:
        return 0
    return max(0, min(int(n), view.free_lines))
