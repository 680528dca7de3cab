"""Request bodies of the calls API, validated with pydantic.

The OpenAPI document (engine/api/openapi.json) describes the same shapes; a
test checks that every example in it validates here and every response
validates there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from engine.calls.commands import OriginateCommand
from engine.pbx.base import Amd, DialplanTarget, IvrTarget, Park, Then

NUMBER = r"^\+?[0-9*#]{1,32}$"
# Trunk, endpoint, switch and group names. No '@': the Asterisk driver puts
# the name into "PJSIP/<number>@<trunk>" and refuses it (a 502 after the
# request was accepted, found by the fuzzer).
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
# A letter after at most two '_' (Asterisk's inheritance prefixes): "_" or
# "__" alone is no name (schemathesis ST202: the schema allowed "_").
VAR_NAME = r"^_{0,2}[A-Za-z][A-Za-z0-9_]{0,61}$"
# Dialplan names are written into AMI headers; CR/LF and separators are refused.
DIALPLAN_WORD = r"^[A-Za-z0-9_+*#.-]{1,80}$"
FLOW = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
CALLER_NUMBER = r"^\+?[0-9]{0,32}$"
# What both drivers accept (engine/pbx/asterisk/safe_values.py): no quotes,
# angle brackets, backslash or control characters.
CALLER_NAME = r'^[^"<>\\\x00-\x1f\x7f]*$'
# No control characters, and no "${" or "$[" (Asterisk would expand a
# dialplan function or expression from input). A "$" is followed by anything
# else or ends the value; Rust's regex (pydantic) has no lookahead, hence the
# pairing. Values the server refuses are therefore schema-invalid, not a
# surprise 400 for a valid request (found by schemathesis, ST202).
VAR_VALUE = r"^(?:[^\x00-\x1f\x7f$]|\$[^\x00-\x1f\x7f${\[])*\$?$"
DIGITS = r"^[0-9A-Da-d*#]{1,32}$"
# Call ids are UUIDs today; the wider set keeps switch-made ids (Asterisk
# "1700000000.42") possible while refusing NUL, control characters and
# anything SQL or Redis would need escaped.
CALL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
# Printable ASCII, 1-200 characters: the header is echoed in logs and stored
# as a Redis key. No space at either end: HTTP strips it in transit.
IDEMPOTENCY_KEY = r"^[\x21-\x7e]([\x20-\x7e]{0,198}[\x21-\x7e])?$"


def _integral_float(value: Any) -> Any:
    # JSON Schema counts 1.0 as an integer; strict mode alone would refuse it.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_integral_float)]


class _Body(BaseModel):
    # strict: JSON types as the OpenAPI document declares them; "30" is not
    # a number and 1.5 is not an integer.
    model_config = ConfigDict(extra="forbid", strict=True)


class ThenPark(_Body):
    kind: Literal["park"]


class ThenDialplan(_Body):
    kind: Literal["dialplan"]
    context: Annotated[str, Field(pattern=DIALPLAN_WORD)]
    exten: Annotated[str, Field(pattern=DIALPLAN_WORD)]
    priority: JsonInt = Field(default=1, ge=1, le=10000)


class ThenIvr(_Body):
    kind: Literal["ivr"]
    flow: Annotated[str, Field(pattern=FLOW)]


class ThenAmd(_Body):
    kind: Literal["amd"]


ThenBody = Annotated[ThenPark | ThenDialplan | ThenIvr, Field(discriminator="kind")]
#: An originate may also ask for answering-machine detection (a redirect may not).
OriginateThenBody = Annotated[
    ThenPark | ThenDialplan | ThenIvr | ThenAmd, Field(discriminator="kind")
]


def then_from_body(body: ThenPark | ThenDialplan | ThenIvr | ThenAmd) -> Then:
    if isinstance(body, ThenPark):
        return Park()
    if isinstance(body, ThenAmd):
        return Amd()
    if isinstance(body, ThenDialplan):
        return DialplanTarget(body.context, body.exten, body.priority)
    return IvrTarget(body.flow)


class CallerId(_Body):
    number: Annotated[str, Field(pattern=CALLER_NUMBER)] = ""
    name: Annotated[str, Field(max_length=64, pattern=CALLER_NAME)] = ""


class OriginateBody(_Body):
    to: Annotated[str, Field(pattern=NUMBER)]
    trunk: Annotated[str | None, Field(pattern=NAME)] = None
    endpoint: Annotated[str | None, Field(pattern=NAME)] = None
    trunk_group: Annotated[str | None, Field(pattern=NAME)] = None
    switch: Annotated[str | None, Field(pattern=NAME)] = None
    caller_id: CallerId = CallerId()
    then: OriginateThenBody = ThenPark(kind="park")
    timeout_s: float = Field(default=30.0, ge=1, le=300)
    variables: dict[
        Annotated[str, Field(pattern=VAR_NAME)],
        Annotated[str, Field(max_length=1024, pattern=VAR_VALUE)],
    ] = Field(default_factory=dict, max_length=32)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        # An explicit null would otherwise count as "not given"; the document
        # declares these as strings, so null is refused like any other type.
        if isinstance(data, dict):
            for key in ("trunk", "endpoint", "trunk_group", "switch"):
                if key in data and data[key] is None:
                    raise ValueError(f"'{key}' must be a string; omit it instead of sending null")
        return data

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
    digits: Annotated[str, Field(pattern=DIGITS)]
