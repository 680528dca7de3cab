"""Request bodies of the calls API, validated with pydantic.

The OpenAPI document (engine/api/openapi.json) describes the same shapes; a
test checks that every example in it validates here and every response
validates there.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.calls.commands import OriginateCommand
from engine.pbx.base import DialplanTarget, IvrTarget, Park, Then

NUMBER = r"^\+?[0-9*#]{1,32}$"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,79}$"
VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# Dialplan names are written into AMI headers; CR/LF and separators are refused.
DIALPLAN_WORD = r"^[A-Za-z0-9_+*#.-]{1,80}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThenPark(_Body):
    kind: Literal["park"]


class ThenDialplan(_Body):
    kind: Literal["dialplan"]
    context: Annotated[str, Field(pattern=DIALPLAN_WORD)]
    exten: Annotated[str, Field(pattern=DIALPLAN_WORD)]
    priority: int = Field(default=1, ge=1, le=10000)


class ThenIvr(_Body):
    kind: Literal["ivr"]
    flow: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


ThenBody = Annotated[ThenPark | ThenDialplan | ThenIvr, Field(discriminator="kind")]


def then_from_body(body: ThenPark | ThenDialplan | ThenIvr) -> Then:
    if isinstance(body, ThenPark):
        return Park()
    if isinstance(body, ThenDialplan):
        return DialplanTarget(body.context, body.exten, body.priority)
    return IvrTarget(body.flow)


class CallerId(_Body):
    number: Annotated[str, Field(pattern=r"^\+?[0-9]{0,32}$")] = ""
    name: Annotated[str, Field(max_length=64, pattern=r"^[^\r\n\"<>]*$")] = ""


class OriginateBody(_Body):
    to: Annotated[str, Field(pattern=NUMBER)]
    trunk: Annotated[str | None, Field(pattern=NAME)] = None
    endpoint: Annotated[str | None, Field(pattern=NAME)] = None
    trunk_group: Annotated[str | None, Field(pattern=NAME)] = None
    switch: Annotated[str | None, Field(pattern=NAME)] = None
    caller_id: CallerId = CallerId()
    then: ThenBody = ThenPark(kind="park")
    timeout_s: float = Field(default=30.0, ge=1, le=300)
    variables: dict[
        Annotated[str, Field(pattern=VAR_NAME)],
        Annotated[str, Field(max_length=1024, pattern=r"^[^\r\n]*$")],
    ] = Field(default_factory=dict, max_length=32)

    @model_validator(mode="after")
    def _one_destination(self) -> OriginateBody:
        given = [k for k in ("trunk", "endpoint", "trunk_group") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'trunk' or 'endpoint' or 'trunk_group'"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.trunk_group is not None and self.switch is not None:
            raise ValueError(
                "'switch' cannot be combined with 'trunk_group': each trunk names its switch"
            )
        return self

    def to_command(self) -> OriginateCommand:
        return OriginateCommand(
            to=self.to,
            then=then_from_body(self.then),
            switch=self.switch,
            trunk=self.trunk,
            endpoint=self.endpoint,
            trunk_group=self.trunk_group,
            caller_id_num=self.caller_id.number,
            caller_id_name=self.caller_id.name,
            timeout_s=self.timeout_s,
            variables=dict(self.variables),
        )


class RedirectBody(_Body):
    then: ThenBody


class DtmfBody(_Body):
    digits: Annotated[str, Field(pattern=r"^[0-9A-Da-d*#]{1,32}$")]
