"""The call model: one leg the engine placed or took over."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from engine.pbx.base import DialplanTarget, DialTarget, IvrTarget, Park, Then


class CallState(enum.StrEnum):
    CREATED = "created"  # accepted by the API, originate not yet acknowledged
    DIALING = "dialing"  # the switch accepted the originate / created the channel
    RINGING = "ringing"
    ANSWERED = "answered"
    BRIDGED = "bridged"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Call:
    call_id: str
    switch: str
    state: CallState
    to: str
    then: Mapping[str, Any]
    created_at: float
    direction: Literal["outbound", "inbound"] = "outbound"
    trunk: str | None = None
    endpoint: str | None = None
    caller_id_num: str = ""
    caller_id_name: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    channel: str = ""
    attempt: int = 1
    dialing_at: float | None = None
    ringing_at: float | None = None
    answered_at: float | None = None
    bridged_at: float | None = None
    ended_at: float | None = None
    cause: int | None = None
    sip_code: int | None = None
    cause_text: str = ""
    interrupted: bool = False
    outcome_unknown: bool = False  # originate written, reply lost; resync decides
    dtmf: str = ""
    amd_status: str | None = None
    illegal_transitions: int = 0

    @property
    def is_ended(self) -> bool:
        return self.state is CallState.ENDED

    def evolve(self, **changes: Any) -> Call:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["then"] = dict(self.then)
        data["variables"] = dict(self.variables)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Call:
        values = dict(data)
        values["state"] = CallState(values["state"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> Call:
        return cls.from_dict(json.loads(text))


def then_to_dict(then: Then) -> dict[str, Any]:
    if isinstance(then, Park):
        return {"kind": "park"}
    if isinstance(then, DialplanTarget):
        return {
            "kind": "dialplan",
            "context": then.context,
            "exten": then.exten,
            "priority": then.priority,
        }
    return {"kind": "ivr", "flow": then.flow}


def dial_target(call: Call) -> DialTarget:
    if call.trunk:
        return DialTarget("trunk", call.trunk, call.to)
    if call.endpoint:
        return DialTarget("endpoint", call.endpoint, call.to)
    raise ValueError(f"call {call.call_id} has neither trunk nor endpoint")


def then_from_dict(data: Mapping[str, Any]) -> Then:
    kind = data.get("kind")
    if kind == "park":
        return Park()
    if kind == "dialplan":
        return DialplanTarget(str(data["context"]), str(data["exten"]), int(data["priority"]))
    if kind == "ivr":
        return IvrTarget(str(data["flow"]))
    raise ValueError(f"unknown 'then' kind {kind!r}")
