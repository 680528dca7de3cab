"""A campaign contact's fields as IVR variables (``engine.ivr.ports.CallContext``).

When a campaign call reaches an IVR flow (the AMD machine action's ``amd.machine_flow``, or
any later redirect of the call to a flow), the flow starts with its contact's data:

- ``contact.<field>``: each custom field of the contact row whose name is a variable word
  (``[A-Za-z_][A-Za-z0-9_]*``, at most 64 characters); other names (``first name``) are not
  exposed. Values keep their JSON type (a number stays a number for ``condition``).
- ``contact.id``, ``contact.phone`` (E.164), ``contact.campaign``: set by the engine; they
  win over custom fields of the same names, as in the agent's screen pop.

The lookup is in the engine's own state, not the switch's: the IVR session's channel id is
matched to the calls service's call (its ``current_leg`` or ``call_id``, as the ``queue``
step does, engine/acd/ivr_entry.py), and the call to the flight of the campaign runner that
dialled it (``CampaignService.runner_of_call``), whose contact row was read when it was
claimed. No contact data travels in channel variables, so none of it reaches a switch
command on the way in. A call whose runner is on another engine (a FastAGI or outbound
socket pointed elsewhere) gets no ``contact.*`` variables: they read as "".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from engine.calls.model import Call
from engine.campaigns.flights import Flight

_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

Value = str | int | float | bool


class TrackedCalls(Protocol):
    def tracked(self) -> list[Call]: ...


class Runners(Protocol):
    def flight_of_call(self, call_id: str) -> tuple[str, Flight] | None: ...


class ContactVariables:
    def __init__(self, campaigns: Runners, calls: TrackedCalls) -> None:
        self._campaigns = campaigns
        self._calls = calls

    def variables_of(self, leg: str) -> Mapping[str, Value]:
        if not leg:
            return {}
        for call in self._calls.tracked():
            if call.is_ended or leg not in (call.current_leg, call.call_id):
                continue
            found = self._campaigns.flight_of_call(call.call_id)
            if found is not None:
                return contact_variables(*found)
        return {}


def contact_variables(campaign_id: str, flight: Flight) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for key, value in flight.fields.items():
        if isinstance(key, str) and _WORD.match(key):
            out[f"contact.{key}"] = _scalar(value)
    out["contact.id"] = str(flight.contact_id)
    out["contact.phone"] = flight.phone
    out["contact.campaign"] = campaign_id
    return out


def _scalar(value: Any) -> Value:
    if isinstance(value, str | int | float | bool):
        return value
    return "" if value is None else str(value)
