"""Request bodies of the agents and queues API, validated with pydantic.

engine/api/openapi.json describes the same shapes (``PauseRequest``,
``QueueCallRequest``); the OpenAPI contract test checks both agree.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.acd.endpoints import CUSTOMER_KEY, MAX_VALUE, TAG, VAR_VALUE
from engine.calls.schemas import CALL_ID

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PauseBody(_Body):
    reason: Annotated[str, Field(pattern=NAME)]


#: What a supervisor endpoint may look like: the agents' endpoint syntax (engine.toml).
ENDPOINT = r"^[A-Za-z0-9][A-Za-z0-9_./@:+-]{0,127}$"
#: Free text for the audit trail: printable, no control characters, at most 200.
NOTE = r"^[^\x00-\x1f\x7f]{1,200}$"


class SpyBody(_Body):
    mode: Literal["listen", "whisper", "barge"]
    endpoint: Annotated[str, Field(pattern=ENDPOINT)]


class ForcePauseBody(_Body):
    reason: Annotated[str, Field(pattern=NAME)]
    note: Annotated[str, Field(pattern=NOTE)] | None = None


class ForceLogoutBody(_Body):
    reason: Annotated[str, Field(pattern=NOTE)]


class MoveBody(_Body):
    # "from" is a Python keyword: the JSON name through an alias.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)
    source: Annotated[str, Field(alias="from", pattern=NAME)]
    target: Annotated[str, Field(alias="to", pattern=NAME)]


class QueueCallBody(_Body):
    call_id: Annotated[str, Field(pattern=CALL_ID)]
    tags: list[Annotated[str, Field(pattern=TAG)]] = Field(default_factory=list, max_length=20)
    intent: Annotated[str, Field(pattern=TAG)] | None = None
    # Compared with the agents' capability vectors by best-match routing.
    features: list[float] | None = Field(default=None, min_length=1, max_length=64)
    # Screen-pop data: sent to the agent's leg as ACD_CUSTOMER_<KEY> channel
    # variables and in QueueCallOffered.
    customer: dict[
        Annotated[str, Field(pattern=CUSTOMER_KEY)],
        Annotated[str, Field(pattern=VAR_VALUE, max_length=MAX_VALUE)],
    ] = Field(default_factory=dict, max_length=50)

    @field_validator("features", mode="before")
    @classmethod
    def _numbers(cls, value: object) -> object:
        # strict mode refuses ints for float; JSON 1 and 1.0 are the same number.
        if isinstance(value, list):
            out = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in out):
                raise ValueError("expected finite numbers")
            return out
        return value
