"""Request bodies of the campaigns API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from engine.campaigns.model import Disposition


class DispositionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    disposition: Disposition
    # For "callback": when (ISO 8601 with a zone), and for whom: the same agent or anyone.
    callback_at: datetime | None = None
    callback_agent: Literal["same", "any"] = "any"

    @field_validator("callback_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("expected a time with a zone, e.g. 2026-12-05T10:00:00+01:00")
        return value
