"""``[reports]`` in engine.toml (docs/reports.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from engine.reports.fill import FillSettings

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Seconds = Annotated[float, Field(ge=0, le=3600)]


class ReportsSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Callers who hang up within this many seconds of waiting are short abandons: counted
    # apart, in neither the service level nor the abandon rate (per queue: _by_queue).
    short_abandon_s: Seconds = 0.0
    short_abandon_s_by_queue: dict[Name, Seconds] = Field(default_factory=dict)
    # How often the engine recomputes the intervals the latest rows changed.
    refresh_s: float = Field(default=5.0, gt=0, le=3600)
    enabled: bool = True

    def settings(self, service_level_s: dict[str, float]) -> FillSettings:
        return FillSettings(
            service_level_s=dict(service_level_s),
            short_abandon_s=dict(self.short_abandon_s_by_queue),
            default_short_abandon_s=self.short_abandon_s,
        )
