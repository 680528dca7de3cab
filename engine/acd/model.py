"""Queues, waiting calls, and the maps from customer tags and intents.

Frozen values, no I/O. :class:`QueueSpec` is what the router reads; the config
layer (:mod:`engine.acd.config`) builds it from ``[[queues]]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from engine.agents.model import AgentConfig, AgentStatus

DEFAULT_PRIORITIES: Mapping[str, int] = MappingProxyType({"vip": 3, "high_value": 2, "normal": 1})
DEFAULT_PRIORITY = 1  # a call whose tags name no priority

# What a connected caller gets when the agent hangs up first (QueueSpec).
AfterAgentHangup = Literal["hangup", "requeue"]
# How a queue with several strategies gives each entering caller one (QueueSpec.strategies):
# in turn, or drawn (seeded, optionally weighted). engine/acd/strategy_split.py.
StrategySplit = Literal["alternate", "random"]


class Strategy(StrEnum):
    LONGEST_IDLE = "longest-idle"
    FEWEST_CALLS = "fewest-calls"
    LEAST_TALK_TIME = "least-talk-time"
    ROUND_ROBIN = "round-robin"
    RING_ALL = "ring-all"
    WEIGHTED_RANDOM = "weighted-random"
    HIGHEST_SKILL_LEVEL = "highest-skill-level"
    LOAD_AWARE = "load-aware"
    BEST_MATCH = "best-match"


@dataclass(frozen=True, slots=True)
class OverflowRule:
    """After ``after_s`` of waiting, exactly one of: new skill minimums, a fallback queue
    whose agents may also take the call, or leaving the queue for an IVR flow."""

    after_s: float
    relax_skills: Mapping[str, int] = field(default_factory=dict)  # skill -> new min (0: dropped)
    add_queue: str | None = None
    ivr_flow: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "relax_skills", MappingProxyType(dict(self.relax_skills)))
        actions = sum((bool(self.relax_skills), self.add_queue is not None, bool(self.ivr_flow)))
        if actions != 1:
            raise ValueError("an overflow rule has exactly one action")


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    skills: Mapping[str, int] = field(default_factory=dict)  # required skill -> min level
    strategy: Strategy = Strategy.LONGEST_IDLE
    ring_timeout_s: float = 15.0
    wrap_up_s: float = 0.0
    max_wait_s: float = 0.0  # 0: no limit
    service_level_s: float = 20.0
    moh: str = "default"
    announce_position: bool = False
    overflow: tuple[OverflowRule, ...] = ()
    # When the agent hangs up a connected call: "hangup" ends the caller's
    # call too (the conversation is over), "requeue" puts the caller back in
    # the queue (e.g. a dropped agent phone).
    after_agent_hangup: AfterAgentHangup = "hangup"
    # An A/B test of routing (docs/acd.md "Alternating strategies"): each entering caller is
    # given one of these, which routes it for its whole stay. Empty: ``(strategy,)``; given,
    # ``strategy`` becomes its first.
    strategies: tuple[Strategy, ...] = ()
    strategy_split: StrategySplit = "alternate"
    strategy_weights: tuple[float, ...] = ()  # random split only; empty: equal weights

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))
        object.__setattr__(self, "overflow", tuple(sorted(self.overflow, key=lambda r: r.after_s)))
        strategies = tuple(self.strategies) or (self.strategy,)
        if len(set(strategies)) != len(strategies):
            raise ValueError(f"queue {self.name}: a strategy is listed twice in {strategies}")
        if self.strategy_weights and (
            len(self.strategy_weights) != len(strategies)
            or self.strategy_split != "random"
            or min(self.strategy_weights) <= 0
        ):
            raise ValueError(
                f"queue {self.name}: strategy_weights are one positive number per strategy, "
                "with strategy_split random"
            )
        object.__setattr__(self, "strategies", strategies)
        object.__setattr__(self, "strategy", strategies[0])
        object.__setattr__(self, "strategy_weights", tuple(self.strategy_weights))


@dataclass(frozen=True, slots=True)
class WaitingCall:
    call_id: str
    queue: str
    entered_at: float
    priority: int = DEFAULT_PRIORITY
    tags: tuple[str, ...] = ()
    intent: str | None = None
    features: tuple[float, ...] | None = None  # compared with agents' capability vectors
    customer: Mapping[str, str] = field(default_factory=dict)
    offered_to: tuple[str, ...] = ()  # every agent the call was offered to, in order
    missed_by: frozenset[str] = frozenset()  # agents who did not answer it: not offered again
    strategy: Strategy | None = None  # one of its queue's strategies; None: the queue's first

    def __post_init__(self) -> None:
        object.__setattr__(self, "customer", MappingProxyType(dict(self.customer)))


def priority_for(
    tags: Iterable[str],
    priorities: Mapping[str, int] = DEFAULT_PRIORITIES,
    default: int = DEFAULT_PRIORITY,
) -> int:
    """The highest priority any tag maps to (tags compare case-insensitively)."""
    found = [priorities[t.lower()] for t in tags if t.lower() in priorities]
    return max(found, default=default)


def queue_for_intent(intent: str | None, intents: Mapping[str, str]) -> str | None:
    return intents.get(intent) if intent is not None else None


@dataclass(frozen=True, slots=True)
class AgentView:
    """What the router needs to know of one agent (built from its config and live status)."""

    agent_id: str
    skills: Mapping[str, int] = field(default_factory=dict)
    available: bool = False
    idle_since: float = 0.0  # longest-idle order
    calls_handled: int = 0  # fewest-calls
    talk_s: float = 0.0  # least-talk-time
    busy_s: float = 0.0  # load-aware: occupancy = busy / (busy + available time)
    available_s: float = 0.0
    available_since: float = 0.0
    capability: tuple[float, ...] | None = None  # best-match
    queues: frozenset[str] | None = None  # rostered queues; None: every queue it fits

    def occupancy(self, now: float) -> float:
        idle = self.available_s + (max(0.0, now - self.available_since) if self.available else 0)
        total = self.busy_s + idle
        return self.busy_s / total if total > 0 else 0.0


def view_of(config: AgentConfig, status: AgentStatus) -> AgentView:
    return AgentView(
        agent_id=config.id,
        skills=config.skills,
        available=status.is_available,
        idle_since=status.idle_since if status.idle_since is not None else status.since,
        calls_handled=status.calls_handled,
        talk_s=status.talk_s,
        busy_s=status.busy_s,
        available_s=status.available_s,
        available_since=status.since,
        capability=config.capability,
        queues=config.queues,
    )
