"""IVR flow model: a flow is an ordered list of steps (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Answer:
    line: int = 0


@dataclass(frozen=True, slots=True)
class Play:
    prompt: str
    line: int = 0


@dataclass(frozen=True, slots=True)
class Gather:
    into: str
    prompt: str = ""
    max_digits: int = 1
    timeout_s: float = 5.0
    terminators: str = "#"
    line: int = 0


@dataclass(frozen=True, slots=True)
class SetVars:
    values: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class Hangup:
    line: int = 0


Step = Answer | Play | Gather | SetVars | Hangup


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    source: str
    steps: tuple[Step, ...]
    description: str = ""
