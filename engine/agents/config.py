"""Config schema of ``[[agents]]`` (same style as :mod:`engine.trunks.config`).

Unknown keys are errors, models are frozen, messages say what was expected.
Cross-references (switch names, unique ids) are checked with the queues in
:func:`engine.acd.config.reference_problems`.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.agents.model import AgentConfig

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
# What reaches a dial string: a technology/resource such as "PJSIP/1001" or
# "user/1001@example.org", nothing a switch could read as syntax (no spaces,
# commas, pipes, braces, quotes or "${").
Endpoint = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./@:+-]{0,127}$")]
Level = Annotated[int, Field(ge=1, le=10)]


class AgentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Name
    name: str = Field(default="", max_length=200)
    team: Name | None = None
    endpoints: dict[Name, Endpoint] = Field(default_factory=dict)  # switch name -> endpoint
    skills: dict[Name, Level] = Field(default_factory=dict)
    capability: list[float] | None = None
    max_no_answer: int = Field(default=3, ge=1, le=100)

    @field_validator("capability")
    @classmethod
    def _finite(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            if not value:
                raise ValueError("expected at least one number (or leave capability out)")
            if not all(math.isfinite(v) for v in value):
                raise ValueError("expected finite numbers")
        return value

    def to_config(self) -> AgentConfig:
        return AgentConfig(
            id=self.id,
            name=self.name or self.id,
            endpoints=dict(self.endpoints),
            skills=dict(self.skills),
            capability=tuple(self.capability) if self.capability is not None else None,
            team=self.team,
            max_no_answer=self.max_no_answer,
        )
