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
    """Running campaign counters since the shift started, all of them things a live dialer
    counts itself (monotonically non-decreasing).

    Nothing here says whether a call was a person: a live dialer cannot know that for an
    answering machine its detector let through, nor for a person its detector hung up on. So
    ``handed_over`` counts every answer passed to the agent pool (the AMD said "human", or no
    AMD), ``dropped`` every hand-over the dialer released when its own drop timer ran out (the
    safe-harbour message), and ``amd_human`` the detector's "human" verdicts.
    ``amd_false_positive_rate`` is the detector's declared error rate (a campaign setting from
    its calibration, Ofcom's "reasoned estimate"), not a per-call truth.

    :attr:`live_estimate` and :attr:`abandon_estimate` are what the campaign steers on: dropped
    machines count as abandons and connected machines as live answers (they share the queue, so
    the ratio is unbiased), plus the expected number of people the detector hung up on.
    """

    shift_start: float = 0.0
    dials: int = 0
    handed_over: int = 0
    dropped: int = 0
    connects: int = 0
    amd_human: int = 0
    amd_false_positive_rate: float = 0.0

    @property
    def false_positive_estimate(self) -> float:
        """People hung up on by the detector: ``rate / (1 - rate)`` per "human" verdict (a
        slight over-estimate, as undetected machines are among the verdicts)."""
        rate = min(max(self.amd_false_positive_rate, 0.0), 0.5)
        return self.amd_human * rate / (1.0 - rate)

    @property
    def live_estimate(self) -> float:
        return self.handed_over + self.false_positive_estimate

    @property
    def abandon_estimate(self) -> float:
        return self.dropped + self.false_positive_estimate


@dataclass(frozen=True, slots=True)
class PacingView:
    """A snapshot of one campaign at one instant.

    Agents are split by state, each tuple holding the instant the agent entered that state.
    ``talking_since`` includes agents handling an undetected answering machine: to the dialer
    that is an agent on a call. ``ringing_since`` holds the dial instants of calls still in
    progress (dialled, not yet resolved into a waiting answer, a connection or a release).
    ``waiting_since`` holds the instants live answers started waiting for an agent.
    ``line_cap`` is the most simultaneous outbound lines (ringing + waiting + connected) allowed.
    Agents who asked to log off (or pause) after their current task are in none of the agent
    tuples: they are no supply; ``departing_on_call`` counts those still on a call (a line).
    """

    idle_since: tuple[float, ...] = ()
    talking_since: tuple[float, ...] = ()
    wrap_since: tuple[float, ...] = ()
    ringing_since: tuple[float, ...] = ()
    waiting_since: tuple[float, ...] = ()
    departing_on_call: int = 0
    line_cap: int = 0
    stats: PacingStats = field(default_factory=PacingStats)

    @property
    def agents(self) -> int:
        return len(self.idle_since) + len(self.talking_since) + len(self.wrap_since)

    @property
    def lines_in_use(self) -> int:
        # A connected call holds a line while the agent talks; wrap-up does not.
        return (
            len(self.ringing_since)
            + len(self.waiting_since)
            + len(self.talking_since)
            + self.departing_on_call
        )

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
    """A dialled call stopped ringing: it was handed to the agent pool, or it was released.

    This record and :class:`AgentTaskDone` are everything a pacing policy learns from, and the
    live campaign runner builds the very same records from switch events: the dial instant, the
    instant the call was resolved, whether it was handed to the agent pool (an answer the AMD
    passed as human, or any answer without AMD) and, for a hand-over, how long the dialer's own
    drop timer leaves before the safe-harbour release. Released calls (busy, congestion, no
    answer, an AMD "machine" verdict) have ``needs_agent`` False and no ``patience``. There is
    deliberately no "was it a person" field: for an undetected machine the dialer cannot know.
    """

    dialed_at: float
    resolved_at: float
    needs_agent: bool
    patience: float | None = None


@dataclass(frozen=True, slots=True)
class AgentTaskDone:
    """An agent finished a talk segment (whoever or whatever was on the line), or a wrap-up,
    lasting ``duration`` seconds, at ``ended_at`` (the clock of ``PacingView``; the learner
    uses it to tell which segments began after those it has forgotten)."""

    kind: Literal["talk", "wrap"]
    duration: float
    ended_at: float | None = None


Observation = DialResolved | AgentTaskDone
OBSERVATION_TYPES = (DialResolved, AgentTaskDone)
"""The only records a policy's ``observe`` receives, in the simulator and live."""


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
