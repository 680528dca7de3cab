"""Config schema of ``[[queues]]`` and ``[acd]``, and the ACD's cross-reference checks.

Same style as :mod:`engine.trunks.config`. ``EngineConfig`` (engine/config.py)
adds the lists and calls :func:`reference_problems` from its model validator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.acd.model import (
    DEFAULT_PRIORITIES,
    AfterAgentHangup,
    OverflowRule,
    QueueSpec,
    Strategy,
    StrategySplit,
)
from engine.agents.config import AgentEntry, Endpoint
from engine.agents.model import NO_ANSWER, UNREACHABLE
from engine.core.config import duplicate_problem, unknown_problem

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
MinLevel = Annotated[int, Field(ge=0, le=10)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OverflowEntry(_Strict):
    """``[[queues.overflow]]``: after ``after_s`` of waiting, exactly one action."""

    after_s: float = Field(gt=0, le=86400)
    relax_skills: dict[Name, MinLevel] = Field(default_factory=dict)  # new minimums, 0 = dropped
    add_queue: Name | None = None
    ivr_flow: Name | None = None  # e.g. a voicemail or callback flow in ivr/

    @model_validator(mode="after")
    def _one_action(self) -> OverflowEntry:
        given = [k for k in ("relax_skills", "add_queue", "ivr_flow") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "expected exactly one of relax_skills, add_queue or ivr_flow "
                f"(got {', '.join(given) or 'none'})"
            )
        return self

    def to_rule(self) -> OverflowRule:
        return OverflowRule(self.after_s, dict(self.relax_skills), self.add_queue, self.ivr_flow)


class QueueEntry(_Strict):
    name: Name
    skills: dict[Name, Annotated[int, Field(ge=1, le=10)]] = Field(default_factory=dict)
    strategy: Strategy = Strategy.LONGEST_IDLE
    ring_timeout_s: float = Field(default=15.0, gt=0, le=300)
    wrap_up_s: float = Field(default=0.0, ge=0, le=3600)
    max_wait_s: float = Field(default=0.0, ge=0, le=86400)  # 0: no limit
    service_level_s: float = Field(default=20.0, gt=0, le=3600)
    moh: Name = "default"
    announce_position: bool = False
    overflow: list[OverflowEntry] = Field(default_factory=list)
    after_agent_hangup: AfterAgentHangup = "hangup"
    # A/B test of routing (docs/acd.md "Alternating strategies"): each entering caller gets one.
    strategies: list[Strategy] | None = None
    strategy_split: StrategySplit = "alternate"
    strategy_weights: list[Annotated[float, Field(gt=0, le=1e6)]] | None = None

    @field_validator("strategies")
    @classmethod
    def _two_or_more(cls, value: list[Strategy] | None) -> list[Strategy] | None:
        if value is None:
            return value
        if len(value) < 2:
            raise ValueError(
                f"expected two or more strategies to split callers between, got {len(value)} "
                "(for one, use strategy)"
            )
        dup = sorted({s.value for s in value if value.count(s) > 1})
        if dup:
            raise ValueError(f"each strategy may be listed once; repeated: {', '.join(dup)}")
        return value

    @model_validator(mode="after")
    def _strategy_split(self) -> QueueEntry:
        given = self.model_fields_set
        if self.strategies is None:
            for key in ("strategy_split", "strategy_weights"):
                if key in given:
                    raise ValueError(
                        f"{key}: only with strategies (a list of two or more strategies to split "
                        "the queue's callers between)"
                    )
            return self
        if "strategy" in given:
            raise ValueError(
                "strategy and strategies: give one (strategies splits the callers between "
                "several; its first is the queue's default)"
            )
        if self.strategy_weights is not None:
            if self.strategy_split != "random":
                raise ValueError(
                    'strategy_weights: only with strategy_split = "random" (alternate takes '
                    "the strategies in turn)"
                )
            if len(self.strategy_weights) != len(self.strategies):
                raise ValueError(
                    f"strategy_weights: expected one weight per strategy "
                    f"({len(self.strategies)}), got {len(self.strategy_weights)}"
                )
        return self

    @model_validator(mode="after")
    def _no_announcement_yet(self) -> QueueEntry:
        # Refused rather than silently ignored: no position/ETA prompt is played yet.
        if self.announce_position:
            raise ValueError(
                "announce_position: position/ETA announcements are not supported yet; "
                "expected false (docs/acd.md)"
            )
        return self

    @model_validator(mode="after")
    def _overflow_order(self) -> QueueEntry:
        rules = sorted(enumerate(self.overflow), key=lambda r: r[1].after_s)
        mins = dict(self.skills)
        left_at: float | None = None
        for i, rule in rules:
            if left_at is not None:
                raise ValueError(
                    f"overflow[{i}] (after {rule.after_s} s) can never apply: the call has left "
                    f"for an IVR flow after {left_at} s"
                )
            if rule.ivr_flow:
                left_at = rule.after_s
            if rule.add_queue == self.name:
                raise ValueError(f"overflow[{i}].add_queue: a queue cannot overflow to itself")
            for skill, level in rule.relax_skills.items():
                if skill not in mins:
                    # Most often a misspelt skill: "does not relax the minimum (0)" hid that.
                    raise ValueError(
                        unknown_problem(
                            f"overflow[{i}].relax_skills.{skill}", "skill", skill, self.skills
                        )
                        + "; only a skill the queue requires can be relaxed"
                    )
                if level >= mins[skill]:
                    raise ValueError(
                        f"overflow[{i}].relax_skills.{skill}: {level} does not relax the minimum "
                        f"in force then ({mins[skill]}); expected a lower level"
                    )
                mins[skill] = level
        return self

    def to_spec(self) -> QueueSpec:
        return QueueSpec(
            name=self.name,
            skills=dict(self.skills),
            strategy=self.strategy,
            ring_timeout_s=self.ring_timeout_s,
            wrap_up_s=self.wrap_up_s,
            max_wait_s=self.max_wait_s,
            service_level_s=self.service_level_s,
            moh=self.moh,
            announce_position=self.announce_position,
            overflow=tuple(r.to_rule() for r in self.overflow),
            after_agent_hangup=self.after_agent_hangup,
            strategies=tuple(self.strategies or ()),
            strategy_split=self.strategy_split,
            strategy_weights=tuple(self.strategy_weights or ()),
        )


class AcdSection(_Strict):
    """``[acd]``: pause reasons, priorities from customer tags, intents to queues."""

    pause_reasons: list[Name] = Field(default_factory=lambda: ["break", "lunch", "training"])
    priorities: dict[Name, Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITIES)
    )
    default_priority: int = Field(default=1, ge=0, le=1000)  # tags that name no priority
    intents: dict[Name, Name] = Field(default_factory=dict)  # intent -> queue name
    # weighted-random and load-aware draws, and a random strategy split: same seed, same choices
    seed: int = 0
    scorer_weights: str = ""  # best-match: JSON weights of a logistic scorer; empty = cosine
    # Switch name -> the supervisors' phones a listen / whisper / barge may ring there
    # (docs/supervisor.md); every agent's phone on that switch may be rung as well.
    supervisor_endpoints: dict[Name, list[Endpoint]] = Field(default_factory=dict)

    @field_validator("pause_reasons")
    @classmethod
    def _reasons(cls, value: list[str]) -> list[str]:
        for own in (NO_ANSWER, UNREACHABLE):
            if own in value:
                raise ValueError(f"{own!r} is the engine's own reason; leave it out")
        dup = sorted({r for r in value if value.count(r) > 1})
        if dup:
            raise ValueError(f"each reason may be listed once; repeated: {', '.join(dup)}")
        return value

    @field_validator("priorities")
    @classmethod
    def _lower(cls, value: dict[str, int]) -> dict[str, int]:
        # Tags are matched case-insensitively: "VIP" and "vip" are one tag.
        lowered = {k.lower(): v for k, v in value.items()}
        if len(lowered) != len(value):
            raise ValueError("tag names differ only by case")
        return lowered


def reference_problems(
    agents: Sequence[AgentEntry],
    queues: Sequence[QueueEntry],
    acd: AcdSection,
    switch_names: Iterable[str] | None = None,
) -> list[str]:
    """Every cross-reference problem, each as ``key.path: what is wrong``."""
    out: list[str] = []
    seen: dict[str, int] = {}
    dims: tuple[int, int] | None = None  # (first agent with a capability, its length)
    switches = set(switch_names) if switch_names is not None else None
    for i, a in enumerate(agents):
        if a.id in seen:
            out.append(duplicate_problem("agents", i, "id", a.id, seen[a.id]))
        seen.setdefault(a.id, i)
        if switches is not None:
            for sw in a.endpoints:
                if sw not in switches:
                    where = f"agents[{i}].endpoints.{sw}"
                    out.append(unknown_problem(where, "switch", sw, switches))
        if a.capability is not None:
            if dims is None:
                dims = (i, len(a.capability))
            elif len(a.capability) != dims[1]:
                out.append(
                    f"agents[{i}].capability: {len(a.capability)} numbers, but agents[{dims[0]}] "
                    f"has {dims[1]} (every capability vector must have the same length)"
                )
    names: dict[str, int] = {}
    for i, q in enumerate(queues):
        if q.name in names:
            out.append(duplicate_problem("queues", i, "name", q.name, names[q.name]))
        names.setdefault(q.name, i)
    for i, q in enumerate(queues):
        for j, rule in enumerate(q.overflow):
            if rule.add_queue is not None and rule.add_queue not in names:
                where = f"queues[{i}].overflow[{j}].add_queue"
                out.append(unknown_problem(where, "queue", rule.add_queue, names))
    if switches is not None:
        for sw in acd.supervisor_endpoints:
            if sw not in switches:
                where = f"acd.supervisor_endpoints.{sw}"
                out.append(unknown_problem(where, "switch", sw, switches))
    for intent, queue in acd.intents.items():
        if queue not in names:
            out.append(unknown_problem(f"acd.intents.{intent}", "queue", queue, names))
    return out
