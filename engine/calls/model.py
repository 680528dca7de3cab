"""The call model: one leg the engine placed or took over."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from engine.core import jsontext
from engine.core.frozen import replace
from engine.pbx.base import Amd, DialplanTarget, DialTarget, Park, Then
from engine.speech.amd.params import AmdOverrides


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
    trunk: str | None = None  # trunk NAME (the current attempt's trunk for a group call)
    endpoint: str | None = None
    # Group calls (docs/trunks.md "Service"): the group, the current attempt's
    # dial target (PJSIP endpoint / sofia gateway, which may differ from the
    # trunk name), the channel id of the current attempt's leg, and one entry
    # per attempt (trunk, leg_id, times, verdict, cause).
    trunk_group: str | None = None
    trunk_target: str | None = None
    leg_id: str = ""
    attempts: tuple[Mapping[str, Any], ...] = ()
    trunk_failure: str = ""  # why the group gave up (max-attempts, no-trunk-available...)
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
    amd_cause: str = ""
    amd_at: float | None = None
    illegal_transitions: int = 0

    @property
    def is_ended(self) -> bool:
        return self.state is CallState.ENDED

    def evolve(self, **changes: Any) -> Call:
        """``dataclasses.replace(self, **changes)``, about four times cheaper
        (engine.core.frozen: a call is evolved ~15 times)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: asdict deep-copies every
        # value recursively, which made this the costliest step of each
        # registry write (measured ~200 us a call, several times per call).
        data = {name: getattr(self, name) for name in _FIELDS}
        data["state"] = self.state.value
        data["then"] = dict(self.then)
        data["variables"] = dict(self.variables)
        data["attempts"] = [dict(a) for a in self.attempts]
        return data

    @property
    def current_leg(self) -> str:
        """The channel id of the leg the engine controls now: the call id,
        except for a group call's attempts 2.. (see ``attempt_leg_id``)."""
        return self.leg_id or self.call_id

    def to_json(self) -> str:
        return jsontext.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Call:
        values = dict(data)
        values["state"] = CallState(values["state"])
        if "attempts" in values:
            values["attempts"] = tuple(dict(a) for a in values["attempts"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> Call:
        return cls.from_dict(json.loads(text))


_FIELDS = tuple(f.name for f in fields(Call))


def then_to_dict(then: Then) -> dict[str, Any]:
    if isinstance(then, Park):
        return {"kind": "park"}
    if isinstance(then, Amd):
        # The call's own AMD parameters (a campaign's profile) when it has any: a resumed
        # analysis after a restart uses them too. Without: {"kind": "amd"} as before.
        given = then.overrides.given()
        return {"kind": "amd", "params": given} if given else {"kind": "amd"}
    if isinstance(then, DialplanTarget):
        return {
            "kind": "dialplan",
            "context": then.context,
            "exten": then.exten,
            "priority": then.priority,
        }
    return {"kind": "ivr", "flow": then.flow}


def amd_params_of(then: Mapping[str, Any]) -> AmdOverrides | None:
    """The AMD parameters kept in a call's ``then`` (then_to_dict), or None."""
    given = then.get("params") if then.get("kind") == "amd" else None
    if not isinstance(given, Mapping) or not given:
        return None
    try:
        return AmdOverrides.from_dict(given)
    except (TypeError, ValueError):
        return None  # not written by this engine: the switch's own parameters


def attempt_leg_id(call_id: str, attempt: int) -> str:
    """The channel id of attempt ``attempt`` of a group call.

    Attempt 1 uses the call id itself (so a call that never fails over looks
    exactly like a plain trunk call). Every later attempt is a NEW leg on the
    switch and needs its own ChannelId/origination_uuid: Asterisk refuses an
    Originate whose ChannelId is still in use, and a late event of the old leg
    (Asterisk sends the failed OriginateResponse after the Hangup) must not be
    mistaken for the new one. uuid5 makes it deterministic, so a restarted
    engine or a test can compute it.
    """
    if attempt <= 1:
        return call_id
    try:
        namespace = uuid.UUID(call_id)
    except ValueError:
        namespace = uuid.uuid5(uuid.NAMESPACE_URL, call_id)
    return str(uuid.uuid5(namespace, f"attempt-{attempt}"))


def dial_target(call: Call) -> DialTarget:
    if call.trunk_target:
        return DialTarget("trunk", call.trunk_target, call.to)
    if call.trunk:
        return DialTarget("trunk", call.trunk, call.to)
    if call.endpoint:
        return DialTarget("endpoint", call.endpoint, call.to)
    raise ValueError(f"call {call.call_id} has neither trunk nor endpoint")
